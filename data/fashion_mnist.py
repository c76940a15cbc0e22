"""The embedded data set: Fashion-MNIST prepared offline from Debian's `dataset-fashion-mnist`.

The Debian package installs the original gzip IDX files in /usr/share/datasets/fashion-mnist/.
`FashionMnistLocal` is a TFDS builder that parses them with NumPy (no network) and caches the
prepared records in the TFDS data_dir; preparing takes a few seconds. Examples keep the order
of the IDX files, so position i of a split is image i of the original file.
"""
import gzip
import os
from typing import Optional, Tuple

import numpy as np
import tensorflow_datasets as tfds

DEFAULT_SOURCE_DIR = '/usr/share/datasets/fashion-mnist'
CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
               'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
# Gzip IDX files of each split: (images, labels).
SPLIT_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


def read_idx(path: str, expected_magic: int) -> np.ndarray:
    """Reads one gzip IDX file of unsigned bytes.

    Args:
      path: the .gz file.
      expected_magic: 2051 for images, 2049 for labels.

    Returns:
      uint8 array: (n, rows, cols) for images, (n,) for labels.

    Raises:
      ValueError: wrong magic number or a size that does not match the header.
    """
    with gzip.open(path, 'rb') as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], 'big')
    if magic != expected_magic:
        raise ValueError(f'{path}: IDX magic number {magic}, expected {expected_magic}.')
    ndim = magic & 0xFF  # the low byte counts the dimensions
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f'{path}: {data.size} bytes of data, header says {dims}.')
    return data.reshape(dims)


def missing_files_message(source_dir: str) -> Optional[str]:
    """Says which Fashion-MNIST files are missing from source_dir, or None when all are there."""
    missing = [name for pair in SPLIT_FILES.values() for name in pair
               if not os.path.exists(os.path.join(source_dir, name))]
    if not missing:
        return None
    return (f'Fashion-MNIST files missing from {source_dir}: {", ".join(missing)}. '
            f'Install them with `apt-get install dataset-fashion-mnist` (they go to '
            f'{DEFAULT_SOURCE_DIR}), or put the four gzip IDX files in a directory and pass it '
            f'as manual_dir.')


def read_split(source_dir: str, split: str) -> Tuple[np.ndarray, np.ndarray]:
    """Returns (images (n, 28, 28, 1) uint8, labels (n,) uint8) of one split."""
    images_file, labels_file = SPLIT_FILES[split]
    images = read_idx(os.path.join(source_dir, images_file), _IMAGES_MAGIC)
    labels = read_idx(os.path.join(source_dir, labels_file), _LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f'{split}: {len(images)} images but {len(labels)} labels.')
    return images[..., None], labels  # (n, 28, 28, 1): TFDS images carry a channel axis


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST from local gzip IDX files; splits train (60,000) and test (10,000)."""

    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Prepared from the Debian dataset-fashion-mnist files.'}

    def __init__(self, *, source_dir: Optional[str] = None, **kwargs):
        """Args: source_dir: directory of the gzip IDX files; kwargs go to the TFDS builder."""
        self._source_dir = source_dir or DEFAULT_SOURCE_DIR
        super().__init__(**kwargs)

    def _log_download_bytes(self) -> None:
        """Says what preparing really does, instead of TFDS's 'Downloading and preparing'."""
        print(f"Preparing a local TFDS copy of Debian's Fashion-MNIST ({self._source_dir}) in "
              f"{self.data_dir} (once, about 10 s); nothing is downloaded.", flush=True)

    def _log_download_done(self) -> None:
        print(f"Fashion-MNIST prepared in {self.data_dir}; later runs reuse it.", flush=True)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                # Raw pixels: PNG- or zlib-encoding 70,000 images takes 10-60 s here, raw bytes
                # take seconds (55 MB on disk), and the pipeline gets the same uint8 tensor.
                'image': tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8,
                                              encoding=tfds.features.Encoding.BYTES),
                'label': tfds.features.ClassLabel(names=CLASS_NAMES),
            }),
            supervised_keys=('image', 'label'),
            homepage='https://github.com/zalandoresearch/fashion-mnist',
            # Keep the IDX order so that position i of a split is image i of the file.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        message = missing_files_message(self._source_dir)
        if message:
            raise FileNotFoundError(message)
        return {split: self._generate_examples(*read_split(self._source_dir, split))
                for split in SPLIT_FILES}

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {'image': image, 'label': int(label)}
