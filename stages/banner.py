"""What a stage prints before its first step: what is trained, on what, how long, where to.

Reading the data and tracing the first step take about a minute; the banner says at once what
that minute is for.
"""
import math
from typing import List

import keras

from data import pipeline
from data.config import HOLDOUT_SPLIT
from tf2 import resnet
from tf2.config import ModelConfig, RunConfig
from stages import STAGES


def encoder_parameters(model: ModelConfig, image_size: int) -> int:
    """Weights of the encoder that cfg describes, batch-norm moving statistics excluded.

    The network is built without values (Keras defers the initialisers), so even a
    795M-parameter one costs no memory; frozen layers count as the others do.
    """
    encoder = resnet.build_resnet(model)
    with keras.StatelessScope(initialize_variables=False):
        encoder.build((1, image_size, image_size, 3))
    return sum(math.prod(v.shape) for v in encoder.weights if not v.name.startswith("moving_"))


def _network(cfg: RunConfig) -> str:
    m, size = cfg.model, cfg.data.image_size
    sk = f", SK {m.sk_ratio:g}" if m.sk_ratio > 0 else ", no SK"
    stem = "CIFAR stem (3x3/1, no max-pool)" if m.cifar_stem else "ImageNet stem"
    params = encoder_parameters(m, size)
    return (f"ResNet-{m.resnet_depth} x{m.width_multiplier:g}{sk}, {stem}, {size} px: "
            f"{params:,} encoder parameters ({params / 1e6:.1f}M)")


def _data(cfg: RunConfig, source) -> str:
    d = cfg.data
    classes = (f"{source.num_classes} classes" if source.num_classes
               else "no classes (unlabelled)")
    line = f"{d.dataset}, split {d.train_split}: {source.num_examples(d.train_split):,} examples"
    if cfg.train_mode == "finetune":
        line += f", {cfg.train.num_train_examples:,} labelled"
    return f"{line}, {classes}"


def _training(cfg: RunConfig) -> str:
    t = cfg.train
    steps = t.total_steps
    epochs = steps * t.train_batch_size / t.num_train_examples
    return (f"{steps:,} steps = {epochs:.4g} epochs of {t.num_train_examples:,} examples at "
            f"batch {t.train_batch_size}")


def lines(cfg: RunConfig, source, mode: str) -> List[str]:
    """The banner's lines: `name: value`, names padded like the report at the end."""
    rows = [("stage", f"{cfg.train_mode} ({STAGES[cfg.train_mode].summary}), --mode={mode}")]
    if mode != "eval":
        rows.append(("data", _data(cfg, source)))
    if mode != "train":
        split, count = cfg.data.eval_split, pipeline.num_eval_examples(source, cfg.data)
        where = f" (held out of {cfg.data.train_split})" if split == HOLDOUT_SPLIT else ""
        rows.append(("evaluate", f"split {split}{where}: {count:,} examples"))
    rows.append(("network", _network(cfg)))
    if mode != "eval":
        rows.append(("training", _training(cfg)))
        if cfg.train_mode == "finetune" and cfg.checkpoint:
            rows.append(("from", cfg.checkpoint))
        if cfg.train_mode == "distill":
            rows.append(("teacher", cfg.teacher))
    precision = f"{cfg.precision} ({cfg.precision_reason})" if cfg.precision_reason \
        else cfg.precision
    rows += [("precision", precision), ("model_dir", cfg.model_dir)]
    return [f"{name + ':':<13}{value}" for name, value in rows]
