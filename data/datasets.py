"""Data sets by name: `load(cfg)` gives a `Source` for TFDS data sets, Fashion-MNIST and folders.

- 'fashion_mnist': our offline builder (data.fashion_mnist) over the Debian gzip IDX files.
- 'folder:/path', or any existing directory: the user's images (data.folders).
- 'files:/path/list.txt': the images a text file lists, one a line (data.folders).
- anything else: a TFDS name, e.g. 'cifar10', 'imagenet2012', 'imagenet2012_subset/1pct'.

Nothing is fetched over the network unless `cfg.download` is True. Manual-download data sets
(ImageNet) are prepared offline from `cfg.manual_dir`; when a file is missing the error says
which files to put where. Prepared data are cached in `cfg.data_dir`, and so are the manifests
of image folders (`<data_dir>/folder_manifests`, see data.manifest).
"""
import contextlib
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import downloader

from data import fashion_mnist
from data import folders
from data import source as source_lib
from data.config import DataConfig

FOLDER_PREFIX = 'folder:'
MANIFEST_FOLDER = 'folder_manifests'  # in the data directory
FILES_PREFIX = 'files:'
_ILSVRC_TARS = ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar')
_SUBSET_LISTS = {'1pct': '1percent.txt', '10pct': '10percent.txt'}


# Evaluation splits by preference when --eval_split is not given ('holdout': a held-out part
# of the training split, when one is set aside).
EVAL_SPLITS = ('test', 'validation', 'holdout')
# A split whose decoded images (fixed shape, uint8) take at most this many bytes is read from
# TFDS once per process and served from memory: training, its first-batch grid, evaluation,
# the kNN monitor and the label lists then share one read instead of one each (Fashion-MNIST's
# 60,000 images: 47 MB, about 5 s per read on a 2-core CPU).
IN_MEMORY_MAX_BYTES = 512 << 20


def folder_path(dataset: str) -> Optional[str]:
    """The image folder named by `dataset` ('folder:/path' or a directory), else None."""
    if dataset.startswith(FOLDER_PREFIX):
        return os.path.expanduser(dataset[len(FOLDER_PREFIX):])
    return dataset if os.path.isdir(os.path.expanduser(dataset)) else None


def looks_like_path(dataset: str) -> bool:
    """True when `dataset` is meant as a directory rather than a TFDS name ('/x', './x', '~/x',
    'a/b/c'); TFDS names have at most one '/' before their version or keyword arguments."""
    name = dataset.split(':', 1)[0]
    return (dataset.startswith(('/', '.', '~', FOLDER_PREFIX, FILES_PREFIX))
            or os.path.exists(dataset)
            or (name.count('/') >= 2 and '=' not in dataset))


def default_eval_split(source: source_lib.Source) -> str:
    """The split to evaluate on when none is given: test, else validation, else holdout.

    Raises:
      ValueError: the source has none of them (e.g. a folder of class sub-folders only).
    """
    for split in EVAL_SPLITS:
        if split in source.splits:
            return split
    raise ValueError(
        f'{source.name} has no test or validation split (splits: {", ".join(source.splits)}). '
        f'Give the folder train/ and test/ (or validation/) sub-folders, each with the class '
        f'sub-folders, or hold part of the training images out from the first stage on '
        f'(--holdout_fraction=0.1 on every stage, --eval_split=holdout to evaluate: a run '
        f'that trained on them cannot be evaluated on them).')


def manual_files(dataset: str) -> tuple:
    """File names a manual-download data set needs in manual_dir (empty when unknown)."""
    name, _, config = dataset.partition('/')
    if name == 'imagenet2012':
        return _ILSVRC_TARS
    if name == 'imagenet2012_subset':
        return _ILSVRC_TARS + (_SUBSET_LISTS.get(config or '1pct', ''),)
    return ()


@contextlib.contextmanager
def _no_download_retries():
    """Makes a download that should not happen fail at once instead of retrying for minutes."""
    saved = downloader.MAX_RETRIES
    downloader.MAX_RETRIES = 0
    try:
        yield
    finally:
        downloader.MAX_RETRIES = saved


def _builder(cfg: DataConfig) -> tfds.core.DatasetBuilder:
    if cfg.dataset == 'fashion_mnist':
        return fashion_mnist.FashionMnistLocal(data_dir=cfg.data_dir, source_dir=cfg.manual_dir)
    try:
        return tfds.builder(cfg.dataset, data_dir=cfg.data_dir)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
        # TFDS's name-parsing error is many lines about its name syntax: one line instead.
        raise ValueError(f'Unknown data set {cfg.dataset!r}: not a TFDS name (see '
                         f'tfds.list_builders()), not "fashion_mnist", and not an existing '
                         f'directory or "folder:/path".') from e


def _check_manual_files(builder, cfg: DataConfig, manual_dir: str) -> None:
    """Raises FileNotFoundError listing the manual-download files absent from manual_dir."""
    needed = manual_files(cfg.dataset)
    if cfg.download:  # TFDS may fetch what can be fetched (e.g. the subset lists)
        needed = _ILSVRC_TARS if needed else ()
    missing = [f for f in needed if not os.path.exists(os.path.join(manual_dir, f))]
    if missing:
        raise FileNotFoundError(
            f'{cfg.dataset} is not prepared in {builder.data_dir_root} and it needs these files '
            f'in manual_dir {manual_dir}: {", ".join(missing)}.\n'
            f'{builder.MANUAL_DOWNLOAD_INSTRUCTIONS or ""}')


def _prepare(builder, cfg: DataConfig) -> None:
    """Prepares the builder's records if needed, touching the network only if cfg.download."""
    if builder.is_prepared():
        return
    manual = isinstance(builder, fashion_mnist.FashionMnistLocal) or bool(
        builder.MANUAL_DOWNLOAD_INSTRUCTIONS)
    if not manual and not cfg.download:
        raise FileNotFoundError(
            f'{cfg.dataset} is not prepared in {builder.data_dir_root}. Set download=True '
            f'(--download) to fetch it, or prepare it elsewhere with `tfds build '
            f'{cfg.dataset} --data_dir=...` and copy it there.')
    manual_dir = cfg.manual_dir or os.path.join(builder.data_dir_root, 'downloads', 'manual')
    if not isinstance(builder, fashion_mnist.FashionMnistLocal):
        _check_manual_files(builder, cfg, manual_dir)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    with contextlib.ExitStack() as stack:
        if not cfg.download:
            stack.enter_context(_no_download_retries())
        builder.download_and_prepare(download_config=config)


def manifest_dir(cfg: DataConfig) -> Optional[str]:
    """Where the manifests of image folders are kept: in cfg.data_dir (else TFDS's default,
    $TFDS_DATA_DIR or ~/tensorflow_datasets); None for a data directory that is not a local
    path (gs://...), where none is kept."""
    data_dir = cfg.data_dir or tfds.core.constants.get_default_data_dir()
    if '://' in data_dir:
        return None
    return os.path.join(os.path.expanduser(data_dir), MANIFEST_FOLDER)


def load(cfg: DataConfig,
         strategy: Optional[tf.distribute.Strategy] = None) -> source_lib.Source:
    """The source named by cfg.dataset, prepared (offline unless cfg.download).

    Args:
      cfg: the data configuration.
      strategy: the run's strategy; the workers of a MultiWorkerMirroredStrategy share the
        check of an image folder or list (folders.scan_share), so every worker must call load.

    Raises:
      FileNotFoundError: data missing; the message says which files to put where.
      ValueError: unknown data set name.
    """
    root = folder_path(cfg.dataset)
    share = folders.scan_share(strategy)
    if root is not None:
        return folders.FolderSource(root, manifest_dir=manifest_dir(cfg),
                                    rescan=cfg.rescan_folder, share=share)
    if cfg.dataset.startswith(FILES_PREFIX):
        return folders.FileListSource(os.path.expanduser(cfg.dataset[len(FILES_PREFIX):]),
                                      share=share)
    if looks_like_path(cfg.dataset):
        problem = 'is not a directory' if os.path.exists(cfg.dataset) else 'does not exist'
        raise FileNotFoundError(f'{cfg.dataset} {problem} (a folder of images is given as '
                                f'folder:/path/to/images; a TFDS data set by its name).')
    builder = _builder(cfg)
    _prepare(builder, cfg)
    return TfdsSource(builder)


def _example_index_fn(shard_lengths):
    """Maps a TFDS 'tfds_id' (b'<name>-<split>.tfrecord-00003-of-00008__17') to its position."""
    starts = tf.constant(np.concatenate([[0], np.cumsum(shard_lengths)[:-1]]), tf.int64)

    def index(tfds_id):
        shard = tf.strings.regex_replace(tfds_id, r'^.*-(\d+)-of-\d+__\d+$', r'\1')
        record = tf.strings.regex_replace(tfds_id, r'^.*__(\d+)$', r'\1')
        return (tf.gather(starts, tf.strings.to_number(shard, tf.int64))
                + tf.strings.to_number(record, tf.int64))
    return index


class TfdsSource(source_lib.Source):
    """A prepared TFDS builder; the image and label are its supervised keys."""

    def __init__(self, builder: tfds.core.DatasetBuilder):
        self._builder = builder
        info = builder.info
        self.name = info.full_name
        self._image_key, self._label_key = info.supervised_keys or ('image', 'label')
        self.class_names = tuple(info.features[self._label_key].names)
        self.splits = tuple(info.splits.keys())
        self._labels: Dict[str, np.ndarray] = {}
        self._memory: Dict[str, Dict[str, np.ndarray]] = {}
        image = info.features[self._image_key]
        shape, dtype = getattr(image, 'shape', None), getattr(image, 'dtype', None)
        self._image_bytes = (int(np.prod(shape)) if shape and None not in shape
                             and dtype == tf.uint8 else None)
        self.reads_encoded = isinstance(image, tfds.features.Image)  # stored as PNG or JPEG

    @property
    def builder(self) -> tfds.core.DatasetBuilder:
        """The prepared TFDS builder (for its other features, e.g. ImageNet file names)."""
        return self._builder

    def _split_info(self, split: str):
        self.check_split(split)
        try:
            return self._builder.info.splits[split]
        except ValueError as e:  # a malformed slice: TFDS says so over several lines
            raise ValueError(f'{self.name}: cannot read split {split!r} '
                             f'({str(e).splitlines()[0]})') from e

    def num_examples(self, split: str) -> int:
        return self._split_info(split).num_examples

    def as_dataset(self, split: str, shuffle_files: bool = False, seed: int = 0,
                   input_context: Optional[tf.distribute.InputContext] = None,
                   decode: bool = True) -> tf.data.Dataset:
        if not decode:
            return self._read(split, shuffle_files, seed, input_context,
                              decoders={self._image_key: tfds.decode.SkipDecoding()})
        one_pipeline = input_context is None or input_context.num_input_pipelines == 1
        memory = self._in_memory(split) if one_pipeline and not shuffle_files else None
        if memory is not None:  # the same examples in the same order as a read from TFDS
            return tf.data.Dataset.from_tensor_slices(memory)
        return self._read(split, shuffle_files, seed, input_context)

    def _in_memory(self, split: str) -> Optional[Dict[str, np.ndarray]]:
        """{'image', 'label', 'index'} of `split` in TFDS's unshuffled order, or None when its
        images have no fixed shape or exceed IN_MEMORY_MAX_BYTES."""
        if split not in self._memory:
            if (self._image_bytes is None
                    or self._image_bytes * self.num_examples(split) > IN_MEMORY_MAX_BYTES):
                return None
            batches = list(self._read(split).batch(8192).as_numpy_iterator())
            self._memory[split] = {k: np.concatenate([b[k] for b in batches])
                                   for k in ('image', 'label', 'index')}
        return self._memory[split]

    def _read(self, split, shuffle_files=False, seed=0, input_context=None, decoders=None):
        """as_dataset, with TFDS `decoders` (e.g. to skip decoding images)."""
        files = len(self._split_info(split).file_instructions)
        pipelines = input_context.num_input_pipelines if input_context else 1
        by_files = pipelines > 1 and files >= pipelines  # else filter by index below
        read_config = tfds.ReadConfig(
            add_tfds_id=True, shuffle_seed=seed, try_autocache=False,  # the pipeline caches
            input_context=input_context if by_files else None)
        ds = self._builder.as_dataset(split, shuffle_files=shuffle_files,
                                      read_config=read_config, decoders=decoders)
        index = _example_index_fn(self._builder.info.splits[
            source_lib.base_split(split)].shard_lengths)
        ds = ds.map(lambda ex: {'image': ex[self._image_key],
                                'label': tf.cast(ex[self._label_key], tf.int64),
                                'index': index(ex['tfds_id'])},
                    num_parallel_calls=tf.data.AUTOTUNE)
        return ds if by_files else source_lib.shard_by_index(ds, input_context)

    def labels(self, split: str) -> np.ndarray:
        if split not in self._labels:
            size = self.num_examples(source_lib.base_split(split))
            labels = np.full([size], -1, np.int64)  # -1 outside a slice such as 'train[:10%]'
            memory = self._in_memory(split)
            if memory is not None:
                labels[memory['index']] = memory['label']
            else:
                ds = self._read(split, decoders={self._image_key: tfds.decode.SkipDecoding()})
                for batch in ds.batch(8192).as_numpy_iterator():
                    labels[batch['index']] = batch['label']
            self._labels[split] = labels
        return self._labels[split].copy()
