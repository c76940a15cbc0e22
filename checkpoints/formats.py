"""ONNX and LiteRT (TFLite) files of a trained network, for inference outside TensorFlow.

Both files take the pixel input of the SavedModel's `serve` signature and give the outputs of
its `serve_bytes` signature (checkpoints/serving.py) except the class names:

  input  `images`         float32 (N, S, S, 3) in [0, 1], S the model's image size, prepared as
                          evaluation prepares them (data.augment.preprocess_for_eval: the
                          central square of 0.875 of the shorter side, bicubic resize to S; 32 px
                          and below only the resize); the caller does this.
  output `embedding`      float32 (N, D), the chosen layer (default final_avg_pool);
         `logits`, `probabilities` float32 (N, C); `classes` int64 (N,) (with a head only).

What cannot be exported (NOT_EXPORTED): the encoded-image signature, because decoding JPEG/PNG
is an op of neither ONNX nor the LiteRT builtins; and string outputs, so the class names go
into `class_names.txt` beside the file, one a line (class k on line k + 1).

Converters: tf2onnx's `from_function` (Keras 3 models are traced as a tf.function; its
`from_keras` does not support Keras 3), and TensorFlow's own TFLiteConverter on the function with
its variables frozen into constants. Both are checked against their runtimes (onnxruntime; the
LiteRT interpreter) in tests/checkpoints/test_formats.py.
"""
import os
from typing import Optional, Sequence

import tensorflow as tf

from checkpoints import serving
from tf2 import resnet

ONNX, LITERT = "onnx", "litert"
FILE_NAMES = {ONNX: "model.onnx", LITERT: "model.tflite"}
INPUT = "images"
ONNX_OPSET = 17
CLASS_NAMES_FILE = "class_names.txt"
NOT_EXPORTED = ("not in ONNX / LiteRT files: the encoded-image (JPEG/PNG bytes) signature "
                "(neither format decodes images; prepare them as README 'Step 4' shows) and "
                "the class names as strings (in class_names.txt beside the file)")
INSTALL = "pip install -r requirements-export.txt"


class MissingPackageError(ImportError):
    """The converter of a format is not installed; the message gives the pip line."""


def inference_function(model, image_size: int,
                       embedding_layer: str = resnet.FINAL_AVG_POOL):
    """images (None, S, S, 3) float32 -> the outputs of the module docstring (a tf.function)."""
    def infer(images):
        return serving.named_outputs(model, images, embedding_layer=embedding_layer,
                                     with_names=False)

    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=INPUT)
    return tf.function(infer, input_signature=[spec])


def to_onnx(function, path: str, opset: int = ONNX_OPSET) -> str:
    """Writes `function` (from inference_function) as an ONNX model at `path`.

    Raises:
      MissingPackageError: tf2onnx is not installed.
    """
    try:
        import tf2onnx
    except ImportError as e:
        raise MissingPackageError(f"--export_format=onnx needs tf2onnx: {INSTALL}") from e
    tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                  opset=opset, output_path=path)
    return path


def to_litert(function, path: str) -> str:
    """Writes `function` (from inference_function) as a LiteRT (.tflite) model at `path`.

    The variables are frozen into constants first: converting the function with its resource
    variables gives a file whose outputs are NaN on the LiteRT 2.3 interpreter (TF 2.21,
    measured), and one that fails to read its variables without the default delegate.
    """
    from tensorflow.python.framework import convert_to_constants
    concrete = function.get_concrete_function()
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    holder = tf.Module()  # names the signature's inputs and outputs as `function` does
    holder.infer = tf.function(
        lambda images: tf.nest.pack_sequence_as(concrete.structured_outputs, frozen(images)),
        input_signature=function.input_signature)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [holder.infer.get_concrete_function()], holder)
    with open(path, "wb") as f:
        f.write(converter.convert())
    return path


def litert_interpreter(path: str):
    """The LiteRT interpreter of `path` (ai_edge_litert's; TensorFlow's tf.lite without it)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=path)


def write(function, fmt: str, output_dir: str, class_names: Sequence[str] = (),
          opset: Optional[int] = None) -> str:
    """Writes FILE_NAMES[fmt] (and class_names.txt) under output_dir; returns the file's path."""
    if fmt not in FILE_NAMES:
        raise ValueError(f"unknown export format {fmt!r}; use {', '.join(FILE_NAMES)}")
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, FILE_NAMES[fmt])
    if fmt == ONNX:
        to_onnx(function, path, opset or ONNX_OPSET)
    else:
        to_litert(function, path)
    with open(os.path.join(output_dir, CLASS_NAMES_FILE), "w", encoding="utf-8") as f:
        f.write("".join(f"{name}\n" for name in class_names))
    return path
