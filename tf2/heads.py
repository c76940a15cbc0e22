"""Projection head g(.) and supervised head of SimCLRv2.

The projection head is a stack of fully connected layers, each followed by batch norm; the
middle ones have a bias (the BN centre) and a ReLU, the last has neither (paper Sec. 2, and the
original code). Middle widths equal the input width (paper footnote 2), so they follow the
encoder's width multiplier.
"""
from typing import List

import keras
import tensorflow as tf

from tf2.batch_norm import BatchNorm

PROJ_HEAD_MODES = ("none", "linear", "nonlinear")


class LinearBN(keras.layers.Layer):
    """Dense layer (no bias) + batch norm (+ ReLU); the BN centre plays the bias.

    Args:
      units: output width.
      use_bias: give the BN a centre (beta). The last head layer has none.
      use_relu: apply a ReLU after the batch norm.
      batch_norm_decay, batch_norm_epsilon, global_bn: batch-norm settings.
    """

    def __init__(self, units, use_bias=True, use_relu=True, batch_norm_decay=0.9,
                 batch_norm_epsilon=1e-5, global_bn=False, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(
            units, use_bias=False,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), name="dense")
        self.bn = BatchNorm(
            momentum=batch_norm_decay, epsilon=batch_norm_epsilon, center=use_bias,
            global_bn=global_bn, name="bn")
        self.use_relu = use_relu

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.bn.build(tuple(input_shape[:-1]) + (self.dense.units,))
        super().build(input_shape)

    def call(self, inputs, training=False):
        x = self.bn(self.dense(inputs), training=training)
        return tf.nn.relu(x) if self.use_relu else x


class ProjectionHead(keras.layers.Layer):
    """g(.): maps encoder features to the contrastive space.

    Args:
      mode: 'none' (identity), 'linear' (one LinearBN, no ReLU) or 'nonlinear'.
      num_layers: layers of the nonlinear head (paper: 3).
      out_dim: width of the last layer (paper: 128).
      batch_norm_decay, batch_norm_epsilon, global_bn: batch-norm settings.

    Call returns the list of every layer's output, input first: `[h, g1(h), g2(g1(h)), ...]`,
    so fine-tuning can start from any of them (`ft_proj_selector`).
    """

    def __init__(self, mode="nonlinear", num_layers=3, out_dim=128, batch_norm_decay=0.9,
                 batch_norm_epsilon=1e-5, global_bn=False, **kwargs):
        super().__init__(**kwargs)
        if mode not in PROJ_HEAD_MODES:
            raise ValueError(f"proj_head_mode must be one of {PROJ_HEAD_MODES}, got {mode!r}")
        if mode == "nonlinear" and num_layers < 1:
            raise ValueError(f"num_proj_layers must be >= 1 for a nonlinear head, got {num_layers}")
        self.mode, self.num_layers, self.out_dim = mode, num_layers, out_dim
        self._bn_args = dict(batch_norm_decay=batch_norm_decay,
                             batch_norm_epsilon=batch_norm_epsilon, global_bn=global_bn)
        self._num_built = 0

    @property
    def head_layers(self) -> List[LinearBN]:
        return [getattr(self, f"nl_{j}") for j in range(self._num_built)]

    def build(self, input_shape):
        width = int(input_shape[-1])
        count = {"none": 0, "linear": 1, "nonlinear": self.num_layers}[self.mode]
        last = count - 1
        for j in range(count):
            nonlinear = self.mode == "nonlinear" and j != last
            # One attribute per layer: tf.train.Checkpoint does not follow Keras-tracked lists.
            setattr(self, f"nl_{j}", LinearBN(
                self.out_dim if j == last else width, use_bias=nonlinear, use_relu=nonlinear,
                name=f"nl_{j}", **self._bn_args))
        self._num_built = count
        shape = tuple(input_shape)
        for layer in self.head_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.dense.units,)
        super().build(input_shape)

    def call(self, inputs, training=False):
        hiddens = [inputs]
        for layer in self.head_layers:
            hiddens.append(layer(hiddens[-1], training=training))
        return hiddens

    def freeze_after(self, selector: int):
        """Makes layers that do not feed `hiddens[selector]` non-trainable (fine-tuning).

        Their outputs are still computed (and exported) but no loss reaches them.
        """
        keep = len(self.head_layers) if selector < 0 else selector
        for j, layer in enumerate(self.head_layers):
            layer.trainable = j < keep


class SupervisedHead(keras.layers.Layer):
    """One linear layer with bias producing class logits.

    Args:
      num_classes: number of classes.
      zero_init: start from all-zero weights (the original `zero_init_logits_layer`).
    """

    def __init__(self, num_classes, zero_init=False, **kwargs):
        super().__init__(**kwargs)
        init = "zeros" if zero_init else keras.initializers.RandomNormal(stddev=0.01)
        self.dense = keras.layers.Dense(num_classes, kernel_initializer=init, name="dense")

    def call(self, inputs):
        return self.dense(inputs)
