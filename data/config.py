"""Data configuration: which images, which labels, and how the input pipeline treats them.

Library code takes a `DataConfig`; only `flags/` turns command-line flags into one. The defaults
are the embedded CPU setting (Fashion-MNIST at 32 px, weaker colour jitter, no blur); the paper's
ImageNet setting is `DataConfig.imagenet()`.
"""
import dataclasses
from typing import Optional, Tuple

# The random resized crop covers at least this fraction of the image (the original's
# `min_object_covered` of `tf.image.sample_distorted_bounding_box`).
CROP_MIN_OBJECT_COVERED = 0.1

HOLDOUT_SPLIT = 'holdout'  # eval_split naming the held-out part of train_split


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are prepared.

    Attributes:
      dataset: 'fashion_mnist' (the embedded Debian files, no network), any TFDS name such as
        'cifar10', 'imagenet2012', 'imagenet2012_subset/1pct', or 'folder:/path' (an existing
        directory also works) for the user's own images.
      data_dir: TFDS data directory where prepared data sets are cached (None: TFDS default,
        usually ~/tensorflow_datasets).
      manual_dir: directory with manually downloaded files: the ILSVRC2012 tars (plus
        1percent.txt / 10percent.txt for subsets), or the Fashion-MNIST gzip IDX files
        (None: /usr/share/datasets/fashion-mnist for Fashion-MNIST, TFDS default otherwise).
      rescan_folder: for an image folder, decode every image again instead of reusing what
        its manifest (in data_dir) knows about the unchanged files (see data.manifest).
      download: allow TFDS to download over the network; when False nothing is fetched and
        missing data raise an error saying which files to put where.
      train_split: TFDS split used for training (TFDS slicing such as 'train[:90%]' works).
      eval_split: split used for evaluation (None: the run does not evaluate; run.py picks
        test, else validation, else holdout when --eval_split is not given).
      image_size: side of the square images fed to the network, in pixels.
      label_fraction: fraction of training labels kept for fine-tuning, in (0, 1]; sampled
        class-balanced (for ImageNet use the official 'imagenet2012_subset/1pct' instead).
      labels_per_class: if set, keep this many labelled examples per class instead.
      subset_seed: seed of the class-balanced labelled-subset selection.
      holdout_fraction: fraction of each class of train_split held out for validation
        (round(fraction * class count) per class; 0 = none). The draw has a fixed seed of its
        own (data.subsets.HOLDOUT_SEED), not `seed`, so every run of a study holds out the same
        images; no training stage reads them, labelled subsets are drawn from the rest, and
        eval_split='holdout' evaluates on them.
      crop_area_range: (low, high) bounds of the random resized crop's area as a fraction of
        the image, for every training crop (pretraining, fine-tuning, distillation).
      color_distortion: 'auto' (greyscale jitter for single-channel images, SimCLR's colour
        distortion otherwise), 'rgb', 'gray' or 'none' (see data.augment).
      color_jitter_strength: SimCLR colour-jitter strength s (paper: 1.0 on ImageNet).
      use_blur: Gaussian blur in the pretraining augmentation (paper: on for ImageNet).
      cache: cache decoded uint8 images in memory before augmentation (small data sets only).
      shuffle_buffer: examples in the shuffle buffer.
      deterministic: keep element order in parallel maps (reproducible streams, slower).
      seed: seed of the shuffles and of the per-example augmentation seeds.
    """
    dataset: str = 'fashion_mnist'
    data_dir: Optional[str] = None
    manual_dir: Optional[str] = None
    download: bool = False
    rescan_folder: bool = False
    train_split: str = 'train'
    eval_split: Optional[str] = 'test'
    image_size: int = 32
    label_fraction: float = 1.0
    labels_per_class: Optional[int] = None
    subset_seed: int = 0
    holdout_fraction: float = 0.0
    crop_area_range: Tuple[float, float] = (0.08, 1.0)
    color_distortion: str = 'auto'
    color_jitter_strength: float = 0.5
    use_blur: bool = False
    cache: bool = True
    shuffle_buffer: int = 10000
    deterministic: bool = True
    seed: int = 0

    @property
    def uses_label_subset(self) -> bool:
        """True when fine-tuning keeps only part of the training labels."""
        return self.labels_per_class is not None or self.label_fraction < 1.0

    @classmethod
    def imagenet(cls, **overrides) -> 'DataConfig':
        """The paper's ImageNet setting (224 px, s = 1.0, blur, no cache)."""
        base = dict(dataset='imagenet2012', eval_split='validation', image_size=224,
                    color_jitter_strength=1.0, use_blur=True, cache=False)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def tiny(cls, **overrides) -> 'DataConfig':
        """Small, deterministic setting for tests."""
        base = dict(shuffle_buffer=64, deterministic=True)
        base.update(overrides)
        return cls(**base)
