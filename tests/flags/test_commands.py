"""The command lines run.py prints: the next stage (which data set it needs, or nothing after
the last stage), the prediction after the last stage, the same run again, TensorBoard; each
runs as printed from the working directory."""
import os
import shlex
import sys

import pytest

import run
from flags import commands


@pytest.fixture
def parse(run_flags):
    return run_flags


def _words(command):
    words = shlex.split(command)
    assert words[0] == commands.shown_path(sys.executable, executable=True)
    assert os.path.abspath(words[1]) == os.path.abspath(run.__file__)
    return words[2:]


def test_paths_inside_the_working_directory_are_relative(tmp_path, monkeypatch):
    venv_python = tmp_path / ".venv" / "bin" / "python"
    monkeypatch.chdir(tmp_path)
    assert commands.shown_path(str(venv_python), executable=True) == ".venv/bin/python"
    assert commands.shown_path(str(tmp_path / "python"), executable=True) == "./python"
    assert commands.shown_path(str(tmp_path / "run.py")) == "run.py"
    assert commands.shown_path("/usr/bin/python3") == "/usr/bin/python3"
    monkeypatch.setattr(sys, "executable", str(venv_python))
    assert commands.program().startswith(".venv/bin/python ")


def test_after_finetuning_on_an_imagenet_subset_distill_on_all_of_imagenet(parse):
    f = parse("--train_mode=finetune", "--dataset=imagenet2012_subset/1pct", "--image_size=224",
              "--data_dir=/tfds", "--learning_rate=0.002")
    words = _words(commands.next_command(f, "runs/ft"))
    assert words[:2] == ["--train_mode=distill", "--teacher=runs/ft"]
    assert "--dataset=imagenet2012" in words and "--dataset=imagenet2012_subset/1pct" not in words
    assert "--image_size=224" in words and "--data_dir=/tfds" in words
    assert not any(w.startswith("--learning_rate") for w in words)  # the stage's own


def test_the_next_stage_keeps_a_labelled_data_set(parse):
    f = parse("--train_mode=pretrain", "--dataset=folder:/imgs")
    assert "--dataset=folder:/imgs" in _words(commands.next_command(f, "runs/p", labelled=True))
    words = _words(commands.next_command(f, "runs/p", labelled=False))
    assert "--dataset=LABELLED" in words and "--dataset=folder:/imgs" not in words
    f = parse("--train_mode=finetune", "--checkpoint=/", "--dataset=cifar10")
    assert "--dataset=cifar10" in _words(commands.next_command(f, "runs/f"))


def test_an_evaluation_of_data_without_a_test_split_asks_for_data_with_one(parse):
    f = parse("--train_mode=distill", "--teacher=/", "--dataset=folder:/imgs")
    command = commands.next_command(f, "runs/d", evaluable=False)
    words = _words(command)
    assert words[:3] == ["--mode=eval", "--train_mode=distill", "--model_dir=runs/d"]
    assert "--dataset=WITH_TEST_SPLIT" in words and "--dataset=folder:/imgs" not in words
    (note,) = commands.notes(command, "folder:/imgs")
    assert note.startswith("evaluation needs a test or validation split, and folder:/imgs has "
                           "none") and "replace WITH_TEST_SPLIT with data of the same classes" \
        in note
    assert "--dataset=folder:/imgs" in _words(commands.next_command(f, "runs/d"))
    # Only the evaluation needs the split: the training stages' commands keep the data set.
    f = parse("--train_mode=finetune", "--checkpoint=/", "--dataset=folder:/imgs")
    assert "--dataset=folder:/imgs" in _words(commands.next_command(f, "runs/f",
                                                                    evaluable=False))


def test_the_evaluated_runs_network_replaces_the_typed_network_flags(parse):
    """After --mode=eval the network comes from the run's config.json: typed flags that differ
    are replaced, flags left at a default the run did not use are added."""
    from flags import configs
    from tf2 import config as cfg_lib
    f = parse("--mode=eval", "--train_mode=pretrain", "--resnet_depth=34", "--noglobal_bn",
              "--proj_out_dim=16", "--num_proj_layers=3", "--image_size=64")
    trained = cfg_lib.RunConfig(model=cfg_lib.ModelConfig(resnet_depth=50, width_multiplier=2),
                                head=cfg_lib.HeadConfig(proj_out_dim=128, num_proj_layers=3))
    words = _words(commands.next_command(f, "runs/p", network=configs.network_flags(trained)))
    assert words[:2] == ["--train_mode=finetune", "--checkpoint=runs/p"]
    assert sorted(words[2:]) == sorted([
        "--image_size=64", "--resnet_depth=50", "--width_multiplier=2", "--num_proj_layers=3",
        "--proj_out_dim=128", "--global_bn"])


@pytest.mark.parametrize("mode, expected", [
    ("train", ["--mode=eval", "--train_mode=distill", "--model_dir=runs/d"]),
    ("train_then_eval", None), ("eval", None)])
def test_after_distillation_only_evaluation_is_left(parse, mode, expected):
    f = parse("--train_mode=distill", "--teacher=/", f"--mode={mode}")
    command = commands.next_command(f, "runs/d")
    assert (command if command is None else _words(command)) == expected


def test_after_the_stages_the_use_command_predicts_on_the_evaluated_data(parse):
    f = parse("--train_mode=distill", "--teacher=/", "--mode=eval", "--dataset=folder:/my imgs",
              "--eval_split=holdout", "--holdout_fraction=0.1", "--eval_batch_size=64",
              "--width_multiplier=0.5", "--learning_rate=0.3", "--train_split=train[:50%]")
    assert _words(commands.use_command(f, "runs/d")) == [
        "--mode=predict", "--model_dir=runs/d", "--dataset=folder:/my imgs",
        "--eval_split=holdout", "--holdout_fraction=0.1", "--eval_batch_size=64"]
    # The network comes from the model, training flags are not prediction's.
    assert _words(commands.use_command(parse("--train_mode=distill", "--teacher=/"), "d")) == [
        "--mode=predict", "--model_dir=d"]


def test_this_command_repeats_the_arguments_quoted():
    words = shlex.split(commands.this_command(["run.py", "--train_split=train[:50]", "--x=a b"]))
    assert words[2:] == ["--train_split=train[:50]", "--x=a b"]
    tb = shlex.split(commands.tensorboard_command("runs/my dir"))
    assert tb[-2:] == ["--logdir", "runs/my dir"]


@pytest.mark.parametrize("args, ok", [
    (["--image_size=768"], True), (["--image_size=2048", "--use_blur=false"], True),
    (["--image_size=769"], False), (["--image_size=32", "--use_blur"], True)])
def test_blur_is_refused_above_the_size_onednn_survives(parse, args, ok):
    from flags import validate
    f = parse(*args)
    if ok:
        validate._check_image_size(f)
    else:
        with pytest.raises(validate.FlagError, match="--image_size=769 with Gaussian blur"):
            validate._check_image_size(f)
