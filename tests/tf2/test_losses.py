"""tf2/losses.py against NumPy loop oracles of paper Eq. 1-3 and hand-computed numbers."""
import math

import numpy as np
import pytest
import tensorflow as tf

from tf2 import losses



# ----------------------------------------------------------------------------- oracles
def _nt_xent_oracle(hidden, tau, hidden_norm, negatives=None):
    """Eq. 1 with explicit loops; float64. hidden (2n, d): rows [0, n) view 1, [n, 2n) view 2.

    Returns the mean over the n images of the sum of both anchors' losses, i.e.
    sum over all 2n anchors / n; `negatives` (K, d) are extra terms of every denominator.
    """
    z = np.asarray(hidden, np.float64)
    if hidden_norm:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    two_n = z.shape[0]
    n = two_n // 2
    extra = [] if negatives is None else list(np.asarray(negatives, np.float64))
    total = 0.0
    for i in range(two_n):
        j = (i + n) % two_n  # the other view of the same image
        numerator = math.exp(float(z[i] @ z[j]) / tau)
        denominator = 0.0
        for k in range(two_n):
            if k != i:
                denominator += math.exp(float(z[i] @ z[k]) / tau)
        for q in extra:
            denominator += math.exp(float(z[i] @ q) / tau)
        total += -math.log(numerator / denominator)
    return total / n


def _softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- NT-Xent
@pytest.mark.parametrize("n,d,tau,hidden_norm", [
    (1, 3, 0.1, True), (3, 4, 0.1, True), (4, 8, 0.5, True), (5, 6, 1.0, True),
    (3, 4, 0.5, False), (4, 5, 1.0, False),
])
def test_nt_xent_matches_loop_oracle(n, d, tau, hidden_norm):
    hidden = np.random.RandomState(n * 10 + d).normal(size=(2 * n, d)).astype(np.float32)
    if not hidden_norm:
        hidden *= 0.4  # keep unnormalised dot products / tau in a well-conditioned range
    loss, logits, labels = losses.nt_xent(tf.constant(hidden), tau, hidden_norm)
    expected = _nt_xent_oracle(hidden, tau, hidden_norm)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)
    assert loss.dtype == tf.float32
    # Positives of view 1 sit in the first block (logits_ab) at column i.
    np.testing.assert_array_equal(labels.numpy(), np.eye(n, 2 * n))
    z = _unit_rows(hidden) if hidden_norm else hidden.astype(np.float64)
    np.testing.assert_allclose(logits.numpy()[:, :n], z[:n] @ z[n:].T / tau, rtol=1e-5, atol=1e-5)


def test_nt_xent_is_symmetric_in_the_views():
    hidden = np.random.RandomState(0).normal(size=(8, 5)).astype(np.float32)
    swapped = np.concatenate([hidden[4:], hidden[:4]], axis=0)  # view 2 first
    loss, _, _ = losses.nt_xent(tf.constant(hidden), 0.2)
    loss_swapped, _, _ = losses.nt_xent(tf.constant(swapped), 0.2)
    np.testing.assert_allclose(loss.numpy(), loss_swapped.numpy(), rtol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_identical_embeddings_give_two_log_2n_minus_1(n):
    hidden = tf.tile(tf.constant([[0.3, -1.2, 2.0]]), [2 * n, 1])  # (2n, 3), all rows equal
    loss, _, _ = losses.nt_xent(hidden, temperature=0.1, hidden_norm=True)
    np.testing.assert_allclose(loss.numpy(), 2.0 * math.log(2 * n - 1), rtol=1e-6, atol=1e-6)


def test_nt_xent_bfloat16_input_is_computed_in_float32():
    hidden = np.random.RandomState(3).normal(size=(6, 4)).astype(np.float32)
    rounded = tf.cast(tf.cast(hidden, tf.bfloat16), tf.float32).numpy()
    loss, logits, _ = losses.nt_xent(tf.constant(hidden, tf.bfloat16), 0.5)
    assert loss.dtype == tf.float32 and logits.dtype == tf.float32
    np.testing.assert_allclose(loss.numpy(), _nt_xent_oracle(rounded, 0.5, True), rtol=1e-5)


def test_memory_negatives_match_oracle_and_masked_entries_do_not_count():
    rs = np.random.RandomState(7)
    hidden = rs.normal(size=(6, 4)).astype(np.float32)  # n = 3
    memory = _unit_rows(rs.normal(size=(5, 4))).astype(np.float32)  # K = 5
    mask = np.array([True, False, True, True, False])
    tau = 0.2
    loss_all, logits, labels = losses.nt_xent(tf.constant(hidden), tau, negatives=memory)
    np.testing.assert_allclose(loss_all.numpy(), _nt_xent_oracle(hidden, tau, True, memory),
                               rtol=1e-5)
    assert logits.shape == (3, 11) and labels.shape == (3, 11)
    z = _unit_rows(hidden)
    np.testing.assert_allclose(logits.numpy()[:, 6:], z[:3] @ memory.T / tau, rtol=1e-5,
                               atol=1e-5)

    loss_masked, _, _ = losses.nt_xent(tf.constant(hidden), tau, negatives=memory,
                                       negatives_mask=mask)
    np.testing.assert_allclose(loss_masked.numpy(),
                               _nt_xent_oracle(hidden, tau, True, memory[mask]), rtol=1e-5)
    # A fully masked memory is the same as no memory at all; float masks work too.
    loss_none, _, _ = losses.nt_xent(tf.constant(hidden), tau, negatives=memory,
                                     negatives_mask=np.zeros(5, np.float32))
    loss_plain, _, _ = losses.nt_xent(tf.constant(hidden), tau)
    np.testing.assert_allclose(loss_none.numpy(), loss_plain.numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------- metrics
def test_contrastive_metrics_by_hand():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]], np.float32)
    labels = np.array([[1, 0, 0], [0, 0, 1]], np.float32)
    metrics = losses.contrastive_metrics(tf.constant(logits), tf.constant(labels))
    p = _softmax(logits)
    entropy = np.mean([-sum(p[r, c] * math.log(p[r, c]) for c in range(3)) for r in range(2)])
    np.testing.assert_allclose(metrics["contrast_acc"].numpy(), 0.5)
    np.testing.assert_allclose(metrics["contrast_entropy"].numpy(), entropy, rtol=1e-6)


def test_contrastive_metrics_on_nt_xent_output_ignore_masked_self_column():
    hidden = np.random.RandomState(5).normal(size=(4, 3)).astype(np.float32)  # n = 2
    _, logits, labels = losses.nt_xent(tf.constant(hidden), 0.5)
    metrics = losses.contrastive_metrics(logits, labels)
    z = _unit_rows(hidden)
    sims = z[:2] @ z.T / 0.5  # (2, 4): columns [view 2 | view 1]
    sims = np.concatenate([sims[:, 2:], sims[:, :2]], axis=1)  # [ab | aa] as in nt_xent
    acc, ent = 0.0, 0.0
    for i in range(2):
        cols = [c for c in range(4) if c != 2 + i]  # the self column has zero probability
        p = _softmax(sims[i, cols])
        ent += -np.sum(p * np.log(p)) / 2
        acc += float(cols[int(np.argmax(sims[i, cols]))] == i) / 2
    np.testing.assert_allclose(metrics["contrast_acc"].numpy(), acc)
    np.testing.assert_allclose(metrics["contrast_entropy"].numpy(), ent, rtol=1e-5)


# ----------------------------------------------------------------------------- 2 replicas
def _split_for_replica(x, r, n):
    """Replica r's rows of a global (2N, ...) batch: its view-1 then its view-2 images."""
    big_n = x.shape[0] // 2
    return np.concatenate([x[r * n:(r + 1) * n], x[big_n + r * n:big_n + (r + 1) * n]])


@pytest.mark.parametrize("with_memory", [False, True])
def test_two_replicas_equal_one_replica_on_global_batch(two_replicas, with_memory):
    rs = np.random.RandomState(11)
    n, d_in, d_out, tau = 3, 5, 4, 0.2
    inputs = rs.normal(size=(2 * 2 * n, d_in)).astype(np.float32)  # global 2N rows, N = 6
    w0 = rs.normal(size=(d_in, d_out)).astype(np.float32)
    memory = _unit_rows(rs.normal(size=(4, d_out))).astype(np.float32) if with_memory else None
    mask = np.array([True, True, False, True]) if with_memory else None

    def loss_and_grad(x, w):
        with tf.GradientTape() as tape:
            loss, _, _ = losses.nt_xent(tf.matmul(x, w), tau, negatives=memory,
                                        negatives_mask=mask)
            # Each replica's loss is scaled by 1/replicas so that summing the replicas'
            # gradients gives the gradient of the mean loss.
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        return loss, tape.gradient(scaled, w)

    w_single = tf.Variable(w0)
    loss_1, grad_1 = tf.function(loss_and_grad)(tf.constant(inputs), w_single)

    with two_replicas.scope():
        w = tf.Variable(w0)
    per_replica_x = two_replicas.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(_split_for_replica(inputs, ctx.replica_id_in_sync_group, n)))

    @tf.function
    def step(x):
        return two_replicas.run(loss_and_grad, args=(x, w))

    loss_r, grad_r = step(per_replica_x)
    loss_2 = two_replicas.reduce(tf.distribute.ReduceOp.MEAN, loss_r, axis=None)
    grad_2 = two_replicas.reduce(tf.distribute.ReduceOp.SUM, grad_r, axis=None)
    np.testing.assert_allclose(loss_2.numpy(), loss_1.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_2.numpy(), grad_1.numpy(), rtol=1e-5, atol=1e-6)
    # The single-device loss is itself Eq. 1 on the global batch.
    np.testing.assert_allclose(loss_1.numpy(), _nt_xent_oracle(
        inputs @ w0, tau, True, None if memory is None else memory[mask]), rtol=1e-5)


# ----------------------------------------------------------------------------- supervised
def test_supervised_loss_by_hand_with_and_without_mask():
    logits = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]], np.float32)
    labels = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    ce = [-math.log(_softmax(logits[r])[int(np.argmax(labels[r]))]) for r in range(3)]
    np.testing.assert_allclose(losses.supervised_loss(labels, logits).numpy(), np.mean(ce),
                               rtol=1e-6)
    mask = np.array([1.0, 0.0, 1.0], np.float32)
    np.testing.assert_allclose(losses.supervised_loss(labels, logits, mask).numpy(),
                               (ce[0] + ce[2]) / 2, rtol=1e-6)
    assert losses.supervised_loss(labels, logits, np.zeros(3, np.float32)).numpy() == 0.0


# ----------------------------------------------------------------------------- distillation
TEACHER = np.array([[1.0, 2.0, 0.0], [0.5, 0.5, 3.0]], np.float32)
STUDENT = np.array([[0.2, 0.1, 1.0], [2.0, 0.0, 1.0]], np.float32)


def _eq2_by_hand(tau):
    total = 0.0
    for r in range(2):
        p_t, p_s = _softmax(TEACHER[r] / tau), _softmax(STUDENT[r] / tau)
        total += -sum(p_t[y] * math.log(p_s[y]) for y in range(3))
    return total / 2


def test_distill_loss_is_eq2_by_hand():
    for tau in (0.1, 0.5, 1.0, 2.0):
        got = losses.distill_loss(TEACHER, STUDENT, tau)
        np.testing.assert_allclose(got.numpy(), _eq2_by_hand(tau), rtol=1e-5)
        assert got.dtype == tf.float32


def test_distill_loss_with_labels_is_eq3_by_hand():
    labels = np.array([[0, 0, 1], [1, 0, 0]], np.float32)
    label_mask = np.array([1.0, 0.0], np.float32)  # only row 0 has a ground-truth label
    alpha, tau = 0.3, 2.0
    labelled = -math.log(_softmax(STUDENT[0])[2]) / 2  # tau = 1, divided by n = 2
    expected = (1 - alpha) * labelled + alpha * _eq2_by_hand(tau)
    got = losses.distill_loss_with_labels(TEACHER, STUDENT, labels, label_mask, tau, alpha)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # Integer class ids give the same value as one-hot labels.
    got_ids = losses.distill_loss_with_labels(TEACHER, STUDENT, tf.constant([2, 0]),
                                              label_mask, tau, alpha)
    np.testing.assert_allclose(got_ids.numpy(), expected, rtol=1e-6)
    # alpha = 1 is Eq. 2 exactly.
    eq3 = losses.distill_loss_with_labels(TEACHER, STUDENT, labels, label_mask, tau, 1.0)
    assert eq3.numpy() == losses.distill_loss(TEACHER, STUDENT, tau).numpy()


def test_distillation_gradient_reaches_student_only():
    teacher = tf.constant(TEACHER)
    student = tf.constant(STUDENT)
    tau = 0.5
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([teacher, student])
        eq2 = losses.distill_loss(teacher, student, tau)
        eq3 = losses.distill_loss_with_labels(teacher, student, tf.constant([2, 0]),
                                              tf.constant([1.0, 0.0]), tau, 0.5)
    assert tape.gradient(eq2, teacher) is None
    assert tape.gradient(eq3, teacher) is None
    # d/ds of mean_r CE(P_T, s/tau) = (softmax(s/tau) - P_T) / (tau * n).
    expected = (_softmax(STUDENT / tau) - _softmax(TEACHER / tau)) / (tau * 2)
    np.testing.assert_allclose(tape.gradient(eq2, student).numpy(), expected, rtol=1e-5,
                               atol=1e-7)


def test_distill_loss_casts_half_precision_to_float32():
    got = losses.distill_loss(tf.constant(TEACHER, tf.float16), tf.constant(STUDENT, tf.bfloat16),
                              1.0)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), _eq2_by_hand(1.0), rtol=1e-2)


def _top_k_hits_oracle(labels, logits, k):
    """A loop: the label's rank is the number of classes with a larger logit plus the number
    of classes of lower index with an equal one; a hit when that rank is below k."""
    out = []
    for row, label in zip(logits, labels):
        rank = sum(1 for c, v in enumerate(row)
                   if v > row[label] or (v == row[label] and c < label))
        out.append(rank < k)
    return np.array(out)


def test_top_k_hits_counts_a_tie_for_the_lower_class_index_only():
    # By hand: row 0 ties classes 0 and 1 at the top, label 1: a miss at k=1 (argmax is 0),
    # a hit at k=2; row 1 ties 1 and 2, label 1: a hit; row 2 all equal, label 2: a hit only
    # at k=3. tf.math.in_top_k counts all three as top-1 hits.
    logits = tf.constant([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 3.0, 3.0]])
    labels = tf.constant([1, 1, 2])
    assert losses.top_k_hits(labels, logits, 1).numpy().tolist() == [False, True, False]
    assert losses.top_k_hits(labels, logits, 2).numpy().tolist() == [True, True, False]
    assert losses.top_k_hits(labels, logits, 3).numpy().tolist() == [True, True, True]
    assert tf.math.in_top_k(labels, logits, 1).numpy().tolist() == [True, True, True]
    # k=1 is argmax, the class serving returns.
    assert (losses.top_k_hits(labels, logits, 1).numpy() ==
            (tf.argmax(logits, -1).numpy() == labels.numpy())).all()


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_top_k_hits_matches_the_loop_on_many_ties(dtype):
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 3, size=(300, 7)).astype(np.float32)  # ties in almost every row
    labels = rng.integers(0, 7, size=300)
    for k in range(1, 8):
        got = losses.top_k_hits(tf.constant(labels), tf.constant(logits, dtype), k).numpy()
        np.testing.assert_array_equal(got, _top_k_hits_oracle(labels, logits, k))
