"""Cosine k-nearest-neighbour classification of features: how good a representation is.

Pure functions, features -> predictions. Each query's k most similar bank features (cosine
similarity of L2-normalised features) vote for their labels. With a temperature T each vote
weighs exp(similarity / T), as in InstDisc (Wu et al. 2018) and solo-learn's kNN callback
(their T = 0.07); with T = None (or 0) every vote weighs 1 (plain majority).

Ties are settled deterministically: among equally similar bank features the one of lower
index ranks first (tf.math.top_k's order), and among classes with equal votes the lower class
wins (argmax). With k larger than the bank every bank feature votes.
"""
from typing import Optional

import numpy as np
import tensorflow as tf

DEFAULT_K = 20
DEFAULT_TEMPERATURE = 0.07
QUERY_CHUNK = 1024  # queries per similarity matrix: (1024, bank) floats at a time


def _votes(similarity, bank_labels, num_classes, k, temperature):
    """(q, num_classes) float32 votes of each query's k nearest bank features."""
    k = min(k, similarity.shape[-1])
    top_similarity, top_index = tf.math.top_k(similarity, k=k)  # (q, k) each, sorted
    top_labels = tf.gather(bank_labels, top_index)  # (q, k)
    if temperature:
        weights = tf.exp(top_similarity / temperature)  # (q, k)
    else:
        weights = tf.ones_like(top_similarity)
    one_hot = tf.one_hot(top_labels, num_classes, dtype=tf.float32)  # (q, k, classes)
    return tf.reduce_sum(one_hot * weights[..., tf.newaxis], axis=1)  # (q, classes)


def predict(bank_features, bank_labels, query_features, num_classes: int, k: int = DEFAULT_K,
            temperature: Optional[float] = DEFAULT_TEMPERATURE) -> np.ndarray:
    """Class of each query by a cosine kNN vote over the bank.

    Args:
      bank_features: (n, d) float, the labelled features (n >= 1).
      bank_labels: (n,) int in [0, num_classes).
      query_features: (q, d) float.
      num_classes: number of classes.
      k: neighbours per query (>= 1; more than n means all n).
      temperature: vote weight exp(similarity / temperature); None or 0: weight 1.

    Returns:
      (q,) int64 NumPy array of predicted classes.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    bank = tf.math.l2_normalize(tf.cast(bank_features, tf.float32), axis=-1)  # (n, d)
    labels = tf.cast(bank_labels, tf.int32)  # (n,)
    query = tf.math.l2_normalize(tf.cast(query_features, tf.float32), axis=-1)  # (q, d)
    out = []
    for start in range(0, int(query.shape[0]), QUERY_CHUNK):
        similarity = tf.matmul(query[start:start + QUERY_CHUNK], bank, transpose_b=True)
        out.append(tf.argmax(_votes(similarity, labels, num_classes, k, temperature), -1))
    if not out:
        return np.zeros([0], np.int64)
    return tf.concat(out, 0).numpy().astype(np.int64)


def accuracy(bank_features, bank_labels, query_features, query_labels, num_classes: int,
             k: int = DEFAULT_K, temperature: Optional[float] = DEFAULT_TEMPERATURE) -> float:
    """Top-1 accuracy of `predict` against `query_labels` ((q,) int); 0.0 for no queries."""
    predicted = predict(bank_features, bank_labels, query_features, num_classes, k,
                        temperature)
    if not len(predicted):
        return 0.0
    return float(np.mean(predicted == np.asarray(query_labels)))
