"""Distribution helpers: the one cross-replica gather, replica ids, and the strategy factory."""
import tensorflow as tf


def num_replicas() -> int:
    """Replicas in sync in the current context (1 outside any strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_id() -> tf.Tensor:
    """Index of this replica as an int32 scalar tensor (0 outside any strategy)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # cross-replica context: treated as the single replica 0
        return tf.constant(0, tf.int32)
    rid = ctx.replica_id_in_sync_group
    return tf.cast(rid, tf.int32)


def cross_replica_concat(tensor: tf.Tensor) -> tf.Tensor:
    """Concatenates `tensor` from all replicas along axis 0, in replica order.

    The backward pass sums the incoming gradients over replicas and returns this replica's
    slice (TensorFlow's all_gather gradient), so the gradient of a loss that uses other
    replicas' rows still reaches the replica that produced them.

    Args:
      tensor: (n, ...) on every replica, same n everywhere.

    Returns:
      (num_replicas * n, ...); the tensor itself when there is a single replica.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensor
    return ctx.all_gather(tensor, axis=0)  # (R*n, ...)
