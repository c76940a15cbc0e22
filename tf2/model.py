"""SimCLRModel: encoder f(.), projection head g(.) and optional supervised head, as one Keras model.

The model returns a dict keyed by the constants below; losses, export and tests read that dict.
"""
import dataclasses
from typing import Dict, List, Optional

import keras
import tensorflow as tf

from tf2 import resnet
from tf2.config import HeadConfig, ModelConfig
from tf2.heads import ProjectionHead, SupervisedHead

PROJ_HEAD_INPUT = "proj_head_input"
PROJ_HEAD_OUTPUT = "proj_head_output"
SUPERVISED_HEAD_INPUT = "supervised_head_input"
LOGITS_SUP = "logits_sup"
OUTPUT_NAMES = resnet.ENDPOINT_NAMES + (PROJ_HEAD_INPUT, PROJ_HEAD_OUTPUT, LOGITS_SUP)


class SimCLRModel(keras.Model):
    """f(.) + g(.) (+ supervised head).

    Args:
      encoder: a `resnet.ResNet` returning `(features, endpoints)`.
      projection_head: a `ProjectionHead` returning the list of its layers' outputs.
      supervised_head: optional `SupervisedHead`.
      ft_proj_selector: which projection-head output feeds the supervised head (0 = encoder
        output, 1 = first head layer, -1 = last).
      stop_gradient_supervised: detach the supervised head's input, so labels never reach the
        encoder (linear evaluation while pretraining).
    """

    def __init__(self, encoder, projection_head, supervised_head=None, ft_proj_selector=0,
                 stop_gradient_supervised=False, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.projection_head = projection_head
        self.supervised_head = supervised_head
        self.ft_proj_selector = ft_proj_selector
        self.stop_gradient_supervised = stop_gradient_supervised

    def call(self, images, training=False) -> Dict[str, tf.Tensor]:
        """Runs the model.

        Args:
          images: (B, H, W, 3*V) float in [0, 1] with V views stacked on channels, or
            (V*B, H, W, 3).

        Returns:
          dict of float32 tensors: every encoder endpoint (V*B, ...), `proj_head_input`
          (V*B, C), `proj_head_output` (V*B, out_dim), and `logits_sup` (V*B, classes) when a
          supervised head exists. View v of image b is row v*B + b.
        """
        channels = images.shape[-1]
        if channels is not None and channels > 3:
            images = tf.concat(split_views(images), axis=0)  # (V*B, H, W, 3)
        features, endpoints = self.encoder(images, training=training)
        hiddens = self.projection_head(features, training=training)
        outputs = dict(endpoints)
        outputs[PROJ_HEAD_INPUT] = hiddens[0]
        outputs[PROJ_HEAD_OUTPUT] = hiddens[-1]
        if self.supervised_head is not None:
            sup_in = hiddens[self.ft_proj_selector]
            if self.stop_gradient_supervised:
                sup_in = tf.stop_gradient(sup_in)
            outputs[SUPERVISED_HEAD_INPUT] = sup_in
            outputs[LOGITS_SUP] = self.supervised_head(sup_in)
        return {k: tf.cast(v, tf.float32) for k, v in outputs.items()}


def split_views(images) -> List[tf.Tensor]:
    """(B, H, W, 3V) -> V x (B, H, W, 3): the views the input pipeline stacks on channels."""
    channels = images.shape[-1]
    if channels % 3:
        raise ValueError(f"images must have 3*V channels, got {channels}")
    return tf.split(images, channels // 3, axis=-1)  # V x (B, H, W, 3)


def build_model(model_cfg: ModelConfig, head_cfg: HeadConfig, with_supervised_head=True,
                stop_gradient_supervised=False, image_size: Optional[int] = None,
                num_classes: Optional[int] = None) -> SimCLRModel:
    """Builds (and, when image_size is given, creates the variables of) a SimCLRModel.

    `num_classes`, when given, replaces `head_cfg.num_classes` (the data set decides it).
    """
    if num_classes is not None:
        head_cfg = dataclasses.replace(head_cfg, num_classes=num_classes)
    bn = dict(batch_norm_decay=model_cfg.batch_norm_decay,
              batch_norm_epsilon=model_cfg.batch_norm_epsilon, global_bn=model_cfg.global_bn)
    encoder = resnet.build_resnet(model_cfg)
    head = ProjectionHead(head_cfg.proj_head_mode, head_cfg.num_proj_layers,
                          head_cfg.proj_out_dim, name="projection_head", **bn)
    sup = None
    if with_supervised_head and head_cfg.num_classes > 0:
        sup = SupervisedHead(head_cfg.num_classes, head_cfg.zero_init_logits_layer,
                             name="head_supervised")
    model = SimCLRModel(encoder, head, sup, ft_proj_selector=head_cfg.ft_proj_selector,
                        stop_gradient_supervised=stop_gradient_supervised, name="simclr")
    if image_size is not None:
        model(tf.zeros((1, image_size, image_size, 3)), training=False)
    return model


# Layers whose output can be read as an embedding (besides the encoder's FINAL_AVG_POOL): the
# head's input and output, each head layer j >= 1 as f"{PROJ_HEAD_LAYER}{j}", and the logits.
PROJ_HEAD_LAYER = "proj_head_layer_"


def embedding_layers(model: SimCLRModel) -> tuple:
    """Names `embedding` accepts for `model`, encoder first, in the order data flows."""
    names = [resnet.FINAL_AVG_POOL, PROJ_HEAD_INPUT]
    names += [f"{PROJ_HEAD_LAYER}{j}"
              for j in range(1, len(model.projection_head.head_layers) + 1)]
    names.append(PROJ_HEAD_OUTPUT)
    if model.supervised_head is not None:
        names.append(LOGITS_SUP)
    return tuple(names)


def embedding(model: SimCLRModel, outputs: Dict[str, tf.Tensor], layer: str) -> tf.Tensor:
    """The (B, D) float32 output of `layer` (see `embedding_layers`) for these model outputs.

    The projection head's middle layers are not among the model's outputs: they are computed
    again from its input (a few dense layers; the encoder does not run twice).

    Raises:
      ValueError: `layer` is not one of `embedding_layers(model)`.
    """
    if layer not in embedding_layers(model):
        raise ValueError(f"no layer {layer!r}; this model has "
                         f"{', '.join(embedding_layers(model))}")
    if not layer.startswith(PROJ_HEAD_LAYER):
        return outputs[layer]
    hiddens = model.projection_head(outputs[PROJ_HEAD_INPUT], training=False)
    return tf.cast(hiddens[int(layer[len(PROJ_HEAD_LAYER):])], tf.float32)
