"""The model_dir of a run: who may write into it, and the debris of writers that died.

Two processes writing one model_dir would mix their checkpoints, SavedModels and records, so a
writer first takes an exclusive `fcntl.flock` on a lock file there: `.train.lock` for a
training run, `.eval.lock` for an evaluation (it writes result.json and SavedModels). The two
roles are separate locks so that `--mode=eval` can watch a directory while a training run
writes checkpoints into it; a second writer of the same role is refused. The kernel drops a
lock when its process dies (SIGKILL included), so a stale lock file never blocks anyone; the
file only keeps the holder's pid for the refusal message.

Debris: a save killed half-way leaves `<name>-<step>_temp/` (TF's shard directory) and an
export killed half-way leaves `saved_model/.tmp-export-*`. Neither is ever read, but both stay
forever; a writer that holds the lock of a role removes that role's debris at its start (only
once no live process of the other role may be writing an export either).
"""
import errno
import fcntl
import os
import re
import shutil
import socket
import tempfile
import time
from typing import List, Optional, Sequence

TRAIN, EVAL = "train", "eval"
_CKPT_TEMP_RE = re.compile(r"^.+-\d+_temp$")
# checkpoints/export.py's temporary directories; the leading dot: never taken for a step
EXPORT_TMP_PREFIX = ".tmp-export-"


class ModelDirBusyError(RuntimeError):
    """Another live process holds the lock of this role on the model_dir."""


class NotWritableError(RuntimeError):
    """The model_dir cannot be created or written (read-only disk, permissions, a file)."""


def _lock_path(directory: str, role: str) -> str:
    return os.path.join(directory, f".{role}.lock")


def _try_lock(path: str) -> Optional[int]:
    """An open descriptor holding the exclusive lock on `path`, or None if someone holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return fd


def _held(path: str) -> bool:
    """True if a live process holds the lock on `path`; probing creates no lock file."""
    if not os.path.exists(path):  # lock files are never removed: no file, no holder
        return False
    fd = _try_lock(path)
    if fd is None:
        return True
    os.close(fd)
    return False


def _holder(path: str) -> str:
    """What the lock file says about its holder: 'process 123 on host h since ...'."""
    try:
        with open(path) as f:
            words = f.read().split()
    except OSError:
        words = []
    if len(words) >= 3:
        return f"process {words[0]} on host {words[1]} (since {' '.join(words[2:])})"
    return "another process"


def training_writer(directory: str) -> Optional[str]:
    """Who holds the training lock of `directory` ('process 123 on host h (since ...)'), or
    None when no live training run writes into it. Takes nothing: a reader's probe."""
    path = _lock_path(directory, TRAIN)
    if not os.path.exists(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return _holder(path)
        raise
    finally:
        os.close(fd)  # closing drops the shared lock, if it was taken
    return None


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def check_writable(directory: str) -> None:
    """Creates `directory` if needed and writes a probe file into it.

    Raises:
      NotWritableError: naming the directory and the system's reason.
    """
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotWritableError(f"{directory} is a file, not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise NotWritableError(f"{directory} is not writable ({e.strerror or e})") from e


class Claim:
    """The locks one process holds on a model_dir; released when it ends (or `release()`).

    Attributes:
      directory: the model_dir.
      roles: the roles held (TRAIN, EVAL).
    """

    def __init__(self, directory: str, roles: Sequence[str]):
        """Takes the lock of every role, or none of them.

        Raises:
          NotWritableError: the directory cannot be created or written.
          ModelDirBusyError: naming the live process that holds one of the locks.
        """
        self.directory, self.roles, self._fds = directory, tuple(roles), []
        check_writable(directory)
        for role in self.roles:
            path = _lock_path(directory, role)
            fd = _try_lock(path)
            if fd is None:
                holder = _holder(path)
                self.release()
                raise ModelDirBusyError(
                    f"{directory} is in use by {holder}, {_article(role)} {role} run writing "
                    "into it")
            os.ftruncate(fd, 0)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            os.write(fd, f"{os.getpid()} {socket.gethostname()} {stamp}\n".encode())
            self._fds.append(fd)

    def release(self):
        for fd in self._fds:
            os.close(fd)  # closing the descriptor drops the flock
        self._fds = []

    def clean_debris(self) -> List[str]:
        """Removes what interrupted saves of dead writers left behind; returns the paths."""
        removed = []
        if TRAIN in self.roles:
            removed += _remove(self.directory, lambda name: bool(_CKPT_TEMP_RE.match(name)))
        if self._no_other_writer():
            removed += _remove(os.path.join(self.directory, "saved_model"),
                               lambda name: name.startswith(EXPORT_TMP_PREFIX))
        return removed

    def _no_other_writer(self) -> bool:
        """True if no live process of a role this claim lacks may be exporting right now."""
        return not any(_held(_lock_path(self.directory, role))
                       for role in {TRAIN, EVAL} - set(self.roles))


def _remove(directory: str, is_debris) -> List[str]:
    if not os.path.isdir(directory):
        return []
    paths = [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if is_debris(n)]
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    return paths
