"""Distribution helpers: the one cross-replica gather, replica ids, and the strategy factory."""
import json
import os
from typing import Optional

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


def make_strategy(kind: str = "default", tpu: Optional[str] = None, tpu_zone: Optional[str] = None,
                  gcp_project: Optional[str] = None) -> tf.distribute.Strategy:
    """Builds the tf.distribute strategy.

    Args:
      kind: 'default' (one device, or MirroredStrategy over all local GPUs when there are
        several), 'one_device', 'mirrored', 'multi_worker' (from TF_CONFIG) or 'tpu'.
      tpu, tpu_zone, gcp_project: TPUClusterResolver arguments for kind='tpu'.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "default":
        kind = "mirrored" if len(gpus) > 1 else "one_device"
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "tpu":
        resolver = tpu_cluster_resolver(tpu, tpu_zone, gcp_project)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown distribution {kind!r}")


def tpu_cluster_resolver(tpu, tpu_zone=None, gcp_project=None):
    """The TPUClusterResolver for `tpu` (name or grpc:// address)."""
    return tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=tpu, zone=tpu_zone, project=gcp_project)


def is_chief(strategy) -> bool:
    """Whether this process writes checkpoints, SavedModels and summaries."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return task_type == "worker" and task_id == 0 and not has_chief
