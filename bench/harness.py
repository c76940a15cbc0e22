"""What every benchmark shares: the machine it ran on, one child process per measurement, and
the JSON it writes.

Benchmarks run as modules from the repository root (`python -m bench.throughput`), so the
project's packages import without touching sys.path; a child is the same module again.
"""
import json
import os
import subprocess
import sys
from typing import Dict, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine() -> dict:
    """The CPU model, its core count and its bfloat16 support (AVX512-BF16, AMX), from
    /proc/cpuinfo, and what --precision=auto picks on it: speed figures from two CPUs are
    not comparable, so every JSON carries this."""
    import platform

    from tf2 import precision
    text = precision.read_cpuinfo() or ""
    flags = set(precision.cpu_flags(text))
    return {"model": precision.cpu_model(text) or platform.processor() or "unknown",
            "cpu_count": os.cpu_count(),
            "bf16_flags": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
            "native_bf16": bool(precision.native_bf16_cpu_flags(text)),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "amx_tile": "amx_tile" in flags,
            "auto_precision": precision.choose("auto", "cpu", text or None).policy}


def child_row(module: str, args: Sequence[str], fallback: dict,
              env: Optional[Dict[str, str]] = None) -> dict:
    """Runs `python -m module *args` in a fresh process (its own peak memory) from the
    repository root; returns the last JSON line it printed, or `fallback` with the last line
    of its stderr under 'error'."""
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    return {**fallback, "error": (out.stderr.strip().splitlines() or ["no output"])[-1]}


def cpu_slug(machine_row: dict) -> str:
    """A file-name word for the CPU: its model and its native bfloat16 kind, e.g.
    'amd_epyc_avx512bf16' or 'intel_xeon_amx' (figures of two CPUs are never compared)."""
    import re
    model = re.sub(r"[^a-z0-9]+", "_", machine_row["model"].lower()).strip("_")[:40]
    kind = ("amx" if machine_row["amx_bf16"] else
            "avx512bf16" if machine_row["avx512_bf16"] else "nobf16")
    return f"{model}_{kind}"


def commit() -> str:
    """The repository's short commit hash ('unknown' outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def read_json(path: str):
    """The JSON at `path`, or None when there is no file."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_json(path: str, obj) -> None:
    """Writes `obj` to `path` (folders made), atomically: a half-written file never looks
    finished."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)
