"""MoCo-style memory of SimCLRv2 (paper Sec. 2 item 3, Appendix D): a FIFO queue of
negatives, and an exponential-moving-average shadow of the encoder + projection head
whose outputs fill that queue.

Both are written for one replica and also work in cross-replica or default context:
the queue's variables use ONLY_FIRST_REPLICA aggregation (every replica writes the same
values), and the EMA update goes through `merge_call` + `strategy.extended.update`.
"""
from typing import Sequence, Tuple

import tensorflow as tf

from tf2 import distribute

_ONLY_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA


class MemoryQueue(tf.Module):
    """FIFO queue of K negatives of dimension d, shared by all replicas.

    Every replica gathers the keys of all replicas before writing, so all replicas
    hold the same queue, equal to a single device's queue fed the global batches.

    The queue stores keys as given: the caller L2-normalises them when the loss uses
    cosine similarity (`nt_xent(hidden_norm=True)` expects normalised negatives), which
    keeps the queue usable with `hidden_norm=False` too.

    Attributes:
      queue: (K, d) float32 variable, zeros until filled.
      pointer: int64 scalar variable, the row the next key is written to.
      count: int64 scalar variable, number of filled rows (saturates at K).
    """

    def __init__(self, size: int, dim: int, name: str = "memory_queue"):
        """Creates the variables (under the caller's strategy scope, if any).

        Args:
          size: K, number of entries (> 0).
          dim: d, dimension of each key.
          name: module name.
        """
        super().__init__(name=name)
        if size <= 0 or dim <= 0:
            raise ValueError(f"MemoryQueue needs size > 0 and dim > 0, got {size}, {dim}.")
        self.size = int(size)
        self.dim = int(dim)
        with self.name_scope:
            self.queue = tf.Variable(tf.zeros([self.size, self.dim], tf.float32),
                                     trainable=False, aggregation=_ONLY_FIRST, name="queue")
            self.pointer = tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                       aggregation=_ONLY_FIRST, name="pointer")
            self.count = tf.Variable(tf.constant(0, tf.int64), trainable=False,
                                     aggregation=_ONLY_FIRST, name="count")

    def negatives(self) -> Tuple[tf.Tensor, tf.Tensor]:
        """The queue and which of its rows are filled.

        Returns:
          queue: (K, d) float32.
          valid_mask: (K,) bool, True for filled rows.
        """
        valid = tf.range(self.size, dtype=tf.int64) < self.count.read_value()  # (K,)
        return tf.identity(self.queue.read_value()), valid

    def enqueue(self, keys: tf.Tensor) -> tf.Tensor:
        """Appends all replicas' keys in FIFO order, overwriting the oldest rows.

        The result equals writing the M = R*m gathered rows one by one at
        pointer, pointer + 1, ... (mod K); when M > K only the newest K survive.

        Args:
          keys: (m, d) keys of this replica, any float dtype; no gradient is taken.

        Returns:
          The new pointer (int64 scalar).
        """
        keys = tf.stop_gradient(tf.cast(keys, tf.float32))
        block = distribute.cross_replica_concat(keys)  # (M, d), same on every replica
        total = tf.cast(tf.shape(block)[0], tf.int64)
        kept = tf.minimum(total, self.size)
        block = block[total - kept:]  # (min(M, K), d): the newest rows
        pointer = self.pointer.read_value()
        # Row j of the kept block is row (M - kept + j) of the sequential write.
        rows = (pointer + (total - kept) + tf.range(kept, dtype=tf.int64)) % self.size
        self.queue.scatter_update(tf.IndexedSlices(block, rows))
        new_pointer = (pointer + total) % self.size
        self.pointer.assign(new_pointer)
        self.count.assign(tf.minimum(self.count.read_value() + kept, self.size))
        return new_pointer


def _path(variable) -> str:
    """A readable name for error messages (Keras 3 `path`, else tf.Variable `name`)."""
    return getattr(variable, "path", None) or getattr(variable, "name", repr(variable))


def _tf_variable(variable) -> tf.Variable:
    """The tf.Variable (possibly mirrored) behind a Keras 3 or a plain TF variable."""
    inner = getattr(variable, "_value", None)  # Keras 3 TF-backend variables wrap one
    return inner if isinstance(inner, tf.Variable) else variable


class EmaShadow(tf.Module):
    """Exponential moving average of a model kept in a second model (the memory network).

    The two lists are matched by position, e.g. `online.variables` and
    `shadow.variables` of two models built the same way.

    Trainable variables are averaged: shadow = decay * shadow + (1 - decay) * online.
    Non-trainable ones (batch-norm moving mean/variance, counters) are copied: they are
    already running averages of the online network's batch statistics, so averaging them
    again would only add lag and let them drift from the weights they describe.
    """

    def __init__(self, online_variables: Sequence, shadow_variables: Sequence,
                 decay: float, name: str = "ema_shadow"):
        """Pairs the variables and checks that they match.

        Args:
          online_variables: variables of the trained model.
          shadow_variables: variables of the EMA copy, same order and shapes.
          decay: EMA decay in [0, 1] (paper: 0.999).
          name: module name.

        Raises:
          ValueError: if the lengths differ, or for the first pair whose shapes differ.
        """
        super().__init__(name=name)
        online, shadow = list(online_variables), list(shadow_variables)
        if len(online) != len(shadow):
            raise ValueError(f"EmaShadow: {len(online)} online variables but "
                             f"{len(shadow)} shadow variables.")
        for i, (o, s) in enumerate(zip(online, shadow)):
            if tuple(o.shape) != tuple(s.shape):
                raise ValueError(
                    f"EmaShadow: variable {i} differs: online {_path(o)} {tuple(o.shape)} "
                    f"vs shadow {_path(s)} {tuple(s.shape)}.")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EmaShadow: decay must be in [0, 1], got {decay}.")
        self.decay = float(decay)
        self._trainable = [bool(o.trainable) for o in online]
        self._online = [_tf_variable(o) for o in online]
        self._shadow = [_tf_variable(s) for s in shadow]

    def initialize(self) -> None:
        """Copies online -> shadow exactly (call once before training)."""
        self._run(lambda shadow, online, trainable: shadow.assign(online))

    def update(self) -> None:
        """One EMA step for trainable variables; a plain copy for the non-trainable ones."""
        decay = self.decay

        def ema(shadow, online, trainable):
            if trainable:
                return shadow.assign(decay * shadow + (1.0 - decay) * online)
            return shadow.assign(online)

        self._run(ema)

    def _run(self, fn) -> None:
        """Applies fn(shadow, online, trainable) to every pair on every device.

        In replica context this enters cross-replica context with `merge_call`, then
        `strategy.extended.update` runs fn once per device on the local copies, which is
        how mirrored variables with any aggregation may be written.
        """
        ctx = tf.distribute.get_replica_context()
        if ctx is None:  # already in cross-replica context
            self._apply(tf.distribute.get_strategy(), fn)
        else:
            # fn goes in by closure, not in `args`: merge_call would regroup the
            # replicas' distinct closures into a PerReplica value.
            ctx.merge_call(lambda strategy: self._apply(strategy, fn))

    def _apply(self, strategy, fn) -> None:
        for shadow, online, trainable in zip(self._shadow, self._online, self._trainable):
            strategy.extended.update(
                shadow, lambda s, o, t=trainable: fn(s, o, t), args=(online,), group=False)
