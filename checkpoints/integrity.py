"""Is a SavedModel given as a warm start or a teacher whole? Checked before a run builds anything.

A truncated `saved_model.pb`, a missing `variables/variables.index`, or variables data that is
truncated or garbled would otherwise surface as a protobuf DecodeError or a checkpoint-reader
traceback from deep inside TensorFlow, after the data set was loaded and the model built.
`check_saved_model` reads the graph proto and every variable (TensorFlow verifies each
tensor's checksum as it reads it) and says in one line which file is damaged and how.
"""
import os

import tensorflow as tf
from google.protobuf import message
from tensorflow.core.protobuf import saved_model_pb2

from checkpoints import manager as ckpt_lib


class DamagedSavedModelError(ValueError):
    """A file of a SavedModel is missing, truncated or garbled."""


def _damaged(path: str, detail: str) -> DamagedSavedModelError:
    return DamagedSavedModelError(
        f"the SavedModel {path} is damaged: {detail}. Copy or export it again.")


def check_saved_model(path: str) -> None:
    """Raises DamagedSavedModelError unless the SavedModel at `path` reads whole.

    Args:
      path: a directory holding saved_model.pb (ours or an official SimCLRv2 export).
    """
    pb_path = os.path.join(path, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    try:
        with tf.io.gfile.GFile(pb_path, "rb") as f:
            saved.ParseFromString(f.read())
    except message.DecodeError as e:
        raise _damaged(path, f"{pb_path} cannot be parsed, it is truncated or garbled "
                             f"({e or 'DecodeError'})") from e
    if not saved.meta_graphs:  # a file cut at a field boundary parses, but holds nothing
        raise _damaged(path, f"{pb_path} holds no MetaGraph (truncated?)")
    prefix = os.path.join(path, "variables", "variables")
    reason = ckpt_lib.damage_of(prefix)
    if reason is not None:
        raise _damaged(path, reason)
    reader = tf.train.load_checkpoint(prefix)
    for key in sorted(reader.get_variable_to_dtype_map()):
        try:
            reader.get_tensor(key)
        except (tf.errors.OpError, IndexError) as e:  # IndexError: a short read in Python
            detail = getattr(e, "message", None) or str(e) or type(e).__name__
            raise _damaged(path, f"variable {key} in {prefix}.data-* cannot be read "
                                 f"({detail.strip().splitlines()[0]})") from e
