"""The optimizer of a stage, and the L2 loss for weights the optimizer does not decay itself.

LARS decays weights inside its update. SGD momentum and Adam do not, so their stages add
`weight_decay_loss` to the loss instead; under LARS the stages add it only for the variables
kept out of LARS' own decay that should still be regularised (the supervised head, as in the
original code).

Which supervised head LARS leaves alone: in pretraining (the linear-evaluation monitor) and
fine-tuning, the original code's choice (no trust ratio, no decay, an L2 loss instead). In
distillation the student's head is the objective itself, trained "with the same learning rate
schedule, weight decay, batch size as pretraining" (paper Sec. 3.1), so LARS treats it like
every other layer: without the trust ratio, its plain step at 0.1 x sqrt(B) on gradients
scaled by 1/tau (tau = 0.1 for self-distillation) diverges within tens of steps. Measured
(docs/semisup/README.md, "What was tried"): after 2 epochs from the same teacher the two
choices end within 0.3 points at tau 1.0 (80.4% under LARS, 80.1% outside).
"""
from typing import Callable, Iterable, Optional, Tuple

import keras
import tensorflow as tf

from tf2 import config as config_lib
from tf2 import distribute, lars, schedules

OPTIMIZERS = ("lars", "momentum", "adam")


def build_optimizer(cfg: config_lib.OptimizerConfig, learning_rate,
                    exclude_from_weight_decay: Optional[Callable] = None
                    ) -> keras.optimizers.Optimizer:
    """Builds the optimizer named by `cfg.optimizer`.

    Args:
      cfg: optimizer settings (momentum, weight decay and trust coefficient are read here).
      learning_rate: a number, a LearningRateSchedule (e.g. WarmUpAndCosineDecay) or a callable.
      exclude_from_weight_decay: for LARS, `variable -> bool` choosing variables without weight
        decay and trust ratio; None means rank <= 1 variables (`lars.default_exclusion`).
        Ignored by the other optimizers, which take weight decay as a loss.

    Returns:
      An unbuilt Keras optimizer; build it inside `strategy.scope()` before the first step.

    Raises:
      ValueError: for an optimizer name other than 'lars', 'momentum' or 'adam'.
    """
    if isinstance(learning_rate, (int, float)):
        learning_rate = float(learning_rate)  # Keras rejects a plain int
    if cfg.optimizer == "lars":
        return lars.LARS(
            learning_rate,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            trust_coefficient=cfg.trust_coefficient,
            exclude_from_weight_decay=exclude_from_weight_decay)
    if cfg.optimizer == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=float(cfg.momentum), nesterov=False)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate)
    raise ValueError(f"Unknown optimizer {cfg.optimizer!r}; expected one of {OPTIMIZERS}")


def weight_decay_loss(variables: Iterable, weight_decay: float,
                      exclude: Optional[Callable] = None) -> tf.Tensor:
    """weight_decay * sum of ||v||^2 / 2 over the variables not excluded.

    Args:
      variables: keras.Variables or tf.Variables (any shapes, float dtypes).
      weight_decay: the L2 coefficient.
      exclude: `variable -> bool`; True leaves a variable out. None leaves none out (pass
        `lars.default_exclusion` to skip biases and batch-norm parameters).

    Returns:
      A float32 scalar tensor (0 when no variable remains).
    """
    kept = [v for v in variables if exclude is None or not exclude(v)]
    l2 = [tf.nn.l2_loss(tf.cast(tf.convert_to_tensor(v), tf.float32)) for v in kept]
    if not l2:
        return tf.constant(0.0, tf.float32)
    return weight_decay * tf.add_n(l2)


def build_stage_optimizer(cfg: config_lib.RunConfig, model) -> keras.optimizers.Optimizer:
    """The optimizer of a training stage, built on `model`'s trainable variables.

    Warm-up then cosine decay over `cfg.train.total_steps`; under LARS the supervised head is
    kept out of weight decay and trust ratio except in distillation (module docstring). Call
    inside
    `strategy.scope()`: Keras 3 must create the slots there, before the first step.
    """
    total = cfg.train.total_steps
    warmup = min(cfg.train.epochs_to_steps(cfg.optimizer.warmup_epochs), total)
    schedule = schedules.WarmUpAndCosineDecay(
        cfg.optimizer.learning_rate, cfg.train.train_batch_size, warmup, total,
        cfg.optimizer.learning_rate_scaling)
    optimizer = build_optimizer(cfg.optimizer, schedule,
                                lars.exclude_variables(_head_outside_lars(cfg, model)))
    if cfg.precision == "mixed_float16":  # float16 gradients underflow without loss scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return optimizer


def _head_outside_lars(cfg: config_lib.RunConfig, model):
    """The supervised head's variables when LARS must leave them alone (not in distillation)."""
    head = getattr(model, "supervised_head", None)
    if head is None or cfg.train_mode == "distill":
        return []
    return list(head.trainable_variables)


def loss_weight_decay_fn(cfg: config_lib.RunConfig, model) -> Callable[[], tf.Tensor]:
    """`() -> scalar` L2 term for the weights the optimizer does not decay itself.

    LARS decays everything but rank <= 1 variables and (outside distillation) the supervised
    head inside its update; that head's kernel gets an L2 loss instead (original code). Other
    optimizers get the L2 loss on every trainable variable of rank > 1.
    """
    wd = cfg.optimizer.weight_decay
    if cfg.optimizer.optimizer == "lars":
        variables = _head_outside_lars(cfg, model)
    else:
        variables = list(model.trainable_variables)
    variables = [v for v in variables if not lars.default_exclusion(v)]
    if wd == 0 or not variables:
        return lambda: tf.constant(0.0, tf.float32)
    return lambda: weight_decay_loss(variables, wd)


def minimize(optimizer, variables, loss_fn: Callable[[], Tuple[tf.Tensor, dict]]):
    """One replica's update: differentiates `loss_fn`'s total loss and applies the gradient.

    Args:
      optimizer: the stage's optimizer.
      variables: the variables to update.
      loss_fn: `() -> (total loss, metrics)`, called under the gradient tape.

    Returns:
      (total loss, metrics, learning rate of this step).
    """
    with tf.GradientTape() as tape:
        total, metrics = loss_fn()
        # The optimizer sums gradients over replicas: dividing by the replica count makes the
        # applied gradient that of the mean loss over the global batch.
        scaled = scale_loss(optimizer, total / distribute.num_replicas())
    grads = tape.gradient(scaled, variables)
    learning_rate = optimizer.learning_rate  # the rate of this step: read before the update
    optimizer.apply_gradients(zip(grads, variables))
    return total, metrics, learning_rate


def scale_loss(optimizer, loss):
    """The loss to differentiate: multiplied by the loss scale under mixed_float16."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss
