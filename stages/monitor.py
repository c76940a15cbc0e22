"""The online kNN monitor: how well the encoder's features classify, while it trains.

Every `cfg.knn.every_steps` steps the host loop asks `KnnMonitor` for the cosine kNN top-1
(tf2/knn.py) of `final_avg_pool` features: a labelled bank (the labelled training images,
outside any holdout, optionally capped by a class-balanced draw) against held-out images (the
holdout split when cfg.data.holdout_fraction > 0, else the eval split). Both image sets are
read once, centre-cropped as for evaluation, and kept in memory; features come from
model(images, training=False), which updates nothing (batch-norm statistics included) and
draws no random numbers, so a monitored run trains exactly as an unmonitored one.
"""
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from data import pipeline
from data import subsets
from stages import startup_log
from tf2 import knn
from tf2 import resnet
from tf2.config import RunConfig

BANK_SEED = 0  # the capped bank's draw: the same bank for every run of a study


def bank_mask(source, cfg: RunConfig) -> np.ndarray:
    """(train examples,) bool: the labelled images of the bank."""
    mask = pipeline.labelled_mask(source, cfg.data)
    size = cfg.knn.bank_size
    if size and size < mask.sum():
        labels = np.where(mask, source.labels(cfg.data.train_split), -1)
        per_class = max(1, size // source.num_classes)
        chosen = subsets.labelled_indices(labels, per_class=per_class, seed=BANK_SEED)
        mask = subsets.label_mask(len(mask), chosen)
    return mask


def query_split_and_mask(source, cfg: RunConfig) -> Tuple[str, np.ndarray]:
    """(split, bool mask over its examples): the held-out images the bank is scored on."""
    if cfg.data.holdout_fraction:
        split, mask = cfg.data.train_split, pipeline.holdout_mask(source, cfg.data)
    else:
        split = cfg.data.eval_split
        mask = source.labels(split) >= 0
    if cfg.knn.eval_examples:
        first = np.flatnonzero(mask)[:cfg.knn.eval_examples]
        mask = subsets.label_mask(len(mask), first)
    return split, mask


def _read(source, cfg: RunConfig, split: str, mask: np.ndarray):
    """([image batches], (n,) int labels) of the masked examples, evaluation preprocessing."""
    input_fn = pipeline.eval_input_fn(source, cfg.data, cfg.eval_batch_size, split=split,
                                      keep=mask)
    images, labels = [], []
    with startup_log.determinism_notice_dropped():
        dataset = input_fn(tf.distribute.InputContext())
    for batch in dataset:
        images.append(batch["image"])  # (b, s, s, 3)
        labels.append(batch["label"].numpy())
    return images, np.concatenate(labels) if labels else np.zeros([0], np.int64)


class KnnMonitor:
    """kNN top-1 of the model's features; `due` says at which steps to ask."""

    def __init__(self, cfg: RunConfig, source, model):
        self.cfg = cfg.knn
        self.num_classes = source.num_classes
        self._bank, self._bank_labels = _read(source, cfg, cfg.data.train_split,
                                              bank_mask(source, cfg))
        self._query, self._query_labels = _read(source, cfg, *query_split_and_mask(source, cfg))
        if not len(self._bank_labels) or not len(self._query_labels):
            raise ValueError("the kNN monitor found no labelled bank or no held-out images; "
                             "use --knn_every_steps=0.")
        self._features = tf.function(
            lambda images: model(images, training=False)[resnet.FINAL_AVG_POOL],
            reduce_retracing=True)

    def due(self, previous_step: int, step: int, total_steps: int) -> bool:
        """True when (previous_step, step] holds a multiple of every_steps, or step is the end."""
        every = self.cfg.every_steps
        return step // every > previous_step // every or step >= total_steps

    def features(self, batches: List[tf.Tensor]) -> np.ndarray:
        """(n, d) float32 final_avg_pool features of the image batches."""
        return np.concatenate([self._features(images).numpy() for images in batches])

    def __call__(self) -> Dict[str, float]:
        """{'knn/top1': accuracy} of the current weights."""
        top1 = knn.accuracy(self.features(self._bank), self._bank_labels,
                            self.features(self._query), self._query_labels, self.num_classes,
                            self.cfg.k, self.cfg.temperature or None)
        return {"knn/top1": top1}

    def describe(self) -> str:
        return (f"k={self.cfg.k}, bank {len(self._bank_labels)}, "
                f"{len(self._query_labels)} held-out")


def build(cfg: RunConfig, source, model, is_chief: bool = True) -> Optional[KnnMonitor]:
    """The monitor of a stage, or None when it is off (or on a non-chief worker)."""
    if not cfg.knn.enabled or not is_chief:
        return None
    return KnnMonitor(cfg, source, model)
