"""Warm starts: load weights of an earlier stage into a freshly built SimCLRModel.

A source is a checkpoint prefix, a model_dir (its latest checkpoint), one of our SavedModels, or
one of Google's official SimCLRv2 SavedModels (weights only: the global step and optimizer
state start afresh).
"""
import tensorflow as tf
from absl import logging

from checkpoints import export as export_lib
from checkpoints import manager as ckpt_lib
from checkpoints import official, official_weights
from tf2 import resnet


def warm_start(model, path: str, include_supervised_head: bool = False) -> str:
    """Loads encoder and projection head (and optionally the supervised head) from `path`.

    Args:
      model: a built `SimCLRModel`.
      path: checkpoint prefix, model_dir, or SavedModel directory.
      include_supervised_head: also load the supervised head (teachers, evaluation).

    Returns:
      the checkpoint prefix or SavedModel directory actually read.

    Raises:
      FileNotFoundError / ValueError with the path and what did not match.
    """
    if official.is_official_saved_model(path):
        loaded = official.load_official(path)
        encoder = model.encoder
        official.infer_architecture(  # raises, naming each flag the file contradicts
            loaded, resnet_depth=encoder.depth, width_multiplier=encoder.width_multiplier,
            sk_ratio=encoder.sk_ratio, proj_out_dim=model.projection_head.out_dim)
        same_classes = (model.supervised_head is not None and
                        official.infer_architecture(loaded)["num_classes"] ==
                        model.supervised_head.dense.units)
        official_weights.assign_official(model, loaded, include_supervised_head=(
            include_supervised_head and same_classes))
        logging.info("Warm start from official SimCLRv2 SavedModel %s", path)
        return path
    parts = {"encoder": model.encoder, "projection_head": model.projection_head}
    if include_supervised_head and model.supervised_head is not None:
        parts["supervised_head"] = model.supervised_head
    if export_lib.is_saved_model_dir(path):
        # Part by part, so that a pretraining SavedModel's linear-evaluation head (other class
        # count, or a head the fine-tuning run wants zero-initialised) is never copied.
        for name, part in parts.items():
            copied = export_lib.restore_from_saved_model(part, path, expect_partial=True)
            if copied != len(part.variables):
                raise ValueError(
                    f"--checkpoint={path}: the SavedModel holds {copied} of the "
                    f"{len(part.variables)} variables of the {name}; it was exported from "
                    "another architecture or without that part (check --resnet_depth, "
                    "--width_multiplier, --sk_ratio, --num_proj_layers and, for the supervised "
                    "head, that the SavedModel comes from a fine-tuned run)")
        logging.info("Warm start from SavedModel %s (%s)", path, ", ".join(parts))
        return path
    prefix = ckpt_lib.resolve_checkpoint(path)
    ckpt_lib.restore_objects(prefix, model=tf.train.Checkpoint(**parts))
    logging.info("Warm start from checkpoint %s (%s)", prefix, ", ".join(parts))
    return prefix


def _stem_kernel_shape(width_multiplier: float, sk_ratio: float, cifar_stem: bool) -> tuple:
    """(k, k, 3, c) of the stem's first convolution (SK comes with the deep stem)."""
    filters, kernel, _ = resnet.stem_layout(width_multiplier, cifar_stem, sk_ratio > 0)[0]
    return (kernel, kernel, 3, filters)


def check_stem(path: str, width_multiplier: float, sk_ratio: float, cifar_stem: bool) -> None:
    """Raises ValueError when `path` was trained with the other stem (CIFAR vs ImageNet).

    The stem follows the image size (32 px and below: CIFAR), so a checkpoint of 64 px images
    fine-tuned at 32 px would otherwise fail deep in the restore with a kernel-shape error.
    Anything else that does not match is left to the restore's own checks.
    """
    try:
        if tf.io.gfile.isdir(path) and tf.io.gfile.isdir(f"{path}/variables"):
            prefix = f"{path}/variables/variables"  # a SavedModel, ours or an official one
        else:
            prefix = ckpt_lib.resolve_checkpoint(path)
        variables = tf.train.list_variables(prefix)
    except (tf.errors.OpError, FileNotFoundError, ValueError):
        return  # unreadable: the warm start itself says what is wrong with it
    shapes = {tuple(shape) for _, shape in variables
              if len(shape) == 4 and shape[2] == 3}  # only the stem convolves the RGB input
    ours = _stem_kernel_shape(width_multiplier, sk_ratio, cifar_stem)
    other = _stem_kernel_shape(width_multiplier, sk_ratio, not cifar_stem)
    if ours in shapes or other not in shapes:
        return
    stems = {True: "the CIFAR stem (3x3/1 convolution without max-pool, used at 32 px and "
                   "below)",
             False: "the ImageNet stem (7x7/2 convolution, or the deep stem with SK, then a "
                    "max-pool; used above 32 px)"}
    raise ValueError(f"it was trained with {stems[not cifar_stem]} and this run builds "
                     f"{stems[cifar_stem]}; pass the --image_size it was trained with")
