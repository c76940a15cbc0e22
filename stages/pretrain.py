"""Stage 1/3: contrastive pretraining. Reads unlabelled images, writes a pretrain checkpoint.

NT-Xent over all replicas' projections (+ the MoCo-style memory when `memory.size > 0`), and
a linear head on stop-gradient features whose labels never reach the encoder: a monitor of the
representation, reported under 'monitor/', not 'train/'.
"""
import tensorflow as tf

from data import pipeline
from tf2 import losses, memory, model as model_lib, optimizers
from stages import loop
from stages import monitor as monitor_lib
from tf2.config import RunConfig


# The linear head on stop-gradient features is a monitor of the representation, not part of
# the objective: its metrics go to TensorBoard's 'monitor' group, not 'train'. The original
# code trains it as here: plain momentum at the encoder's LARS learning rate (no trust ratio)
# on unnormalised features, so its loss spikes while the rate is high (README, "The stages").
LINEAR_EVAL_LOSS = "monitor/linear_eval_loss"
LINEAR_EVAL_ACC = "monitor/linear_eval_acc"


def build(cfg: RunConfig, num_classes: int):
    """Builds the model and its optimizer (call inside `strategy.scope()`).

    Returns:
      (model, optimizer)
    """
    model = model_lib.build_model(
        cfg.model, cfg.head, with_supervised_head=cfg.lineareval_while_pretraining,
        stop_gradient_supervised=True, image_size=cfg.data.image_size, num_classes=num_classes)
    optimizer = optimizers.build_stage_optimizer(cfg, model)
    return model, optimizer


def _build_memory(cfg: RunConfig, model, num_classes):
    """The EMA copy of encoder + head and the queue it fills; None when memory is off."""
    if not cfg.memory.enabled:
        return None, None, None
    ema_model, _ = build(cfg, num_classes)
    shadow = memory.EmaShadow(model.variables, ema_model.variables, cfg.memory.ema_decay)
    shadow.initialize()
    queue = memory.MemoryQueue(cfg.memory.size, cfg.head.proj_out_dim)
    return ema_model, shadow, queue


def make_step_fn(cfg: RunConfig, model, optimizer, num_classes, ema_model=None, shadow=None,
                 queue=None):
    """Returns one replica's pretraining step: batch -> {metric: scalar}."""
    variables = model.trainable_variables
    decay_loss = optimizers.loss_weight_decay_fn(cfg, model)

    def step_fn(batch):
        images = batch["image"]  # (b, h, w, 6): two views on channels
        negatives = mask = None
        if queue is not None:
            negatives, mask = queue.negatives()  # (K, d), (K,)
        def loss_fn():
            out = model(images, training=True)
            con_loss, logits, labels = losses.nt_xent(
                out[model_lib.PROJ_HEAD_OUTPUT], cfg.loss.temperature, cfg.loss.hidden_norm,
                negatives, mask)
            metrics = {"contrast_loss": con_loss, **losses.contrastive_metrics(logits, labels)}
            total = con_loss
            if model_lib.LOGITS_SUP in out:
                sup_labels = tf.one_hot(tf.concat([batch["label"]] * 2, 0), num_classes)
                sup_loss = losses.supervised_loss(sup_labels, out[model_lib.LOGITS_SUP])
                metrics[LINEAR_EVAL_LOSS] = sup_loss
                metrics[LINEAR_EVAL_ACC] = losses.accuracy(sup_labels, out[model_lib.LOGITS_SUP])
                total += sup_loss  # as the original: its gradient reaches the head only
            metrics["weight_decay"] = decay_loss()
            return total + metrics["weight_decay"], metrics

        total, metrics, learning_rate = optimizers.minimize(optimizer, variables, loss_fn)
        if queue is not None:
            keys = ema_model(images, training=True)[model_lib.PROJ_HEAD_OUTPUT]
            keys = tf.math.l2_normalize(keys, -1)  # (2b, d): view 1 rows, then view 2 rows
            # One view at a time, so the queue gets all view-1 keys of the global batch and
            # then all view-2 keys, as on one device: which keys a wrap-around overwrites
            # then does not depend on the number of replicas.
            for view_keys in tf.split(keys, 2, axis=0):  # 2 x (b, d)
                queue.enqueue(view_keys)
            shadow.update()
        metrics.update(total_loss=total, learning_rate=learning_rate)
        return metrics

    return step_fn


def run(cfg: RunConfig, strategy, source, is_chief=True, record=None) -> str:
    """Pretrains on `source` (a `data.datasets.Source`) and returns cfg.model_dir."""
    num_classes = source.num_classes if cfg.lineareval_while_pretraining else 0
    with strategy.scope():
        model, optimizer = build(cfg, num_classes)
        ema_model, shadow, queue = _build_memory(cfg, model, num_classes)
        step_fn = make_step_fn(cfg, model, optimizer, num_classes, ema_model, shadow, queue)
    extra = {} if queue is None else {"ema_model": ema_model, "memory_queue": queue}
    parts = loop.StageParts(
        model=model, optimizer=optimizer, step_fn=step_fn, extra_state=extra,
        monitor=monitor_lib.build(cfg, source, model, is_chief),
        make_input_fn=lambda start: pipeline.pretrain_input_fn(
            source, cfg.data, cfg.train.train_batch_size, start_step=start))
    loop.run_stage(cfg, strategy, parts, is_chief=is_chief, record=record)
    return cfg.model_dir
