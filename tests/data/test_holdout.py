"""The held-out validation split (data.subsets.holdout_indices, --holdout_fraction) and the
augmentation options the pipelines pass on (crop area range, colour distortion)."""
import numpy as np
import pytest
import tensorflow as tf

from data import augment
from data import datasets
from data import fashion_mnist
from data import pipeline
from data import subsets
from data.config import DataConfig

SPLIT = 'test[:200]'  # the training split of these tests: 200 images, ~20 per class


@pytest.fixture(scope='module')
def fashion(tmp_path_factory):
    data_dir = str(tmp_path_factory.getbasetemp() / 'tfds')  # shared with the other data tests
    return datasets.load(DataConfig(dataset='fashion_mnist', data_dir=data_dir))


@pytest.fixture(scope='module')
def raw():
    images, labels = fashion_mnist.read_split(fashion_mnist.DEFAULT_SOURCE_DIR, 'test')
    return images, labels.astype(np.int64)


def test_holdout_indices_balanced_deterministic_and_seed_free():
    labels = fashion_mnist.read_split(fashion_mnist.DEFAULT_SOURCE_DIR, 'train')[1]
    held = subsets.holdout_indices(labels, 1 / 12)
    np.testing.assert_array_equal(np.bincount(labels[held], minlength=10), [500] * 10)
    np.testing.assert_array_equal(held, subsets.holdout_indices(labels, 1 / 12))
    assert len(np.unique(held)) == len(held) == 5000
    # Per class round(fraction * n_c), halves to even: classes of 10, 5 and 3 at 0.25.
    small = np.array([0] * 10 + [1] * 5 + [2] * 3 + [-1] * 4)
    counts = np.bincount(small[subsets.holdout_indices(small, 0.25)], minlength=3)
    assert counts.tolist() == [round(2.5), round(1.25), round(0.75)] == [2, 1, 1]
    assert subsets.holdout_indices(small, 0.0).size == 0
    with pytest.raises(ValueError, match='holdout fraction must be in'):
        subsets.holdout_indices(small, 1.0)


def _cfg(**overrides):
    return DataConfig.tiny(**{'train_split': SPLIT, 'eval_split': 'test', 'seed': 5,
                              'holdout_fraction': 0.25, **overrides})


def _indices(input_fn, steps):
    ds = input_fn(tf.distribute.InputContext())
    return np.concatenate([b['index'] for b in ds.take(steps).as_numpy_iterator()])


def test_training_streams_and_subsets_never_touch_the_holdout(fashion):
    labels = fashion.labels(SPLIT)
    held = subsets.holdout_indices(labels, 0.25)
    expected = np.bincount(labels[labels >= 0], minlength=10)
    np.testing.assert_array_equal(np.bincount(labels[held], minlength=10),
                                  [round(0.25 * n) for n in expected])
    rest = np.setdiff1d(np.flatnonzero(labels >= 0), held)
    for seed in (0, 5, 11):  # the holdout does not move with --seed; the subset does
        cfg = _cfg(seed=seed, subset_seed=seed, labels_per_class=3)
        mask = pipeline.holdout_mask(fashion, cfg)
        np.testing.assert_array_equal(np.flatnonzero(mask), held)
        labelled = np.flatnonzero(pipeline.labelled_mask(fashion, cfg))
        assert len(labelled) == 30 and not np.isin(labelled, held).any()
        np.testing.assert_array_equal(np.bincount(labels[labelled], minlength=10), [3] * 10)
        two_epochs = 2 * len(rest) // 10
        for make in (pipeline.pretrain_input_fn, pipeline.distill_input_fn):
            seen = _indices(make(fashion, cfg, 10), two_epochs)
            assert set(seen) == set(rest), make.__name__  # all the rest, nothing held out
        seen = _indices(pipeline.finetune_input_fn(fashion, cfg, 10), 9)
        assert set(seen) == set(labelled)
    cfg = _cfg()
    assert pipeline.num_train_examples(fashion, cfg, 'pretrain') == len(rest)
    assert pipeline.num_train_examples(fashion, cfg, 'distill') == len(rest)
    assert pipeline.num_train_examples(fashion, _cfg(label_fraction=1.0),
                                       'finetune') == len(rest)


def test_eval_split_holdout_reads_the_held_out_images(fashion, raw):
    cfg = _cfg(eval_split='holdout')
    held = subsets.holdout_indices(fashion.labels(SPLIT), 0.25)
    batches = list(pipeline.eval_input_fn(fashion, cfg, 16)(tf.distribute.InputContext()))
    index = np.concatenate([b['index'].numpy() for b in batches])
    np.testing.assert_array_equal(np.sort(index), held)
    label = np.concatenate([b['label'].numpy() for b in batches])
    np.testing.assert_array_equal(label, raw[1][index])
    with pytest.raises(ValueError, match='set --holdout_fraction > 0'):
        pipeline.eval_input_fn(fashion, _cfg(holdout_fraction=0.0, eval_split='holdout'), 16)
    # Without a holdout nothing is filtered: the stream is the one of before.
    assert pipeline.training_mask(fashion, _cfg(holdout_fraction=0.0)) is None


def test_pipelines_pass_crop_range_and_colour_distortion(fashion, raw):
    cfg = _cfg(holdout_fraction=0.0, crop_area_range=(0.3, 0.5), color_distortion='none')
    pre = next(iter(pipeline.pretrain_input_fn(fashion, cfg, 4)(tf.distribute.InputContext())))
    fine = next(iter(pipeline.finetune_input_fn(fashion, cfg, 4)(tf.distribute.InputContext())))
    for batch, fn in ((pre, lambda x, s: augment.two_views(
            x, s, 32, cfg.color_jitter_strength, cfg.use_blur, (0.3, 0.5), 'none')),
                      (fine, lambda x, s: augment.preprocess_for_finetune(x, s, 32, (0.3, 0.5)))):
        i = int(batch['index'][0])
        expected = fn(raw[0][i], pipeline.example_seed(cfg.seed, 0, i))
        np.testing.assert_allclose(batch['image'][0], expected, atol=1e-5)
