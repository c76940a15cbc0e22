"""Precision through run.py: auto's choice is announced and recorded, bfloat16 learns like
float32 in every stage, the SavedModel stays float32, XLA on a CPU warns.

Each bfloat16 run is the twin of a float32 run of tests/program/conftest.py: same flags, same
seeds, same start (pretrain: random weights; fine-tune: the float32 pretrain SavedModel;
distill: the float32 fine-tuned teacher). After the same number of steps their losses and
accuracies must agree within the tolerances below; bfloat16 keeps 8 significant bits, and a
loss computed from bfloat16 activations moves by about 1% per step relative to float32 here.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from stages import summaries

runs = pytest.mark.runs
LOSS_RTOL = 0.05      # |bf16 - fp32| / fp32 of a loss after the same steps
ACCURACY_ATOL = 0.15  # of an accuracy on the batches of the last loop / the toy test split


def _json(path):
    return json.loads(Path(path).read_text())


def _native_bf16_here():
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(words & {"amx_bf16", "avx512_bf16"})


def _last(model_dir, tag):
    return summaries.read_scalars(str(model_dir))[tag][-1]


def _assert_twins(fp32_dir, bf16_dir, losses, accuracies):
    for tag in losses:
        (s32, v32), (s16, v16) = _last(fp32_dir, tag), _last(bf16_dir, tag)
        assert s32 == s16 and np.isfinite(v16), tag
        assert v16 == pytest.approx(v32, rel=LOSS_RTOL), tag
    for tag in accuracies:
        assert _last(bf16_dir, tag)[1] == pytest.approx(_last(fp32_dir, tag)[1],
                                                        abs=ACCURACY_ATOL), tag


@runs("auto")
def test_auto_choice_in_banner_and_config_json(runs):
    result = runs.result("auto").check()
    expected = "mixed_bfloat16" if _native_bf16_here() else "float32"
    config = _json(Path(result.model_dir) / "config.json")
    assert config["precision"] == expected
    assert config["precision_reason"].startswith("auto:")
    line, = [l for l in result.stdout.splitlines() if l.startswith("precision:")]
    assert expected in line and config["precision_reason"] in line
    # An explicit value is kept and said to be explicit.
    pretrain = _json(Path(runs.result("pretrain").check().model_dir) / "config.json")
    assert pretrain["precision"] == "float32"
    assert pretrain["precision_reason"] == "--precision=float32 was given"


def _mean_of_last(model_dir, tag, loops=2):
    return float(np.mean([v for _, v in summaries.read_scalars(model_dir)[tag][-loops:]]))


@runs("toy_pretrain", "toy_pretrain_bf16")
def test_bfloat16_pretraining_learns_like_float32(runs):
    """24 steps of ResNet-18 x0.5 on the toy folder: measured contrastive loss 6.85 -> 5.82
    (float32) and 6.84 -> 5.77 (bfloat16), means of the last two loops 0.8% apart; the
    linear-evaluation monitor's accuracy 0.98 in both."""
    fp32, bf16 = runs.result("toy_pretrain").check(), runs.result("toy_pretrain_bf16").check()
    loss = {}
    for name, result in (("fp32", fp32), ("bf16", bf16)):
        first = summaries.read_scalars(result.model_dir)["train/contrast_loss"][0][1]
        loss[name] = _mean_of_last(result.model_dir, "train/contrast_loss")
        assert loss[name] < first - 0.3, (name, first, loss[name])  # it learns in both
        assert _mean_of_last(result.model_dir, "monitor/linear_eval_acc") > 0.8, name
    assert loss["bf16"] == pytest.approx(loss["fp32"], rel=LOSS_RTOL)
    acc = [_mean_of_last(r.model_dir, "monitor/linear_eval_acc") for r in (fp32, bf16)]
    assert acc[1] == pytest.approx(acc[0], abs=ACCURACY_ATOL)
    # Variables, batch-norm statistics included, stay float32.
    dtypes = tf.train.load_checkpoint(bf16.model_dir + "/ckpt-24").get_variable_to_dtype_map()
    assert {d for k, d in dtypes.items() if k.startswith("model/")} == {tf.float32}


@runs("toy_finetune", "toy_finetune_bf16")
def test_bfloat16_finetuning_learns_the_toy_set_like_float32(runs):
    fp32 = runs.result("toy_finetune").check()
    bf16 = runs.result("toy_finetune_bf16").check()
    _assert_twins(fp32.model_dir, bf16.model_dir, [], ["train/supervised_acc"])
    loss32 = [v for _, v in summaries.read_scalars(fp32.model_dir)["train/supervised_loss"]]
    loss16 = [v for _, v in summaries.read_scalars(bf16.model_dir)["train/supervised_loss"]]
    # Step 0 from a zero head is ln 2 in both; then both fall to under half of it.
    assert loss16[0] == pytest.approx(loss32[0], rel=1e-3)
    assert np.mean(loss16[-3:]) < 0.5 * loss16[0] and np.mean(loss32[-3:]) < 0.5 * loss32[0]
    assert abs(np.mean(loss16[-3:]) - np.mean(loss32[-3:])) < 0.1 * loss32[0]


@runs("toy_distill", "toy_distill_bf16")
def test_bfloat16_distillation_learns_like_float32_and_exports_float32(runs):
    fp32 = runs.result("toy_distill").check()
    bf16 = runs.result("toy_distill_bf16").check()
    _assert_twins(fp32.model_dir, bf16.model_dir, ["train/distill_loss"],
                  ["train/teacher_agreement"])
    for result in (fp32, bf16):  # the student learnt to agree with its teacher in both
        assert _mean_of_last(result.model_dir, "train/teacher_agreement") > 0.9
    top1 = [_json(Path(r.model_dir) / "result.json")["top1"] for r in (fp32, bf16)]
    assert top1[1] == pytest.approx(top1[0], abs=ACCURACY_ATOL), top1
    # Evaluation and export keep float32 in and out; the outputs match the float32 twin's.
    images = tf.random.stateless_uniform([4, 16, 16, 3], [1, 2])
    outputs = []
    for result in (fp32, bf16):
        module = tf.saved_model.load(f"{result.model_dir}/saved_model/16")
        spec = module.signatures["serving_default"].structured_input_signature[1]["images"]
        assert spec.dtype == tf.float32
        out = module(images, trainable=False)
        assert {v.dtype for v in out.values()} == {tf.float32}
        outputs.append(tf.nn.softmax(out["logits_sup"]).numpy())
    np.testing.assert_allclose(outputs[1], outputs[0], atol=ACCURACY_ATOL)


@runs("jit")
def test_jit_compile_on_a_cpu_warns(runs):
    """Through run.py; the flags that silence it: tests/tf2/test_precision.py."""
    warned = [l for l in runs.result("jit").check().stderr.splitlines()
              if l.startswith("warning: --jit_compile on a CPU")]
    assert len(warned) == 1 and "--jit_compile_on_cpu" in warned[0]
