"""Stage 2/3: fine-tune. Reads a pretrain checkpoint, writes a finetune checkpoint.

The supervised head sits on the projection-head layer chosen by `ft_proj_selector` (SimCLRv2:
the first layer for 1%/10% of the labels); head layers above it get no loss and are frozen, and
`frozen_blocks` can freeze the encoder up to a block group.
"""
import tensorflow as tf

from checkpoints import warm_start as warm_start_lib
from data import pipeline
from tf2 import losses, model as model_lib, optimizers
from stages import loop
from stages import monitor as monitor_lib
from tf2.config import RunConfig


def build(cfg: RunConfig, num_classes: int):
    """Builds the model with a supervised head, and its optimizer (inside strategy.scope()).

    Returns:
      (model, optimizer)
    """
    model = model_lib.build_model(cfg.model, cfg.head, image_size=cfg.data.image_size,
                                  num_classes=num_classes)
    model.projection_head.freeze_after(cfg.head.ft_proj_selector)
    optimizer = optimizers.build_stage_optimizer(cfg, model)
    return model, optimizer


def make_step_fn(cfg: RunConfig, model, optimizer, num_classes):
    """Returns one replica's fine-tuning step: batch -> {metric: scalar}."""
    variables = model.trainable_variables
    decay_loss = optimizers.loss_weight_decay_fn(cfg, model)

    def step_fn(batch):
        labels = tf.one_hot(batch["label"], num_classes)  # (b, classes)

        def loss_fn():
            logits = model(batch["image"], training=True)[model_lib.LOGITS_SUP]
            sup_loss, wd = losses.supervised_loss(labels, logits), decay_loss()
            return sup_loss + wd, {"supervised_loss": sup_loss, "weight_decay": wd,
                                   "supervised_acc": losses.accuracy(labels, logits)}

        total, metrics, learning_rate = optimizers.minimize(optimizer, variables, loss_fn)
        return {**metrics, "total_loss": total, "learning_rate": learning_rate}

    return step_fn


def run(cfg: RunConfig, strategy, source, is_chief=True, record=None) -> str:
    """Fine-tunes from `cfg.checkpoint` on the labelled fraction; returns cfg.model_dir."""
    with strategy.scope():
        model, optimizer = build(cfg, source.num_classes)
        if cfg.checkpoint:
            warm_start_lib.warm_start(model, cfg.checkpoint)
        step_fn = make_step_fn(cfg, model, optimizer, source.num_classes)
    parts = loop.StageParts(
        model=model, optimizer=optimizer, step_fn=step_fn,
        monitor=monitor_lib.build(cfg, source, model, is_chief),
        make_input_fn=lambda start: pipeline.finetune_input_fn(
            source, cfg.data, cfg.train.train_batch_size, start_step=start))
    loop.run_stage(cfg, strategy, parts, is_chief=is_chief, record=record)
    return cfg.model_dir
