"""Distribution: the strategy factory, who writes files, and the one cross-replica gather.

Strategies (`make_strategy`): one device; MirroredStrategy over the local GPUs;
MultiWorkerMirroredStrategy over the hosts of TF_CONFIG; TPUStrategy over a Cloud TPU. Step
functions are written for one replica (see stages/pretrain.py); what crosses replicas goes through
`cross_replica_concat` (contrastive negatives, memory-queue keys), synchronised batch norm and
the optimizer's gradient all-reduce.

Files: only the chief (`is_chief`) writes checkpoints, SavedModels and summaries. Under
MultiWorkerMirroredStrategy every worker still saves checkpoints (the save is collective); the
others write into temporary directories that they remove (checkpoints.manager).

Failures: on TF 2.21 MultiWorkerMirroredStrategy runs TensorFlow's coordination service, whose
heartbeats notice a worker that died or stopped within seconds and abort the collectives of
the others, which then raise one of `CLUSTER_ERRORS` (`cluster_error_message` says what to do).
`collective_timeout_s` additionally bounds each collective, for a peer that is alive but stuck.
"""
import json
import os
from typing import Optional

import tensorflow as tf

DISTRIBUTIONS = ("default", "one_device", "mirrored", "multi_worker", "tpu")
# What a collective raises when a peer died or was declared dead (coordination service), or
# when a collective outlived `collective_timeout_s`.
CLUSTER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                  tf.errors.CancelledError)

_TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}\'')


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


def make_strategy(kind: str = "default", tpu: Optional[str] = None,
                  tpu_zone: Optional[str] = None, gcp_project: Optional[str] = None,
                  collective_timeout_s: Optional[float] = None) -> tf.distribute.Strategy:
    """Builds the tf.distribute strategy. Call it before TensorFlow runs anything.

    MultiWorkerMirroredStrategy and TPUStrategy configure the runtime when they are created,
    which TensorFlow refuses once an op has run (even reading a data set).

    Args:
      kind: one of DISTRIBUTIONS: 'default' (one device, or MirroredStrategy over all local
        GPUs when there are several), 'one_device', 'mirrored' (all local GPUs),
        'multi_worker' (the cluster of the TF_CONFIG environment variable) or 'tpu'.
      tpu, tpu_zone, gcp_project: TPUClusterResolver arguments for kind='tpu' (a TPU name
        or grpc:// address; None: the TPU of this Cloud TPU VM).
      collective_timeout_s: multi_worker only; a collective (all-reduce, all-gather) that
        takes longer raises DeadlineExceededError. Leave None unless a peer may hang without
        dying: it must exceed the longest wait of one worker for the others (the first step's
        tracing, the chief's checkpoint writes).

    Raises:
      ValueError: an unknown kind, or kind='multi_worker' without a valid TF_CONFIG.
    """
    if kind == "default":
        kind = "mirrored" if len(_local_gpus()) > 1 else "one_device"
    if kind == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if _local_gpus() else "/cpu:0")
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        _check_tf_config(os.environ.get("TF_CONFIG"))
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=collective_timeout_s)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if kind == "tpu":
        resolver = tpu_cluster_resolver(tpu, tpu_zone, gcp_project)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown distribution {kind!r}; use one of {', '.join(DISTRIBUTIONS)}")


def _local_gpus():
    # Physical devices: listing the logical ones would start the runtime (see make_strategy).
    return tf.config.list_physical_devices("GPU")


def _check_tf_config(raw: Optional[str]) -> dict:
    """The parsed TF_CONFIG of a multi-worker run; ValueError saying what is wrong."""
    if not raw:
        raise ValueError("--distribution=multi_worker needs the TF_CONFIG environment variable "
                         f"on every host, e.g. {_TF_CONFIG_EXAMPLE} (index 1 on host2).")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {raw}") from e
    cluster, task = config.get("cluster", {}), config.get("task", {})
    jobs = {job: len(addresses) for job, addresses in cluster.items()}
    if task.get("type") not in jobs or not 0 <= task.get("index", -1) < jobs[task["type"]]:
        raise ValueError(f"TF_CONFIG task {task} is not one of the cluster's tasks {jobs}; "
                         f"e.g. {_TF_CONFIG_EXAMPLE}")
    return config


def tpu_cluster_resolver(tpu: Optional[str], tpu_zone: Optional[str] = None,
                         gcp_project: Optional[str] = None):
    """The TPUClusterResolver for `tpu` (a name, a grpc:// address, or None on a TPU VM)."""
    return tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=tpu, zone=tpu_zone, project=gcp_project)


def is_chief_task(cluster: dict, task_type: Optional[str], task_id: Optional[int]) -> bool:
    """Whether a task writes the files: the 'chief', else worker 0 of a cluster without one.

    Args:
      cluster: {job name: [addresses]} (TF_CONFIG's 'cluster'); empty for a single process.
      task_type, task_id: this task (None for a single process).
    """
    if not cluster or task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def is_chief(strategy) -> bool:
    """Whether this process writes checkpoints, SavedModels and summaries."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    return is_chief_task(resolver.cluster_spec().as_dict(), resolver.task_type,
                         resolver.task_id)


def cluster_error_message(error: Exception, model_dir: str) -> str:
    """One paragraph for a run stopped by one of CLUSTER_ERRORS: what happened, what to do."""
    detail = (getattr(error, "message", None) or str(error)).strip()
    detail = " ".join(line.strip() for line in detail.splitlines()[:3])
    return (f"the cluster lost a worker, or a collective timed out ({type(error).__name__}: "
            f"{detail}). Training stopped; the last checkpoint in {model_dir} is intact. Start "
            "every worker again with the same command and TF_CONFIG to resume from it.")
