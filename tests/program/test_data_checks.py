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


def _finetune_run(model_dir, class_names):
    """A model_dir as a fine-tuning run leaves it: config.json, a checkpoint's index."""
    cfg = cfg_lib.RunConfig(
        model=cfg_lib.ModelConfig.tiny(), head=cfg_lib.HeadConfig.tiny(num_classes=2),
        train=cfg_lib.TrainConfig(train_steps=1), data=DataConfig(), train_mode="finetune",
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
    return {
        "huge_batch": ([f"--dataset=folder:{toy}", *TINY, "--train_batch_size=1000000000"],
                       "--train_batch_size=1000000000 is larger than the 96 examples of "
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
    "teacher_pretrained"])
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
