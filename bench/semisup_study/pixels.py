"""Model-free references on raw pixels: logistic regression and kNN, by the study's protocol.

The same labelled subsets (each budget, each subset seed) and the same holdout as the
networks; each method's own hyperparameter (L2 strength, k) is searched on the holdout with
subset seed 0 by the study's edge-extension rule (search.search, one axis), and the chosen
value reads the test split once per seed. NumPy (and tf2/knn.py) only.
"""
from typing import Dict

import numpy as np

from bench.semisup_study import protocol as P
from bench.semisup_study import search

LOGREG_RULE = search.Rule((search.Axis("l2", (1e-4, 1e-3, 1e-2, 1e-1), down=(1e-5, 1e-6),
                                       up=(1.0, 10.0), start=1e-3),))
KNN_RULE = search.Rule((search.Axis("k", (1, 5, 20, 50), down=(), up=(100, 200), start=20),))


def softmax_regression(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float,
                       iterations: int) -> np.ndarray:
    """Multinomial logistic regression: minimises mean cross-entropy + l2/2 |W|^2 (the bias
    row too) by Nesterov's accelerated gradient with step 1/L, where
    L = l2 + max eigenvalue(X^T X) / (2n) bounds the gradient's Lipschitz constant.

    Args:
      x: (n, d) float features; a bias column is appended here.
      y: (n,) int labels.
    Returns:
      (d + 1, num_classes) float32 weights (last row: bias).
    """
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1).astype(np.float32)  # (n, d+1)
    onehot = np.eye(num_classes, dtype=np.float32)[y]  # (n, C)
    n = len(xb)
    top = np.linalg.norm(xb, ord=2) ** 2 if n * xb.shape[1] <= 4e6 else _top_eigen(xb)
    step = 1.0 / (l2 + top / (2 * n))
    w = look = np.zeros((xb.shape[1], num_classes), np.float32)
    for t in range(iterations):
        w_next = look - step * gradient(xb, onehot, look, l2)
        look = w_next + (t / (t + 3)) * (w_next - w)  # Nesterov's momentum
        w = w_next
    return w


def gradient(xb, onehot, w, l2):
    """Gradient of mean cross-entropy + l2/2 |w|^2 at w."""
    logits = xb @ w  # (n, C)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return xb.T @ (p - onehot) / len(xb) + l2 * w


def _top_eigen(xb, iterations=50):
    """Largest eigenvalue of xb^T xb by power iteration (a slight overestimate is safe)."""
    v = np.ones(xb.shape[1]) / np.sqrt(xb.shape[1])
    value = 0.0
    for _ in range(iterations):
        u = xb.T @ (xb @ v)
        value = np.linalg.norm(u)
        v = u / value
    return value * 1.01


def logreg_accuracy(bank_x, bank_y, query_x, query_y, l2, iterations) -> float:
    w = softmax_regression(bank_x, bank_y, P.NUM_CLASSES, l2, iterations)
    logits = np.concatenate([query_x, np.ones((len(query_x), 1))], axis=1) @ w
    return float(np.mean(logits.argmax(1) == query_y))


def knn_accuracy(bank_x, bank_y, query_x, query_y, k, iterations=None) -> float:
    from tf2 import knn
    return knn.accuracy(bank_x, bank_y, query_x, query_y, P.NUM_CLASSES, k=int(k))


METHODS = {"pixels_logreg": (LOGREG_RULE, logreg_accuracy),
           "pixels_knn": (KNN_RULE, knn_accuracy)}


def load(budgets, seeds):
    """Pixels in [0, 1] (n, 784) of train and test, the holdout mask, and each budget's
    labelled mask per seed (the masks the networks' runs use)."""
    from data import datasets, fashion_mnist, pipeline
    from data.config import DataConfig
    images, labels = fashion_mnist.read_split(fashion_mnist.DEFAULT_SOURCE_DIR, "train")
    test_images, test_labels = fashion_mnist.read_split(fashion_mnist.DEFAULT_SOURCE_DIR, "test")
    flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255.0  # noqa: E731
    source = datasets.load(DataConfig())
    masks = {}
    for budget in budgets:
        for seed in seeds:
            cfg = DataConfig(holdout_fraction=P.HOLDOUT_FRACTION, subset_seed=seed,
                             **{budget.flag[0]: budget.flag[1]})
            masks[budget.name, seed] = pipeline.labelled_mask(source, cfg)
    holdout = pipeline.holdout_mask(source, DataConfig(holdout_fraction=P.HOLDOUT_FRACTION))
    return dict(x=flat(images), y=labels.astype(np.int64), test_x=flat(test_images),
                test_y=test_labels.astype(np.int64), holdout=holdout, masks=masks)


def study(budgets, seeds, iterations: int, data=None) -> Dict[str, dict]:
    """method -> budget -> {'search': search record, 'finals': {seed: test top-1}};
    `iterations`: of each logistic regression."""
    data = data or load(budgets, seeds)
    x, y, held = data["x"], data["y"], data["holdout"]
    out = {}
    for method, (rule, accuracy) in METHODS.items():
        per_budget = out.setdefault(method, {})
        for budget in budgets:
            bank = data["masks"][budget.name, seeds[0]]
            record = search.search(rule, lambda p: accuracy(
                x[bank], y[bank], x[held], y[held], p[rule.axes[0].name], iterations))
            value = record["chosen"][rule.axes[0].name]
            finals = {}
            for seed in seeds:
                bank = data["masks"][budget.name, seed]
                finals[str(seed)] = accuracy(x[bank], y[bank], data["test_x"], data["test_y"],
                                             value, iterations)
            per_budget[budget.name] = {"search": record, "finals": finals}
    return out
