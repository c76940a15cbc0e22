"""Learning-rate scaling with the batch size, and linear warm-up followed by cosine decay.

The paper (Sec. 3.1) pretrains with a peak rate of 6.4 = 0.1 * sqrt(4096), reached by a linear
warm-up over the first 5% of epochs and followed by cosine decay; fine-tuning uses
0.16 = 0.005 * sqrt(1024) with no warm-up. SimCLR v1 used linear scaling (0.3 * B / 256).
"""
import math

import keras
import tensorflow as tf

SCALINGS = ("linear", "sqrt")


def scaled_learning_rate(base_lr: float, batch_size: int, scaling: str) -> float:
    """The peak learning rate for a global batch.

    Args:
      base_lr: base rate before scaling (e.g. 0.1 for pretraining, 0.005 for fine-tuning).
      batch_size: global batch size over all replicas.
      scaling: 'linear' gives base_lr * batch_size / 256; 'sqrt' gives base_lr * sqrt(batch_size).

    Returns:
      The scaled rate as a Python float.

    Raises:
      ValueError: for an unknown `scaling` or a non-positive batch size.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if scaling == "linear":
        return float(base_lr) * batch_size / 256.0
    if scaling == "sqrt":
        return float(base_lr) * math.sqrt(batch_size)
    raise ValueError(f"Unknown learning_rate_scaling {scaling!r}; expected one of {SCALINGS}")


@keras.saving.register_keras_serializable(package="simclr")
class WarmUpAndCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to the scaled rate, then cosine decay to 0 at `total_steps`.

    lr(step) = peak * step / warmup_steps                       for step < warmup_steps
             = peak * 0.5 * (1 + cos(pi * min(step - warmup_steps, D) / D)) otherwise,
    with peak = scaled_learning_rate(base_learning_rate, batch_size, scaling) and
    D = total_steps - warmup_steps; the rate stays 0 after `total_steps`.
    """

    def __init__(self, base_learning_rate: float, batch_size: int, warmup_steps: int,
                 total_steps: int, scaling: str = "sqrt", name: str = "warmup_cosine"):
        """Builds the schedule.

        Args:
          base_learning_rate: rate before batch-size scaling.
          batch_size: global batch size.
          warmup_steps: steps of linear warm-up; 0 starts at the peak rate.
          total_steps: step at which the rate reaches 0.
          scaling: 'linear' or 'sqrt' (see `scaled_learning_rate`).
          name: name scope of the ops.

        Raises:
          ValueError: for an unknown scaling, or unless 0 <= warmup_steps <= total_steps.
        """
        super().__init__()
        if not 0 <= int(warmup_steps) <= int(total_steps):
            raise ValueError(
                f"Need 0 <= warmup_steps <= total_steps, got warmup_steps={warmup_steps}, "
                f"total_steps={total_steps}; shorten the warm-up or lengthen training")
        self.base_learning_rate = float(base_learning_rate)
        self.batch_size = int(batch_size)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.scaling = scaling
        self.name = name
        self.peak_learning_rate = scaled_learning_rate(base_learning_rate, batch_size, scaling)

    def __call__(self, step):
        """The rate at `step` (an int or float scalar tensor); a float32 scalar tensor."""
        with tf.name_scope(self.name):
            step = tf.cast(step, tf.float32)
            peak = tf.constant(self.peak_learning_rate, tf.float32)
            # max(.., 1) only guards the division; the branch is unused when warmup_steps == 0.
            warmup_lr = peak * step / float(max(self.warmup_steps, 1))
            decay_steps = self.total_steps - self.warmup_steps
            if decay_steps > 0:
                progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
            else:  # the whole run is warm-up: the rate is 0 from total_steps on
                progress = tf.constant(1.0)
            cosine_lr = peak * 0.5 * (1.0 + tf.cos(math.pi * progress))
            return tf.where(step < self.warmup_steps, warmup_lr, cosine_lr)

    def get_config(self) -> dict:
        return {
            "base_learning_rate": self.base_learning_rate,
            "batch_size": self.batch_size,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "scaling": self.scaling,
            "name": self.name,
        }
