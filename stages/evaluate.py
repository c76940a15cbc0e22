"""Evaluation. Reads checkpoints of a model_dir, writes result.json (top-1, top-5 on eval_split).

`mode=eval` watches model_dir and evaluates each new checkpoint, stopping after the one at the
last training step; `train_then_eval` evaluates the final checkpoint once. Every evaluated
checkpoint is also exported as a SavedModel to `model_dir/saved_model/<step>/` (unless the
training stage already exported that step), keeping the newest `keep_hub_module_max`.
"""
import os

import tensorflow as tf
from absl import logging

from checkpoints import export as export_lib
from checkpoints import manager as ckpt_lib
from data import pipeline
from tf2 import losses
from tf2 import model as model_lib
from stages import loop, startup_log, summaries
from tf2.config import RunConfig


def build(cfg: RunConfig, num_classes: int):
    """The model to evaluate (same structure as the trained one); no optimizer."""
    model = model_lib.build_model(cfg.model, cfg.head, image_size=cfg.data.image_size,
                                  num_classes=num_classes)
    return model, None


def make_step_fn(model):
    """Returns one replica's evaluation step: batch -> summed top-1/top-5 hits and count."""
    return _hits_step_fn(_logits_of(model))


def _logits_of(model):
    return lambda images: model(images, training=False)[model_lib.LOGITS_SUP]


def _hits_step_fn(logits_fn):
    def step_fn(batch):
        logits = logits_fn(batch["image"])
        labels = tf.cast(batch["label"], tf.int32)
        top1 = losses.top_k_hits(labels, logits, 1)
        top5 = losses.top_k_hits(labels, logits, min(5, logits.shape[-1]))
        return {"top1": tf.reduce_sum(tf.cast(top1, tf.float32)),
                "top5": tf.reduce_sum(tf.cast(top5, tf.float32)),
                "count": tf.cast(tf.shape(labels)[0], tf.float32)}

    return step_fn


def score(cfg: RunConfig, strategy, source, logits_fn, what: str, show: bool = True) -> dict:
    """Top-1/top-5 of `logits_fn` over the eval split, saying `what` it does batch by batch.

    Args:
      logits_fn: float images (b, h, w, 3) -> logits (b, num_classes), for one replica.
      what: the progress line's text, e.g. 'evaluating the checkpoint of step 8'.
      show: print the progress (the chief only, in a multi-worker run).

    Returns:
      {'top1', 'top5': fractions, 'num_examples': int, 'dataset', 'split': what was read}.
    """
    step_fn = _hits_step_fn(logits_fn)

    @tf.function
    def dist_step(batch):
        out = strategy.run(step_fn, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in out.items()}

    with startup_log.determinism_notice_dropped():
        dataset = strategy.distribute_datasets_from_function(
            pipeline.eval_input_fn(source, cfg.data, cfg.eval_batch_size))
    batches = -(-pipeline.num_eval_examples(source, cfg.data) // cfg.eval_batch_size)
    if cfg.eval_steps:
        batches = min(batches, cfg.eval_steps)
    progress = summaries.Countdown(what, batches) if show else None
    totals = {"top1": 0.0, "top5": 0.0, "count": 0.0}
    for i, batch in enumerate(dataset):
        if cfg.eval_steps and i >= cfg.eval_steps:
            break
        for k, v in dist_step(batch).items():
            totals[k] += float(v)
        if progress is not None:
            progress.update(i + 1)
    if progress is not None:
        progress.close()
    count = max(totals["count"], 1.0)
    return {"top1": totals["top1"] / count, "top5": totals["top5"] / count,
            "num_examples": int(totals["count"]), "dataset": cfg.data.dataset,
            "split": cfg.data.eval_split}


def evaluate_checkpoint(cfg: RunConfig, strategy, source, prefix: str,
                        export: bool = False) -> dict:
    """Top-1/top-5 accuracy of the checkpoint `prefix` over the eval split.

    With `export` (the chief), the progress is shown and the evaluated weights are also
    written as the SavedModel of their step (skipped when that step's SavedModel exists).
    """
    with strategy.scope():
        model, _ = build(cfg, source.num_classes)
        ckpt_lib.restore_objects(prefix, model=model)
    step = int(prefix.rsplit("-", 1)[-1]) if prefix.rsplit("-", 1)[-1].isdigit() else 0
    result = score(cfg, strategy, source, _logits_of(model),
                   f"Evaluating the checkpoint of step {step} on split {cfg.data.eval_split}",
                   show=export)
    if export and not export_lib.is_saved_model_dir(os.path.join(cfg.export_dir, str(step))):
        loop.export(cfg, model, step)
    return {**result, "global_step": step, "checkpoint": prefix}


class NoCheckpointError(RuntimeError):
    """Watching model_dir, no checkpoint appeared within the timeout."""


def run(cfg: RunConfig, strategy, source, watch=True, is_chief=True, timeout=600) -> dict:
    """Evaluates the latest (or, watching, every new) checkpoint; writes result.json.

    Args:
      timeout: watching, seconds to wait for the next checkpoint before stopping.

    Raises:
      NoCheckpointError: watching, and not a single checkpoint came within `timeout`.
    """
    if watch:
        prefixes = tf.train.checkpoints_iterator(cfg.model_dir, timeout=timeout)
    else:
        prefixes = [ckpt_lib.resolve_checkpoint(cfg.model_dir)]
    writer = summaries.SummaryWriter(os.path.join(cfg.model_dir, "eval"), enabled=is_chief)
    result = {}
    for prefix in prefixes:
        result = evaluate_checkpoint(cfg, strategy, source, prefix, export=is_chief)
        logging.info("eval %s: top-1 %.4f top-5 %.4f", prefix, result["top1"], result["top5"])
        writer.scalars(result["global_step"], {"eval/top1": result["top1"],
                                               "eval/top5": result["top5"]})
        if is_chief:
            ckpt_lib.write_json_atomic(os.path.join(cfg.model_dir, "result.json"), result)
        if result["global_step"] >= cfg.train.total_steps:
            if watch and is_chief:
                print(f"Step {result['global_step']} is the run's last: done watching "
                      f"{cfg.model_dir}.", flush=True)
            break
    writer.close()
    if not result:
        raise NoCheckpointError(f"no checkpoint appeared in {cfg.model_dir} within {timeout} s")
    return result
