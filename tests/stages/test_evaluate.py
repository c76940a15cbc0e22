"""Evaluation: top-1/top-5 against NumPy on the SavedModel it exports at every evaluation."""
import os

import numpy as np
import pytest
import tensorflow as tf

from checkpoints import manager as ckpt_lib
from data import datasets, pipeline
from data.config import DataConfig
from tf2 import config as cfg_lib
from stages import evaluate

NUM_TEST = 12  # per class; 3 classes -> 36 images, eval batch 8 (last batch partial)


def _folder(root, seed=0):
    rng = np.random.default_rng(seed)
    for name in ("a", "b", "c"):
        (root / "test" / name).mkdir(parents=True)
        for i in range(NUM_TEST):
            pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
            tf.io.write_file(str(root / "test" / name / f"{i:02d}.png"), tf.io.encode_png(pixels))


def _randomise(model, seed):
    rng = np.random.default_rng(seed)
    for v in model.variables:
        if "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
        else:
            v.assign(rng.normal(0.0, 0.3, v.shape).astype(np.float32))


def _topk_numpy(logits, labels, k):
    """Hits: the label is among the first k classes of a stable descending sort (a tie counts
    for the lower class index only; k=1 is argmax)."""
    hits = 0
    for row, label in zip(logits, labels):
        order = sorted(range(len(row)), key=lambda c: -row[c])  # stable: lower index first
        hits += label in order[:k]
    return hits / len(labels)


@pytest.fixture
def setup(tmp_path):
    _folder(tmp_path / "images")
    data = DataConfig.tiny(dataset=f"folder:{tmp_path / 'images'}", image_size=16,
                           train_split="test", eval_split="test")
    cfg = cfg_lib.RunConfig.tiny(
        model=cfg_lib.ModelConfig(resnet_depth=18, width_multiplier=0.25, cifar_stem=True),
        head=cfg_lib.HeadConfig.tiny(num_classes=3),
        train=cfg_lib.TrainConfig(train_batch_size=8, train_steps=4), data=data,
        train_mode="finetune", model_dir=str(tmp_path / "model"), keep_hub_module_max=5)
    return cfg, datasets.load(data)


def test_every_evaluation_exports_the_evaluated_weights(setup):
    cfg, source = setup
    strategy = tf.distribute.get_strategy()
    model, _ = evaluate.build(cfg, source.num_classes)
    manager = ckpt_lib.CheckpointManager(cfg.model_dir, 5, model=model)
    batches = list(pipeline.eval_input_fn(source, cfg.data, cfg.eval_batch_size)(
        tf.distribute.InputContext()))
    images = np.concatenate([b["image"].numpy() for b in batches])
    labels = np.concatenate([b["label"].numpy() for b in batches])
    assert images.shape == (3 * NUM_TEST, 16, 16, 3)

    results = {}
    for step, seed in ((2, 1), (4, 2)):  # two checkpoints, each evaluated as it appears
        _randomise(model, seed)
        manager.save(step)
        results[step] = evaluate.run(cfg, strategy, source, watch=False)

    for step, result in results.items():
        path = os.path.join(cfg.export_dir, str(step))
        loaded = tf.saved_model.load(path)
        logits = loaded(tf.constant(images), trainable=False)["logits_sup"].numpy()
        assert result["global_step"] == step and result["num_examples"] == len(labels)
        # The SavedModel of step k holds the weights that gave step k's numbers.
        assert result["top1"] == pytest.approx(_topk_numpy(logits, labels, 1), abs=1e-6)
        assert result["top5"] == pytest.approx(_topk_numpy(logits, labels, 3), abs=1e-6)
    assert results[2]["top1"] != results[4]["top1"] or not np.allclose(
        tf.saved_model.load(os.path.join(cfg.export_dir, "2"))(images[:4])["logits_sup"],
        tf.saved_model.load(os.path.join(cfg.export_dir, "4"))(images[:4])["logits_sup"])

    # Evaluating a step again keeps its SavedModel (same files, not rewritten).
    pb = os.path.join(cfg.export_dir, "4", "saved_model.pb")
    before = os.stat(pb).st_mtime_ns
    evaluate.run(cfg, strategy, source, watch=False)
    assert os.stat(pb).st_mtime_ns == before
    assert sorted(os.listdir(cfg.export_dir)) == ["2", "4"]


def test_tied_logits_count_for_the_first_class_only(setup):
    """A zeroed classifier gives every class the same logit: top-1 is then the share of class
    0 (argmax picks it, as serving does), not 100% (tf.math.in_top_k counts every tie), and
    top-3 of 3 classes is everything."""
    cfg, source = setup
    model, _ = evaluate.build(cfg, source.num_classes)
    manager = ckpt_lib.CheckpointManager(cfg.model_dir, 5, model=model)
    _randomise(model, 3)
    for v in model.supervised_head.variables:
        v.assign(tf.zeros_like(v))
    manager.save(4)
    result = evaluate.run(cfg, tf.distribute.get_strategy(), source, watch=False)
    assert result["top1"] == pytest.approx(1 / 3) and result["top5"] == 1.0
