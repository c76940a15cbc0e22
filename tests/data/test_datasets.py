"""Data sets: the offline Fashion-MNIST builder, label subsets, image folders, load() errors."""
import gzip
import io
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data import datasets
from data import fashion_mnist
from data import folders
from data import subsets
from data.config import DataConfig

FASHION_DIR = '/usr/share/datasets/fashion-mnist'


def _numpy_idx(name):
    """Independent oracle: the raw IDX file, headers skipped by hand (16 bytes images, 8 labels)."""
    with gzip.open(f'{FASHION_DIR}/{name}', 'rb') as f:
        raw = f.read()
    header = 16 if 'images' in name else 8
    return np.frombuffer(raw[header:], np.uint8)


@pytest.fixture(scope='module')
def fashion(tmp_path_factory):
    """Fashion-MNIST prepared once per session (test_pipeline.py shares the directory)."""
    data_dir = str(tmp_path_factory.getbasetemp() / 'tfds')
    return datasets.load(DataConfig(dataset='fashion_mnist', data_dir=data_dir))


def test_fashion_mnist_builder_matches_idx_files(fashion):
    assert fashion.num_examples('train') == 60000
    assert fashion.num_examples('test') == 10000
    assert fashion.num_classes == 10
    assert fashion.class_names[0] == 'T-shirt/top' and fashion.class_names[9] == 'Ankle boot'
    train_images = _numpy_idx('train-images-idx3-ubyte.gz').reshape(60000, 28, 28)
    train_labels = _numpy_idx('train-labels-idx1-ubyte.gz')
    first = next(fashion.as_dataset('train').as_numpy_iterator())
    assert first['index'] == 0
    assert first['label'] == train_labels[0] == 9  # Fashion-MNIST's first image: an ankle boot
    assert first['image'].shape == (28, 28, 1) and first['image'].dtype == np.uint8
    assert first['image'].sum() == train_images[0].sum(dtype=np.int64)
    np.testing.assert_array_equal(first['image'][..., 0], train_images[0])
    labels = fashion.labels('train')
    np.testing.assert_array_equal(labels, train_labels)
    np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)


def test_fashion_mnist_slice_keeps_positions(fashion):
    test_labels = _numpy_idx('t10k-labels-idx1-ubyte.gz')
    labels = fashion.labels('test[9990:]')  # -1 outside the slice, positions kept
    assert labels.shape == (10000,) and (labels[:9990] == -1).all()
    np.testing.assert_array_equal(labels[9990:], test_labels[9990:])
    indices = [ex['index'] for ex in fashion.as_dataset('test[9990:]').as_numpy_iterator()]
    assert indices == list(range(9990, 10000))


def _passes(ds):
    batches = list(ds.batch(4096).as_numpy_iterator())
    return {k: np.concatenate([b[k] for b in batches]) for k in ('image', 'label', 'index')}


def test_small_splits_are_read_once_and_served_from_memory_unchanged(fashion, monkeypatch):
    """A fixed-shape split within IN_MEMORY_MAX_BYTES is read from TFDS once; every later pass
    yields the same examples in the same order as a read from TFDS (the oracle: _read)."""
    source = datasets.TfdsSource(fashion.builder)  # nothing in memory yet
    reads = []
    tfds_read = source._read
    monkeypatch.setattr(source, '_read', lambda split, *a, **k: (reads.append(split),
                                                                  tfds_read(split, *a, **k))[1])
    for split in ('test', 'test[:700]'):
        first, second = _passes(source.as_dataset(split)), _passes(source.as_dataset(split))
        labels = source.labels(split)
        oracle = _passes(tfds_read(split))
        for key in ('image', 'label', 'index'):
            np.testing.assert_array_equal(first[key], oracle[key])
            np.testing.assert_array_equal(second[key], oracle[key])
        np.testing.assert_array_equal(labels[oracle['index']], oracle['label'])
    assert reads == ['test', 'test[:700]']  # one TFDS read per split for all of the above
    reads.clear()
    half = source.as_dataset('test', input_context=tf.distribute.InputContext(2, 1, 2))
    assert reads == ['test']  # one of several input pipelines: TFDS reads its share
    np.testing.assert_array_equal(_passes(half)['index'], np.arange(1, 10000, 2))
    monkeypatch.setattr(datasets, 'IN_MEMORY_MAX_BYTES', 28 * 28 * 699)  # 700 images: too big
    reads.clear()
    fresh = datasets.TfdsSource(fashion.builder)
    fresh_read = fresh._read
    monkeypatch.setattr(fresh, '_read', lambda split, *a, **k: (reads.append(split),
                                                                 fresh_read(split, *a, **k))[1])
    streamed = _passes(fresh.as_dataset('test[:700]'))
    np.testing.assert_array_equal(streamed['index'], oracle['index'])
    assert reads == ['test[:700]']
    fresh.as_dataset('test[:600]')  # 600 fit: read once into memory, not again
    fresh.as_dataset('test[:600]')
    assert reads == ['test[:700]', 'test[:600]']


def test_idx_magic_number_is_checked(tmp_path):
    path = tmp_path / 'bad.gz'
    with gzip.open(path, 'wb') as f:
        f.write((2049).to_bytes(4, 'big') + (1).to_bytes(4, 'big') + b'\x05')
    assert fashion_mnist.read_idx(str(path), 2049).tolist() == [5]
    with pytest.raises(ValueError, match='magic number 2049, expected 2051'):
        fashion_mnist.read_idx(str(path), 2051)


def test_load_errors(fashion, tmp_path):
    with pytest.raises(ValueError, match="no split 'validation'; available splits: train, test"):
        fashion.as_dataset('validation')
    with pytest.raises(ValueError, match=r"^fashion_mnist_local/1.0.0: cannot read split "
                                         r"'train\[abc\]' \(Error parsing[^\n]*$"):
        fashion.num_examples('train[abc]')
    cfg = DataConfig(data_dir=str(tmp_path / 'd'), manual_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'):
        datasets.load(cfg)
    with pytest.raises(FileNotFoundError, match='not prepared .* download=True'):
        datasets.load(DataConfig(dataset='mnist', data_dir=str(tmp_path / 'd')))
    with pytest.raises(ValueError, match="Unknown data set 'no_such_set'"):
        datasets.load(DataConfig(dataset='no_such_set', data_dir=str(tmp_path / 'd')))


def test_labelled_indices_fashion_mnist_one_percent(fashion):
    labels = fashion.labels('train')
    chosen = subsets.labelled_indices(labels, fraction=0.01, seed=0)
    assert len(chosen) == 600 and len(np.unique(chosen)) == 600
    np.testing.assert_array_equal(np.bincount(labels[chosen]), [60] * 10)
    np.testing.assert_array_equal(chosen, subsets.labelled_indices(labels, 0.01, seed=0))
    other = subsets.labelled_indices(labels, 0.01, seed=1)
    assert len(np.intersect1d(chosen, other)) < 60  # ~6 expected by chance
    per_class = subsets.labelled_indices(labels, per_class=7, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[per_class]), [7] * 10)


def test_labelled_indices_rounding_and_errors():
    labels = np.array([0] * 10 + [1] * 3 + [-1] * 4 + [2])
    chosen = subsets.labelled_indices(labels, fraction=0.5, seed=3)
    # round(5.0) = 5, round(1.5) = 2, round(0.5) = 0 -> at least 1; -1 never chosen.
    np.testing.assert_array_equal(np.bincount(labels[chosen]), [5, 2, 1])
    assert subsets.label_mask(18, chosen).sum() == 8
    assert subsets.labelled_indices(np.array([-1, -1]), fraction=1.0).tolist() == []
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match='fraction must be in \\(0, 1\\]'):
            subsets.labelled_indices(labels, fraction=bad)
    with pytest.raises(ValueError, match='exactly one'):
        subsets.labelled_indices(labels)


def _write(path, pixels, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_folder_of_class_folders_skips_corrupt_files(tmp_path, caplog):
    rng = np.random.default_rng(0)
    ant = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    cat = rng.integers(0, 256, (6, 4), dtype=np.uint8)  # grayscale PNG -> repeated to RGB
    _write(tmp_path / 'cat' / 'b.png', cat, 'PNG')
    _write(tmp_path / 'ant' / 'x.png', ant, 'PNG')
    jpeg = _write(tmp_path / 'cat' / 'a.jpg', np.full((8, 8, 3), 200, np.uint8), 'JPEG')
    (tmp_path / 'ant' / 'broken.png').write_bytes(b'not an image at all')
    (tmp_path / 'cat' / 'cut.jpg').write_bytes(jpeg[:len(jpeg) // 2])  # truncated JPEG
    (tmp_path / 'cat' / 'notes.txt').write_text('ignored')
    with caplog.at_level(logging.WARNING):
        src = datasets.load(DataConfig(dataset=f'folder:{tmp_path}'))
    log = caplog.text
    assert 'broken.png' in log and 'cut.jpg' in log and 'Skipped 2 unreadable' in log
    assert src.class_names == ('ant', 'cat') and src.splits == ('train',)
    assert src.num_examples('train') == 3
    np.testing.assert_array_equal(src.labels('train'), [0, 1, 1])  # ant/x, cat/a, cat/b
    examples = list(src.as_dataset('train').as_numpy_iterator())
    assert [ex['index'] for ex in examples] == [0, 1, 2]
    np.testing.assert_array_equal(examples[0]['image'], ant)
    assert np.abs(examples[1]['image'].astype(int) - 200).max() <= 2  # JPEG is lossy
    np.testing.assert_array_equal(examples[2]['image'], np.repeat(cat[..., None], 3, -1))
    # The skipped files stay named (prediction lists them), and each index has its file.
    assert src.unreadable('train') == [str(tmp_path / 'ant' / 'broken.png'),
                                       str(tmp_path / 'cat' / 'cut.jpg')]
    assert list(src.paths('train[1:]')) == [str(tmp_path / p) for p in ('ant/x.png', 'cat/a.jpg',
                                                                        'cat/b.png')]


def test_list_of_image_files(tmp_path):
    """files:LIST reads the listed images in order (relative to the list), unlabelled; a
    missing or corrupt entry is skipped and named, a list of nothing readable is refused."""
    pixels = [np.full((3, 5, 3), i * 40, np.uint8) for i in range(3)]
    for i, image in enumerate(pixels):
        _write(tmp_path / 'img' / f'{i}.png', image, 'PNG')
    (tmp_path / 'img' / 'bad.png').write_bytes(b'garbage')
    listed = ['img/2.png', '# a comment', '', str(tmp_path / 'img' / '0.png'), 'img/bad.png',
              'img/missing.png', 'img/1.png']
    (tmp_path / 'list.txt').write_text('\n'.join(listed) + '\n')
    src = datasets.load(DataConfig(dataset=f'files:{tmp_path}/list.txt'))
    assert (src.splits, src.num_classes, src.num_examples('train')) == (('train',), 0, 3)
    examples = list(src.as_dataset('train').as_numpy_iterator())
    for example, i in zip(examples, (2, 0, 1)):
        np.testing.assert_array_equal(example['image'], pixels[i])
        assert example['label'] == -1
    assert [os.path.basename(p) for p in src.paths('train')] == ['2.png', '0.png', '1.png']
    assert src.unreadable('train') == [str(tmp_path / 'img' / n)
                                       for n in ('bad.png', 'missing.png')]
    (tmp_path / 'none.txt').write_text('img/bad.png\n')
    with pytest.raises(ValueError, match='No readable JPEG or PNG image in the list .*bad.png'):
        datasets.load(DataConfig(dataset=f'files:{tmp_path}/none.txt'))
    with pytest.raises(FileNotFoundError, match='Image list'):
        datasets.load(DataConfig(dataset=f'files:{tmp_path}/absent.txt'))


def test_flat_split_and_empty_folders(tmp_path):
    for i in range(3):
        _write(tmp_path / 'flat' / f'{i}.png', np.full((4, 4, 3), i, np.uint8), 'PNG')
    flat = datasets.load(DataConfig(dataset=str(tmp_path / 'flat')))  # a directory works too
    assert flat.num_classes == 0 and flat.num_examples('train') == 3
    labels = [ex['label'] for ex in flat.as_dataset('train').as_numpy_iterator()]
    assert labels == [-1, -1, -1]
    for split, name in [('train', 'b'), ('train', 'a'), ('test', 'a')]:
        _write(tmp_path / 'split' / split / name / 'x.png', np.zeros((2, 2, 3), np.uint8), 'PNG')
    split = datasets.load(DataConfig(dataset=f'folder:{tmp_path / "split"}'))
    assert split.splits == ('test', 'train') and split.class_names == ('a', 'b')
    np.testing.assert_array_equal(split.labels('test'), [0])
    np.testing.assert_array_equal(split.labels('train'), [0, 1])
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match=f'No readable JPEG or PNG image in {tmp_path}/empty'):
        datasets.load(DataConfig(dataset=f'folder:{tmp_path / "empty"}'))


def test_class_folders_that_reach_the_same_images_are_refused(tmp_path):
    """A link to the root (or to another class folder, also across splits) would read images
    twice; a class folder linked to a folder elsewhere is a class like any other."""
    pixels = np.zeros((2, 2, 3), np.uint8)
    root = tmp_path / 'root'
    for name in ('a', 'b'):
        _write(root / name / 'x.png', pixels, 'PNG')
    (root / 'c').symlink_to(root / 'a')
    with pytest.raises(ValueError, match=rf'^the class folders {root}/a and {root}/c reach the '
                                         rf'same images \(both lead to {root}/a\): each image '
                                         r'would count twice; remove one of them\.$'):
        folders.FolderSource(str(root))
    (root / 'c').unlink()
    (root / 'up').symlink_to(tmp_path)  # above the root: the root is inside it
    with pytest.raises(ValueError, match=rf'^the class folder {root}/up leads to {tmp_path}, '
                                         r'which holds the class folders themselves'):
        folders.FolderSource(str(root))
    (root / 'up').unlink()
    splits = tmp_path / 'splits'
    _write(splits / 'train' / 'a' / 'x.png', pixels, 'PNG')
    (splits / 'test').mkdir()
    (splits / 'test' / 'a').symlink_to(splits / 'train' / 'a')  # the test images are trained on
    with pytest.raises(ValueError, match='reach the same images'):
        folders.FolderSource(str(splits))
    linked = tmp_path / 'linked'
    linked.mkdir()
    (linked / 'b').symlink_to(root / 'b')
    (linked / 'z').symlink_to(root / 'a')
    source = folders.FolderSource(str(linked))
    assert source.class_names == ('b', 'z') and list(source.labels('train')) == [0, 1]


def test_folder_splits_take_tfds_slices(tmp_path):
    """Six images, 3 per class in file order; a slice keeps positions, -1 outside it."""
    for i in range(6):
        _write(tmp_path / ('a' if i < 3 else 'b') / f'{i}.png',
               np.full((2, 2, 3), 10 * i, np.uint8), 'PNG')
    src = datasets.load(DataConfig(dataset=f'folder:{tmp_path}'))
    expected = {'train[:2]': [0, 1], 'train[-2:]': [4, 5], 'train[:50%]': [0, 1, 2],
                'train[:1]+train[4:]': [0, 4, 5], 'train': [0, 1, 2, 3, 4, 5]}
    for split, kept in expected.items():
        assert src.num_examples(split) == len(kept), split
        labels = np.full(6, -1)
        labels[kept] = [0 if k < 3 else 1 for k in kept]
        np.testing.assert_array_equal(src.labels(split), labels, err_msg=split)
        examples = list(src.as_dataset(split).as_numpy_iterator())
        assert [ex['index'] for ex in examples] == kept, split
        assert [int(ex['image'][0, 0, 0]) for ex in examples] == [10 * k for k in kept]
    with pytest.raises(ValueError, match=r"cannot read split 'train\[abc\]'.*train\[:50\]"):
        src.num_examples('train[abc]')
    with pytest.raises(ValueError, match=r"'train\[:99\]'.*incompatible with 6 examples"):
        src.labels('train[:99]')


def test_default_eval_split_is_the_one_the_data_set_has(fashion, tmp_path):
    assert datasets.default_eval_split(fashion) == 'test'
    for split in ('train', 'validation'):
        _write(tmp_path / 'tv' / split / 'a' / 'x.png', np.zeros((2, 2, 3), np.uint8), 'PNG')
    assert datasets.default_eval_split(datasets.load(DataConfig(
        dataset=f'folder:{tmp_path / "tv"}'))) == 'validation'
    _write(tmp_path / 'plain' / 'a' / 'x.png', np.zeros((2, 2, 3), np.uint8), 'PNG')
    plain = datasets.load(DataConfig(dataset=f'folder:{tmp_path / "plain"}'))
    with pytest.raises(ValueError, match=r'no test or validation split \(splits: train\).*'
                                         r'from the first stage on \(--holdout_fraction=0.1 on '
                                         r'every stage, --eval_split=holdout'):
        datasets.default_eval_split(plain)


@pytest.mark.parametrize('name, problem', [('/no/such/dir', 'does not exist'),
                                           ('./missing', 'does not exist'),
                                           ('~/no_such_images_here', 'does not exist'),
                                           ('{tmp}/file.txt', 'is not a directory')])
def test_a_path_that_is_no_folder_is_named_not_parsed_as_a_tfds_name(tmp_path, name, problem):
    (tmp_path / 'file.txt').write_text('x')
    name = name.format(tmp=tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        datasets.load(DataConfig(dataset=name, data_dir=str(tmp_path / 'd')))
    assert str(error.value).startswith(f'{name} {problem} (a folder of images is given as '
                                       'folder:/path/to/images')
    assert '\n' not in str(error.value)
    with pytest.raises(ValueError, match=r"^Unknown data set 'bad name!'[^\n]*$"):
        datasets.load(DataConfig(dataset='bad name!', data_dir=str(tmp_path / 'd')))


def test_preparing_fashion_mnist_says_what_happens(tmp_path, capfd):
    data_dir = str(tmp_path / 'tfds')
    datasets.load(DataConfig(dataset='fashion_mnist', data_dir=data_dir))
    out = capfd.readouterr().out
    assert 'Downloading' not in out and 'Unknown size' not in out
    assert ("Preparing a local TFDS copy of Debian's Fashion-MNIST "
            f"({fashion_mnist.DEFAULT_SOURCE_DIR}) in {data_dir}/fashion_mnist_local/1.0.0") in out
    assert 'nothing is downloaded' in out
    datasets.load(DataConfig(dataset='fashion_mnist', data_dir=data_dir))  # prepared: silent
    assert 'Preparing' not in capfd.readouterr().out
