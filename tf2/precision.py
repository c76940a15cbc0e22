"""Compute precision: which Keras mixed-precision policy the hardware runs fastest.

`--precision=auto` (the default) resolves here to mixed bfloat16 where the hardware computes
bfloat16 natively and to float32 everywhere else. Native means: a TPU; a GPU of compute
capability 8.0 or more (Ampere and later); an x86 CPU whose flags include `amx_bf16` (Intel
AMX) or `avx512_bf16` (Intel Cooper Lake and later, AMD Zen 4 and later), where oneDNN runs
the convolutions and matmuls in bfloat16. On a CPU without them TensorFlow emulates bfloat16
and the step is slower than float32 (measured, README "Speed"). mixed_float16 is never chosen
automatically: it needs loss scaling and only pays on older GPUs, so it stays explicit.

Detection never fails a run: whatever cannot be read counts as "not native", i.e. float32.
Variables, losses, softmax and batch-norm statistics stay float32 under either mixed policy.
"""
import dataclasses
import platform
from typing import Iterable, Optional, Sequence, Tuple

AUTO = "auto"
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
# x86 /proc/cpuinfo flags of native bfloat16 arithmetic, best first.
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
MIN_BF16_GPU_CAPABILITY = (8, 0)


@dataclasses.dataclass(frozen=True)
class Choice:
    """A resolved precision and why it was chosen (for the banner and config.json)."""
    policy: str
    reason: str


def cpu_flags(cpuinfo_text: str) -> Tuple[str, ...]:
    """The feature flags of the first processor in a /proc/cpuinfo text (x86 `flags`)."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return tuple(value.split())
    return ()


def cpu_model(cpuinfo_text: str) -> str:
    """The `model name` of the first processor, or '' when the text has none."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return ""


def native_bf16_cpu_flags(cpuinfo_text: str) -> Tuple[str, ...]:
    """Which of NATIVE_BF16_CPU_FLAGS the CPU has (empty: no native bfloat16)."""
    flags = set(cpu_flags(cpuinfo_text))
    return tuple(f for f in NATIVE_BF16_CPU_FLAGS if f in flags)


def choose(requested: str, device_kind: str, cpuinfo_text: Optional[str] = None,
           gpu_capabilities: Sequence[Optional[Tuple[int, int]]] = ()) -> Choice:
    """Resolves `requested` for the hardware described by the other arguments.

    Args:
      requested: 'auto' or one of POLICIES (an explicit value is returned as it is).
      device_kind: 'tpu', 'gpu' or 'cpu': where the step runs.
      cpuinfo_text: the text of /proc/cpuinfo (None: unknown).
      gpu_capabilities: (major, minor) compute capability of each GPU the step uses; None
        for one that could not be read.

    Returns:
      the Choice; an unknown or unreadable description gives float32.
    """
    if requested != AUTO:
        return Choice(requested, f"--precision={requested} was given")
    if device_kind == "tpu":
        return Choice("mixed_bfloat16", "auto: TPUs compute bfloat16 natively")
    if device_kind == "gpu":
        caps = list(gpu_capabilities)
        if caps and all(c is not None and tuple(c) >= MIN_BF16_GPU_CAPABILITY for c in caps):
            shown = ", ".join(f"{c[0]}.{c[1]}" for c in caps)
            return Choice("mixed_bfloat16",
                          f"auto: GPU compute capability {shown} >= 8.0 computes bfloat16")
        return Choice("float32", "auto: GPU without native bfloat16 (compute capability < 8.0 "
                      "or unknown); --precision=mixed_float16 may be faster there")
    native = native_bf16_cpu_flags(cpuinfo_text or "")
    if native:
        return Choice("mixed_bfloat16",
                      f"auto: this CPU computes bfloat16 natively ({', '.join(native)})")
    if cpuinfo_text is None:
        return Choice("float32", "auto: the CPU's features could not be read")
    return Choice("float32", "auto: this CPU has no native bfloat16 (no amx_bf16 or "
                  "avx512_bf16), where bfloat16 is slower than float32")


def read_cpuinfo(path: str = "/proc/cpuinfo") -> Optional[str]:
    """The text of /proc/cpuinfo, or None where there is none (macOS, Windows) or on error."""
    if platform.system() != "Linux":
        return None
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _gpu_capabilities(devices: Iterable) -> list:
    import tensorflow as tf
    caps = []
    for device in devices:
        try:
            caps.append(tuple(tf.config.experimental.get_device_details(device)
                              ["compute_capability"]))
        except Exception:  # noqa: BLE001 -- detection must never fail a run
            caps.append(None)
    return caps


def device_kind(strategy) -> str:
    """'tpu', 'gpu' or 'cpu': where `strategy` runs its replicas."""
    import tensorflow as tf
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    try:
        devices = tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list: where ops go by default
        devices = tuple(d.name for d in tf.config.list_logical_devices("GPU"))
    return "gpu" if any("GPU" in d.upper() for d in devices) else "cpu"


def detect(requested: str, strategy) -> Choice:
    """`choose` for this machine and `strategy`; never raises (unknown means float32)."""
    if requested != AUTO:
        return choose(requested, "cpu")
    try:
        kind = device_kind(strategy)
        if kind == "gpu":
            import tensorflow as tf
            return choose(requested, kind,
                          gpu_capabilities=_gpu_capabilities(
                              tf.config.list_physical_devices("GPU")))
        return choose(requested, kind, cpuinfo_text=read_cpuinfo())
    except Exception as e:  # noqa: BLE001 -- detection must never fail a run
        return Choice("float32", f"auto: hardware detection failed ({type(e).__name__}); "
                      "float32 is the safe choice")
