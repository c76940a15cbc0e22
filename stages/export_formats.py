"""Export for inference elsewhere. Reads a model_dir or SavedModel, writes model.onnx and/or
model.tflite (with class_names.txt) under the output directory; see checkpoints/formats.py for
the files' inputs and outputs, and what they cannot hold."""
import dataclasses
from typing import Dict, Tuple

from checkpoints import formats
from checkpoints import trained as trained_lib
from stages import predict
from tf2 import resnet


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Attributes: model_path (model_dir or SavedModel), output_dir, formats ('onnx',
    'litert'), embedding_layer (the `embedding` output)."""
    model_path: str
    output_dir: str
    formats: Tuple[str, ...]
    embedding_layer: str = resnet.FINAL_AVG_POOL


def run(cfg: ExportConfig, description: trained_lib.Description) -> Dict[str, str]:
    """Writes each format's file at the model's image size; returns {format: path}.

    The files compute in float32 whatever the global Keras policy: the caller sets float32.
    """
    trained = predict.build(description, cfg.embedding_layer)
    function = formats.inference_function(trained.model, description.image_size,
                                          cfg.embedding_layer)
    names = predict.class_names(trained)
    return {fmt: formats.write(function, fmt, cfg.output_dir, names) for fmt in cfg.formats}
