"""The one training loop every stage runs.

The inner `@tf.function` runs `steps_per_loop` replica steps over `tf.range`; the host loop
between two calls only checks the loss, saves checkpoints, writes summaries and reports
progress. A stage supplies a `StageParts`; `run_stage` does the rest, so the three stages
share resume, preemption, NaN handling, export and monitoring.
"""
import dataclasses
import math
import os
import signal
import time
from typing import Callable, Dict, Optional

import keras
import tensorflow as tf
from absl import logging

from checkpoints import export as export_lib
from checkpoints import manager as ckpt_lib
from tf2 import model as model_lib
from tf2.config import RunConfig
from stages import preemption, startup_log, summaries

StepFn = Callable[[Dict[str, tf.Tensor]], Dict[str, tf.Tensor]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


@dataclasses.dataclass
class StageParts:
    """What a stage hands to `run_stage`.

    Attributes:
      model: the model being trained (saved, exported).
      optimizer: its optimizer; `optimizer.iterations` is the global step.
      step_fn: one replica's training step, batch dict -> {metric: scalar}.
      make_input_fn: `start_step -> input_fn`, where `input_fn(input_context)` gives the
        per-replica batches from global step `start_step` on (a resumed run continues the
        exact stream: distributed iterators cannot be checkpointed in TF 2.21).
      extra_state: more checkpointed objects (EMA model, memory queue).
      summary_images: optional batch key whose images go to TensorBoard once.
      monitor: optional `stages.monitor.KnnMonitor`, asked between compiled calls.
    """
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step_fn: StepFn
    make_input_fn: Callable[[int], Callable]
    extra_state: Dict[str, object] = dataclasses.field(default_factory=dict)
    summary_images: Optional[str] = "image"
    monitor: Optional[object] = None


def make_multi_step(strategy, step_fn: StepFn, jit_compile=False):
    """Returns `multi_step(iterator, num_steps) -> {metric: mean over the steps}` (float32)."""
    replica_step = tf.function(step_fn, jit_compile=True) if jit_compile else step_fn

    def one_step(batch):
        per_replica = strategy.run(replica_step, args=(batch,))
        # Each replica's metric is a mean over its (equal-sized) batch: MEAN is the global mean.
        return {k: tf.cast(strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None),
                           tf.float32) for k, v in per_replica.items()}

    compiled = {}

    def multi_step(iterator, num_steps):
        if "fn" not in compiled:
            compiled["fn"] = _compile_loop(one_step, _metric_names(one_step, iterator))
        return compiled["fn"](iterator, num_steps)

    return multi_step


def _metric_names(one_step, iterator):
    """The step's metric names, from a graph-only trace (nothing is compiled or run).

    The loop's running sums must exist before `tf.range`; peeling the first step out of the
    loop instead would put two copies of the step in the graph and double the compile time.
    """
    probe = tf.function(one_step).get_concrete_function(iterator.element_spec)
    return sorted(probe.structured_outputs)


def _compile_loop(one_step, names):
    @tf.function
    def loop_fn(iterator, num_steps):
        totals = {k: tf.constant(0.0) for k in names}
        for _ in tf.range(num_steps):
            out = one_step(next(iterator))
            totals = {k: totals[k] + out[k] for k in names}
        return {k: v / tf.cast(num_steps, tf.float32) for k, v in totals.items()}

    return loop_fn


def _first_batch_images(strategy, input_fn, key):
    """Local images of the first batch of replica 0, for one TensorBoard grid.

    The batch comes from a dataset of its own: a second iterator over the training dataset
    would draw the next reshuffle seed, and the training stream would then differ from that
    of a resumed run.
    """
    with startup_log.determinism_notice_dropped():
        dataset = strategy.distribute_datasets_from_function(input_fn)
    batch = next(iter(dataset))
    images = strategy.experimental_local_results(batch[key])[0]
    if images.shape[-1] > 3:  # two views on channels: show them side by side
        images = tf.concat(model_lib.split_views(images), axis=2)  # (b, h, V*w, 3)
    return images


def run_stage(cfg: RunConfig, strategy, parts: StageParts, is_chief=True,
              record=None) -> Dict[str, float]:
    """Trains `parts` for `cfg.train.total_steps` steps with resume, and exports at the end.

    SIGTERM (preemption) while training saves a checkpoint after the current loop; during
    the export (after the last checkpoint) it stops at once. Either raises
    `preemption.Stopped` with a message saying what is saved and how to go on.

    Args:
      record: the chief's `checkpoints.record.RunRecord` (None: write no record): told when
        the resume has succeeded (`started`) and before each checkpoint (`saving`), so that a
        refused resume or a start that saves nothing leaves the run's record as it was.

    Returns:
      the metrics of the last loop (host floats).
    """
    with preemption.StopRequest() as stop:  # first: a SIGTERM from here on saves first
        manager = ckpt_lib.CheckpointManager(
            cfg.model_dir, cfg.keep_checkpoint_max, is_chief=is_chief, model=parts.model,
            optimizer=parts.optimizer, **parts.extra_state)
        restored = manager.restore_latest()
        if restored is not None and restored >= cfg.train.total_steps:
            return _already_trained(cfg, parts, manager, restored, is_chief)
        if restored is not None and is_chief:  # on stdout, beside the progress lines
            print(f"Resuming from the checkpoint of step {restored} in {cfg.model_dir}",
                  flush=True)
        if record is not None:
            record.started(restored)
        writer = summaries.SummaryWriter(cfg.model_dir, enabled=is_chief)
        try:  # events written so far reach the disk even when a NaN or SIGTERM ends the run
            metrics = _train(cfg, strategy, parts, manager, writer, stop, record)
        finally:
            writer.close()
    step = int(parts.optimizer.iterations.numpy())
    with preemption.ExitOnSigterm(_export_stopped_message(step)) as exporting:
        if stop.requested:  # it came after the last loop, whose checkpoint is saved
            raise preemption.Stopped(exporting.message)
        if is_chief:
            export(cfg, parts.model, step)
    manager.cleanup()
    return metrics


def export(cfg: RunConfig, model, step: int) -> str:
    """Writes `model` as the SavedModel of `step` (saying so: it takes a while); its path."""
    path = os.path.join(cfg.export_dir, str(step))
    print(f"Exporting the SavedModel of step {step} to {path} ...", flush=True)
    return export_lib.export_saved_model(model, cfg.export_dir, step,
                                         keep_max=cfg.keep_hub_module_max,
                                         **export_lib.record_of(cfg))


def _already_trained(cfg, parts, manager, step, is_chief) -> Dict[str, float]:
    """A run started again at or after its last step: says so and trains nothing; exports only
    if the SavedModel of that step is missing (an export interrupted at the end)."""
    if is_chief:
        total, path = cfg.train.total_steps, os.path.join(cfg.export_dir, str(step))
        last = "the last one" if step == total else f"at or past the {total} steps asked for"
        print(f"Already trained: {cfg.model_dir} holds the checkpoint of step {step}, {last}; "
              f"its SavedModel is {path}. Nothing to train: to train longer, run again with a "
              "larger --train_steps or --train_epochs (same --model_dir); to start over, choose "
              "another --model_dir.", flush=True)
        if not export_lib.is_saved_model_dir(path):
            with preemption.ExitOnSigterm(_export_stopped_message(step)):
                export(cfg, parts.model, step)
    manager.cleanup()
    return {}


def _train(cfg, strategy, parts, manager, writer, stop, record=None) -> Dict[str, float]:
    """The host loop: one compiled call per `steps_per_loop` steps, then monitor and save."""
    total, step_var = cfg.train.total_steps, parts.optimizer.iterations
    start = int(step_var.numpy())
    with startup_log.determinism_notice_dropped():
        dataset = strategy.distribute_datasets_from_function(parts.make_input_fn(start))
    iterator = iter(dataset)
    writer.hparams(cfg.hparams())
    multi_step = make_multi_step(strategy, parts.step_fn, cfg.jit_compile)
    per_loop = cfg.train.steps_per_loop
    save_every = max(per_loop, cfg.checkpoint_every_steps)
    progress = summaries.Progress(total, start_step=start, use_bar=cfg.progress_bar)
    if start == 0 and parts.summary_images:
        writer.images(0, "augmented_views", _first_batch_images(
            strategy, parts.make_input_fn(0), parts.summary_images))
    metrics, last_saved = {}, start
    if parts.monitor is not None and start == 0:
        _monitor(parts.monitor, 0, writer, progress)
    while (step := int(step_var.numpy())) < total:
        n = min(per_loop, total - step)
        tic = time.perf_counter()
        metrics = {k: float(v) for k, v in multi_step(iterator, tf.constant(n)).items()}
        ips = n * cfg.train.train_batch_size / (time.perf_counter() - tic)
        _check_finite(metrics, step + n, manager)
        step += n
        writer.scalars(step, {**{_tag(k): v for k, v in metrics.items()},
                              "train/images_per_second": ips})
        progress.update(step, metrics, ips)
        if parts.monitor is not None and parts.monitor.due(step - n, step, total):
            _monitor(parts.monitor, step, writer, progress)
        if step - last_saved >= save_every or step >= total or stop.requested:
            if step >= total and manager.is_chief:  # the bar is full: say what comes now
                progress.message(f"Saving the checkpoint of step {step} in {cfg.model_dir} ...")
            if record is not None:
                record.saving()
            manager.save(step)
            last_saved = step
        if stop.requested:
            progress.close()
            raise preemption.Stopped(_preempted_message(step, cfg.model_dir))
    progress.close()
    return metrics


def _tag(metric: str) -> str:
    """TensorBoard tag of a step metric: 'train/<name>', unless the name has its own group
    ('monitor/linear_eval_loss': a monitor, not the objective)."""
    return metric if "/" in metric else f"train/{metric}"


def _monitor(monitor, step, writer, progress):
    """Scores the current weights between two compiled calls; the training stream is not
    touched (the monitor has its own data and calls the model with training=False)."""
    scores = monitor()
    writer.scalars(step, scores)
    shown = "  ".join(f"{name} {value:.4f}" for name, value in scores.items())
    progress.message(f"step {step}/{progress.total_steps}  {shown}  ({monitor.describe()})")


def _check_finite(metrics, step, manager):
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise NonFiniteLossError(
            f"Non-finite values by step {step}: {bad}. Stopped without saving; the last good "
            f"checkpoint is {manager.latest_checkpoint}. Lower --learning_rate or check the "
            "input data.")


def _preempted_message(step, model_dir):
    return (f"Stopped by SIGTERM at step {step}; checkpoint saved in {model_dir}. Run the "
            "same command again to resume.")


def _export_stopped_message(step):
    return (f"Stopped by SIGTERM while exporting the SavedModel of step {step}; the checkpoint "
            f"of step {step} is saved, nothing was lost. Run the same command again to export "
            "it.")
