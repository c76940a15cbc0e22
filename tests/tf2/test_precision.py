"""--precision=auto: the choice on canned hardware descriptions, and that detection never fails."""
import pytest
import tensorflow as tf

from tf2 import distribute, precision

# Abridged /proc/cpuinfo texts of real CPUs (the flags lines as the kernel prints them).
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
processor\t: 1
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""
ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512_bf16 clzero avx512vbmi avx512_vnni
"""
SKYLAKE = """processor\t: 0
model name\t: Intel(R) Xeon(R) CPU @ 2.00GHz
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni
"""
ZEN3 = """processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx avx2 fma bmi2 sha_ni vaes
"""
# Flags whose names merely contain the feature names must not count.
LOOKALIKE = "model name\t: Some CPU\nflags\t\t: xamx_bf16 avx512_bf16x bf16\n"


@pytest.mark.parametrize("text, policy, named", [
    (SAPPHIRE_RAPIDS, "mixed_bfloat16", "amx_bf16, avx512_bf16"),
    (ZEN4, "mixed_bfloat16", "avx512_bf16"),
    (SKYLAKE, "float32", "no native bfloat16"),
    (ZEN3, "float32", "no native bfloat16"),
    (LOOKALIKE, "float32", "no native bfloat16"),
    ("", "float32", "no native bfloat16"),
    ("garbage without colons\n\x00\xff", "float32", "no native bfloat16"),
    (None, "float32", "could not be read"),
])
def test_auto_on_cpus(text, policy, named):
    choice = precision.choose("auto", "cpu", cpuinfo_text=text)
    assert choice.policy == policy
    assert named in choice.reason and choice.reason.startswith("auto:")


def test_cpu_model_and_flags_of_the_first_processor():
    assert precision.cpu_model(SAPPHIRE_RAPIDS).startswith("Intel(R) Xeon(R) Platinum 8481C")
    assert precision.cpu_model(ZEN3) == "AMD EPYC 7B13"
    assert precision.cpu_model("") == ""
    assert precision.native_bf16_cpu_flags(ZEN4) == ("avx512_bf16",)
    assert precision.native_bf16_cpu_flags(SKYLAKE) == ()


@pytest.mark.parametrize("caps, policy", [
    ([(8, 0)], "mixed_bfloat16"), ([(9, 0), (8, 6)], "mixed_bfloat16"),
    ([(7, 5)], "float32"), ([(8, 0), (7, 0)], "float32"),  # every GPU of the step must have it
    ([None], "float32"), ([], "float32"),
])
def test_auto_on_gpus(caps, policy):
    assert precision.choose("auto", "gpu", gpu_capabilities=caps).policy == policy


def test_auto_never_picks_float16_and_tpus_get_bfloat16():
    assert precision.choose("auto", "tpu").policy == "mixed_bfloat16"
    assert "mixed_float16" in precision.choose("auto", "gpu", gpu_capabilities=[(7, 0)]).reason


@pytest.mark.parametrize("explicit", precision.POLICIES)
def test_explicit_values_are_kept_whatever_the_hardware(explicit):
    for kind, text in (("cpu", SKYLAKE), ("cpu", ZEN4), ("tpu", None)):
        assert precision.choose(explicit, kind, cpuinfo_text=text).policy == explicit


def test_detect_on_this_machine_agrees_with_its_cpuinfo():
    """An independent reading of /proc/cpuinfo: any processor line with a native flag."""
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        pytest.skip("no /proc/cpuinfo on this system")
    native = bool(words & {"amx_bf16", "avx512_bf16"})
    expected = "mixed_bfloat16" if native else "float32"
    for strategy in (distribute.make_strategy("one_device"), tf.distribute.MirroredStrategy(
            ["/cpu:0", "/cpu:1"]), tf.distribute.get_strategy()):
        assert precision.device_kind(strategy) == "cpu"
        assert precision.detect("auto", strategy).policy == expected


def test_detect_never_raises():
    class Broken:  # a strategy whose device list cannot be read
        @property
        def extended(self):
            raise ValueError("no devices")

    choice = precision.detect("auto", Broken())
    assert choice.policy == "float32" and "ValueError" in choice.reason


@pytest.mark.parametrize("args, kind, warns", [
    (["--jit_compile"], "cpu", True),
    (["--jit_compile", "--jit_compile_on_cpu"], "cpu", False),  # the user insists
    (["--jit_compile"], "gpu", False), (["--jit_compile"], "tpu", False),
    ([], "cpu", False),
])
def test_jit_compile_warns_on_cpus_unless_insisted(run_flags, args, kind, warns):
    from flags import validate
    warning = validate.jit_warning(run_flags(*args), kind)
    assert (warning is not None) == warns
    if warns:
        assert "--jit_compile_on_cpu" in warning and "slower" in warning


def test_precision_defaults_to_auto(run_flags):
    assert run_flags().precision == "auto"
