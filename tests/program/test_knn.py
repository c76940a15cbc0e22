"""The online kNN monitor through run.py: scalars at the right steps, the value recomputed here
with a NumPy kNN on the final checkpoint's features, and training untouched by it."""
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from checkpoints import manager as ckpt_lib
from data import augment, fashion_mnist, subsets
from tf2 import config as cfg_lib
from tf2 import model as model_lib
from tf2 import resnet
from stages import summaries

runs = pytest.mark.runs
SKIP = {"_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE"}


def _features(model, images):
    """final_avg_pool of uint8 (n, 28, 28, 1) images, preprocessed for evaluation at 16 px."""
    batch = tf.stack([augment.preprocess_for_eval(x, 16, center_crop=False) for x in images])
    return model(batch, training=False)[resnet.FINAL_AVG_POOL].numpy().astype(np.float64)


def _numpy_knn_top1(bank, bank_labels, query, query_labels, k=20, temperature=0.07):
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    hits = 0
    for q, label in zip(query, query_labels):
        sim = bank @ (q / np.linalg.norm(q))
        votes = np.zeros(10)
        for i in np.argsort(-sim, kind="stable")[:k]:
            votes[bank_labels[i]] += np.exp(sim[i] / temperature)
        hits += int(np.argmax(votes) == label)
    return hits / len(query)


@runs("knn", "pretrain")
def test_knn_monitor_scalars_value_and_no_effect_on_training(runs):
    result = runs.result("knn").check()
    model_dir = Path(result.model_dir)
    scalars = summaries.read_scalars(str(model_dir))["knn/top1"]
    assert [step for step, _ in scalars] == [0, 4, 8]  # first, every 4 steps, last
    printed = re.findall(r"step (\d+)/8  knn/top1 ([0-9.]+)  \(k=20, bank 100, 64 held-out\)",
                         result.stdout)
    assert [int(s) for s, _ in printed] == [0, 4, 8], result.stdout
    for (_, value), (_, shown) in zip(scalars, printed):
        assert value == pytest.approx(float(shown), abs=5e-5)
    # Oracle: the final weights, the bank (10 per class of the 2,000 training images, seed 0)
    # and the first 64 test images, through a NumPy kNN.
    cfg = cfg_lib.load_run_config(str(model_dir / "config.json"), data=None)
    model = model_lib.build_model(cfg.model, cfg.head, stop_gradient_supervised=True,
                                  image_size=16, num_classes=10)
    ckpt_lib.restore_objects(str(model_dir / "ckpt-8"), model=model)
    train_images, train_labels = fashion_mnist.read_split(fashion_mnist.DEFAULT_SOURCE_DIR,
                                                          "train")
    bank = subsets.labelled_indices(train_labels[:2000], per_class=10, seed=0)
    test_images, test_labels = fashion_mnist.read_split(fashion_mnist.DEFAULT_SOURCE_DIR, "test")
    expected = _numpy_knn_top1(_features(model, train_images[bank]), train_labels[bank],
                               _features(model, test_images[:64]), test_labels[:64])
    assert abs(scalars[-1][1] - expected) <= 1 / 64 + 1e-6  # one near-tie may flip
    # The monitor reads only: the weights, statistics and momenta equal the unmonitored run's.
    ours = tf.train.load_checkpoint(str(model_dir / "ckpt-8"))
    reference = tf.train.load_checkpoint(runs.result("pretrain").model_dir + "/ckpt-8")
    keys = set(reference.get_variable_to_shape_map()) - SKIP
    assert keys == set(ours.get_variable_to_shape_map()) - SKIP and len(keys) > 150
    for key in sorted(keys):
        np.testing.assert_array_equal(ours.get_tensor(key), reference.get_tensor(key),
                                      err_msg=key)
