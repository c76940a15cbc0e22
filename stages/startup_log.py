"""TensorFlow's start-up log, kept off the terminal unless it says something is wrong.

Importing TensorFlow and finding its devices writes several lines straight to file descriptor 2
from C++, before absl's logging is set up, so TF_CPP_MIN_LOG_LEVEL does not silence them: the
oneDNN notice, "Could not find cuda drivers", and on a machine without a GPU an ERROR-level
`E0000 ... failed call to cuInit` that looks like a failure but is not one. `import_quietly`
sends descriptor 2 to a temporary file while that happens, then writes back every line that is
not one of these known notices. Anything else (a missing library, a real device error, a
Python warning) still reaches the terminal, in its order.
"""
import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator, List

# Start-up lines that say nothing about the run, whatever the machine.
BENIGN = tuple(re.compile(pattern) for pattern in (
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"oneDNN custom operations are on",
    r"Could not find cuda drivers on your machine, GPU will not be used",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* in other operations, rebuild TensorFlow",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
))
# The CUDA build's ERROR-level line when it finds no GPU. Benign only where no GPU is expected:
# TensorFlow found no CUDA driver, or CUDA_VISIBLE_DEVICES hides every GPU. On a machine whose
# driver is there, the same line is a real fault and stays.
_CUINIT_FAILED = re.compile(r"failed call to cuInit")
_NO_DRIVER = BENIGN[2]
# Not a start-up line: with op determinism on (--deterministic), making an iterator over a
# parallel map whose function tf.data cannot prove deterministic (a TFDS reader's) rewrites it
# into a sequential MapDataset, and TensorFlow logs at ERROR level that the copied
# `use_unbounded_threadpool` attribute is ignored. The rewrite is what determinism asks for;
# the attribute only chose a thread pool the sequential map does not use.
DETERMINISM_REWRITE = re.compile(
    r"NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition: "
    r"Op<name=MapDataset")
_quiet = False  # set by import_quietly: the log is held back in this process


def kept_lines(text: str, environ=os.environ) -> List[str]:
    """The lines of `text` that are not known start-up notices (blank lines dropped).

    Args:
      text: what TensorFlow wrote to descriptor 2 while starting.
      environ: the environment (CUDA_VISIBLE_DEVICES is read).
    """
    no_gpu_expected = bool(_NO_DRIVER.search(text)) or \
        environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")
    return [line for line in text.splitlines()
            if line.strip() and not any(p.search(line) for p in BENIGN)
            and not (no_gpu_expected and _CUINIT_FAILED.search(line))]


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list]:
    """Descriptor 2 goes to a temporary file inside the block; yields [captured text] after.

    Python's sys.stderr writes to descriptor 2 as well, so its lines land in the same file in
    the order they were written.
    """
    captured = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def import_quietly():
    """Imports TensorFlow and lists its devices with the known start-up notices dropped.

    Listing the physical devices initialises the CUDA platform (where the cuInit line comes
    from) without creating the runtime, so strategies that must configure TensorFlow first
    (MultiWorkerMirroredStrategy, TPUs) still can.

    Returns:
      the tensorflow module.
    """
    global _quiet
    _quiet = True
    error = None
    with _stderr_captured() as captured:
        try:
            import tensorflow as tf
            tf.config.list_physical_devices()
        except BaseException as e:  # noqa: B036  shown below with everything it wrote
            error = e
    # A failed import keeps every line: the notices may be part of what went wrong.
    lines = captured[0].splitlines() if error is not None else kept_lines(captured[0])
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()
    if error is not None:
        raise error
    return tf



@contextlib.contextmanager
def determinism_notice_dropped() -> Iterator[None]:
    """Inside the block, the determinism rewrite's notice (DETERMINISM_REWRITE), which making a
    tf.data pipeline over a TFDS reader writes, is dropped; every other line written there is
    written back after it, in order, also when the block fails. Nothing is held back where
    TensorFlow's whole log was asked for (run.py's SIMCLR_TF_LOG=1 or --verbosity=1 never call
    import_quietly)."""
    if not _quiet:
        yield
        return
    captured = []
    try:
        with _stderr_captured() as captured:
            yield
    finally:
        for line in captured[0].splitlines() if captured else ():
            if line.strip() and not DETERMINISM_REWRITE.search(line):
                print(line, file=sys.stderr)
        sys.stderr.flush()
