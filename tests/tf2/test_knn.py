"""Cosine kNN (tf2/knn.py) against a NumPy loop on fixed features, ties and k > bank included."""
import numpy as np
import pytest

from tf2 import knn


def _numpy_knn(bank, bank_labels, query, num_classes, k, temperature):
    """One query at a time: cosine similarities, stable sort (lower index first on ties),
    votes exp(sim / T) or 1, lowest class on equal votes."""
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    out = []
    for q in query:
        sim = bank @ (q / np.linalg.norm(q))
        nearest = np.argsort(-sim, kind="stable")[:min(k, len(bank))]
        votes = np.zeros(num_classes)
        for i in nearest:
            votes[bank_labels[i]] += np.exp(sim[i] / temperature) if temperature else 1.0
        out.append(int(np.argmax(votes)))
    return np.array(out)


@pytest.mark.parametrize("k", [1, 5, 20, 500])  # 500 > bank: every bank feature votes
@pytest.mark.parametrize("temperature", [0.07, 0.5, None])
def test_predictions_match_numpy_on_random_features(k, temperature):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 16))
    bank_labels = rng.integers(0, 4, 200)
    bank = centres[bank_labels] + 1.5 * rng.normal(size=(200, 16))
    query = centres[rng.integers(0, 4, 300)] + 1.5 * rng.normal(size=(300, 16))
    got = knn.predict(bank.astype(np.float32), bank_labels, query.astype(np.float32), 4, k,
                      temperature)
    expected = _numpy_knn(bank.astype(np.float32).astype(np.float64), bank_labels,
                          query.astype(np.float32).astype(np.float64), 4, k, temperature)
    # float32 against float64 similarities: a near-tie may flip one query, no more.
    assert (got != expected).sum() <= 1
    assert got.dtype == np.int64 and got.shape == (300,)


def test_hand_computed_votes_weighting_and_ties():
    # Unit vectors at angles; query along x. Similarities: 1, 1 (duplicate), cos 60 = .5, -1.
    bank = np.array([[1, 0], [1, 0], [0.5, np.sqrt(3) / 2], [-1, 0], [0.5, -np.sqrt(3) / 2]],
                    np.float32)
    labels = np.array([2, 1, 0, 0, 0])
    query = np.array([[3.0, 0.0]], np.float32)  # the norm must not matter
    # k=1: two bank rows tie at similarity 1; the lower index (label 2) ranks first.
    assert knn.predict(bank, labels, query, 3, k=1).tolist() == [2]
    # k=2, majority: one vote each for 2 and 1: equal votes, the lower class (1) wins.
    assert knn.predict(bank, labels, query, 3, k=2, temperature=None).tolist() == [1]
    # k=4, majority: class 0 has two votes (sim .5, .5) vs one each: class 0.
    assert knn.predict(bank, labels, query, 3, k=4, temperature=None).tolist() == [0]
    # k=4, T=0.1: exp(10) each for classes 2 and 1 vs 2 exp(5) for class 0: the tie of 1 and
    # 2 goes to class 1.
    assert knn.predict(bank, labels, query, 3, k=4, temperature=0.1).tolist() == [1]
    # k > bank, T=1: votes 0: 2e^.5 + e^-1 = 3.66 > e = 2.72 (classes 1, 2): class 0.
    assert knn.predict(bank, labels, query, 3, k=50, temperature=1.0).tolist() == [0]


def test_accuracy_and_chunks(monkeypatch):
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(50, 8)).astype(np.float32)
    labels = rng.integers(0, 3, 50)
    query = rng.normal(size=(37, 8)).astype(np.float32)
    query_labels = rng.integers(0, 3, 37)
    whole = knn.predict(bank, labels, query, 3, k=7)
    monkeypatch.setattr(knn, "QUERY_CHUNK", 10)  # 4 chunks, the last partial
    np.testing.assert_array_equal(knn.predict(bank, labels, query, 3, k=7), whole)
    assert knn.accuracy(bank, labels, query, query_labels, 3, k=7) == pytest.approx(
        np.mean(whole == query_labels))
    # The bank itself as queries with k=1: each finds itself.
    assert knn.accuracy(bank, labels, bank, labels, 3, k=1) == 1.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        knn.predict(bank, labels, query, 3, k=0)
