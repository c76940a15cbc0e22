"""Per-replica tf.data pipelines, one per stage.

Each `*_input_fn(source, cfg, global_batch_size)` returns an
`input_fn(input_context) -> tf.data.Dataset` of per-replica batches for
`strategy.distribute_datasets_from_function` (see `distribute`). A training pipeline reads its
input pipeline's share of the split, caches the decoded uint8 images, shuffles with
cfg.seed, repeats, augments, batches and prefetches.

Augmentations are stateless: example `index` in epoch `epoch` is augmented with the seed
fold_in(fold_in([cfg.seed, 0], epoch), index), so every epoch differs, a seed reproduces
the stream, and an example's pixels do not depend on the number of replicas or workers.

With cfg.holdout_fraction > 0 a class-balanced part of the train split is held out
(`holdout_mask`): the training pipelines skip it, labelled subsets are drawn from the rest,
and the evaluation pipeline reads it for eval split 'holdout'.

Batches (b = per-replica batch size, s = cfg.image_size):
  pretrain: {'image': (b, s, s, 6) float32, two views on channels, 'label', 'index'}
  finetune, eval: {'image': (b, s, s, 3) float32, 'label', 'index'}
  distill: {'image': (b, s, s, 3), 'label', 'label_mask', 'index'}
'label' is int32 (-1 when unknown), 'index' int64 (position in the split), images in [0, 1].
"""
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from data import augment
from data import source as source_lib
from data import subsets
from data.config import HOLDOUT_SPLIT, DataConfig

InputFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]
AUTOTUNE = tf.data.AUTOTUNE
EVAL_CENTER_CROP_MIN_SIZE = 33  # SimCLR only resizes images of 32 px or less at evaluation


def per_replica_batch_size(input_context: tf.distribute.InputContext,
                           global_batch_size: int) -> int:
    """global_batch_size / replicas; ValueError naming both when it does not divide."""
    replicas = input_context.num_replicas_in_sync
    if global_batch_size % replicas:
        raise ValueError(f'The global batch size {global_batch_size} is not divisible by the '
                         f'{replicas} replicas in sync.')
    return input_context.get_per_replica_batch_size(global_batch_size)


def example_seed(seed: int, epoch: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """(2,) int64 stateless seed of one example in one epoch."""
    base = tf.constant([seed, 0], tf.int64)
    # fold_in draws in the dtype of its data, so fix it: a python 0 would give another seed.
    per_epoch = tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(per_epoch, tf.cast(index, tf.int64))


def _examples(source: source_lib.Source, cfg: DataConfig, split: str,
              input_context: tf.distribute.InputContext, keep: Optional[np.ndarray] = None,
              shuffle_files: bool = False, decode: bool = True) -> tf.data.Dataset:
    """This pipeline's examples of `split` (only those with keep[index] when given), cached."""
    ds = source.as_dataset(split, shuffle_files=shuffle_files, seed=cfg.seed,
                           input_context=input_context, decode=decode)
    if keep is not None:
        keep = tf.constant(keep, tf.bool)
        ds = ds.filter(lambda ex: tf.gather(keep, ex['index']))
    return ds.cache() if cfg.cache else ds


def _epochs(ds: tf.data.Dataset, cfg: DataConfig) -> tf.data.Dataset:
    """Repeats `ds` forever, reshuffled each epoch; yields (epoch int64, example)."""
    shuffled = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed, reshuffle_each_iteration=True)
    # flat_map re-iterates the same cached, shuffled dataset, so the cache fills once and the
    # seeded shuffle gives each epoch a new order; the counter numbers the epochs.
    return tf.data.Dataset.counter().flat_map(
        lambda epoch: shuffled.map(lambda ex: (epoch, ex)))


def _finish(ds: tf.data.Dataset, cfg: DataConfig, batch_size: int,
            drop_remainder: bool) -> tf.data.Dataset:
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = cfg.deterministic
    return ds.with_options(options).prefetch(AUTOTUNE)


def holdout_mask(source: source_lib.Source, cfg: DataConfig) -> np.ndarray:
    """(examples in the train split,) bool: the held-out validation examples (see DataConfig).

    Raises:
      ValueError: a holdout is asked of a source without labels (it is drawn per class).
    """
    labels = source.labels(cfg.train_split)
    if cfg.holdout_fraction and source.num_classes == 0:
        raise ValueError(f'{source.name} has no labels, so no class-balanced holdout can be '
                         'drawn; use --holdout_fraction=0.')
    indices = subsets.holdout_indices(labels, cfg.holdout_fraction)
    return subsets.label_mask(len(labels), indices)


def training_mask(source: source_lib.Source, cfg: DataConfig) -> Optional[np.ndarray]:
    """(examples,) bool: the train-split examples training may read; None = all of them."""
    if not cfg.holdout_fraction:
        return None  # no filter at all: the stream stays what it was without a holdout
    return ~holdout_mask(source, cfg)


def _augment_options(cfg: DataConfig) -> dict:
    return dict(area_range=tuple(cfg.crop_area_range))


def reads_encoded(source: source_lib.Source, cfg: DataConfig) -> bool:
    """Whether the one-view stages (fine-tuning, distillation) read the encoded files and
    decode only the crop of each (augment.decode_random_crop): when nothing is cached."""
    return source.reads_encoded and not cfg.cache


def _training_input_fn(source, cfg, global_batch_size, preprocess, keep=None,
                       start_step=0, encoded=False) -> InputFn:
    """input_fn of an endless, shuffled, augmented stream; preprocess(example, seed) -> dict.

    The stream starts at global step `start_step`: the examples of the steps already taken
    are skipped before augmentation (cheap), so a resumed run sees what it would have seen.
    With `encoded`, examples carry the encoded file and preprocess decodes it; a file that
    does not decode is skipped (logged), as a source skips it when it decodes.
    """
    source.check_split(cfg.train_split)

    def input_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        batch_size = per_replica_batch_size(input_context, global_batch_size)
        ds = _examples(source, cfg, cfg.train_split, input_context, keep,
                       shuffle_files=not cfg.cache,  # a cache keeps the first epoch's order
                       decode=not encoded)
        ds = _epochs(ds, cfg)
        if start_step:
            # One global step takes one batch for each replica this pipeline feeds.
            replicas_here = (input_context.num_replicas_in_sync
                             // input_context.num_input_pipelines)
            ds = ds.skip(start_step * batch_size * replicas_here)
        ds = ds.map(lambda epoch, ex: preprocess(ex, example_seed(cfg.seed, epoch, ex['index'])),
                    num_parallel_calls=AUTOTUNE)
        if encoded:
            ds = ds.ignore_errors(log_warning=True)
        return _finish(ds, cfg, batch_size, drop_remainder=True)
    return input_fn


def _label_and_index(ex):
    return {'label': tf.cast(ex['label'], tf.int32), 'index': ex['index']}


def pretrain_input_fn(source: source_lib.Source, cfg: DataConfig,
                      global_batch_size: int, start_step: int = 0) -> InputFn:
    """Two SimCLR views of every training image (labels are passed along, never needed)."""
    def preprocess(ex, seed):
        image = augment.two_views(ex['image'], seed, cfg.image_size,
                                  cfg.color_jitter_strength, cfg.use_blur,
                                  color_distortion=cfg.color_distortion,
                                  **_augment_options(cfg))  # (s, s, 6)
        return {'image': image, **_label_and_index(ex)}
    return _training_input_fn(source, cfg, global_batch_size, preprocess,
                              keep=training_mask(source, cfg), start_step=start_step)


def labelled_mask(source: source_lib.Source, cfg: DataConfig) -> np.ndarray:
    """(examples in the train split,) bool: examples whose label fine-tuning may use.

    All labelled examples, or the class-balanced subset of data.subsets when
    cfg.label_fraction < 1 or cfg.labels_per_class is set; never a held-out one (the subset
    is drawn from the examples outside the holdout).

    Raises:
      ValueError: the source has no labels.
    """
    if source.num_classes == 0:
        raise ValueError(f'{source.name} has no labels: it can be used for pretraining only.')
    labels = source.labels(cfg.train_split)
    if cfg.holdout_fraction:
        labels = np.where(holdout_mask(source, cfg), -1, labels)  # as if unlabelled
    if not cfg.uses_label_subset:
        return labels >= 0
    indices = subsets.labelled_indices(
        labels, fraction=None if cfg.labels_per_class else cfg.label_fraction,
        per_class=cfg.labels_per_class, seed=cfg.subset_seed)
    return subsets.label_mask(len(labels), indices)


def finetune_input_fn(source: source_lib.Source, cfg: DataConfig,
                      global_batch_size: int, start_step: int = 0) -> InputFn:
    """Random crop and flip of the labelled training examples (a subset: see labelled_mask)."""
    encoded = reads_encoded(source, cfg)

    def preprocess(ex, seed):
        image = augment.preprocess_for_finetune(ex['image'], seed, cfg.image_size,
                                                encoded=encoded, **_augment_options(cfg))
        return {'image': image, **_label_and_index(ex)}
    return _training_input_fn(source, cfg, global_batch_size, preprocess,
                              keep=labelled_mask(source, cfg), start_step=start_step,
                              encoded=encoded)


def distill_input_fn(source: source_lib.Source, cfg: DataConfig,
                     global_batch_size: int, start_step: int = 0) -> InputFn:
    """Random crop and flip of every training example (outside the holdout), labelled or not.

    'label_mask' (float32) is 1.0 for the examples whose label may be used (the labelled
    subset, for the paper's Eq. 3) and 0.0 elsewhere; there 'label' is set to -1 so that
    the labels of the unlabelled pool cannot leak into training.
    """
    if source.num_classes and cfg.uses_label_subset:
        mask = tf.constant(labelled_mask(source, cfg), tf.bool)
        in_subset = lambda ex: tf.gather(mask, ex['index'])  # noqa: E731
    else:
        in_subset = lambda ex: ex['label'] >= 0  # noqa: E731
    encoded = reads_encoded(source, cfg)

    def preprocess(ex, seed):
        image = augment.preprocess_for_finetune(ex['image'], seed, cfg.image_size,
                                                encoded=encoded, **_augment_options(cfg))
        labelled = in_subset(ex)
        label = tf.where(labelled, tf.cast(ex['label'], tf.int32), -1)
        return {'image': image, 'label': label, 'label_mask': tf.cast(labelled, tf.float32),
                'index': ex['index']}
    return _training_input_fn(source, cfg, global_batch_size, preprocess,
                              keep=training_mask(source, cfg), start_step=start_step,
                              encoded=encoded)


def num_train_examples(source: source_lib.Source, cfg: DataConfig, train_mode: str) -> int:
    """Examples in one epoch of `train_mode`: the labelled subset when fine-tuning.

    Held-out examples are not counted: no training stage reads them.
    """
    if train_mode == 'finetune':
        return int(labelled_mask(source, cfg).sum())
    held_out = int(holdout_mask(source, cfg).sum()) if cfg.holdout_fraction else 0
    return source.num_examples(cfg.train_split) - held_out


def num_eval_examples(source: source_lib.Source, cfg: DataConfig,
                      split: Optional[str] = None) -> int:
    """Examples of one evaluation pass over cfg.eval_split (or `split`): for 'holdout', the
    held-out part of cfg.train_split."""
    split = split or cfg.eval_split
    if split == HOLDOUT_SPLIT:
        return int(_eval_holdout(source, cfg).sum())
    return source.num_examples(split)


def _eval_holdout(source: source_lib.Source, cfg: DataConfig) -> np.ndarray:
    """holdout_mask for eval split 'holdout'; ValueError when there is no holdout."""
    if not cfg.holdout_fraction:
        raise ValueError("eval split 'holdout' needs a holdout: set --holdout_fraction > 0.")
    return holdout_mask(source, cfg)


def eval_input_fn(source: source_lib.Source, cfg: DataConfig, global_batch_size: int,
                  split: Optional[str] = None, keep: Optional[np.ndarray] = None) -> InputFn:
    """One pass over cfg.eval_split (or `split`), centre-cropped, in order, last batch partial.

    Split 'holdout' is the held-out part of cfg.train_split; `keep` (bool per example index)
    restricts the pass to some examples.
    """
    split = split or cfg.eval_split
    if split == HOLDOUT_SPLIT:
        held_out = _eval_holdout(source, cfg)
        split, keep = cfg.train_split, held_out if keep is None else held_out & keep
    source.check_split(split)
    center_crop = cfg.image_size >= EVAL_CENTER_CROP_MIN_SIZE

    def preprocess(ex):
        image = augment.preprocess_for_eval(ex['image'], cfg.image_size,
                                            center_crop=center_crop)
        return {'image': image, **_label_and_index(ex)}

    def input_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        batch_size = per_replica_batch_size(input_context, global_batch_size)
        ds = _examples(source, cfg, split, input_context, keep)
        ds = ds.map(preprocess, num_parallel_calls=AUTOTUNE)
        return _finish(ds, cfg, batch_size, drop_remainder=False)
    return input_fn


def distribute(strategy: tf.distribute.Strategy, input_fn: InputFn):
    """The distributed dataset: per-replica batches from input_fn on every replica."""
    return strategy.distribute_datasets_from_function(input_fn)
