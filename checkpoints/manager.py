"""Checkpoints: save and resume a run, skip half-written checkpoints, warm start by object.

Crash safety. `tf.train.CheckpointManager.save` writes every shard under `<prefix>_temp/`,
merges them into `<prefix>.index` and `<prefix>.data-?????-of-?????`, and only afterwards (from
a write callback) rewrites the `checkpoint` state file, atomically (temp file + rename). A save
interrupted at any point therefore leaves the state file naming the previous complete
checkpoint; tests/checkpoints/test_manager.py checks this order on TF 2.21. A checkpoint can
still be damaged later (a truncated copy, a deleted file): `restore_latest` then warns, names
it, and falls back to the next older one.

Multi-worker runs. Under MultiWorkerMirroredStrategy every worker must call `save()` (the
variables are read with collectives), but only the chief may write into `model_dir`; other
workers write to a private temporary directory that `cleanup()` removes. Every worker restores
from `model_dir`, so all of them resume from the chief's checkpoint.
"""
import errno
import json
import os
import re
import shutil
import tempfile
from typing import Dict, List, Optional

import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import trackable_object_graph_pb2

_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# `<name>-<step>.index` or `<name>-<step>.data-00000-of-00001`; `<name>-<step>_temp/` (an
# unfinished save) is a directory and never matches.
_FILE_RE = re.compile(r"^(?P<prefix>(?P<name>.+)-(?P<step>\d+))\.(index|data-\d{5}-of-\d{5})$")


class UnreadableCheckpointError(RuntimeError):
    """Every checkpoint in a directory is missing files or is truncated."""


class DiskFullError(RuntimeError):
    """The disk filled up while writing; what was written before is intact."""


def disk_full_error(error: BaseException, directory: str, what: str):
    """A DiskFullError for `error` if it says the disk (or quota) is full, else None.

    TensorFlow reports ENOSPC from its file system as ResourceExhaustedError, Python as OSError.

    Args:
      error: the exception raised while writing.
      directory: where the writing went (named in the message).
      what: what was being written, e.g. "the checkpoint of step 4".
    """
    full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, tf.errors.ResourceExhaustedError):
        full = any(s in str(error) for s in ("No space left", "quota exceeded"))
    if not full:
        return None
    return DiskFullError(
        f"the disk of {directory} is full ({_first_line(error)}) while writing {what}; the "
        "earlier checkpoints are intact: free space and run the same command to resume.")


class CheckpointManager:
    """Saves numbered checkpoints of some objects and resumes from the newest readable one.

    Attributes:
      directory: the run's model_dir (read by every worker, written by the chief only).
      checkpoint: the `tf.train.Checkpoint` over the objects given.
    """

    def __init__(self, directory: str, max_to_keep: int = 5, is_chief: bool = True,
                 checkpoint_name: str = "ckpt", **objects):
        """Builds the checkpoint and TF's manager.

        Args:
          directory: where checkpoints `<directory>/<checkpoint_name>-<step>` live.
          max_to_keep: checkpoints kept by the chief; older ones are deleted after each save.
          is_chief: False on the non-chief workers of a multi-worker run: they save into a
            temporary directory outside `directory` (see the module docstring).
          checkpoint_name: file-name stem of the checkpoints.
          **objects: trackables to save, e.g. model=..., optimizer=..., step=tf.Variable.
        """
        self.directory = directory
        self.is_chief = is_chief
        self._name = checkpoint_name
        self._object_names = sorted(objects)
        self.checkpoint = tf.train.Checkpoint(**objects)
        self._tmp_dir = None
        save_dir = directory
        if is_chief:
            _complete_state(directory, checkpoint_name)
        else:
            self._tmp_dir = tempfile.mkdtemp(prefix=f"ckpt_worker_{os.getpid()}_")
            save_dir, max_to_keep = self._tmp_dir, 1  # nobody reads these: keep one
        self._manager = tf.train.CheckpointManager(
            self.checkpoint, save_dir, max_to_keep, checkpoint_name=checkpoint_name)

    def save(self, step: int) -> str:
        """Writes checkpoint number `step` (all workers must call it together).

        Returns:
          the checkpoint prefix written (a temporary one on non-chief workers).

        Raises:
          DiskFullError: the disk filled up; the half-written `<prefix>_temp/` is removed
            (it would only hold the space) and the state file still names the previous
            checkpoint.
        """
        try:
            return self._manager.save(checkpoint_number=int(step))
        except (tf.errors.ResourceExhaustedError, OSError) as e:
            full = disk_full_error(e, self._manager.directory, f"the checkpoint of step {step}")
            if full is None:
                raise
            temp = os.path.join(self._manager.directory, f"{self._name}-{int(step)}_temp")
            shutil.rmtree(temp, ignore_errors=True)
            raise full from e

    @property
    def latest_checkpoint(self) -> Optional[str]:
        """Prefix named by `directory`'s state file (None if there is none)."""
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self) -> Optional[int]:
        """Restores the newest readable checkpoint in `directory` into the objects.

        Candidates are the checkpoints listed in the state file plus `<name>-<step>` files on
        disk (a save interrupted just before the state update is complete and counts), tried
        newest step first. An unreadable one is skipped with a warning naming it.

        Returns:
          the step number of the checkpoint restored, or None if there is no checkpoint.

        Raises:
          UnreadableCheckpointError: checkpoints exist but none is readable.
          ValueError: a readable checkpoint does not match the objects (another model).
        """
        candidates = _candidates(self.directory, self._name)
        problems = []
        for prefix in candidates:
            reason = _unreadable_reason(prefix) or self._restore(prefix)
            if reason is None:
                return _step_of(prefix)
            logging.warning("Skipping unreadable checkpoint %s: %s; trying an older one.",
                            prefix, reason)
            problems.append(f"  {prefix}: {reason}")
        if problems:
            raise UnreadableCheckpointError(
                f"No readable checkpoint in {self.directory}; all {len(problems)} are damaged:\n"
                + "\n".join(problems) + "\nMove them away to start afresh, or restore a copy.")
        return None

    def _restore(self, prefix: str) -> Optional[str]:
        """Restores `prefix`; returns why it is unreadable, or None once it is restored."""
        try:
            status = self.checkpoint.restore(prefix)
        except (tf.errors.OpError, IndexError) as e:  # IndexError: a short read in Python
            return f"reading it failed: {_first_line(e)}"
        except ValueError as e:  # a shape mismatch: another model, not a damaged file
            raise self._mismatch(prefix, str(e)) from e
        try:
            status.assert_existing_objects_matched()
        except AssertionError as e:  # resuming with objects the checkpoint lacks is an error
            raise self._mismatch(prefix, _strip_values(str(e))) from e
        return None

    def _mismatch(self, prefix: str, detail: str) -> ValueError:
        return ValueError(f"Checkpoint {prefix} does not match the objects being resumed "
                          f"({', '.join(self._object_names)}): {detail}")

    def cleanup(self):
        """Removes a non-chief worker's temporary directory (no-op on the chief)."""
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None


def _complete_state(directory: str, name: str) -> None:
    """Makes the `checkpoint` state file list every checkpoint `<name>-<step>` on disk.

    TF's manager deletes only the checkpoints its state file lists: with a garbled state file
    (it reads as none) or one a killed save never updated, the checkpoints it forgot would stay
    forever and --keep_checkpoint_max would keep more. The state file is rewritten (atomically)
    with all of them, newest last, each with its index file's time, so that the next save
    prunes the oldest; a garbled one is named in a warning.
    """
    if not tf.io.gfile.isdir(directory):
        return
    on_disk = [p for p in _candidates(directory, name) if _step_of(p) is not None
               and tf.io.gfile.exists(p + ".index")]
    if not on_disk:
        return
    path = os.path.join(directory, "checkpoint")
    state = tf.train.get_checkpoint_state(directory)  # None when missing or garbled
    listed = [os.path.basename(p) for p in state.all_model_checkpoint_paths] if state else []
    forgotten = [p for p in on_disk if os.path.basename(p) not in listed]
    if not forgotten:
        return
    if state is None and tf.io.gfile.exists(path):
        logging.warning("The checkpoint state file %s is unreadable; rewrote it from the %d "
                        "checkpoints in %s (%s), so that --keep_checkpoint_max prunes them.",
                        path, len(on_disk), directory,
                        ", ".join(os.path.basename(p) for p in reversed(on_disk)))
    steps = sorted(on_disk, key=_step_of)  # oldest first, as TF's manager lists them
    tf.compat.v1.train.update_checkpoint_state(
        directory, os.path.basename(steps[-1]),
        all_model_checkpoint_paths=[os.path.basename(p) for p in steps],
        all_model_checkpoint_timestamps=[tf.io.gfile.stat(p + ".index").mtime_nsec / 1e9
                                         for p in steps],
        last_preserved_timestamp=0.0)


def _step_of(prefix: str) -> Optional[int]:
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else None


def _first_line(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _candidates(directory: str, name: Optional[str] = None) -> List[str]:
    """Checkpoint prefixes in `directory`, newest step first.

    Args:
      directory: a model_dir.
      name: keep only `<name>-<step>` prefixes; None keeps any.

    Returns:
      prefixes from the state file and from files on disk, sorted by step (those without a
      step last, the state file's newest first).
    """
    if not tf.io.gfile.isdir(directory):
        return []
    found = {}  # prefix -> sort key
    try:
        state = tf.train.get_checkpoint_state(directory)
    except Exception as e:  # noqa: BLE001  a garbled state file: the files on disk remain
        logging.warning("Ignoring unreadable state file in %s: %s", directory, e)
        state = None
    listed = list(state.all_model_checkpoint_paths) if state else []
    for order, path in enumerate(listed):
        # Basenames: a model_dir that was moved keeps its checkpoints next to the state file.
        found[os.path.join(directory, os.path.basename(path))] = order
    for filename in tf.io.gfile.listdir(directory):
        match = _FILE_RE.match(filename)
        if match:
            found.setdefault(os.path.join(directory, match.group("prefix")), -1)
    if name is not None:
        found = {p: o for p, o in found.items() if os.path.basename(p).startswith(name + "-")}

    def newest_first(prefix):
        step = _step_of(prefix)
        return (step is not None, step if step is not None else found[prefix])

    return sorted(found, key=newest_first, reverse=True)


def _unreadable_reason(prefix: str) -> Optional[str]:
    """Why `prefix` cannot be restored (a missing or truncated file), or None if it looks whole.

    Cheap: reads the index and file sizes, not the tensors. A truncated data file is detected
    by comparing its size with the bytes the index says its numeric tensors occupy.
    """
    index = prefix + ".index"
    if not tf.io.gfile.exists(index):
        return f"index file {index} is missing"
    shards = tf.io.gfile.glob(prefix + ".data-?????-of-?????")
    if not shards:
        return f"data file {prefix}.data-00000-of-NNNNN is missing"
    expected = int(shards[0].rsplit("-of-", 1)[1])
    if len(shards) != expected:
        return f"only {len(shards)} of {expected} data files {prefix}.data-* exist"
    try:
        reader = tf.train.load_checkpoint(prefix)
    except tf.errors.OpError as e:
        return f"index file {index} is unreadable ({_first_line(e)})"
    shapes = reader.get_variable_to_shape_map()
    needed = 0
    for key, dtype in reader.get_variable_to_dtype_map().items():
        if dtype not in (tf.string, tf.variant, tf.resource):  # variable-length: not counted
            needed += dtype.size * _num_elements(shapes[key])
    have = sum(tf.io.gfile.stat(s).length for s in shards)
    if have < needed:
        return (f"data file {shards[0] if expected == 1 else prefix + '.data-*'} is truncated "
                f"({have} bytes, its tensors need at least {needed})")
    return None


def damage_of(prefix: str) -> Optional[str]:
    """Why the checkpoint `prefix` cannot be restored (missing or truncated files), or None.

    Cheap: reads the index and the file sizes, not the tensors.
    """
    return _unreadable_reason(prefix)


def _num_elements(shape) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


def is_checkpoint_prefix(path: str) -> bool:
    """True if `path` is a checkpoint prefix (`path.index` exists)."""
    return bool(path) and tf.io.gfile.exists(path + ".index")


def resolve_checkpoint(path: str) -> str:
    """Turns a checkpoint prefix or a model_dir into a checkpoint prefix.

    Args:
      path: a prefix (`.../ckpt-100`, also accepted with `.index`), or a directory holding
        checkpoints (its newest readable one is returned; damaged ones are skipped with a
        warning).

    Returns:
      the checkpoint prefix.

    Raises:
      FileNotFoundError: `path` is neither, naming it and what was looked for.
    """
    if is_checkpoint_prefix(path):
        return path
    if path.endswith(".index") and is_checkpoint_prefix(path[:-len(".index")]):
        return path[:-len(".index")]
    if tf.io.gfile.isdir(path):
        for prefix in _candidates(path):
            reason = _unreadable_reason(prefix)
            if reason is None:
                return prefix
            logging.warning("Skipping unreadable checkpoint %s: %s", prefix, reason)
        raise FileNotFoundError(
            f"No readable checkpoint in directory {path}: expected a 'checkpoint' state file "
            "or <name>-<step>.index and .data-* files there.")
    raise FileNotFoundError(
        f"{path} is not a checkpoint: expected a checkpoint prefix (with {path}.index next to "
        "it) or a model_dir holding checkpoints.")


def restore_objects(path: str, **objects) -> str:
    """Restores some objects from a checkpoint and verifies that each of them was matched.

    `expect_partial()` is intended here: a warm start takes, say, the encoder out of a
    checkpoint that also holds an optimizer, and the values left over are not an error. Every
    object passed must find all of its variables, though.

    Args:
      path: checkpoint prefix or model_dir (see `resolve_checkpoint`).
      **objects: trackables under the names they were saved with, e.g.
        model=tf.train.Checkpoint(encoder=new_model.encoder).

    Returns:
      the checkpoint prefix read.

    Raises:
      FileNotFoundError: no checkpoint at `path`.
      ValueError: naming the checkpoint and the objects that did not match. Objects that
        did match may already hold the checkpoint's values.
    """
    prefix = resolve_checkpoint(path)
    try:
        tf.train.Checkpoint(**objects).read(prefix).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        bad = _unmatched_names(prefix, objects)
        saved = ", ".join(_saved_names(prefix)) or "nothing"
        raise ValueError(
            f"Checkpoint {prefix} does not match object(s) {', '.join(bad) or list(objects)} "
            f"(the checkpoint holds: {saved}): {_strip_values(str(e))}") from e
    return prefix


def _unmatched_names(prefix: str, objects: Dict[str, object]) -> List[str]:
    """Names among `objects` that fail to restore on their own (error path only)."""
    bad = []
    for name, obj in objects.items():
        try:
            tf.train.Checkpoint(**{name: obj}).read(prefix).expect_partial() \
                .assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError):
            bad.append(name)
    return bad


def object_graph(reader) -> trackable_object_graph_pb2.TrackableObjectGraph:
    """The object graph a checkpoint stores beside its values (node 0 is the root object).

    Args:
      reader: `tf.train.load_checkpoint(prefix)` of a checkpoint or a SavedModel's variables.
    """
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
    return graph


def _saved_names(prefix: str) -> List[str]:
    """Top-level object names in a checkpoint, from its object graph."""
    try:
        graph = object_graph(tf.train.load_checkpoint(prefix))
    except (tf.errors.OpError, IndexError, ValueError):
        return []
    return [child.local_name for child in graph.nodes[0].children]


def _strip_values(message: str) -> str:
    """Drops the arrays that TF prints inside variable reprs, keeping names and shapes."""
    return re.sub(r",? (value|numpy)=.*?>", ">", message, flags=re.DOTALL)


def write_json_atomic(path: str, obj) -> None:
    """Writes `obj` as JSON so that readers see the old file or the new one, never a part.

    Args:
      path: destination file (its directory is created).
      obj: JSON-serialisable value (dicts keep their order).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)  # same directory: os.replace must not cross disks
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are meant to be read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
