"""Per-replica input pipelines on Fashion-MNIST test images, under two replicas."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data import augment
from data import datasets
from data import fashion_mnist
from data import pipeline
from data import subsets
from data.config import DataConfig

SPLIT = 'test[:96]'  # 96 images: epochs are short, positions are 0..95


@pytest.fixture(scope='module')
def fashion(tmp_path_factory):
    """Fashion-MNIST prepared once per session (test_datasets.py shares the directory)."""
    data_dir = str(tmp_path_factory.getbasetemp() / 'tfds')
    return datasets.load(DataConfig(dataset='fashion_mnist', data_dir=data_dir))


@pytest.fixture(scope='module')
def raw():
    """(images (10000, 28, 28, 1) uint8, labels (10000,)) of the test split, from the IDX files."""
    images, labels = fashion_mnist.read_split(fashion_mnist.DEFAULT_SOURCE_DIR, 'test')
    return images, labels.astype(np.int64)


def _cfg(**overrides):
    return DataConfig.tiny(**{'train_split': SPLIT, 'eval_split': SPLIT, 'seed': 5, **overrides})


def _first_step(strategy, input_fn):
    """{key: [replica 0 array, replica 1 array]} of the first distributed batch."""
    batch = next(iter(pipeline.distribute(strategy, input_fn)))
    return {k: [t.numpy() for t in strategy.experimental_local_results(v)]
            for k, v in batch.items()}


def test_pretrain_two_replicas(fashion, raw, two_replicas):
    cfg = _cfg()
    step = _first_step(two_replicas, pipeline.pretrain_input_fn(fashion, cfg, 8))
    assert [x.shape for x in step['image']] == [(4, 32, 32, 6)] * 2
    indices = np.concatenate(step['index'])  # (8,) one global step
    assert len(np.unique(indices)) == 8 and indices.max() < 96
    images = np.concatenate(step['image'])  # (8, 32, 32, 6)
    assert np.abs(images[..., :3] - images[..., 3:]).mean(axis=(1, 2, 3)).min() > 0.01
    np.testing.assert_array_equal(np.concatenate(step['label']), raw[1][indices])
    # Oracle: the augmentation applied by hand with the seed of (cfg.seed, epoch 0, index).
    i = indices[3]
    expected = augment.two_views(raw[0][i], pipeline.example_seed(cfg.seed, 0, i), 32,
                                 cfg.color_jitter_strength, cfg.use_blur)
    np.testing.assert_allclose(images[3], expected, atol=1e-5)
    again = _first_step(two_replicas, pipeline.pretrain_input_fn(fashion, cfg, 8))
    np.testing.assert_array_equal(np.concatenate(again['image']), images)
    other = _first_step(two_replicas, pipeline.pretrain_input_fn(fashion, _cfg(seed=6), 8))
    assert not np.array_equal(np.concatenate(other['image']), images)


def test_batch_not_divisible_by_replicas(fashion, two_replicas):
    with pytest.raises(ValueError, match='global batch size 7 is not divisible by the 2'):
        pipeline.distribute(two_replicas, pipeline.pretrain_input_fn(fashion, _cfg(), 7))


def test_epochs_are_permutations_with_new_augmentations(fashion, raw):
    input_fn = pipeline.finetune_input_fn(fashion, _cfg(), 32)
    batches = list(input_fn(tf.distribute.InputContext()).take(6).as_numpy_iterator())
    index = np.concatenate([b['index'] for b in batches])  # (192,) two epochs of 96
    np.testing.assert_array_equal(np.sort(index[:96]), np.arange(96))
    np.testing.assert_array_equal(np.sort(index[96:]), np.arange(96))
    assert not np.array_equal(index[:96], index[96:])  # reshuffled
    images = np.concatenate([b['image'] for b in batches])  # (192, 32, 32, 3)
    first, second = images[:96][np.argsort(index[:96])], images[96:][np.argsort(index[96:])]
    assert np.abs(first - second).mean() > 0.01  # the same image, augmented anew
    i = index[100]
    expected = augment.preprocess_for_finetune(raw[0][i], pipeline.example_seed(5, 1, i), 32)
    np.testing.assert_allclose(images[100], expected, atol=1e-5)


def test_input_pipelines_read_disjoint_shards(fashion):
    input_fn = pipeline.eval_input_fn(fashion, _cfg(), 16)
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(2, pipeline_id, 2)
        seen.append(np.concatenate([b['index'] for b in input_fn(context)]))
    assert sorted(seen[0] % 2) == [0] * 48 and sorted(seen[1] % 2) == [1] * 48
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(96))


@pytest.mark.parametrize('size,center_crop', [(32, False), (40, True)])
def test_eval_pixels_match_preprocess_for_eval(fashion, raw, size, center_crop):
    input_fn = pipeline.eval_input_fn(fashion, _cfg(image_size=size), 40)
    batches = list(input_fn(tf.distribute.InputContext()).as_numpy_iterator())
    assert [len(b['index']) for b in batches] == [40, 40, 16]  # one pass, last batch partial
    np.testing.assert_array_equal(np.concatenate([b['index'] for b in batches]), np.arange(96))
    np.testing.assert_array_equal(batches[1]['label'], raw[1][40:80])
    expected = [augment.preprocess_for_eval(raw[0][i], size, center_crop=center_crop)
                for i in (40, 41)]
    np.testing.assert_allclose(batches[1]['image'][:2], expected, atol=1e-6)


def test_distill_label_mask_and_finetune_subset(fashion, raw):
    cfg = _cfg(label_fraction=0.2, subset_seed=3)
    labels = fashion.labels(SPLIT)  # (10000,), -1 beyond position 95
    chosen = subsets.labelled_indices(labels, fraction=0.2, seed=3)
    np.testing.assert_array_equal(labels[:96], raw[1][:96])
    distill = pipeline.distill_input_fn(fashion, cfg, 48)(tf.distribute.InputContext())
    batches = list(distill.take(2).as_numpy_iterator())
    index = np.concatenate([b['index'] for b in batches])  # (96,) one epoch
    mask = np.concatenate([b['label_mask'] for b in batches])
    label = np.concatenate([b['label'] for b in batches])
    np.testing.assert_array_equal(mask, np.isin(index, chosen).astype(np.float32))
    np.testing.assert_array_equal(label, np.where(mask > 0, raw[1][index], -1))
    finetune = pipeline.finetune_input_fn(fashion, cfg, 4)(tf.distribute.InputContext())
    seen = np.concatenate([b['index'] for b in finetune.take(10).as_numpy_iterator()])
    assert set(seen) <= set(chosen) and len(set(seen)) == len(chosen)


def test_unlabelled_folder_pretrains_and_distills_but_cannot_finetune(tmp_path):
    for i in range(4):
        Image.fromarray(np.full((9, 9, 3), 60 * i, np.uint8)).save(tmp_path / f'{i}.png')
    folder = datasets.load(DataConfig(dataset=f'folder:{tmp_path}'))
    cfg = DataConfig.tiny(dataset=f'folder:{tmp_path}', image_size=8)
    with pytest.raises(ValueError, match='has no labels: it can be used for pretraining only'):
        pipeline.finetune_input_fn(folder, cfg, 2)
    context = tf.distribute.InputContext()
    distill = next(iter(pipeline.distill_input_fn(folder, cfg, 4)(context)))
    assert distill['label'].numpy().tolist() == [-1] * 4
    assert distill['label_mask'].numpy().tolist() == [0.0] * 4
    pretrain = next(iter(pipeline.pretrain_input_fn(folder, cfg, 4)(context)))
    assert pretrain['image'].shape == (4, 8, 8, 6)
    # A constant image stays constant through crop, flip and jitter: one value per view.
    views = pretrain['image'].numpy().reshape(4, 64, 2, 3)  # (b, pixels, view, rgb)
    assert np.ptp(views, axis=1).max() < 1e-5


def test_one_view_stages_without_cache_decode_only_the_crop(tmp_path, caplog):
    """cache off: fine-tuning and distillation read the JPEG files and decode only each crop
    (augment.decode_random_crop); the stream holds the cached one's pixels, and a file that
    broke since the scan is skipped."""
    rng = np.random.RandomState(0)
    for name in 'ab':
        (tmp_path / name).mkdir()
    for i in range(12):  # a: 0, 2, ..., 10 (indices 0-5); b: 1, 3, ..., 11 (indices 6-11)
        smooth = np.kron(rng.randint(0, 256, (4, 5, 3)), np.ones((10, 10, 1)))
        Image.fromarray(smooth.astype(np.uint8)).save(tmp_path / 'ab'[i % 2] / f'{i:02d}.jpg')
    folder = datasets.load(DataConfig(dataset=f'folder:{tmp_path}', data_dir=str(tmp_path)))
    context = tf.distribute.InputContext()
    for make in (pipeline.finetune_input_fn, pipeline.distill_input_fn):
        batches = {}
        for cache in (True, False):
            cfg = DataConfig.tiny(dataset=f'folder:{tmp_path}', image_size=16, cache=cache,
                                  label_fraction=1.0)
            assert pipeline.reads_encoded(folder, cfg) is not cache
            batch = next(iter(make(folder, cfg, 12)(context)))  # one epoch, file order unlike
            order = np.argsort(batch['index'].numpy())
            batches[cache] = {k: v.numpy()[order] for k, v in batch.items()}
        np.testing.assert_array_equal(batches[False]['index'], np.arange(12))
        np.testing.assert_array_equal(batches[True]['label'], [0] * 6 + [1] * 6)
        np.testing.assert_array_equal(batches[False]['label'], batches[True]['label'])
        np.testing.assert_array_equal(batches[True]['image'], batches[False]['image'])
    (tmp_path / 'a' / '04.jpg').write_bytes(b'broken after the scan')  # index 2
    cfg = DataConfig.tiny(dataset=f'folder:{tmp_path}', image_size=16, cache=False)
    indices = next(iter(pipeline.finetune_input_fn(folder, cfg, 22)(context)))['index']
    assert sorted(indices.numpy().tolist()) == sorted([i for i in range(12) if i != 2] * 2)
