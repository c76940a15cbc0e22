"""What SIGTERM (preemption, `kill`, a scheduler's time limit) does in each phase of a run.

While training steps run, SIGTERM is only noted (`StopRequest`): the host loop saves a
checkpoint after the current loop and raises `Stopped`, a SystemExit whose code is the message
for the user (exit status 1; run.py adds the command to run again). Anywhere else (start-up,
export, evaluation) there is nothing worth finishing, so `ExitOnSigterm` prints what is intact
and what to run, and the process ends at once with status 1. It ends with `os._exit` rather
than an exception: a handler's exception surfaces wherever the interpreter happens to be,
inside TensorFlow's C++ callbacks too, where it becomes a SystemError traceback (measured
during `tf.saved_model.save`). What such an exit leaves (a half-written export, a lock file) is
debris that the next start removes (checkpoints/model_dir.py).

Importing this module imports no TensorFlow: run.py installs the first handler before it.
"""
import os
import signal
import sys

from absl import logging

_again = ""  # " The command: ...", said after every stop (set by run.py)


def set_command(command: str) -> None:
    """The command that runs this one again, named by every message of an immediate stop."""
    global _again
    _again = f" The command: {command}"


def with_command(message: str) -> str:
    """`message` (which says to run the same command again) and that command (`set_command`)."""
    return f"{message}{_again}"


class Stopped(SystemExit):
    """SIGTERM ended the run; `code` is the message for the user (run.py adds the command)."""


class _Handler:
    """Installs `_handle` for SIGTERM inside a `with` block and puts the previous one back."""

    _previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler, nothing to restore
            self._previous = None
        return self

    def _handle(self, signum, frame):
        raise NotImplementedError

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class StopRequest(_Handler):
    """Turns SIGTERM into a flag (`requested`) that the host loop checks between loops."""

    def __init__(self):
        self.requested = False

    def _handle(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint after the current loop.")
        self.requested = True


class ExitOnSigterm(_Handler):
    """SIGTERM inside the block prints `message` (and the command) and exits with status 1.

    `message` may be changed inside the block as the phase changes (run.py: start-up, then
    evaluation). Nested blocks (StopRequest, the export's) take over and give it back. The
    message goes to the standard error the block started with: while TensorFlow starts,
    descriptor 2 is a temporary file (stages/startup_log.py) that an exit would never show.
    """

    def __init__(self, message: str):
        self.message = message
        self._stderr = None

    def __enter__(self):
        self._stderr = os.dup(2)
        return super().__enter__()

    def _handle(self, signum, frame):
        for stream in (sys.stdout, sys.stderr):
            try:  # what was printed before; the main thread may be inside a write itself
                stream.flush()
            except (RuntimeError, OSError, ValueError):
                pass
        # Unbuffered, on the descriptor itself: no reentrant write into a half-written buffer.
        os.write(self._stderr, f"{with_command(self.message)}\n".encode())
        os._exit(1)

    def __exit__(self, *exc):
        super().__exit__(*exc)
        os.close(self._stderr)
