"""Objectives: NT-Xent (paper Eq. 1) with global and memory negatives, supervised
cross-entropy, and the distillation losses of Eq. 2 and Eq. 3.

Every function casts its inputs to float32 first, so a model run under a
mixed-precision policy (bfloat16/float16 logits) still gets a float32 loss: the
softmax over thousands of negatives is where low precision hurts most.
"""
from typing import Dict, Optional, Tuple

import tensorflow as tf

from tf2 import distribute

# Subtracted from logits that must get zero probability (self-similarity, empty memory
# slots). Large enough that exp() underflows to exactly 0, small enough to stay finite.
LARGE_NUM = 1e9


def _memory_logits(queries: tf.Tensor, negatives: tf.Tensor,
                   negatives_mask: Optional[tf.Tensor], temperature: float) -> tf.Tensor:
    """Similarities of the queries to the memory entries, invalid entries pushed to -LARGE_NUM.

    Args:
      queries: (n, d) float32.
      negatives: (K, d) float32, treated as constants (no gradient), as in MoCo.
      negatives_mask: (K,) bool/float, nonzero where the entry is valid; None: all valid.
      temperature: tau.

    Returns:
      (n, K) float32 logits.
    """
    logits = tf.matmul(queries, tf.stop_gradient(negatives), transpose_b=True) / temperature
    if negatives_mask is None:
        return logits
    valid = tf.cast(negatives_mask, tf.bool)[tf.newaxis, :]  # (1, K)
    return tf.where(valid, logits, tf.constant(-LARGE_NUM, tf.float32))


def nt_xent(hidden: tf.Tensor,
            temperature: float = 0.1,
            hidden_norm: bool = True,
            negatives: Optional[tf.Tensor] = None,
            negatives_mask: Optional[tf.Tensor] = None
            ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """NT-Xent (paper Eq. 1) over the global batch, optionally with memory negatives.

    Written for one replica. Each of this replica's n anchors is contrasted with its
    positive and with all 2N - 2 other views of the global batch (N = n * replicas),
    gathered with `cross_replica_concat`, plus the K memory entries if given. As in the
    original SimCLR code, the loss is the mean over the local anchors of the sum of the
    two directions (view 1 -> view 2 and view 2 -> view 1), so averaging it over replicas
    gives the single-device loss of the global batch.

    Args:
      hidden: (2n, d) projections of this replica; rows [0, n) are view 1 and rows
        [n, 2n) view 2 of the same n images. Any float dtype.
      temperature: tau.
      hidden_norm: L2-normalise rows first (cosine similarity, as in the paper).
      negatives: optional (K, d) extra negatives, already normalised (memory queue).
      negatives_mask: optional (K,) bool/float, nonzero for valid (filled) entries.

    Returns:
      loss: float32 scalar.
      logits: (n, 2N [+ K]) float32 logits of view 1, [logits_ab, logits_aa(, memory)].
      labels: (n, 2N [+ K]) float32 one-hot of the positive column.
    """
    hidden = tf.cast(hidden, tf.float32)
    if hidden_norm:
        hidden = tf.math.l2_normalize(hidden, axis=-1)
    h1, h2 = tf.split(hidden, 2, axis=0)  # (n, d) each
    big_h1 = distribute.cross_replica_concat(h1)  # (N, d)
    big_h2 = distribute.cross_replica_concat(h2)  # (N, d)
    n = tf.shape(h1)[0]
    big_n = tf.shape(big_h1)[0]
    extra = 0 if negatives is None else tf.shape(negatives)[0]

    # This replica's anchors sit at rows replica_id*n + i of the gathered views.
    positions = distribute.replica_id() * n + tf.range(n)  # (n,)
    labels = tf.one_hot(positions, 2 * big_n + extra)  # (n, 2N + K)
    self_mask = tf.one_hot(positions, big_n)  # (n, N)

    logits_aa = tf.matmul(h1, big_h1, transpose_b=True) / temperature - self_mask * LARGE_NUM
    logits_bb = tf.matmul(h2, big_h2, transpose_b=True) / temperature - self_mask * LARGE_NUM
    logits_ab = tf.matmul(h1, big_h2, transpose_b=True) / temperature
    logits_ba = tf.matmul(h2, big_h1, transpose_b=True) / temperature

    logits_a = [logits_ab, logits_aa]
    logits_b = [logits_ba, logits_bb]
    if negatives is not None:
        negatives = tf.cast(negatives, tf.float32)
        logits_a.append(_memory_logits(h1, negatives, negatives_mask, temperature))
        logits_b.append(_memory_logits(h2, negatives, negatives_mask, temperature))
    logits_a = tf.concat(logits_a, axis=1)  # (n, 2N + K)
    logits_b = tf.concat(logits_b, axis=1)  # (n, 2N + K)

    loss_a = tf.nn.softmax_cross_entropy_with_logits(labels, logits_a)  # (n,)
    loss_b = tf.nn.softmax_cross_entropy_with_logits(labels, logits_b)  # (n,)
    loss = tf.reduce_mean(loss_a + loss_b)
    return loss, logits_a, labels


def contrastive_metrics(logits: tf.Tensor, labels: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Accuracy of picking the positive, and entropy of the contrastive distribution.

    Args:
      logits: (n, C) logits returned by `nt_xent`.
      labels: (n, C) one-hot labels returned by `nt_xent`.

    Returns:
      {'contrast_acc': float32 scalar in [0, 1],
       'contrast_entropy': float32 scalar, mean over rows of -sum p log p}.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.float32)
    hits = tf.equal(tf.argmax(logits, axis=1), tf.argmax(labels, axis=1))
    accuracy = tf.reduce_mean(tf.cast(hits, tf.float32))
    # log_softmax instead of log(p + eps): masked columns have p = 0 and a finite log p,
    # so they add exactly 0 rather than 0 * -inf.
    log_prob = tf.nn.log_softmax(logits, axis=1)
    entropy = -tf.reduce_mean(tf.reduce_sum(tf.exp(log_prob) * log_prob, axis=1))
    return {"contrast_acc": accuracy, "contrast_entropy": entropy}


def supervised_loss(labels: tf.Tensor, logits: tf.Tensor,
                    mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Softmax cross-entropy with one-hot labels.

    Args:
      labels: (n, C) one-hot (or soft) labels.
      logits: (n, C) logits, any float dtype.
      mask: optional (n,) weights, 1 for rows that count; the result is then
        sum(mask * ce) / sum(mask) (0 when the mask is all zeros).

    Returns:
      float32 scalar.
    """
    per_row = tf.nn.softmax_cross_entropy_with_logits(
        tf.cast(labels, tf.float32), tf.cast(logits, tf.float32))  # (n,)
    if mask is None:
        return tf.reduce_mean(per_row)
    mask = tf.cast(mask, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(mask * per_row), tf.reduce_sum(mask))


def _distill_per_row(teacher_logits: tf.Tensor, student_logits: tf.Tensor,
                     temperature: float) -> tf.Tensor:
    """-sum_y P_T(y; tau) log P_S(y; tau) for each row, teacher frozen. Returns (n,) float32."""
    teacher = tf.stop_gradient(tf.cast(teacher_logits, tf.float32))
    teacher_probs = tf.nn.softmax(teacher / temperature, axis=-1)  # (n, C)
    student = tf.cast(student_logits, tf.float32) / temperature
    return tf.nn.softmax_cross_entropy_with_logits(teacher_probs, student)  # (n,)


def distill_loss(teacher_logits: tf.Tensor, student_logits: tf.Tensor,
                 temperature: float) -> tf.Tensor:
    """Paper Eq. 2 on a batch: mean over rows of -sum_y P_T(y|x; tau) log P_S(y|x; tau).

    The paper's sum over D becomes a mean over the batch, the usual per-batch estimator
    of that sum divided by |D|. No tau^2 factor is applied (the paper has none). The
    teacher side is under stop_gradient, so no gradient ever reaches the teacher.

    Args:
      teacher_logits: (n, C) logits of the fixed teacher, any float dtype.
      student_logits: (n, C) logits of the student, any float dtype.
      temperature: tau of both softmaxes.

    Returns:
      float32 scalar.
    """
    return tf.reduce_mean(_distill_per_row(teacher_logits, student_logits, temperature))


def distill_loss_with_labels(teacher_logits: tf.Tensor, student_logits: tf.Tensor,
                             labels: tf.Tensor, label_mask: tf.Tensor,
                             temperature: float, alpha: float) -> tf.Tensor:
    """Paper Eq. 3 on a batch: weighted sum of labelled cross-entropy and Eq. 2.

    Normalisation: both of the paper's sums (over D_L and over D) are divided by the
    batch size n, i.e. this is the per-batch estimator of Eq. 3 divided by |D| when the
    batch is a uniform sample of D whose labelled rows are flagged by `label_mask`:

      L = -(1 - alpha) * sum_{i: mask_i = 1} log P_S(y_i | x_i) / n
          + alpha * mean_i [-sum_y P_T(y | x_i; tau) log P_S(y | x_i; tau)]

    The labelled term uses tau = 1 (as in Eq. 3). With alpha = 1 this equals
    `distill_loss` exactly.

    Args:
      teacher_logits: (n, C) teacher logits (frozen, stop_gradient applied).
      student_logits: (n, C) student logits.
      labels: (n, C) one-hot labels, or (n,) integer class ids; rows without a label
        may hold anything (they are masked out).
      label_mask: (n,) 1 where the row has a ground-truth label, else 0.
      temperature: tau of the distillation term.
      alpha: weight of the distillation term, in [0, 1].

    Returns:
      float32 scalar.
    """
    student = tf.cast(student_logits, tf.float32)
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 1:
        labels = tf.one_hot(labels, tf.shape(student)[-1])  # (n, C)
    labels = tf.cast(labels, tf.float32)
    label_mask = tf.cast(label_mask, tf.float32)
    # Rows without labels may carry zero or garbage labels; mask before summing.
    nll = tf.nn.softmax_cross_entropy_with_logits(labels, student)  # (n,)
    n = tf.cast(tf.shape(student)[0], tf.float32)
    labelled = tf.reduce_sum(tf.where(label_mask > 0, nll, tf.zeros_like(nll))) / n
    distill = tf.reduce_mean(_distill_per_row(teacher_logits, student, temperature))
    return (1.0 - alpha) * labelled + alpha * distill


def accuracy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Top-1 accuracy of `logits` against one-hot `labels`, float32 scalar."""
    hits = tf.equal(tf.argmax(labels, -1), tf.argmax(logits, -1))
    return tf.reduce_mean(tf.cast(hits, tf.float32))


def top_k_hits(labels: tf.Tensor, logits: tf.Tensor, k: int) -> tf.Tensor:
    """bool (b,): the label is among the first k classes when the logits are sorted in
    descending order, ties broken towards the lower class index (k=1 is argmax).

    Unlike `tf.math.in_top_k`, which counts every class tied with the k-th largest logit as
    inside the top k, a tie is a hit for one class only: logits computed in bfloat16 tie on a
    few images in a thousand, and counting those as hits would put evaluation above what the
    argmax prediction (serving's class) gets right.

    Args:
      labels: int (b,) class indices.
      logits: (b, C) scores; k <= C.
    """
    top = tf.math.top_k(tf.cast(logits, tf.float32), k).indices  # stable: lower index first
    return tf.reduce_any(tf.equal(top, tf.cast(labels, top.dtype)[:, None]), axis=-1)
