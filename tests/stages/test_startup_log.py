"""TensorFlow's start-up notices are dropped, every other line passes through, in order.

The filter gets the lines TensorFlow 2.21 wrote here on a CPU-only machine (copied from its
stderr) plus lines it never writes when healthy. The capture of descriptor 2 is tested in a
child process whose `tensorflow` is a stand-in writing known lines from C-like `os.write(2)`
and from Python, so no real TensorFlow start-up is needed. run.py's own start-up, quiet and
with SIMCLR_TF_LOG=1: tests/program/test_run.py.
"""
import subprocess
import sys
import textwrap
from pathlib import Path

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
