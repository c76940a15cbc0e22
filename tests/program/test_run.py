"""run.py as a user calls it: pretrain -> finetune -> distill -> eval, resume, errors, monitoring.

The runs themselves are jobs of tests/program/conftest.py (started in the background at the
beginning of the session); these tests check what the runs printed and wrote, against numbers
computed here: the learning-rate schedule, ln(10) for a zero-initialised head, the checkpoint
of an uninterrupted run, the files of the last good checkpoint.
"""
import dataclasses
import hashlib
import json
import math
import os
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from flags import validate
from stages import startup_log, summaries
from tests import hang_guard

runs = pytest.mark.runs
REPO = Path(__file__).resolve().parents[2]
TRAIN_TAGS = ("train/contrast_loss", "train/contrast_acc", "train/contrast_entropy",
              "train/learning_rate", "train/total_loss", "train/weight_decay",
              "train/images_per_second", "monitor/linear_eval_loss", "monitor/linear_eval_acc")
# TensorFlow's C++ log: lines written before absl's logging is set up ('E0000 00:00:1796413681
# .271081 ... failed call to cuInit') and the preamble announcing them.
TF_LOG_LINE = re.compile(r"^([IWEF]0000 00:00:|WARNING: All log messages before absl::)")


def _tf_lines(stderr: str):
    return [l for l in stderr.splitlines() if TF_LOG_LINE.match(l)]


@pytest.fixture(autouse=True)
def _start_runs_first(request):
    """Starts the runs with this module's first test, so that the quick tests overlap them.

    Only here: the multi-worker tests beside this file time their processes and must not
    share the two cores with these runs.
    """
    if any(item.get_closest_marker("runs") for item in request.session.items):
        request.getfixturevalue("runs")


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _scalars(logdir, tag):
    return summaries.read_scalars(str(logdir))[tag]


def _json(path):
    return json.loads(Path(path).read_text())


def _check_eval_result(model_dir, step, num_examples):
    result = _json(Path(model_dir) / "result.json")
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert (result["num_examples"], result["global_step"]) == (num_examples, step)
    # eval/top1 in TensorBoard is the same number (float32).
    assert _scalars(Path(model_dir) / "eval", "eval/top1")[-1] == pytest.approx(
        (step, result["top1"]), abs=1e-7)
    return result


# --- bad flags: exit 2, one line naming the flag, no traceback --------------------------------

@pytest.mark.parametrize("args, named", [
    (["--sk_ratio=1.5"], "--sk_ratio=1.5"),
    (["--label_fraction=0"], "--label_fraction=0"),
    (["--train_mode=finetune"], "--checkpoint="),
    (["--train_mode=distill"], "--teacher="),
    (["--image_size=4"], "--image_size=4"),
    (["--image_size=1024"], "--image_size=1024 with Gaussian blur"),
    (["--image_size=4096", "--use_blur"], "--use_blur=false"),
    (["--ft_proj_selector=5"], "--ft_proj_selector=5"),
    (["--resnet_depth=19"], "--resnet_depth=19"),
    (["--train_steps=abc"], "--train_steps=abc"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--mode=eval", "--model_dir={tmp}/missing"], "--model_dir="),
    (["--train_mode=finetune", "--checkpoint={tmp}/missing"], "--checkpoint="),
    (["--dataset=no_such_set", "--data_dir={tmp}"], "--dataset=no_such_set"),
    (["--crop_area_range=0,1"], "--crop_area_range=0,1"),
    (["--crop_area_range=0.6,0.3"], "--crop_area_range=0.6,0.3"),
    (["--crop_area_range=0.2,1.5"], "--crop_area_range=0.2,1.5"),
    (["--crop_area_range=abc"], "--crop_area_range=abc"),
    (["--crop_area_range=0.05,0.1"], "--crop_area_range=0.05,0.1: no crop could be drawn"),
    (["--crop_area_range=0.12,0.12"], "--crop_area_range=0.12,0.12: no crop could be drawn"),
    (["--holdout_fraction=1"], "--holdout_fraction=1"),
    (["--eval_split=holdout", "--mode=train_then_eval"], "--eval_split=holdout"),
    (["--knn_k=0"], "--knn_k=0"),
    (["--knn_every_steps=-1"], "--knn_every_steps=-1"),
    (["--width_multiplier=0.01"], "--width_multiplier=0.01: too thin, the stem would get "
     "round(64 x 0.01) = 1 channels; the rule is round(64 x w) >= 2, so use at least 0.0235"),
    (["--train_batch_size=1"], "--train_batch_size=1 in pretraining without a memory"),
    # 256 images x 2 views x 100000^2 px x 3 channels x 4 bytes, more than any machine here.
    (["--image_size=100000", "--use_blur=false"], "--image_size=100000 with "
     "--train_batch_size=256: one batch (256 images x 2 views on this host at 100000 x 100000 "
     f"px) needs at least {256 * 2 * 100000 ** 2 * 3 * 4 / 2 ** 30:,.1f} GiB"),
])
def test_bad_flag_exits_2_with_one_line_naming_it(args, named, tmp_path):
    args = [a.format(tmp=tmp_path) for a in args]
    proc = hang_guard.run([sys.executable, str(REPO / "run.py"), *args], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and named in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "runs").exists()  # no run directory was made


def test_the_smallest_width_and_the_memory_floor_are_where_the_messages_say(run_flags):
    """0.0235 is the first round number with round(64 w) >= 2; a batch whose float32 pixels
    fit in memory passes, one a pixel row larger per side does not."""
    assert round(64 * validate.MIN_WIDTH) == 2 and round(64 * (validate.MIN_WIDTH - 1e-4)) == 1
    validate._check_model(run_flags(f"--width_multiplier={validate.MIN_WIDTH}"))
    memory = validate.memory_bytes()
    side = int((memory / (8 * 2 * 3 * 4)) ** 0.5)  # 8 images x 2 views x 3 x 4 bytes <= memory
    validate._check_memory(run_flags(f"--image_size={side}", "--train_batch_size=8"))
    with pytest.raises(validate.FlagError, match=f"--image_size={side + 1} with "
                       "--train_batch_size=8: "):
        validate._check_memory(run_flags(f"--image_size={side + 1}", "--train_batch_size=8"))
    # Evaluation reads one view per image, at --eval_batch_size (15 x 1 < 8 x 2 views).
    validate._check_memory(run_flags("--mode=eval", f"--image_size={side + 1}",
                                     "--eval_batch_size=15", "--train_batch_size=100000"))


def test_a_bad_flagfile_line_names_the_file_and_line(tmp_path):
    (tmp_path / "unknown.cfg").write_text("# the paper's setting\n--resnet_depth=50\n"
                                          "--no_such_flag=1\n")
    (tmp_path / "value.cfg").write_text("--resnet_depth=abc\n")
    (tmp_path / "nested.cfg").write_text("--flagfile=value.cfg\n")
    (tmp_path / "dashes.cfg").write_text("--width_multiplier=1\nresnet_depth=50\n")
    for name, line, text in [("unknown.cfg", 3, "--no_such_flag=1"),
                             ("nested.cfg", None, "--resnet_depth=abc"),
                             ("dashes.cfg", 2, "resnet_depth=50")]:
        proc = hang_guard.run([sys.executable, str(REPO / "run.py"), f"--flagfile={name}"],
                              cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        (error,) = _error_lines(proc.stderr)
        where = f"(flagfile {name}, line {line}: {text})" if line else \
            f"(flagfile value.cfg, line 1: {text})"  # the nested file that holds it
        assert where in error, error
    # The same value typed on the command line is not blamed on the flagfile.
    proc = hang_guard.run([sys.executable, str(REPO / "run.py"), "--flagfile=value.cfg",
                           "--resnet_depth=abc"], cwd=tmp_path, capture_output=True, text=True)
    assert "flagfile" not in _error_lines(proc.stderr)[0]


def test_batch_must_divide_over_replicas():
    validate.check_batch_divides(16, 2)
    with pytest.raises(validate.FlagError, match=r"--train_batch_size=16 .* 3 replicas"):
        validate.check_batch_divides(16, 3)
    with pytest.raises(validate.FlagError, match=r"--eval_batch_size=10 "):
        validate.check_batch_divides(10, 4, "eval_batch_size")


# --- stage 1: pretrain --------------------------------------------------------------------------

@runs("pretrain")
def test_pretrain_writes_checkpoints_export_configs_and_next_command(runs):
    result = runs.result("pretrain").check()
    model_dir = Path(result.model_dir)
    for name in ("ckpt-4.index", "ckpt-8.index", "ckpt-8.data-00000-of-00001", "checkpoint",
                 "saved_model/8/saved_model.pb", "config.json", "flags.json"):
        assert (model_dir / name).is_file(), name
    assert list(model_dir.glob("events.out.tfevents.*"))
    config = _json(model_dir / "config.json")
    assert (config["train"]["train_steps"], config["model"]["resnet_depth"]) == (8, 18)
    assert (config["head"]["proj_out_dim"], config["train_mode"]) == (16, "pretrain")
    # The real class count and the class names (Fashion-MNIST's, in label order) are recorded.
    from data import fashion_mnist
    assert config["head"]["num_classes"] == 10
    assert config["class_names"] == list(fashion_mnist.CLASS_NAMES)
    assert _json(model_dir / "flags.json")["train_steps"] == 8
    assert tf.train.load_checkpoint(str(model_dir / "ckpt-8")).get_tensor(
        "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 8
    # The next stage fine-tunes this run, with the data and network flags the user gave.
    nxt = result.next_args()
    assert nxt[:2] == ["--train_mode=finetune", f"--checkpoint={model_dir}"]
    for flag in (f"--data_dir={runs.data_dir}", "--resnet_depth=18", "--proj_out_dim=16",
                 "--image_size=16", "--deterministic", "--train_split=train[:2000]"):
        assert flag in nxt
    assert not any(a.startswith(("--train_steps", "--warmup_epochs", "--mode")) for a in nxt)
    # After the full bar, what takes the time is said (no silence), then the report once.
    lines = result.stdout.splitlines()
    last_step = max(i for i, l in enumerate(lines) if l.startswith("step "))
    assert lines[last_step].startswith("step 8/8")
    assert "linear_eval_acc" in lines[last_step] and "supervised" not in lines[last_step]
    assert lines[last_step + 1:last_step + 3] == [
        f"Saving the checkpoint of step 8 in {model_dir} ...",
        f"Exporting the SavedModel of step 8 to {model_dir}/saved_model/8 ..."]
    assert result.lines_starting("model_dir") == [str(model_dir)]  # the banner's, not repeated
    assert result.lines_starting("SavedModel") == [f"{model_dir}/saved_model/8"]
    # --mode=train takes the training lock only, and leaves no evaluation lock behind.
    assert sorted(p.name for p in model_dir.glob(".*.lock")) == [".train.lock"]
    # A healthy CPU-only run with --deterministic: no TensorFlow line ('E0000 ... cuInit', the
    # determinism rewrite's 'E0000 ... use_unbounded_threadpool') on stderr.
    assert _tf_lines(result.stderr) == [], result.stderr


def _learning_rate(step, peak=0.1 * math.sqrt(16), warmup=2, total=8):
    """Paper Sec. 3.1: linear warm-up, then cosine decay to 0 (computed here, independently)."""
    if step < warmup:
        return peak * step / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


@runs("pretrain")
def test_pretrain_tensorboard_scalars_image_grid_and_hparams(runs):
    model_dir = runs.result("pretrain").check().model_dir
    scalars = summaries.read_scalars(model_dir)
    for tag in TRAIN_TAGS:
        assert [s for s, _ in scalars[tag]] == [2, 4, 6, 8], tag
    # The linear-evaluation head is a monitor: its metrics are not filed as training ones.
    assert not [tag for tag in scalars if tag.startswith("train/supervised")]
    values = {tag.split("/")[1]: np.array([v for _, v in scalars[tag]]) for tag in TRAIN_TAGS}
    # Each point is the mean over the loop's two steps of the rate applied at that step.
    expected = [np.mean([_learning_rate(s), _learning_rate(s + 1)]) for s in (0, 2, 4, 6)]
    np.testing.assert_allclose(values["learning_rate"], expected, rtol=1e-6)
    # As in the original, the total adds the monitor's loss (its gradient reaches the head only).
    np.testing.assert_allclose(values["total_loss"], values["contrast_loss"]
                               + values["linear_eval_loss"] + values["weight_decay"], rtol=1e-5)
    for accuracy in ("contrast_acc", "linear_eval_acc"):
        assert np.all((values[accuracy] >= 0) & (values[accuracy] <= 1))
    # Entropy of a softmax over the 2*16 - 1 other views of a batch of 16.
    assert np.all((values["contrast_entropy"] > 0) & (values["contrast_entropy"] <= np.log(31)))
    assert np.all((values["weight_decay"] > 0) & (values["weight_decay"] < 1e-2))
    assert np.all(values["images_per_second"] > 0)

    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    acc = event_accumulator.EventAccumulator(model_dir, size_guidance={"tensors": 0})
    acc.Reload()
    # 16 images of the first batch, two 16x16 views side by side, tiled 4x4 with 1-px gaps.
    (image,) = acc.Tensors("augmented_views")
    width, height, png = tf.make_ndarray(image.tensor_proto)
    assert (image.step, int(width), int(height)) == (0, 4 * 32 + 3, 4 * 16 + 3)
    grid = tf.io.decode_png(png).numpy()
    assert grid.shape == (67, 131, 3) and np.all(grid[16] == 255) and grid[:16, :32].std() > 0
    meta = acc.SummaryMetadata("_hparams_/session_start_info")
    info = plugin_data_pb2.HParamsPluginData.FromString(meta.plugin_data.content)
    hparams = info.session_start_info.hparams
    assert hparams["train.train_batch_size"].number_value == 16
    assert hparams["train_mode"].string_value == "pretrain"


@runs("pretrain")
def test_warm_start_copies_encoder_and_projection_head_only(runs):
    """Stage 2 starts from the pretrained f(.) and g(.), and a fresh (zero) supervised head."""
    import keras
    from checkpoints import warm_start
    from data.config import DataConfig
    from tf2 import config as config_lib
    from stages import finetune, pretrain
    keras.mixed_precision.set_global_policy("float32")
    model_dir = Path(runs.result("pretrain").check().model_dir)
    cfg = config_lib.load_run_config(str(model_dir / "config.json"), data=DataConfig())
    reference, _ = pretrain.build(cfg, 10)  # the oracle: TensorFlow's own full restore
    tf.train.Checkpoint(model=reference).read(str(model_dir / "ckpt-8")).expect_partial() \
        .assert_existing_objects_matched()
    saved = {v.path: v.numpy() for v in reference.variables}
    head = dataclasses.replace(cfg.head, ft_proj_selector=1, zero_init_logits_layer=True)
    ft_cfg = dataclasses.replace(cfg, train_mode="finetune", head=head)
    for source in (model_dir, model_dir / "saved_model" / "8"):
        model, _ = finetune.build(ft_cfg, 10)
        warm_start.warm_start(model, str(source))
        copied = model.encoder.variables + model.projection_head.variables
        assert len(copied) > 100
        for v in copied:
            np.testing.assert_array_equal(v.numpy(), saved[v.path], err_msg=v.path)
        assert model.supervised_head.variables[0].shape == (512, 10)
        for v in model.supervised_head.variables:
            assert not np.any(v.numpy()), f"{source}: {v.path} is not fresh"


# --- stage 2: finetune ------------------------------------------------------------------------

@runs("finetune")
def test_finetune_from_pretrain_model_dir_as_printed(runs):
    result = runs.result("finetune").check()
    model_dir = Path(result.model_dir)
    assert (model_dir / "saved_model/4/saved_model.pb").is_file()
    assert (model_dir / "ckpt-4.index").is_file()
    # A zero-initialised head gives uniform probabilities over the 10 classes at step 0:
    # the first step's loss is ln(10) exactly (steps_per_loop=1), whatever the encoder.
    first = _scalars(model_dir, "train/supervised_loss")[0]
    assert first == pytest.approx((1, math.log(10)), abs=1e-5)
    assert _scalars(model_dir, "train/weight_decay")[0][1] == 0.0  # stage default: no decay
    flags_json = _json(model_dir / "flags.json")
    assert flags_json["checkpoint"] == runs.result("pretrain").model_dir
    assert flags_json["data_dir"] == runs.data_dir
    assert result.next_args()[:2] == ["--train_mode=distill", f"--teacher={model_dir}"]
    _check_eval_result(model_dir, 4, 64)  # train_then_eval: 2 eval steps of 32 test images


# --- stage 3: distill, and mode=eval -----------------------------------------------------------

@runs("distill", "evaluate")
def test_self_distill_from_saved_model_teacher_then_eval_mode(runs):
    distill = runs.result("distill").check()
    model_dir = Path(distill.model_dir)
    config = _json(model_dir / "config.json")
    teacher_dir = runs.result("finetune").model_dir
    assert config["model"] == _json(Path(teacher_dir) / "config.json")["model"]  # self
    assert config["teacher"] == f"{teacher_dir}/saved_model/4"
    assert (model_dir / "saved_model/4/saved_model.pb").is_file()
    tags = summaries.read_scalars(str(model_dir))
    assert all(np.isfinite(v) for tag in ("distill_loss", "teacher_agreement", "total_loss")
               for _, v in tags[f"train/{tag}"])
    assert distill.next_args() == ["--mode=eval", "--train_mode=distill",
                                   f"--model_dir={model_dir}", *distill.next_args()[3:]]
    # mode=eval, as printed (pasted into a shell): evaluates the last checkpoint and stops (no
    # 600 s wait), without touching the run's config.
    evaluate = runs.result("evaluate").check()
    lines = evaluate.stdout.splitlines()
    printed = evaluate.lines_starting("eval")
    # It says what it evaluates, batch by batch (--eval_steps=2), and stops after the run's
    # last step instead of waiting --eval_timeout (600 s) for a newer checkpoint.
    assert "Evaluating the checkpoint of step 4 on split test: 2/2 batches" in lines
    assert f"Step 4 is the run's last: done watching {model_dir}." in lines
    # The three stages are done: no next command (it used to repeat this one), a last word.
    assert not evaluate.lines_starting("next") and len(evaluate.lines_starting("done")) == 1
    assert evaluate.lines_starting("stage") == ["distill (stage 3/3, distillation from the "
                                                "teacher's soft labels), --mode=eval"]
    assert evaluate.lines_starting("evaluate") == ["split test: 10,000 examples"]
    assert evaluate.lines_starting("model_dir") == [str(model_dir)]  # once, in the banner
    assert len(printed) == 1
    result = _check_eval_result(model_dir, 4, 64)
    assert f"top-1 {result['top1']:.4f}" in printed[0]
    # Student and teacher side by side: the teacher's number is its run's result.json (the
    # fine-tuning's train_then_eval scored its step 4 on the same 64 test images).
    teacher = _json(Path(teacher_dir) / "result.json")
    assert (teacher["global_step"], teacher["num_examples"]) == (4, 64)
    _check_done_lines(evaluate, result["top1"], teacher["top1"],
                      f"{teacher_dir}/saved_model/4, its result.json")
    assert "Evaluating the teacher" not in evaluate.stdout
    assert _json(model_dir / "config.json") == config
    assert not any(l.startswith("step ") for l in lines)  # no training


def _check_done_lines(result, student: float, teacher: float, source: str):
    """The last word: both top-1 (as printed, 4 decimals) and a plain verdict."""
    text = result.stdout[result.stdout.index("\ndone:"):]
    assert f"student {student:.4f}, teacher {teacher:.4f} ({source})" in text, text
    if student < teacher:
        assert "The student is WORSE than its teacher by " \
               f"{100 * (teacher - student):.2f} points" in text, text
    else:
        assert "The student matches or beats its teacher" in text, text


@runs("toy_finetune", "toy_distill")
def test_transfer_from_saved_model_and_big_to_small_distillation_learn_the_toy_set(runs):
    """Fine-tuning (from a SavedModel) and distillation losses fall within a few steps."""
    finetune = runs.result("toy_finetune").check()
    loss = [v for _, v in _scalars(finetune.model_dir, "train/supervised_loss")]
    # A fresh zero head: step 0 is ln(2) exactly (the pretrain head had 10 classes).
    assert len(loss) == 8 and loss[0] == pytest.approx(math.log(2), abs=1e-5)
    assert np.mean(loss[-3:]) < 0.5 * loss[0], loss
    distill = runs.result("toy_distill").check()
    # train_then_eval: the evaluation is done too, so no next command, the stages are over.
    assert not distill.lines_starting("next") and len(distill.lines_starting("done")) == 1
    loss = [v for _, v in _scalars(distill.model_dir, "train/distill_loss")]
    assert len(loss) == 8 and np.mean(loss[-3:]) < 0.6 * loss[0], loss
    # Class identity travels with the run and its SavedModel (sorted sub-folder names).
    from checkpoints import export
    config = _json(Path(finetune.model_dir) / "config.json")
    assert (config["class_names"], config["head"]["num_classes"]) == (["bright", "dark"], 2)
    assert export.saved_record(f"{finetune.model_dir}/saved_model/8") == {
        "class_names": ("bright", "dark"), "train_mode": "finetune"}
    assert export.saved_record(f"{distill.model_dir}/saved_model/16")["class_names"] == (
        "bright", "dark")
    # Big-to-small: the full-width teacher was rebuilt from its config.json.
    assert _json(Path(finetune.model_dir) / "config.json")["model"]["width_multiplier"] == 1
    assert _json(Path(distill.model_dir) / "config.json")["model"]["width_multiplier"] == 0.5
    assert _json(Path(distill.model_dir) / "flags.json")["teacher"] == finetune.model_dir
    _check_eval_result(distill.model_dir, 16, runs.toy_test_size)  # eval_steps=0: whole split

    # The teacher as a SavedModel gives the logits of the teacher as a checkpoint.
    from data import datasets, pipeline
    from data.config import DataConfig
    from tf2 import config as config_lib
    from stages.distill import Teacher
    data = DataConfig(dataset=f"folder:{runs.toy_dir}", image_size=16)
    batch = next(iter(pipeline.eval_input_fn(datasets.load(data), data, 32)(
        tf.distribute.InputContext())))  # the whole test split (32 images)
    cfg = config_lib.load_run_config(str(Path(distill.model_dir) / "config.json"), data=data)
    from_checkpoint = Teacher(finetune.model_dir, cfg, 2)(batch["image"])
    from_saved_model = Teacher(f"{finetune.model_dir}/saved_model/8", cfg, 2)(batch["image"])
    np.testing.assert_allclose(from_saved_model, from_checkpoint, atol=1e-4)

    # The teacher run (--mode=train) has no result.json: the distill run evaluated the teacher
    # itself, on the student's split, and printed both top-1 side by side.
    assert not (Path(finetune.model_dir) / "result.json").exists()
    assert "Evaluating the teacher " f"{finetune.model_dir} on split test: 2/2 batches" in \
        distill.stdout.splitlines()
    teacher_top1 = float(np.mean(np.argmax(from_checkpoint, axis=1) == batch["label"].numpy()))
    student_top1 = _json(Path(distill.model_dir) / "result.json")["top1"]
    _check_done_lines(distill, student_top1, teacher_top1, f"{finetune.model_dir}, evaluated now")


# --- interruptions, NaN ------------------------------------------------------------------------

@runs("interrupted", "pretrain")
def test_sigkill_and_sigterm_then_resume_give_the_uninterrupted_weights(runs):
    parts = runs.result("interrupted")
    assert parts["killed"].returncode == -9
    terminated = parts["terminated"]
    assert terminated.returncode == 1 and "Traceback" not in terminated.stderr
    assert "Stopped by SIGTERM at step 6; checkpoint saved" in terminated.stderr
    # ... and the command to run again, as a shell in REPO runs it.
    again = terminated.stderr.split("The command: ", 1)[1].splitlines()[0]
    assert shlex.split(again) == [runs.interpreter, "run.py", *terminated.args]
    resumed = parts["resumed"].check()
    assert "Resuming from the checkpoint of step 6" in resumed.stdout
    model_dir = Path(resumed.model_dir)
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == [
        "ckpt-4.index", "ckpt-6.index", "ckpt-8.index"]
    ours = tf.train.load_checkpoint(str(model_dir / "ckpt-8"))
    reference = tf.train.load_checkpoint(runs.result("pretrain").model_dir + "/ckpt-8")
    keys = set(reference.get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH",
                                                          "save_counter/.ATTRIBUTES/VARIABLE_VALUE"}
    assert keys == set(ours.get_variable_to_shape_map()) - {
        "_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE"}
    assert len(keys) > 150  # weights, batch-norm statistics, momenta, step
    for key in sorted(keys):
        np.testing.assert_allclose(ours.get_tensor(key), reference.get_tensor(key), rtol=0,
                                   atol=1e-6, err_msg=key)


@runs("finished_again")
def test_a_finished_run_started_again_says_so_and_changes_nothing(runs):
    result, before = runs.result("finished_again")
    result.check()
    model_dir = Path(result.model_dir)
    assert (f"Already trained: {model_dir} holds the checkpoint of step 8, the last one; its "
            f"SavedModel is {model_dir}/saved_model/8. Nothing to train: to train longer, run "
            "again with a larger --train_steps or --train_epochs (same --model_dir); to start "
            "over, choose another --model_dir.") in result.stdout.splitlines()
    for word in ("Resuming", "Saving", "Exporting"):
        assert word not in result.stdout, word
    assert not [l for l in result.stdout.splitlines() if l.startswith("step ")]  # no training
    after = {str(p.relative_to(model_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in model_dir.rglob("*") if p.is_file() and p.suffix != ".lock"}
    assert after == before  # no checkpoint, export, event file or record written
    assert result.next_args()[:2] == ["--train_mode=finetune", f"--checkpoint={model_dir}"]


@runs("flat_pretrain", "auto")
def test_tensorflow_start_up_log_is_quiet_unless_asked_for(runs):
    """A healthy run prints no TensorFlow line at all (the flat folder's: no TFDS reader);
    SIMCLR_TF_LOG=1 (the auto run) shows TensorFlow's start-up lines again."""
    assert _tf_lines(runs.result("flat_pretrain").check().stderr) == []
    shown = _tf_lines(runs.result("auto").check().stderr)
    assert any(not startup_log.DETERMINISM_REWRITE.search(l) for l in shown), \
        runs.result("auto").stderr


@runs("nan")
def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(runs):
    result, before = runs.result("nan")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (error,) = _error_lines(result.stderr)
    assert error.startswith("error: Non-finite values by step 10")
    assert "ckpt-8" in error and "--learning_rate" in error
    model_dir = Path(result.model_dir)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.iterdir()
             if p.name.startswith("ckpt-") or p.name == "checkpoint"}
    assert after == before  # same files, same bytes: nothing saved after the NaN
    assert sorted(os.listdir(model_dir / "saved_model")) == ["8"]


# --- speed options -----------------------------------------------------------------------------

@runs("bfloat16", "jit", "pretrain")
@pytest.mark.parametrize("job, rtol", [("bfloat16", 2e-2), ("jit", 1e-3)])
def test_mixed_bfloat16_and_xla_match_float32_on_the_first_steps(runs, job, rtol):
    """The first loop's losses do not depend on train_steps (the rate of step 0 is 0)."""
    result = runs.result(job).check()
    reference = summaries.read_scalars(runs.result("pretrain").model_dir)
    ours = summaries.read_scalars(result.model_dir)
    for tag in ("train/contrast_loss", "monitor/linear_eval_loss", "train/total_loss"):
        (step, value), = ours[tag]
        assert step == 2 and math.isfinite(value)
        assert value == pytest.approx(reference[tag][0][1], rel=rtol), tag
    # Variables, batch-norm statistics included, stay float32 under mixed precision.
    dtypes = tf.train.load_checkpoint(result.model_dir + "/ckpt-2").get_variable_to_dtype_map()
    assert {d for k, d in dtypes.items() if k.startswith("model/")} == {tf.float32}


# --- what a user reads: the banner, the printed commands, --help ---------------------------------

def _resnet18_parameters(width=64):
    """ResNet-18, CIFAR stem, counted by hand: conv k*k*cin*cout, batch norm 2c (gamma, beta)."""
    def conv_bn(k, cin, cout):
        return k * k * cin * cout + 2 * cout
    total, cin = conv_bn(3, 3, width), width
    for filters in (width, 2 * width, 4 * width, 8 * width):
        total += conv_bn(1, cin, filters)  # the first block's shortcut projection
        for _ in range(2):
            total += conv_bn(3, cin, filters) + conv_bn(3, filters, filters)
            cin = filters
    return total


@runs("flat_pretrain")
def test_banner_and_next_command_after_pretraining_on_a_folder_without_classes(runs):
    result = runs.result("flat_pretrain").check()
    flat = f"{runs.base}/flat_images"
    images = 2 * 48  # both classes' training images (conftest.TOY_TRAIN), in one flat folder
    steps = round(0.5 * images / 16)  # --train_epochs=0.5 at batch 16
    assert result.lines_starting("stage") == [
        "pretrain (stage 1/3, contrastive pretraining without labels), --mode=train"]
    assert result.lines_starting("data") == [
        f"folder:{flat}, split train: {images:,} examples, no classes (unlabelled)"]
    params = _resnet18_parameters()
    assert result.lines_starting("network") == [
        f"ResNet-18 x1, no SK, CIFAR stem (3x3/1, no max-pool), 16 px: {params:,} encoder "
        f"parameters ({params / 1e6:.1f}M)"]
    assert result.lines_starting("training") == [
        f"{steps} steps = {steps * 16 / images:.4g} epochs of {images} examples at batch 16"]
    assert result.lines_starting("precision") == ["float32 (--precision=float32 was given)"]
    assert result.lines_starting("model_dir")[0] == result.model_dir
    # The banner comes before the first step.
    lines = result.stdout.splitlines()
    first_step = next(i for i, l in enumerate(lines) if l.startswith("step "))
    assert lines.index(next(l for l in lines if l.startswith("stage:"))) < first_step
    assert [l for l in lines if l.startswith("step ")][-1].startswith(f"step {steps}/{steps}")
    # Fine-tuning needs labels: the next command asks for a labelled data set.
    note = result.lines_starting("note")
    assert len(note) == 1 and "fine-tuning needs a labelled data set" in note[0], result.stdout
    nxt = result.next_args()
    assert nxt[:3] == ["--train_mode=finetune", f"--checkpoint={result.model_dir}",
                       "--dataset=LABELLED"]
    assert not any(a.startswith("--dataset=folder:") for a in nxt)


@runs("finetune")
def test_finetune_banner_counts_the_labelled_subset(runs):
    result = runs.result("finetune").check()
    data = result.lines_starting("data")
    assert len(data) == 1 and data[0].startswith(
        "fashion_mnist, split train[:2000]: 2,000 examples, "), data
    labelled = int(data[0].split(", ")[2].split()[0])
    assert data[0].endswith(f"{labelled} labelled, 10 classes")
    assert abs(labelled - 200) <= 10  # 10% of 2,000, class by class (stage default)
    assert result.lines_starting("training") == [
        f"4 steps = {4 * 16 / labelled:.4g} epochs of {labelled} examples at batch 16"]
    assert result.lines_starting("from") == [runs.result("pretrain").model_dir]
    assert result.lines_starting("evaluate") == ["split test: 10,000 examples"]


@runs("holdout_eval")
def test_eval_on_the_holdout_counts_and_scores_the_held_out_images(runs):
    """--eval_split=holdout: the banner and the result count the held-out images (5% of each
    class of train[:2000]), and top-1 equals the restored model's on exactly those images."""
    from checkpoints import manager as ckpt_lib
    from data import augment, fashion_mnist, subsets
    from tf2 import config as cfg_lib
    from tf2 import model as model_lib
    result = runs.result("holdout_eval").check()
    images, labels = fashion_mnist.read_split(fashion_mnist.DEFAULT_SOURCE_DIR, "train")
    counts = np.bincount(labels[:2000], minlength=10)
    held = subsets.holdout_indices(labels[:2000], 0.05)
    assert np.array_equal(np.bincount(labels[held], minlength=10),
                          [round(0.05 * c) for c in counts])  # Python's round, class by class
    n = len(held)
    assert result.lines_starting("evaluate") == [
        f"split holdout (held out of train[:2000]): {n:,} examples"], result.stdout
    model_dir = Path(result.model_dir)
    cfg = cfg_lib.load_run_config(str(model_dir / "config.json"), data=None)
    model = model_lib.build_model(cfg.model, cfg.head, image_size=16, num_classes=10)
    ckpt_lib.restore_objects(str(model_dir / "ckpt-4"), model=model)
    batch = tf.stack([augment.preprocess_for_eval(x, 16, center_crop=False)
                      for x in images[held]])
    logits = model(batch, training=False)[model_lib.LOGITS_SUP].numpy()
    top1 = float(np.mean(np.argmax(logits, axis=1) == labels[held]))
    shown = [l for l in result.lines_starting("eval") if "top-1" in l]
    assert len(shown) == 1 and shown[0].endswith(f"on {n} examples (step 4)"), result.stdout
    assert float(shown[0].split()[1]) == pytest.approx(top1, abs=1e-4)


@pytest.mark.parametrize("flag", ["--helpshort", "--help"])
def test_help_lists_the_programs_flags(flag, tmp_path):
    from flags import definitions
    proc = hang_guard.run([sys.executable, str(REPO / "run.py"), flag], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # absl's help flags print, then exit with 1
    listed = {line.split(":")[0].strip().replace("--[no]", "--")
              for line in proc.stdout.splitlines() if line.lstrip().startswith("--")}
    ours = {f"--{f.name}" for f in definitions.FLAGS.get_key_flags_for_module(definitions)}
    assert len(ours) > 60 and ours <= listed, sorted(ours - listed)


@runs("pretrain")
def test_finetuning_at_an_image_size_of_the_other_stem_is_one_line(runs):
    """The 16 px pretraining (CIFAR stem) fine-tuned at 64 px (ImageNet stem): exit 2."""
    model_dir = runs.result("pretrain").check().model_dir
    for source in (model_dir, f"{model_dir}/saved_model/8"):
        proc = hang_guard.run(
            [sys.executable, str(REPO / "run.py"), "--train_mode=finetune",
             f"--checkpoint={source}", f"--data_dir={runs.data_dir}", "--image_size=64",
             "--width_multiplier=1", "--proj_out_dim=16", "--model_dir=never"],
            cwd=runs.base, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        errors = _error_lines(proc.stderr)
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"--checkpoint={source} at --image_size=64" in errors[0]
        assert "trained with the CIFAR stem (3x3/1 convolution without max-pool" in errors[0]
        assert errors[0].endswith("pass the --image_size it was trained with")
        assert not (runs.base / "never").exists()


def _network_values(args):
    """{flag: float value} of the network flags among command-line `args`."""
    from flags import commands
    values = {}
    for arg in args:
        name, _, value = arg[2:].partition("=")
        if name in commands.NETWORK_FLAGS and value:
            values[name] = float(value)
    return values


@runs("pretrain")
def test_after_eval_the_next_command_builds_the_evaluated_network_not_the_typed_one(
        runs, tmp_path):
    """--mode=eval rebuilds the run's network from its config.json whatever the flags say; the
    printed fine-tuning command must do the same (it used to repeat the typed flags and fail
    at the warm start), i.e. carry what the pretraining itself printed (and the finetune job
    ran)."""
    import shutil
    pretrain = runs.result("pretrain").check()
    model_dir = tmp_path / "copy"
    shutil.copytree(pretrain.model_dir, model_dir)
    typed = ["--resnet_depth=34", "--width_multiplier=2", "--proj_out_dim=64"]
    args = [a for a in pretrain.args if not a.startswith("--model_dir=")] + [
        "--mode=eval", "--eval_timeout=0", *typed, f"--model_dir={model_dir}"]
    result = runs.run(args, "eval_typed_network").check()
    assert result.lines_starting("network")[0].startswith("ResNet-18 x1,"), result.stdout
    nxt = result.next_args()
    assert nxt[:2] == ["--train_mode=finetune", f"--checkpoint={model_dir}"]
    assert _network_values(nxt) == _network_values(pretrain.next_args()) == {
        "resnet_depth": 18, "width_multiplier": 1, "proj_out_dim": 16}
    assert not set(typed) & set(nxt)
