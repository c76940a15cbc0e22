"""ImageNet, offline: a tiny fake ILSVRC2012 prepared by the unmodified TFDS builders.

The fake has the real archive layout (a train tar of per-synset tars of JPEGs, a flat
validation tar) and real file names from the official 1% / 10% lists, which are copied into
the temporary manual_dir at test time (they are not part of this repository).
"""
import io
import pathlib
import shutil
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from data import datasets
from data.config import DataConfig

LISTS_DIR = str(pathlib.Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'imagenet_subsets')
SYNSETS = ('n01440764', 'n01443537', 'n01484850')  # classes 0, 1, 2 of TFDS's labels.txt
VAL_SYNSETS = ('n01751748', 'n09193705', 'n02105855', 'n04263257')  # its first 4 val labels


def _jpeg(value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 5, 3), value, np.uint8)).save(buffer, format='JPEG')
    return buffer.getvalue()


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _train_names(one, ten, synset):
    """2 names in the 1% list (also in 10%), 1 only in 10%, 1 in neither."""
    in_one = sorted(n for n in one if n.startswith(synset))[:2]
    in_ten = sorted(n for n in ten - one if n.startswith(synset))[:1]
    return in_one + in_ten + [f'{synset}_999999.JPEG']


def _fake_ilsvrc(manual_dir):
    """Writes the two tars; returns {train file name: synset}."""
    one = set((manual_dir / '1percent.txt').read_text().split())
    ten = set((manual_dir / '10percent.txt').read_text().split())
    names = {n: s for s in SYNSETS for n in _train_names(one, ten, s)}
    with tarfile.open(manual_dir / 'ILSVRC2012_img_train.tar', 'w') as train:
        for k, synset in enumerate(SYNSETS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode='w') as per_class:
                for name in [n for n, s in names.items() if s == synset]:
                    _add(per_class, name, _jpeg(40 * k))
            _add(train, f'{synset}.tar', inner.getvalue())
    with tarfile.open(manual_dir / 'ILSVRC2012_img_val.tar', 'w') as val:
        for i in range(1, 5):  # labels come from TFDS's validation_labels.txt, in name order
            _add(val, f'ILSVRC2012_val_{i:08d}.JPEG', _jpeg(10 * i))
    return names, one, ten


@pytest.fixture(scope='module')
def fake_imagenet(tmp_path_factory):
    manual_dir = tmp_path_factory.mktemp('manual')
    for name in ('1percent.txt', '10percent.txt'):
        shutil.copy(f'{LISTS_DIR}/{name}', manual_dir / name)
    names, one, ten = _fake_ilsvrc(manual_dir)
    data_dir = str(tmp_path_factory.mktemp('tfds'))
    return names, one, ten, dict(data_dir=data_dir, manual_dir=str(manual_dir))


def _train_labels_by_name(source):
    return {ex['file_name'].decode(): ex['label']
            for ex in tfds.as_numpy(source.builder.as_dataset('train'))}


@pytest.mark.parametrize('dataset,subset_list', [('imagenet2012_subset/1pct', 'one'),
                                                 ('imagenet2012_subset/10pct', 'ten'),
                                                 ('imagenet2012', None)])
def test_prepares_offline_with_official_subsets(fake_imagenet, dataset, subset_list):
    names, one, ten, dirs = fake_imagenet
    source = datasets.load(DataConfig(dataset=dataset, **dirs))
    keep = {'one': one, 'ten': ten, None: set(names)}[subset_list]
    expected = {n: SYNSETS.index(s) for n, s in names.items() if n in keep}
    assert source.num_examples('train') == len(expected) == {'one': 6, 'ten': 9, None: 12}[
        subset_list]
    assert _train_labels_by_name(source) == expected
    assert source.num_classes == 1000 and source.class_names[:3] == SYNSETS
    labels = source.labels('train')
    np.testing.assert_array_equal(np.sort(labels), sorted(expected.values()))
    for ex in source.as_dataset('train').as_numpy_iterator():  # class k's JPEGs are all 40k
        assert labels[ex['index']] == ex['label']
        assert abs(ex['image'].mean() - 40 * ex['label']) < 2
    assert source.num_examples('validation') == 4
    val = sorted(source.labels('validation'))
    assert val == sorted(source.class_names.index(s) for s in VAL_SYNSETS)  # 65, 230, 809, 970
    assert val == [65, 230, 809, 970]


def test_missing_files_say_what_to_put_where(tmp_path):
    cfg = DataConfig(dataset='imagenet2012_subset/10pct', data_dir=str(tmp_path / 'd'),
                     manual_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        datasets.load(cfg)
    message = str(error.value)
    for name in ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar', '10percent.txt',
                 str(tmp_path)):
        assert name in message
    (tmp_path / 'ILSVRC2012_img_train.tar').write_bytes(b'')
    with pytest.raises(FileNotFoundError, match=r'manual_dir \S+: ILSVRC2012_img_val\.tar\.\n'):
        datasets.load(DataConfig(dataset='imagenet2012', data_dir=str(tmp_path / 'd'),
                                 manual_dir=str(tmp_path)))


def test_index_and_file_sharding_over_several_record_files(fake_imagenet, tmp_path):
    names, _, _, dirs = fake_imagenet
    data_dir = str(tmp_path)  # prepared here by TFDS with 3 record files per split
    builder = tfds.builder('imagenet2012', data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=dirs['manual_dir'], num_shards=3))
    assert builder.info.splits['train'].shard_lengths == [4, 4, 4]
    source = datasets.load(DataConfig(dataset='imagenet2012', data_dir=data_dir,
                                      manual_dir=dirs['manual_dir']))
    by_name = _train_labels_by_name(source)
    order = [ex['label'] for ex in source.as_dataset('train').as_numpy_iterator()]
    index = [ex['index'] for ex in source.as_dataset('train').as_numpy_iterator()]
    assert index == list(range(12)) and sorted(order) == sorted(by_name.values())
    shuffled = list(source.as_dataset('train', shuffle_files=True, seed=1).as_numpy_iterator())
    assert sorted(ex['index'] for ex in shuffled) == list(range(12))
    assert all(ex['label'] == order[ex['index']] for ex in shuffled)  # index follows the example
    shards = [[ex['index'] for ex in source.as_dataset(
        'train', input_context=tf.distribute.InputContext(2, i, 2)).as_numpy_iterator()]
        for i in range(2)]
    # Sharded by record files: TFDS gives files 0 and 2 to pipeline 0, file 1 to pipeline 1.
    assert shards == [[0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7]]


@pytest.fixture
def flags_of(run_flags):
    return run_flags


@pytest.mark.parametrize('dataset, kept, half', [('imagenet2012_subset/1pct', 6, 3),
                                                 ('imagenet2012_subset/10pct', 9, 6)])
def test_finetuning_an_official_subset_uses_all_of_it(fake_imagenet, flags_of, dataset, kept,
                                                      half, tmp_path):
    """The stage default label_fraction=0.1 kept one image per class (3 of 6, 3 of 9).

    Per class the fake 1pct has 2 images, 10pct 3: half is round(1.0) = 1 or round(1.5) = 2.
    """
    from data import pipeline
    from flags import checks, configs
    dirs = fake_imagenet[3]
    model_dir = f'--model_dir={tmp_path / "finetune"}'  # never the user's runs/finetune
    f = flags_of('--train_mode=finetune', f'--dataset={dataset}', '--checkpoint=x', model_dir,
                 f'--data_dir={dirs["data_dir"]}', f'--manual_dir={dirs["manual_dir"]}',
                 '--train_batch_size=2', '--eval_split=validation')
    data_cfg = configs.data_config(f)
    assert data_cfg.label_fraction == 1.0 and not data_cfg.uses_label_subset
    source = datasets.load(data_cfg)
    assert pipeline.num_train_examples(source, data_cfg, 'finetune') == kept
    cfg = configs.run_config(f, kept, source.class_names)
    assert checks.check(f, cfg, source) == []  # no warning
    # Asked for explicitly, a fraction applies on top of the list, with a warning saying so.
    f = flags_of('--train_mode=finetune', f'--dataset={dataset}', '--checkpoint=x', model_dir,
                 f'--data_dir={dirs["data_dir"]}', f'--manual_dir={dirs["manual_dir"]}',
                 '--train_batch_size=2', '--label_fraction=0.5')
    data_cfg = configs.data_config(f)
    assert pipeline.num_train_examples(source, data_cfg, 'finetune') == half
    warnings = checks.check(f, configs.run_config(f, half, source.class_names), source)
    assert warnings[0] == (f'--dataset={dataset} is already the official labelled subset; '
                           '--label_fraction / --labels_per_class subsample its list further.')
    if half == 3:  # one image left of each class
        assert warnings[1].startswith('--label_fraction=0.5 leaves one labelled example in 3 '
                                      'of 3 classes')
    assert len(warnings) == (2 if half == 3 else 1)
    # Other data sets keep the paper's 10% default.
    assert configs.data_config(flags_of('--train_mode=finetune')).label_fraction == 0.1
