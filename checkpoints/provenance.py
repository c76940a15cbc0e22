"""What a run's checkpoint or SavedModel says about it: its stage, class names and data.

config.json and our SavedModels record the class names (label k = class_names[k]); config.json
also records the data (data set, train split, holdout). The checks that compare them with the
data of a run that continues from it are in flags/checks.py, the sentence that names the first
difference of two class-name lists (`difference`) is here, where --mode=predict reads it too.
"""
import json
import os
from typing import Dict, Optional, Sequence

import tensorflow as tf

from checkpoints import official
from checkpoints import export as export_lib
from checkpoints import manager as ckpt_lib

_HEAD_KERNEL = "simclr/head_supervised/dense/kernel"
_LISTED = 5  # class names spelled out in a message


def difference(theirs: Sequence[str], ours: Sequence[str], their_name: str,
               our_name: str) -> Optional[str]:
    """The first difference between two class-name lists, as one sentence; None if equal.

    Example: "class 3 is 'dress' in the teacher, 'coat' in the data".
    """
    theirs, ours = tuple(theirs), tuple(ours)
    if theirs == ours:
        return None
    if len(theirs) != len(ours):
        only_theirs = [n for n in theirs if n not in ours][:_LISTED]
        only_ours = [n for n in ours if n not in theirs][:_LISTED]
        detail = "; ".join(part for part in (
            f"only in the {their_name}: {', '.join(map(repr, only_theirs))}" if only_theirs
            else "", f"only in the {our_name}: {', '.join(map(repr, only_ours))}" if only_ours
            else "") if part)
        return (f"the {their_name} has {len(theirs)} classes, the {our_name} {len(ours)}"
                + (f" ({detail})" if detail else ""))
    k = next(i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b)
    return f"class {k} is {theirs[k]!r} in the {their_name}, {ours[k]!r} in the {our_name}"


def _config_json_record(directory: str) -> Optional[dict]:
    path = os.path.join(directory, "config.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        raw = json.load(f)
    names = raw.get("class_names")
    return {"class_names": None if names is None else tuple(names),
            "train_mode": raw.get("train_mode"),
            "num_classes": raw.get("head", {}).get("num_classes") if names is not None
            else None}  # before class names were recorded, num_classes was always 1000


def record(path: str) -> Dict[str, object]:
    """{'class_names', 'train_mode', 'num_classes'} of a checkpoint, model_dir or SavedModel.

    Values are None where the source does not say (official SavedModels, runs that predate
    these records, a checkpoint without its config.json); num_classes is 0 without a
    supervised head.
    """
    unknown = {"class_names": None, "train_mode": None, "num_classes": None}
    if official.is_official_saved_model(path):
        return {**unknown, "num_classes": official_num_classes(path)}
    if export_lib.is_saved_model_dir(path):
        saved = export_lib.saved_record(path)
        try:
            shapes = export_lib.saved_variable_shapes(path)
        except ValueError:  # not one of ours
            return {**unknown, **saved}
        kernel = shapes.get(_HEAD_KERNEL)
        return {**saved, "num_classes": kernel[-1] if kernel else 0}
    directory = path if os.path.isdir(path) else os.path.dirname(
        ckpt_lib.resolve_checkpoint(path))
    return _config_json_record(directory) or unknown


def official_num_classes(path: str) -> Optional[int]:
    """Outputs of an official SavedModel's supervised head (its kernel's last dimension).

    Read from the variables' index alone (no graph is loaded); None when it cannot be read.
    """
    try:
        shapes = tf.train.load_checkpoint(
            os.path.join(path, "variables", "variables")).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError):
        return None
    kernels = [shape for key, shape in shapes.items()
               if key.startswith(f"model/{official.SUPERVISED_HEAD}/") and len(shape) == 2]
    return kernels[0][-1] if len(kernels) == 1 else None


def recorded_data(path: str, need_checkpoint: bool = False) -> Optional[dict]:
    """The data part ("data") of config.json of the run that wrote `path`, or None.

    Args:
      path: a model_dir, a checkpoint prefix, or one of our SavedModels where a run left it
        (`<model_dir>/saved_model/<step>`); a SavedModel elsewhere has no config.json.
      need_checkpoint: None unless the model_dir also holds a checkpoint (a resume).

    Returns:
      {'dataset', 'train_split', 'holdout_fraction', ...} as recorded, or None where nothing
      is recorded (no config.json, or one written before it had a data part).
    """
    if export_lib.is_saved_model_dir(path):
        parent = os.path.dirname(os.path.abspath(path))
        directory = os.path.dirname(parent) if os.path.basename(parent) == "saved_model" else ""
    elif os.path.isdir(path):
        directory = path
    else:
        directory = os.path.dirname(ckpt_lib.resolve_checkpoint(path))
    config = os.path.join(directory, "config.json")
    if not directory or not os.path.exists(config) or (
            need_checkpoint and not _has_checkpoint(directory)):
        return None
    with open(config) as f:
        return json.load(f).get("data") or None


def recorded_class_names(model_dir: str) -> tuple:
    """The class names in model_dir/config.json when a checkpoint of that run exists, else ()."""
    rec = _config_json_record(model_dir)
    if rec is None or not rec["class_names"] or not _has_checkpoint(model_dir):
        return ()
    return rec["class_names"]


def _has_checkpoint(model_dir: str) -> bool:
    return bool(tf.io.gfile.glob(os.path.join(model_dir, "*.index")))
