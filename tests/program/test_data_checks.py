"""run.py against data that cannot give a meaningful run: one line, exit 2, nothing written.

Class identity: runs and SavedModels made here (a config.json written from a RunConfig, tiny
stand-in exports with recorded class names) are evaluated, resumed and used as teachers on
folders of the toy images whose class names differ; the expected sentences are spelled out.
"""
import json
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from checkpoints import export, provenance
from data import subsets
from data.config import DataConfig
from flags import checks
from tf2 import config as cfg_lib
from tests import hang_guard
from tf2 import model as model_lib

REPO = Path(__file__).resolve().parents[2]
TINY = ["--width_multiplier=1", "--image_size=16", "--proj_out_dim=16", "--train_batch_size=8"]


def _run(args, cwd):
    return hang_guard.run([sys.executable, str(REPO / "run.py"), *args], cwd=cwd,
                          capture_output=True, text=True)


def _copy_classes(toy, root, renames):
    """root/train/<new name>: the toy training images of class <old name>."""
    for old, new in renames.items():
        shutil.copytree(Path(toy) / "train" / old, root / "train" / new)
    return root


class _Head(keras.layers.Layer):
    def __init__(self, units):
        super().__init__(name="head_supervised")
        self.dense = keras.layers.Dense(units, name="dense")

    def call(self, x):
        return self.dense(x)


class _StandIn(keras.Model):
    """Mean colour -> a supervised head whose variables sit where SimCLRModel's do."""

    def __init__(self, units):
        super().__init__(name="simclr")
        self.head = _Head(units)

    def call(self, images, training=False):
        return {model_lib.LOGITS_SUP: self.head(tf.reduce_mean(images, axis=[1, 2]))}


def _saved_model(path, class_names, train_mode):
    model = _StandIn(len(class_names))
    model(tf.zeros((1, 8, 8, 3)))
    return export.export_saved_model(model, str(path), 1, class_names=class_names,
                                     train_mode=train_mode)


def _finetune_run(model_dir, class_names, train_mode="finetune", **data):
    """A model_dir as a fine-tuning run leaves it: config.json, a checkpoint's index.

    `data`: the DataConfig fields it records (data set, train split, holdout).
    """
    cfg = cfg_lib.RunConfig(
        model=cfg_lib.ModelConfig.tiny(), head=cfg_lib.HeadConfig.tiny(num_classes=2),
        train=cfg_lib.TrainConfig(train_steps=1), data=DataConfig(**data), train_mode=train_mode,
        model_dir=str(model_dir), class_names=tuple(class_names))
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(cfg_lib.run_config_to_dict(cfg)))
    (model_dir / "ckpt-1.index").write_bytes(b"")
    return str(model_dir)


@pytest.fixture(scope="module")
def cases(runs, tmp_path_factory):
    """{name: (args, expected text of the one error line)}."""
    base = tmp_path_factory.mktemp("data_checks")
    toy = runs.toy_dir
    renamed = _copy_classes(toy, base / "renamed", {"bright": "bright", "dark": "aaa"})
    three = _copy_classes(toy, base / "three", {"bright": "bright", "dark": "dark"})
    shutil.copytree(Path(toy) / "train" / "dark", three / "train" / "zzz")
    one = _copy_classes(toy, base / "one", {"bright": "only"})
    run_dir = _finetune_run(base / "finetuned", ("bright", "dark"))
    finetuned = _saved_model(base / "sm_ft", ("bright", "dark"), "finetune")
    pretrained = _saved_model(base / "sm_pt", ("bright", "dark"), "pretrain")
    distill = ["--train_mode=distill", *TINY]
    train = f"--dataset=folder:{toy}/train"  # class folders only: no test split
    no_holdout = _finetune_run(base / "no_holdout", ("bright", "dark"),
                               dataset=f"folder:{toy}/train")
    loop = _copy_classes(toy, base / "loop", {"bright": "bright", "dark": "dark"}) / "train"
    (loop / "loop").symlink_to(loop)  # a class folder that is the root again
    flat = base / "flat"
    flat.mkdir()
    for image in Path(toy, "train").glob("*/*.png"):
        shutil.copy(image, flat / f"{image.parent.name}_{image.name}")
    return {
        "empty_holdout": ([train, *TINY, "--holdout_fraction=0.001", "--mode=train_then_eval",
                           "--eval_split=holdout"],
                          "--holdout_fraction=0.001: the holdout of --train_split=train is "
                          "empty (round(0.001 x the images of a class) is 0 for every class), "
                          f"so there is nothing to evaluate on; use a larger --holdout_fraction, "
                          f"at least {1 / 48:.3g} to hold out an image of every class."),
        "holdout_takes_all": ([f"--dataset=folder:{toy}", *TINY, "--holdout_fraction=0.99",
                               "--train_split=train[:20]"],
                              "--holdout_fraction=0.99 holds out every example of "
                              "--train_split=train[:20], so nothing is left to train on"),
        "eval_on_a_holdout_it_trained_on": (
            [train, *TINY, "--mode=eval", "--train_mode=finetune", "--holdout_fraction=0.1",
             "--eval_split=holdout", f"--model_dir={no_holdout}"],
            f"--eval_split=holdout: the run in {no_holdout} held nothing out of its training "
            "images, so it may have trained on every image of this holdout"),
        "resume_with_a_new_holdout": (
            [train, *TINY, "--train_mode=finetune", "--from_scratch", "--holdout_fraction=0.1",
             f"--model_dir={no_holdout}"],
            f"--holdout_fraction=0.1 --train_split=train: the run in {no_holdout} that this "
            "run would resume was trained on the same data with no holdout, this run would use "
            "a holdout of 0.1 of train; the runs that continue one another must hold out the "
            "same images"),
        "one_class_slice_pretraining": (
            [f"--dataset=folder:{toy}", *TINY, "--train_split=train[:40]"],
            "--train_split=train[:40]: its labelled examples are all of one class ('bright' of "
            "2), so the supervised head learns nothing (accuracy 1.0); a folder's examples are "
            "in class order, so use a slice that holds several classes, or pretrain without "
            "the linear head (--nolineareval_while_pretraining)."),
        "class_folder_linked_to_the_root": (
            [f"--dataset=folder:{loop}", *TINY],
            f"--dataset=folder:{loop}: the class folder {loop}/loop leads to {loop}, which "
            "holds the class folders themselves"),
        "knn_without_labels": (
            [f"--dataset=folder:{flat}", *TINY, "--knn_every_steps=2"],
            f"--knn_every_steps=2: the kNN monitor scores labelled held-out images against a "
            f"bank of labelled training images, and --dataset=folder:{flat} has no labels"),

        # (a batch of 10^9 is refused before the data are read, by its memory: test_run.py)
        "huge_batch": ([f"--dataset=folder:{toy}", *TINY, "--train_batch_size=1000"],
                       "--train_batch_size=1000 is larger than the 96 examples of "
                       "--train_split=train; use at most 96."),
        "bad_slice": ([f"--dataset=folder:{toy}", *TINY, "--train_split=train[abc]"],
                      "--train_split=train[abc]: "),
        "one_class_slice": ([f"--dataset=folder:{toy}", *TINY, "--train_mode=finetune",
                             "--from_scratch", "--label_fraction=1", "--train_split=train[:40]"],
                            "--train_split=train[:40]: its labelled examples are all of one "
                            "class ('bright' of 2)"),
        "one_class": ([f"--dataset=folder:{one}", *TINY],
                      f"--dataset=folder:{one}: a single class ('only')"),
        "no_eval_split": ([f"--dataset=folder:{toy}/train", *TINY, "--mode=train_then_eval"],
                          "--eval_split is not given and"),
        "no_such_path": (["--dataset=/no/such/images"],
                         "--dataset=/no/such/images: /no/such/images does not exist"),
        "eval_renamed": ([f"--dataset=folder:{renamed}", *TINY, "--mode=eval",
                          "--train_mode=finetune", "--eval_split=train",
                          f"--model_dir={run_dir}"],
                         f"the data do not match the run in {run_dir}: class 0 is 'bright' in "
                         f"the run, 'aaa' in the data"),
        "resume_renamed": ([f"--dataset=folder:{renamed}", *TINY, "--train_mode=finetune",
                            "--from_scratch", f"--model_dir={run_dir}"],
                           "that this run would resume: class 0 is 'bright' in the run, 'aaa'"),
        "teacher_renamed": ([f"--dataset=folder:{renamed}", *distill, f"--teacher={run_dir}"],
                            "class 0 is 'bright' in the teacher, 'aaa' in the data"),
        "teacher_missing_class": ([f"--dataset=folder:{three}", *distill,
                                   f"--teacher={finetuned}"],
                                  "the teacher has 2 classes, the data 3 (only in the data: "
                                  "'zzz')"),
        "teacher_pretrained": ([f"--dataset=folder:{toy}", *distill, f"--teacher={pretrained}"],
                               f"--teacher={pretrained}: {pretrained} is a pretraining run"),
    }


@pytest.mark.parametrize("name", [
    "huge_batch", "bad_slice", "one_class_slice", "one_class", "no_eval_split", "no_such_path",
    "eval_renamed", "resume_renamed", "teacher_renamed", "teacher_missing_class",
    "teacher_pretrained", "empty_holdout", "holdout_takes_all", "eval_on_a_holdout_it_trained_on",
    "resume_with_a_new_holdout", "one_class_slice_pretraining", "class_folder_linked_to_the_root",
    "knn_without_labels"])
def test_data_that_cannot_give_a_meaningful_run_exits_2_with_one_line(cases, name, tmp_path):
    args, expected = cases[name]
    proc = _run(args, tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "runs").exists()  # no run directory was made


def test_shortfall_warnings_name_the_classes_and_counts():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 20 + [-1] * 4)
    names = ("ant", "bee", "cat")
    assert subsets.shortfall(labels, per_class=4, class_names=names) == (
        "--labels_per_class=4: 1 of 3 classes have fewer examples and keep all of them "
        "(examples per class: 'bee' 3); 11 labels instead of 12.")  # 4 + 3 + 4 kept
    # round(0.1 * 5) = 0 -> 1 and round(0.1 * 3) = 0 -> 1 example; round(0.1 * 20) = 2.
    assert subsets.shortfall(labels, fraction=0.1, class_names=names) == (
        "--label_fraction=0.1 leaves one labelled example in 2 of 3 classes (examples per "
        "class: 'ant' 5, 'bee' 3); use a larger fraction or --labels_per_class.")
    assert subsets.shortfall(labels, fraction=0.5) is None  # 2 or more of each class
    assert subsets.shortfall(labels, per_class=3) is None and subsets.shortfall(labels, 1.0) is None


def test_class_name_differences_in_one_sentence():
    assert provenance.difference(("a", "b"), ("a", "b"), "teacher", "data") is None
    assert provenance.difference(("t-shirt", "dress", "coat"), ("t-shirt", "coat", "dress"),
                                 "teacher", "data") == \
        "class 1 is 'dress' in the teacher, 'coat' in the data"
    assert provenance.difference(("a", "b", "c"), ("a", "c"), "teacher", "data") == \
        "the teacher has 3 classes, the data 2 (only in the teacher: 'b')"


# --- the same checks in this process: run.py's configuration without a subprocess -----------

@pytest.fixture
def configure(runs, run_flags, monkeypatch):
    """`configure(*args) -> (run._Run, [warning lines])`: what run.py does before it builds
    anything (validation, data, checks), here; a refusal raises validate.FlagError."""
    import run

    def call(*args):
        warnings = []
        monkeypatch.setattr(run.logging, "warning",
                            lambda message, *a: warnings.append(message % a if a else message))
        run_flags(*args, *TINY, "--precision=float32")
        return run._configure(), warnings
    return call


def test_runs_that_continue_one_another_keep_one_holdout(runs, configure, tmp_path):
    """Fine-tuning from a checkpoint, distilling a teacher and evaluating on the holdout compare
    the holdout with the one the run recorded: same data, same held-out images."""
    from flags import validate
    toy = runs.toy_dir
    train = f"--dataset=folder:{toy}/train"
    names = ("bright", "dark")
    plain = _finetune_run(tmp_path / "plain", names, "pretrain", dataset=f"folder:{toy}/train")
    tenth = _finetune_run(tmp_path / "tenth", names, dataset=f"folder:{toy}/train",
                          holdout_fraction=0.1)
    other_data = _finetune_run(tmp_path / "other", names, "pretrain")  # fashion_mnist
    old = _finetune_run(tmp_path / "old", names)
    raw = json.loads(Path(old, "config.json").read_text())
    del raw["data"]  # written before config.json recorded the data
    Path(old, "config.json").write_text(json.dumps(raw))
    finetune = ["--train_mode=finetune", f"--model_dir={tmp_path / 'new'}"]
    with pytest.raises(validate.FlagError, match=rf"the --checkpoint {plain} was trained on "
                       r"the same data with no holdout, this run would use a holdout of 0\.1 "
                       r"of train; .* Pass --holdout_fraction=0, or start again"):
        configure(train, *finetune, f"--checkpoint={plain}", "--holdout_fraction=0.1")
    for checkpoint in (other_data, old):  # transfer from other data; a run without the record
        configure(train, *finetune, f"--checkpoint={checkpoint}", "--holdout_fraction=0.1")
    distill = ["--train_mode=distill", f"--model_dir={tmp_path / 'student'}"]
    with pytest.raises(validate.FlagError, match=rf"the --teacher {tenth} was trained on the "
                       r"same data with a holdout of 0\.1 of train, this run would use no "
                       r"holdout; .* Pass --holdout_fraction=0\.1 --train_split=train"):
        configure(train, *distill, f"--teacher={tenth}")
    configure(train, *distill, f"--teacher={tenth}", "--holdout_fraction=0.1")
    evaluate = ["--mode=eval", "--train_mode=finetune", "--eval_split=holdout",
                f"--model_dir={tenth}"]
    run, _ = configure(train, *evaluate, "--holdout_fraction=0.1")
    assert run.cfg.data.eval_split == "holdout"
    with pytest.raises(validate.FlagError, match=r"--eval_split=holdout with "
                       r"--holdout_fraction=0\.2: .* evaluate with --holdout_fraction=0\.1 "
                       r"--train_split=train --eval_split=holdout\.$"):
        configure(train, *evaluate, "--holdout_fraction=0.2")


def test_the_knn_bank_is_refused_when_it_cannot_be_what_was_asked(runs, configure, tmp_path):
    """The bank is drawn class-balanced (size // classes per class) from the labelled images
    outside the holdout: 96 toy images of 2 classes."""
    from flags import validate
    knn = [f"--dataset=folder:{runs.toy_dir}", "--knn_every_steps=2",
           f"--model_dir={tmp_path / 'run'}"]
    with pytest.raises(validate.FlagError, match=r"^--knn_bank_size=1: the bank is drawn "
                       r"class-balanced, at least one labelled image of each of the 2 classes; "
                       r"use 0 \(every labelled image\) or at least 2\.$"):
        configure(*knn, "--knn_bank_size=1")
    with pytest.raises(validate.FlagError, match=r"^--knn_k=97 is larger than the kNN bank of "
                       r"96 labelled images, .* use at most 96\.$"):
        configure(*knn, "--knn_k=97")
    configure(*knn, "--knn_k=96")
    _, warnings = configure(*knn, "--knn_bank_size=15", "--knn_k=7")
    assert warnings == ["--knn_bank_size=15: the class-balanced bank holds 14 images (7 per "
                        "class of 2, fewer where a class has fewer)."]


def test_a_holdout_is_counted_out_of_the_labels_it_warns_about(runs, configure, tmp_path):
    """--labels_per_class=30 of 48 images per class is no shortfall; with half of each class
    held out, 24 are left (48 - round(0.5 x 48)), and it warns as it does without a holdout.
    A holdout that misses a class warns that it does not measure it."""
    finetune = [f"--dataset=folder:{runs.toy_dir}", "--train_mode=finetune", "--from_scratch",
                "--labels_per_class=30", f"--model_dir={tmp_path / 'run'}"]
    assert configure(*finetune)[1] == []
    assert configure(*finetune, "--holdout_fraction=0.5")[1] == [
        "--labels_per_class=30: 2 of 2 classes have fewer examples and keep all of them "
        "(examples per class: 'bright' 24, 'dark' 24); 48 labels instead of 60."]
    # train[:60]: the 48 'bright' images and 12 'dark' ones; round(0.02 x 12) = 0 held out.
    _, warnings = configure(f"--dataset=folder:{runs.toy_dir}", "--train_split=train[:60]",
                            "--holdout_fraction=0.02", "--eval_split=holdout",
                            "--mode=train_then_eval", f"--model_dir={tmp_path / 'pre'}")
    assert warnings == ["--holdout_fraction=0.02 holds out no image of 1 of the 2 classes "
                        "('dark'): the holdout does not measure them; use a larger "
                        "--holdout_fraction."]


def test_the_evaluation_after_distilling_data_without_a_test_split_asks_for_one(
        runs, configure, tmp_path):
    """The printed evaluation needs a split: data with class folders only get a placeholder
    and a note saying what to put there; data with a test split get the command as is."""
    from flags import commands
    teacher = _finetune_run(tmp_path / "teacher", ("bright", "dark"),
                            dataset=f"folder:{runs.toy_dir}/train")
    distill = ["--train_mode=distill", f"--teacher={teacher}", f"--model_dir={tmp_path / 's'}"]
    run, _ = configure(f"--dataset=folder:{runs.toy_dir}/train", *distill)
    assert "--dataset=WITH_TEST_SPLIT" in run.next_command.split()
    (note,) = commands.notes(run.next_command, f"folder:{runs.toy_dir}/train")
    assert note.startswith(f"evaluation needs a test or validation split, and folder:"
                           f"{runs.toy_dir}/train has none") and "replace WITH_TEST_SPLIT" in note
    run, _ = configure(f"--dataset=folder:{runs.toy_dir}", *distill)
    assert f"--dataset=folder:{runs.toy_dir}" in run.next_command.split()
    assert commands.notes(run.next_command, runs.toy_dir) == []
