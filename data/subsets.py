"""Label fractions: which training examples keep their label for fine-tuning.

SimCLRv2 fine-tunes on 1% or 10% of the ImageNet labels. For ImageNet, use the official,
class-balanced lists (google-research/simclr `imagenet_subsets/`) through the TFDS configs
`imagenet2012_subset/1pct` and `imagenet2012_subset/10pct`, whose train split is the subset
itself (prepared offline from manual_dir; see data.datasets). For any other data set,
`labelled_indices` draws a class-balanced subset from a seed. Distillation uses the whole
training split as its unlabelled pool; the subset only marks which examples keep a label.
"""
from typing import Optional

import numpy as np


def labelled_indices(labels: np.ndarray, fraction: Optional[float] = None,
                     per_class: Optional[int] = None, seed: int = 0) -> np.ndarray:
    """A deterministic class-balanced subset of the examples.

    Each class c with n_c examples keeps round(fraction * n_c) of them (Python's round,
    halves to even; at least one), or
    min(per_class, n_c); they are drawn without replacement with np.random.default_rng(seed).
    Examples labelled -1 (unlabelled) are never chosen.

    Args:
      labels: (n,) int class of each example, ordered by example index.
      fraction: fraction of each class to keep, in (0, 1].
      per_class: number of examples to keep per class (instead of `fraction`).
      seed: seed of the draw.

    Returns:
      (k,) int64 sorted indices into `labels`.

    Raises:
      ValueError: neither or both of fraction and per_class, fraction outside (0, 1], or
        per_class < 1.
    """
    if (fraction is None) == (per_class is None):
        raise ValueError('Give exactly one of fraction and per_class.')
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f'label fraction must be in (0, 1], got {fraction}.')
    if per_class is not None and per_class < 1:
        raise ValueError(f'labels per class must be >= 1, got {per_class}.')
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels[labels >= 0]):  # classes in increasing order: same draws
        members = np.flatnonzero(labels == c)
        count = per_class if per_class is not None else max(1, round(fraction * len(members)))
        chosen.append(rng.choice(members, size=min(count, len(members)), replace=False))
    if not chosen:
        return np.zeros([0], np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


HOLDOUT_SEED = 20261213  # fixed: the held-out split must not change with a run's --seed


def holdout_indices(labels: np.ndarray, fraction: float, seed: int = HOLDOUT_SEED) -> np.ndarray:
    """A class-balanced validation split: round(fraction * n_c) examples of each class c.

    Python's round (halves to even); drawn without replacement with
    np.random.default_rng(seed), classes in increasing order. Unlabelled examples (-1) are
    never held out.

    Args:
      labels: (n,) int class of each example, ordered by example index.
      fraction: fraction of each class to hold out, in [0, 1); 0 gives none.
      seed: seed of the draw; the default is the same for every run.

    Returns:
      (k,) int64 sorted indices of the held-out examples.

    Raises:
      ValueError: fraction outside [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f'holdout fraction must be in [0, 1), got {fraction}.')
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.choice(members, size=round(fraction * len(members)), replace=False))
    if not chosen:
        return np.zeros([0], np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def label_mask(num_examples: int, indices: np.ndarray) -> np.ndarray:
    """(num_examples,) bool, True at `indices` (the labelled examples)."""
    mask = np.zeros([num_examples], bool)
    mask[indices] = True
    return mask


def shortfall(labels: np.ndarray, fraction: Optional[float] = None,
              per_class: Optional[int] = None, class_names=()) -> Optional[str]:
    """A warning when the subset of `labelled_indices` is thinner than asked, else None.

    Classes with fewer than `per_class` examples keep all of theirs; a fraction < 1 that keeps
    a single example of a class (round(fraction * n_c) <= 1) leaves it one label.

    Args:
      labels: (n,) int class of each example (-1: unlabelled).
      fraction, per_class: as for `labelled_indices`.
      class_names: names for the message (label k = class_names[k]).

    Returns:
      One line naming the classes and their counts, or None.
    """
    classes, counts = np.unique(np.asarray(labels)[np.asarray(labels) >= 0], return_counts=True)
    name = lambda c: repr(class_names[c]) if c < len(class_names) else str(c)  # noqa: E731
    if per_class is not None:
        short = [(c, n) for c, n in zip(classes, counts) if n < per_class]
        what = (f'--labels_per_class={per_class}: {len(short)} of {len(classes)} classes have '
                f'fewer examples and keep all of them')
        total = f'{int(np.minimum(counts, per_class).sum())} labels instead of ' \
                f'{per_class * len(classes)}'
    elif fraction is not None and fraction < 1:
        short = [(c, n) for c, n in zip(classes, counts) if max(1, round(fraction * n)) <= 1]
        what = (f'--label_fraction={fraction} leaves one labelled example in {len(short)} of '
                f'{len(classes)} classes')
        total = 'use a larger fraction or --labels_per_class'
    else:
        return None
    if not short:
        return None
    listed = ', '.join(f'{name(c)} {n}' for c, n in short[:10])
    more = f' and {len(short) - 10} more' if len(short) > 10 else ''
    return f'{what} (examples per class: {listed}{more}); {total}.'
