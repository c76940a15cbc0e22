"""A trained network to use (predict, export to other formats), from wherever it was saved.

Three kinds of source are read, each into one of our SimCLRModels (so that any layer can be
read and the model runs on every replica of a strategy):

  * a model_dir: its config.json (the network, stage, class names and image size of the run)
    and its newest readable checkpoint;
  * one of our SavedModels: its `architecture` record (checkpoints/export.py); exports made
    before that record fall back to the config.json of the model_dir they sit in
    (`<model_dir>/saved_model/<step>`);
  * one of Google's official SimCLRv2 SavedModels (checkpoints/official.py), at 224 px, its
    logits from final_avg_pool as those exports compute them; 1000 classes are named by
    ImageNet's WordNet ids, as TFDS' imagenet2012 names them.

`describe` reads what a source says without building anything (run.py checks flags against it
before TensorFlow builds a network); `load` builds and restores, inside the caller's
strategy scope.
"""
import dataclasses
import json
import os
from typing import Optional, Tuple

import tensorflow as tf

from checkpoints import export as export_lib
from checkpoints import manager as ckpt_lib
from checkpoints import official, official_weights
from tf2 import config as config_lib
from tf2 import model as model_lib

MODEL_DIR, SAVED_MODEL, OFFICIAL = "model_dir", "saved_model", "official"
OFFICIAL_IMAGE_SIZE = 224
IMAGENET_CLASSES = 1000


class NoModelError(ValueError):
    """The path holds no model this program can rebuild; the message says what is missing."""


@dataclasses.dataclass(frozen=True)
class Description:
    """What a source says about its network, read without building it.

    Attributes:
      path: the source given.
      kind: MODEL_DIR, SAVED_MODEL or OFFICIAL.
      model, head: the network's ModelConfig and HeadConfig (None for OFFICIAL until loaded).
      image_size: the side it was trained at, in pixels.
      class_names: label k of logits_sup is class_names[k] (empty: not recorded).
      train_mode: the stage that wrote it ('pretrain', 'finetune', 'distill'; 'official').
    """
    path: str
    kind: str
    model: Optional[config_lib.ModelConfig]
    head: Optional[config_lib.HeadConfig]
    image_size: int
    class_names: Tuple[str, ...]
    train_mode: str

    @property
    def cifar_stem(self) -> bool:
        return self.model.cifar_stem if self.model is not None else False


def _from_config_json(path: str, kind: str, model_dir: str) -> Description:
    with open(os.path.join(model_dir, "config.json")) as f:
        raw = json.load(f)
    return Description(path, kind, config_lib.ModelConfig(**raw["model"]),
                       config_lib.HeadConfig(**raw["head"]),
                       int(raw.get("data", {}).get("image_size") or 0),
                       tuple(raw.get("class_names", ())), raw.get("train_mode", ""))


def _enclosing_model_dir(saved_model: str) -> Optional[str]:
    """The model_dir an export sits in (`<model_dir>/saved_model/<step>`), if it has a
    config.json."""
    model_dir = os.path.dirname(os.path.dirname(os.path.abspath(saved_model)))
    return model_dir if os.path.exists(os.path.join(model_dir, "config.json")) else None


def describe(path: str) -> Description:
    """What `path` (a model_dir or a SavedModel, ours or official) holds.

    Raises:
      NoModelError: nothing there to rebuild a network from, saying what is missing.
    """
    if not os.path.isdir(path):
        raise NoModelError(f"{path} does not exist or is not a directory: give a model_dir "
                           "(e.g. runs/finetune) or a SavedModel directory")
    if official.is_official_saved_model(path):
        return Description(path, OFFICIAL, None, None, OFFICIAL_IMAGE_SIZE, (), OFFICIAL)
    if export_lib.is_saved_model_dir(path):
        return _describe_saved_model(path)
    if not os.path.exists(os.path.join(path, "config.json")):
        raise NoModelError(f"{path} is neither a SavedModel nor a model_dir (no config.json "
                           "of a training run in it)")
    if not tf.io.gfile.glob(os.path.join(path, "*.index")):
        raise NoModelError(f"{path} has no checkpoint yet: train into it first, or give a "
                           "SavedModel")
    return _from_config_json(path, MODEL_DIR, path)


def _describe_saved_model(path: str) -> Description:
    try:
        arch = export_lib.saved_architecture(path)
        record = export_lib.saved_record(path)
    except (tf.errors.OpError, ValueError) as e:
        raise NoModelError(f"{path} is a SavedModel whose variables cannot be read "
                           f"({str(e).splitlines()[0]})") from e
    if arch is None:
        model_dir = _enclosing_model_dir(path)
        if model_dir is None:
            raise NoModelError(
                f"{path} is a SavedModel without the architecture record (exported before "
                "it existed, or not by this program): give the model_dir it was exported "
                "from instead")
        found = _from_config_json(path, SAVED_MODEL, model_dir)
        return dataclasses.replace(found, class_names=record["class_names"] or
                                   found.class_names)
    return Description(path, SAVED_MODEL, config_lib.ModelConfig(**arch["model"]),
                       config_lib.HeadConfig(**arch["head"]), int(arch["image_size"]),
                       record["class_names"] or (), record["train_mode"] or "")


def imagenet_class_names() -> Tuple[str, ...]:
    """The 1000 WordNet ids TFDS' imagenet2012 names its classes by (sorted); () if absent."""
    import tensorflow_datasets as tfds
    path = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012",
                        "labels.txt")
    if not os.path.exists(path):
        return ()
    with open(path) as f:
        return tuple(line.strip() for line in f if line.strip())


@dataclasses.dataclass
class Trained:
    """A rebuilt, restored network and what its source says about it.

    Attributes:
      model: the SimCLRModel (variables created in the scope `load` was called in).
      description: the source's Description (for OFFICIAL, with the imported configs).
      read: the checkpoint prefix or SavedModel directory the weights came from.
    """
    model: model_lib.SimCLRModel
    description: Description
    read: str


def load(description: Description) -> Trained:
    """Builds the described network and restores its weights (call inside strategy.scope()).

    Raises:
      ValueError: the weights do not fit the recorded network (naming what differs).
      FileNotFoundError: the checkpoint vanished since `describe`.
    """
    d = description
    if d.kind == OFFICIAL:
        model, report = official_weights.import_official(d.path, ft_proj_selector=0)
        model_cfg, head_cfg = official.configs_for(report.architecture, 0)
        names = imagenet_class_names() if head_cfg.num_classes == IMAGENET_CLASSES else ()
        return Trained(model, dataclasses.replace(d, model=model_cfg, head=head_cfg,
                                                  class_names=names), d.path)
    model = model_lib.build_model(d.model, d.head, image_size=d.image_size or 32)
    if d.kind == SAVED_MODEL:
        export_lib.restore_from_saved_model(model, d.path)
        return Trained(model, d, d.path)
    return Trained(model, d, ckpt_lib.restore_objects(d.path, model=model))
