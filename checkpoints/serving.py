"""What a deployed model answers: the encoded-image serving signature and the named outputs.

A SavedModel exported with the image size it was trained at gains the signature `serve_bytes`
(TF Serving, Vertex AI, `saved_model_cli run`), besides the pixel signatures of
checkpoints/export.py:

  input  `image_bytes`  (B,) tf.string, each a whole JPEG or PNG file (GIF/BMP too: whatever
                         `tf.io.decode_image` reads; the first frame of an animation).
  output `embedding`     (B, D) float32, the encoder's final_avg_pool (SimCLR's features);
         `logits`        (B, C) float32, the supervised head (absent without one, as below);
         `probabilities` (B, C) float32, softmax of the logits;
         `classes`       (B,) int64, the most probable class;
         `class_names`   (B,) string, its name (its number when no names were recorded).

The images are prepared as evaluation prepares them (data.pipeline.eval_input_fn): decoded to
RGB as the folder source decodes (grey repeated, alpha dropped), then data.augment's
`preprocess_for_eval` (the central square of 0.875 of the shorter side, bicubic resize to the
model's size; images of 32 px or less are only resized). A model without a supervised head (a
pretraining run without the linear head) returns `embedding` only. An undecodable image fails
the whole request (TF Serving answers it with an error naming the decode).
"""
from typing import Dict, Optional, Sequence

import tensorflow as tf

from data import augment, pipeline
from tf2 import model as model_lib
from tf2 import resnet

SERVE_BYTES = "serve_bytes"
BYTES_INPUT = "image_bytes"
EMBEDDING, LOGITS, PROBABILITIES = "embedding", "logits", "probabilities"
CLASSES, CLASS_NAMES = "classes", "class_names"


def center_crop_for(image_size: int) -> bool:
    """Whether evaluation crops before resizing at this size (SimCLR: above 32 px only)."""
    return image_size >= pipeline.EVAL_CENTER_CROP_MIN_SIZE


def preprocess_bytes(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """(B,) encoded images -> (B, image_size, image_size, 3) float32 in [0, 1], as evaluation."""
    crop = center_crop_for(image_size)
    return tf.map_fn(
        lambda contents: augment.preprocess_for_eval(augment.decode_rgb(contents), image_size,
                                                     center_crop=crop),
        image_bytes, fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def classify(logits: tf.Tensor, class_names: Optional[tf.Tensor] = None,
             with_names: bool = True) -> Dict[str, tf.Tensor]:
    """{logits, probabilities, classes, class_names} of (B, C) logits.

    Args:
      logits: (B, C) float32.
      class_names: (C,) string tensor naming the classes; None names them by number.
      with_names: False leaves `class_names` out (formats without string tensors).
    """
    classes = tf.argmax(logits, axis=-1, output_type=tf.int64)  # (B,)
    named = {LOGITS: logits, PROBABILITIES: tf.nn.softmax(logits, axis=-1), CLASSES: classes}
    if with_names:
        named[CLASS_NAMES] = (tf.strings.as_string(classes) if class_names is None
                              else tf.gather(class_names, classes))
    return named


def named_outputs(model, images: tf.Tensor, class_names: Optional[tf.Tensor] = None,
                  embedding_layer: str = resnet.FINAL_AVG_POOL,
                  with_names: bool = True) -> Dict[str, tf.Tensor]:
    """The served outputs (module docstring) of `model` on prepared images, inference mode."""
    outputs = model(images, training=False)
    named = {EMBEDDING: model_lib.embedding(model, outputs, embedding_layer)}
    if model_lib.LOGITS_SUP in outputs:
        named.update(classify(outputs[model_lib.LOGITS_SUP], class_names, with_names))
    return named


def names_tensor(class_names_variable: tf.Variable, model) -> Optional[tf.Variable]:
    """The variable when it names every output class of `model`, else None (numbers instead)."""
    head = model.supervised_head
    if head is None or int(class_names_variable.shape[0]) != head.dense.units:
        return None
    return class_names_variable


def bytes_function(model, image_size: int, class_names: Optional[tf.Variable] = None):
    """The `serve_bytes` tf.function of `model` (input signature: BYTES_INPUT, (None,) string)."""
    def serve_bytes(image_bytes):
        return named_outputs(model, preprocess_bytes(image_bytes, image_size), class_names)

    spec = tf.TensorSpec([None], tf.string, name=BYTES_INPUT)
    return tf.function(serve_bytes, input_signature=[spec])


def read_files(paths: Sequence[str]) -> tf.Tensor:
    """(len(paths),) tf.string: the files' bytes, as a client would send them."""
    return tf.constant([tf.io.read_file(p).numpy() for p in paths], tf.string)
