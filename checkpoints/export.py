"""SavedModel export of a SimCLRModel for TF Hub and Keras 3, and warm starts from such exports.

An export is a `HubModule` (a `tf.Module`) saved with `tf.saved_model.save`. It follows the
TF Hub "reusable SavedModel" convention, so that `hub.KerasLayer(path, trainable=True)` (tf-keras)
can fine-tune it:

  * `__call__(images, trainable=False, training=None)`: images float32 (B, H, W, 3) in [0, 1];
    returns a dict of float32 tensors keyed by `tf2.model.OUTPUT_NAMES` (those the model has).
    `trainable` is the argument of the original SimCLR Hub modules; `training`, when given,
    overrides it and is the one `hub.KerasLayer` passes. True runs batch norm on batch
    statistics (and updates its moving averages).
  * `variables`, `trainable_variables`, `regularization_losses`: the last is the TF Hub
    convention for fine-tunable modules (`hub.KerasLayer(trainable=True)` adds each entry to
    the loss): one function `() -> float32 scalar`, the L2 term
    `weight_decay * sum(||w||^2) / 2` over the trainable kernels (variables of rank > 1, the
    ones LARS decays) with the weight decay of the run that wrote the module; empty when
    that run had no weight decay (the paper's fine-tuning).
  * `class_names`: a string tf.Variable, label k of `logits_sup` is class_names[k] (empty
    when the data had no labels); also written as `class_names.txt`, one name a line.
  * `train_mode`: a scalar string tf.Variable, the stage that wrote the module ('pretrain',
    'finetune', 'distill'); a pretraining module's `logits_sup` is its linear-evaluation head.
  * `variable_paths`: a string tf.Variable with the Keras `variable.path` of each entry of
    `variables`, so `restore_from_saved_model` can match them by name.
  * `serve` / `train` functions and signatures (`serving_default` = `serve`) for
    `keras.layers.TFSMLayer(path, call_endpoint="serve", call_training_endpoint="train")`.
  * `architecture`: a string tf.Variable, JSON {"model": ModelConfig fields, "head":
    HeadConfig fields, "image_size": side trained at} ("{}" when not given), so that the
    network can be rebuilt from the export alone (`saved_architecture`).
  * `serve_bytes`, when the image size is known: the signature that takes encoded images
    (checkpoints/serving.py).

`export_saved_model` writes `<export_dir>/<step>` atomically: it saves into a hidden temporary
directory and renames it, so a crash never leaves a half-written directory under a step name.
"""
import dataclasses
import json
import os
import uuid
from typing import Dict, List, Optional

import keras
import tensorflow as tf

from checkpoints import manager as ckpt_lib
from checkpoints import serving
from checkpoints.model_dir import EXPORT_TMP_PREFIX
from tf2 import model as model_lib
from tf2 import optimizers

SERVE = "serve"
TRAIN = "train"
_IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
CLASS_NAMES_FILE = "class_names.txt"


class HubModule(tf.Module):
    """A SimCLRModel wrapped for `tf.saved_model.save` (TF Hub reusable SavedModel).

    Args:
      model: a built `SimCLRModel` (or any Keras model `call(images, training)` returning a
        dict with keys among `tf2.model.OUTPUT_NAMES`).
      class_names: label k of `logits_sup` is class_names[k].
      train_mode: the stage that trained `model`.
      weight_decay: L2 coefficient of `regularization_losses` (0: none).
      architecture: {"model", "head", "image_size"} of `model` (see `record_of`); with an
        image size, the module also serves encoded images (`serve_bytes`).
    """

    # tf.Module computes these as read-only properties; plain class attributes shadow them so
    # that the lists below are tracked, saved, and reappear on the object `hub.load` returns.
    variables = None
    trainable_variables = None
    regularization_losses = None

    def __init__(self, model: keras.Model, class_names=(), train_mode: str = "",
                 weight_decay: float = 0.0, architecture: Optional[dict] = None):
        super().__init__(name="simclr_hub_module")
        if not model.variables:
            raise ValueError("export needs a built model: call it on images first")
        self.variables = _tf_variables(model.variables)
        self.trainable_variables = _tf_variables(model.trainable_variables)
        self.regularization_losses = _regularization_losses(model, weight_decay)
        self.class_names = tf.Variable(tf.constant(list(class_names), tf.string,
                                                   shape=[len(class_names)]),
                                       trainable=False, name="class_names")
        self.train_mode = tf.Variable(train_mode, dtype=tf.string, trainable=False,
                                      name="train_mode")
        self.variable_paths = tf.Variable([v.path for v in model.variables], dtype=tf.string,
                                          trainable=False, name="variable_paths")
        # The model itself is not tracked (only its variables): the functions close over it.
        self.serve = tf.function(_forward_fn(model, training=False),
                                 input_signature=[_IMAGES_SPEC])
        self.train = tf.function(_forward_fn(model, training=True),
                                 input_signature=[_IMAGES_SPEC])
        architecture = architecture or {}
        self.architecture = tf.Variable(json.dumps(architecture, sort_keys=True),
                                        dtype=tf.string, trainable=False, name="architecture")
        self.serve_bytes = None
        if architecture.get("image_size"):
            self.serve_bytes = serving.bytes_function(
                model, int(architecture["image_size"]),
                serving.names_tensor(self.class_names, model))

    @tf.function
    def __call__(self, images, trainable=False, training=None):
        """images (B, H, W, 3) float32 in [0, 1] -> {name: float32 tensor}."""
        use_batch_stats = trainable if training is None else training
        return self.train(images) if use_batch_stats else self.serve(images)

    def trace(self):
        """Traces `__call__` for every Python value a caller may pass, so all are saved."""
        for value in (True, False):
            self.__call__.get_concrete_function(_IMAGES_SPEC, trainable=value)
            self.__call__.get_concrete_function(_IMAGES_SPEC, training=value)

    def signature_functions(self) -> Dict[str, tf.types.experimental.PolymorphicFunction]:
        """The `signatures` argument of tf.saved_model.save: serving_default, serve, train.

        The tf.functions themselves (they have input signatures), not concrete functions: the
        save then traces them itself, which is what lets a model with mirrored variables (any
        multi-replica run) be exported; concrete functions traced before the save fail there.
        """
        functions = {"serving_default": self.serve, SERVE: self.serve, TRAIN: self.train}
        if self.serve_bytes is not None:
            functions[serving.SERVE_BYTES] = self.serve_bytes
        return functions


def _tf_variables(variables) -> list:
    """The tf.Variables inside Keras 3 variables (other entries as they are).

    The functions capture these; tracking them (not their Keras wrappers, which the save turns
    into copies of their own) makes the SavedModel's restore op fill the very variables the
    graph reads, which TF1-style loaders (TF Serving, `saved_model_cli run`) rely on: with the
    wrappers those loaders fail with "Could not find variable simclr/moving_mean_N".
    """
    return [v.value if isinstance(v, keras.Variable) else v for v in variables]


def _regularization_losses(model, weight_decay: float) -> list:
    """[() -> scalar]: weight_decay * sum ||w||^2 / 2 over the trainable kernels; [] if none.

    The same L2 term the stages add to the loss for optimizers without decoupled decay
    (tf2.optimizers.weight_decay_loss), and the one LARS' decay is the gradient of.
    """
    kernels = [v for v in model.trainable_variables if len(v.shape) > 1]
    if not weight_decay or not kernels:
        return []
    return [tf.function(lambda: optimizers.weight_decay_loss(kernels, float(weight_decay)),
                        input_signature=[])]


def _forward_fn(model, training: bool):
    """images -> the model's outputs named in OUTPUT_NAMES (not its supervised-head input)."""
    def forward(images):
        outputs = model(images, training=training)
        return {k: outputs[k] for k in model_lib.OUTPUT_NAMES if k in outputs}
    return forward


def export_saved_model(model: keras.Model, export_dir: str, step: int, keep_max: int = 1,
                       **record) -> str:
    """Writes `model` as a SavedModel to `<export_dir>/<step>`, atomically.

    Args:
      model: a built SimCLRModel.
      export_dir: parent directory of the step directories (created if needed).
      step: the global step; names the directory. An existing export of the same step is
        replaced.
      keep_max: keep at most this many step directories (the highest steps); <= 0 keeps all.
      **record: `class_names`, `train_mode`, `weight_decay`, `architecture` of `HubModule`.

    Returns:
      The path of the written SavedModel.
    """
    tf.io.gfile.makedirs(export_dir)
    final_dir = os.path.join(export_dir, str(int(step)))
    tmp_dir = os.path.join(export_dir, f"{EXPORT_TMP_PREFIX}{int(step)}-{uuid.uuid4().hex}")
    try:
        module = HubModule(model, **record)
        module.trace()
        tf.saved_model.save(module, tmp_dir, signatures=module.signature_functions())
        with tf.io.gfile.GFile(os.path.join(tmp_dir, CLASS_NAMES_FILE), "w") as f:
            f.write("".join(f"{name}\n" for name in record.get("class_names", ())))
        _move_into_place(tmp_dir, final_dir)
    except BaseException:
        if tf.io.gfile.exists(tmp_dir):
            tf.io.gfile.rmtree(tmp_dir)
        raise
    _prune(export_dir, keep_max)
    return final_dir


def record_of(cfg) -> Dict[str, object]:
    """The `**record` of export_saved_model for a run of RunConfig `cfg`."""
    return {"class_names": tuple(cfg.class_names), "train_mode": cfg.train_mode,
            "weight_decay": float(cfg.optimizer.weight_decay),
            "architecture": architecture_of(cfg.model, cfg.head,
                                            getattr(cfg.data, "image_size", 0))}


def architecture_of(model_cfg, head_cfg, image_size: int) -> dict:
    """The `architecture` record of a network of these configs trained at `image_size` px."""
    return {"model": dataclasses.asdict(model_cfg), "head": dataclasses.asdict(head_cfg),
            "image_size": int(image_size)}


def _move_into_place(tmp_dir: str, final_dir: str):
    """Renames tmp_dir to final_dir; an old final_dir is moved aside first, then deleted."""
    old_dir = None
    if tf.io.gfile.exists(final_dir):
        old_dir = f"{tmp_dir}-old"
        tf.io.gfile.rename(final_dir, old_dir)
    try:
        tf.io.gfile.rename(tmp_dir, final_dir)
    except BaseException:
        if old_dir is not None:  # put the previous export of this step back
            tf.io.gfile.rename(old_dir, final_dir)
        raise
    if old_dir is not None:
        tf.io.gfile.rmtree(old_dir)


def exported_steps(export_dir: str) -> List[int]:
    """Steps of the complete SavedModels under export_dir, ascending."""
    if not tf.io.gfile.isdir(export_dir):
        return []
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(export_dir)]
    return sorted(int(n) for n in names
                  if n.isdigit() and is_saved_model_dir(os.path.join(export_dir, n)))


def _prune(export_dir: str, keep_max: int):
    if keep_max is None or keep_max <= 0:
        return
    for step in exported_steps(export_dir)[:-keep_max]:
        tf.io.gfile.rmtree(os.path.join(export_dir, str(step)))


def is_saved_model_dir(path: str) -> bool:
    """True if path holds a SavedModel (its saved_model.pb or .pbtxt)."""
    return tf.io.gfile.isdir(path) and tf.saved_model.contains_saved_model(path)


def load_saved_model(path: str):
    """Loads a SavedModel (ours or any other); the object `hub.load` would return."""
    if not is_saved_model_dir(path):
        raise FileNotFoundError(f"no SavedModel at {path}")
    return tf.saved_model.load(path)


def saved_variable_shapes(path: str) -> Dict[str, tuple]:
    """{variable path: shape} of an export written by `export_saved_model`."""
    reader, keys = _saved_variable_keys(path)
    shapes = reader.get_variable_to_shape_map()
    return {name: tuple(shapes[key]) for name, key in keys.items()}


def _saved_variable_keys(path: str):
    """Returns (checkpoint reader, {variable path: checkpoint key}) of one of our exports.

    Reads only the SavedModel's variables checkpoint and its object graph (node 0 is the
    HubModule), so no function is loaded.
    """
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    graph = ckpt_lib.object_graph(reader)
    root_children = {c.local_name: c.node_id for c in graph.nodes[0].children}
    if "variable_paths" not in root_children or "variables" not in root_children:
        raise ValueError(f"{path} was not written by export_saved_model: it has no "
                         "'variables' and 'variable_paths' to match by name")

    def value_key(node_id):
        attributes = graph.nodes[node_id].attributes
        return next(a.checkpoint_key for a in attributes if a.name == "VARIABLE_VALUE")

    names = [p.decode() for p in reader.get_tensor(value_key(root_children["variable_paths"]))]
    entries = sorted(graph.nodes[root_children["variables"]].children,
                     key=lambda c: int(c.local_name))  # list items are named "0", "1", ...
    if len(entries) != len(names):
        raise ValueError(f"{path}: {len(entries)} variables but {len(names)} variable paths")
    return reader, {name: value_key(c.node_id) for name, c in zip(names, entries)}


def _root_values(path: str, names) -> Dict[str, object]:
    """{name: value} of the module's tf.Variable attributes `names` (None when absent), read
    from the variables checkpoint only (no function is loaded)."""
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    graph = ckpt_lib.object_graph(reader)
    root_children = {c.local_name: c.node_id for c in graph.nodes[0].children}

    def value(name):
        if name not in root_children:
            return None
        attributes = graph.nodes[root_children[name]].attributes
        key = next((a.checkpoint_key for a in attributes if a.name == "VARIABLE_VALUE"), None)
        return None if key is None else reader.get_tensor(key)

    return {name: value(name) for name in names}


def saved_record(path: str) -> Dict[str, object]:
    """{'class_names': tuple or None, 'train_mode': str or None} of one of our exports.

    None where the export predates these attributes or was not written by export_saved_model.
    Reads the variables checkpoint only (no function is loaded).
    """
    values = _root_values(path, ("class_names", "train_mode"))
    names, stage = values["class_names"], values["train_mode"]
    return {"class_names": None if names is None else tuple(n.decode() for n in names),
            "train_mode": None if stage is None else stage.decode()}


def saved_architecture(path: str) -> Optional[dict]:
    """The `architecture` record of one of our exports; None when it has none (older exports,
    or not written by export_saved_model). Reads the variables checkpoint only."""
    raw = _root_values(path, ("architecture",))["architecture"]
    return None if raw is None else (json.loads(raw.decode()) or None)


def restore_from_saved_model(model: keras.Model, path: str, expect_partial: bool = False) -> int:
    """Copies the weights of one of our exports into a built model of the same architecture.

    Variables are matched by Keras `variable.path` (e.g. 'simclr/resnet/stem/conv1/bn/gamma').

    Args:
      model: a built SimCLRModel.
      path: a SavedModel directory written by `export_saved_model`.
      expect_partial: tolerate variables present on one side only (they are left alone);
        shapes must still agree.

    Returns:
      The number of variables copied.

    Raises:
      ValueError: listing every missing, unexpected or shape-mismatched variable.
    """
    if not model.variables:
        raise ValueError("restore needs a built model: call it on images first")
    reader, keys = _saved_variable_keys(path)
    saved_shapes = reader.get_variable_to_shape_map()
    ours = {v.path: v for v in model.variables}
    problems = [f"shape of {name}: model {tuple(ours[name].shape)}, saved "
                f"{tuple(saved_shapes[keys[name]])}"
                for name in sorted(ours.keys() & keys.keys())
                if tuple(ours[name].shape) != tuple(saved_shapes[keys[name]])]
    if not expect_partial:
        problems += [f"missing from the SavedModel: {n}" for n in sorted(ours.keys() - keys)]
        problems += [f"not in the model: {n}" for n in sorted(keys.keys() - ours.keys())]
    if problems:
        raise ValueError(f"cannot restore {path} into model {model.name!r}:\n  "
                         + "\n  ".join(problems))
    common = sorted(ours.keys() & keys.keys())
    for name in common:
        ours[name].assign(reader.get_tensor(keys[name]))
    return len(common)
