"""Stage 3/3: distill. Reads a fine-tuned teacher, writes a student checkpoint.

The teacher is frozen, outside the optimizer, and called with training=False; it labels each
unlabelled batch with soft targets at temperature tau (Eq. 2). With `distill_alpha < 1` the
labelled examples of the batch add a cross-entropy term (Eq. 3). The student is built from the
model flags: the teacher's architecture gives self-distillation, a smaller one big-to-small.
"""
import json
import os
from typing import Optional

import tensorflow as tf

from checkpoints import export as export_lib
from checkpoints import warm_start as warm_start_lib
from checkpoints import manager as ckpt_lib
from data import pipeline
from tf2 import losses, model as model_lib, optimizers
from stages import evaluate, finetune, loop
from stages import monitor as monitor_lib
from tf2.config import RunConfig


class Teacher:
    """A frozen fine-tuned network: images -> logits, never trained.

    Built from a SavedModel (ours or official) or from a checkpoint plus the `config.json` the
    teacher's run wrote beside it.
    """

    def __init__(self, path: str, fallback_cfg: RunConfig, num_classes: int):
        self.path = path
        if export_lib.is_saved_model_dir(path):
            self._module = export_lib.load_saved_model(path)
            self._model = None
        else:
            teacher_cfg = _teacher_config(path, fallback_cfg)
            self._model = model_lib.build_model(teacher_cfg.model, teacher_cfg.head,
                                                image_size=fallback_cfg.data.image_size,
                                                num_classes=num_classes)
            warm_start_lib.warm_start(self._model, path, include_supervised_head=True)
            self._model.trainable = False

    def __call__(self, images):
        if self._model is not None:
            out = self._model(images, training=False)
        else:
            out = self._module(images, trainable=False)
        return tf.stop_gradient(out[model_lib.LOGITS_SUP])


def _teacher_config(path, fallback_cfg):
    """The teacher's RunConfig from config.json in its model_dir, else the student's."""
    prefix = ckpt_lib.resolve_checkpoint(path)
    config_json = os.path.join(os.path.dirname(prefix), "config.json")
    if os.path.exists(config_json):
        from tf2 import config as config_lib
        return config_lib.load_run_config(config_json, data=fallback_cfg.data)
    return fallback_cfg


def build(cfg: RunConfig, num_classes: int):
    """Builds the student with a supervised head, and its optimizer (inside strategy.scope()).

    Returns:
      (student, optimizer)
    """
    return finetune.build(cfg, num_classes)  # the student is built like a fine-tuned model


def make_step_fn(cfg: RunConfig, student, optimizer, teacher, num_classes):
    """Returns one replica's distillation step: batch -> {metric: scalar}."""
    variables = student.trainable_variables
    decay_loss = optimizers.loss_weight_decay_fn(cfg, student)
    tau, alpha = cfg.loss.distill_temperature, cfg.loss.distill_alpha

    def step_fn(batch):
        images = batch["image"]  # (b, h, w, 3): crop + flip only
        teacher_logits = teacher(images)
        def loss_fn():
            logits = student(images, training=True)[model_lib.LOGITS_SUP]
            if alpha < 1.0:
                labels = tf.one_hot(batch["label"], num_classes)
                loss = losses.distill_loss_with_labels(
                    teacher_logits, logits, labels, batch["label_mask"], tau, alpha)
            else:
                loss = losses.distill_loss(teacher_logits, logits, tau)
            agree = tf.equal(tf.argmax(teacher_logits, -1), tf.argmax(logits, -1))
            wd = decay_loss()
            return loss + wd, {"distill_loss": loss, "weight_decay": wd,
                               "teacher_agreement": tf.reduce_mean(tf.cast(agree, tf.float32))}

        total, metrics, learning_rate = optimizers.minimize(optimizer, variables, loss_fn)
        return {**metrics, "total_loss": total, "learning_rate": learning_rate}

    return step_fn


def run(cfg: RunConfig, strategy, source, is_chief=True, record=None) -> str:
    """Distils `cfg.teacher` into a student on the whole training split; returns model_dir."""
    with strategy.scope():
        teacher = Teacher(cfg.teacher, cfg, source.num_classes)
        student, optimizer = build(cfg, source.num_classes)
        if cfg.checkpoint:
            warm_start_lib.warm_start(student, cfg.checkpoint)
        step_fn = make_step_fn(cfg, student, optimizer, teacher, source.num_classes)
    parts = loop.StageParts(
        model=student, optimizer=optimizer, step_fn=step_fn,
        monitor=monitor_lib.build(cfg, source, student, is_chief),
        make_input_fn=lambda start: pipeline.distill_input_fn(
            source, cfg.data, cfg.train.train_batch_size, start_step=start))
    loop.run_stage(cfg, strategy, parts, is_chief=is_chief, record=record)
    return cfg.model_dir


def teacher_score(cfg: RunConfig, strategy, source, student: dict, show: bool = True) -> dict:
    """The teacher's top-1 on the examples the student's evaluation `student` scored.

    Read from the teacher run's result.json when that scored the same weights (step) on the
    same data set, split and number of examples; otherwise the teacher is evaluated now.

    Args:
      student: `evaluate.run`'s result for the distilled model.
      show: print the evaluation's progress (the chief).

    Returns:
      {'top1': float, 'how': 'its result.json' or 'evaluated now'}.
    """
    same = ("dataset", "split", "num_examples")
    recorded = _recorded_result(cfg.teacher)
    if recorded is not None and all(recorded.get(k) == student.get(k) for k in same):
        return {"top1": recorded["top1"], "how": "its result.json"}
    with strategy.scope():
        teacher = Teacher(cfg.teacher, cfg, source.num_classes)
    result = evaluate.score(cfg, strategy, source, teacher,
                            f"Evaluating the teacher {cfg.teacher} on split {student['split']}",
                            show=show)
    return {"top1": result["top1"], "how": "evaluated now"}


def _recorded_result(teacher: str) -> Optional[dict]:
    """The result.json of the run that wrote `teacher`, if it is about the teacher's step.

    `teacher` is a model_dir or checkpoint prefix (its latest or named step) or one of our
    SavedModels `<model_dir>/saved_model/<step>`; anything else has no record.
    """
    if export_lib.is_saved_model_dir(teacher):
        parent, step = os.path.split(os.path.normpath(teacher))
        run_dir, folder = os.path.split(parent)
        if folder != "saved_model" or not step.isdigit():
            return None
        step = int(step)
    else:
        prefix = ckpt_lib.resolve_checkpoint(teacher)
        run_dir, step = os.path.dirname(prefix), prefix.rsplit("-", 1)[-1]
        step = int(step) if step.isdigit() else None
    path = os.path.join(run_dir, "result.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    return result if result.get("global_step") == step else None
