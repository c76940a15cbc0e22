"""TensorFlow's start-up notices are dropped, every other line passes through, in order.

The filter gets the lines TensorFlow 2.21 wrote here on a CPU-only machine (copied from its
stderr) plus lines it never writes when healthy. The capture of descriptor 2 is tested in a
child process whose `tensorflow` is a stand-in writing known lines from C-like `os.write(2)`
and from Python, so no real TensorFlow start-up is needed. run.py's own start-up, quiet and
with SIMCLR_TF_LOG=1: tests/program/test_run.py.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stages import startup_log

REPO = Path(__file__).resolve().parents[2]
# What `import tensorflow; tf.config.list_physical_devices()` printed here (2026-12-04).
CPU_ONLY_START = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796413665.608048   11835 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796413665.609095   11835 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796414387.600541   20593 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX_VNNI FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796413681.271081   11835 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
"""  # noqa: E501
REAL = ("E0000 00:00:1796413681.271081   11835 some_kernel.cc:12] Could not open libcudnn.so.9",
        "W0000 00:00:1796413681.271081   11835 env.cc:3] Not enough memory for the pool")


def test_cpu_only_notices_are_dropped_and_other_lines_kept_in_order():
    assert startup_log.kept_lines(CPU_ONLY_START, environ={}) == []
    text = REAL[0] + "\n" + CPU_ONLY_START + "\n" + REAL[1] + "\n"
    assert startup_log.kept_lines(text, environ={}) == list(REAL)


def test_cuinit_failure_is_kept_where_a_gpu_was_expected():
    """A driver was found (no 'Could not find cuda drivers') and no GPU is hidden: cuInit
    failing there is a real fault."""
    cuinit = CPU_ONLY_START.splitlines()[-1]
    assert startup_log.kept_lines(cuinit + "\n", environ={}) == [cuinit]
    assert startup_log.kept_lines(cuinit + "\n", environ={"CUDA_VISIBLE_DEVICES": "0"}) == [cuinit]
    for hidden in ("", "-1"):
        assert startup_log.kept_lines(cuinit, environ={"CUDA_VISIBLE_DEVICES": hidden}) == []


STAND_IN = '''
import os, sys
os.write(2, {notices!r}.encode())
os.write(2, b"{real}\\n")
print("a Python warning", file=sys.stderr)
os.write(2, {preamble!r}.encode())
class config:
    @staticmethod
    def list_physical_devices():
        {devices}
'''


def _run_with_stand_in(tmp_path, devices="return []"):
    package = tmp_path / "tensorflow"
    package.mkdir()
    (package / "__init__.py").write_text(
        STAND_IN.format(notices=CPU_ONLY_START, real=REAL[0], devices=devices,
                        preamble=CPU_ONLY_START.splitlines(keepends=True)[0]))
    script = textwrap.dedent("""
        import sys
        from stages import startup_log
        print("before", file=sys.stderr)
        tf = startup_log.import_quietly()
        print("after, devices:", tf.config.list_physical_devices(), file=sys.stderr)
    """)
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, env={"PYTHONPATH": f"{tmp_path}:{REPO}"})


def test_import_quietly_passes_everything_else_through(tmp_path):
    proc = _run_with_stand_in(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["before", REAL[0], "a Python warning",
                                        "after, devices: []"]


def test_a_failed_start_shows_every_line_and_the_error(tmp_path):
    proc = _run_with_stand_in(tmp_path, devices='raise RuntimeError("no platform")')
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[:3] == ["before", *CPU_ONLY_START.splitlines()[:2]]
    assert REAL[0] in lines and "a Python warning" in lines
    assert lines[-1] == "RuntimeError: no platform"


# What TensorFlow 2.21 wrote here when a pipeline over Fashion-MNIST's TFDS reader was made with
# op determinism on (2026-12-04, truncated).
REWRITE_NOTICE = ("E0000 00:00:1796423143.430142    6579 node_def_util.cc:682] NodeDef mentions "
                  "attribute use_unbounded_threadpool which is not in the op definition: "
                  "Op<name=MapDataset; signature=input_dataset:variant, other_arguments: -> handle")


def test_the_determinism_notice_alone_is_dropped_in_order(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(startup_log, "_quiet", True)
    with startup_log.determinism_notice_dropped():
        os.write(2, f"{REAL[0]}\n{REWRITE_NOTICE}\n{REAL[1]}\n".encode())
    assert capfd.readouterr().err.splitlines() == [REAL[0], REAL[1]]
    with pytest.raises(RuntimeError, match="dataset failed"):  # a failing block keeps its lines
        with startup_log.determinism_notice_dropped():
            os.write(2, f"{REWRITE_NOTICE}\n{REAL[1]}\n".encode())
            raise RuntimeError("dataset failed")
    assert capfd.readouterr().err.splitlines() == [REAL[1]]
    monkeypatch.setattr(startup_log, "_quiet", False)  # the whole log asked for: all of it
    with startup_log.determinism_notice_dropped():
        os.write(2, f"{REWRITE_NOTICE}\n".encode())
    assert capfd.readouterr().err.splitlines() == [REWRITE_NOTICE]


DETERMINISTIC_PIPELINES = """
import os, sys
import tensorflow as tf
from data import datasets, pipeline
from data.config import DataConfig
from stages import startup_log
tf.config.experimental.enable_op_determinism()
source = datasets.load(DataConfig(dataset="fashion_mnist", data_dir=sys.argv[1]))
cfg = DataConfig.tiny(dataset="fashion_mnist", data_dir=sys.argv[1], image_size=16)
startup_log._quiet = True  # as after run.py's import_quietly
def made(mark):
    sys.stderr.flush()
    os.write(2, mark.encode() + b"\\n")
made("plain")
pipeline.eval_input_fn(source, cfg, 16)(tf.distribute.InputContext())
made("dropped")
with startup_log.determinism_notice_dropped():
    pipeline.eval_input_fn(source, cfg, 16)(tf.distribute.InputContext())
made("end")
"""


def test_a_deterministic_tfds_pipeline_is_made_without_the_notice(tmp_path_factory):
    """The real TensorFlow: making the test split's pipeline with op determinism writes the
    notice (the check can fail), and inside the block it does not."""
    data_dir = str(tmp_path_factory.getbasetemp() / "tfds")  # shared with tests/data
    proc = subprocess.run([sys.executable, "-c", DETERMINISTIC_PIPELINES, data_dir], cwd=REPO,
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    plain, dropped, end = (lines.index(m) for m in ("plain", "dropped", "end"))
    assert any(startup_log.DETERMINISM_REWRITE.search(l) for l in lines[plain:dropped]), lines
    assert not any(startup_log.DETERMINISM_REWRITE.search(l) for l in lines[dropped:end]), lines
