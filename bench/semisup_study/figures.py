"""The study's plots, from the merged results (report.merge): PNG files beside results.md."""
import os
from typing import List

from bench.semisup_study import claims as C
from bench.semisup_study import protocol as P

FIGURE1_BUDGETS = ("13pc", "1pct", "10pct")
FIGURE2_ARMS = ("supervised", "finetune", "finetune_big", "selfdistill", "big_to_small",
                "pixels_logreg", "pixels_knn")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def figure1(t, s: P.Scale, path: str):
    """Figure 1 in miniature: relative improvement of the fine-tuned network's test top-1
    over the smallest one's, against its encoder's parameters, one line per label budget."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    small, big = s.nets["small"], s.nets["big"]
    xs = [a.parameters() / 1e6 for a in (small, big)]
    for b in FIGURE1_BUDGETS:
        rel = C.relative(t.get("finetune_big", {}).get(b), t.get("finetune", {}).get(b))
        if rel:
            ax.errorbar(xs, [0, 100 * rel["relative"]], yerr=[0, 100 * rel["standard_error"]],
                        marker="o", capsize=3, label=P.BUDGET[b].label)
    ax.set_xlabel(f"encoder parameters (millions): {small.label}, {big.label}")
    ax.set_ylabel(f"relative improvement over {small.label} (%)")
    _finish(plt, fig, ax, path, "label budget")


def figure2(t, s: P.Scale, path: str):
    """Figure 2 in miniature: test top-1 against the labelled images, each method a line;
    supervised from scratch on all labels as a dashed line."""
    plt = _plt()
    import matplotlib.ticker
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    labels = {b.name: b.labels for b in P.BUDGETS if b.name != "100pct"}
    names = dict((k, f"{m} ({n})") for k, m, n in P.table_rows(s))
    for arm in FIGURE2_ARMS:
        pts = [(labels[b], t[arm][b]) for b in labels if t.get(arm, {}).get(b)]
        if pts:
            xs, ys = zip(*sorted(pts))
            ax.errorbar(xs, [100 * y["mean"] for y in ys], yerr=[100 * y["std"] for y in ys],
                        marker="o", capsize=3, label=names[arm])
    full = t.get("supervised", {}).get("100pct")
    if full:
        ax.axhline(100 * full["mean"], color="gray", linestyle="--",
                   label="supervised, all 55,000 labels")
    ax.set_xscale("log")
    ticks = sorted(labels.values())
    ax.set_xticks(ticks, [f"{n:,}" for n in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("labelled images (class-balanced, outside the holdout)")
    ax.set_ylabel("Fashion-MNIST test top-1 (%)")
    _finish(plt, fig, ax, path, None, legend_size=6)


def knn_figure(merged, path: str):
    """kNN top-1 (1% bank vs holdout) against pretraining epochs; raw pixels as a line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, rec in merged["pretrains"].items():
        points = rec.get("knn_curve") or []
        if points:
            ax.plot([st * rec["batch"] / P.TRAIN_POOL for st, _ in points],
                    [100 * v for _, v in points], marker=".", label=name)
    raw = _raw_knn(merged)
    if raw is not None:
        ax.axhline(100 * raw, color="gray", linestyle="--", label="raw pixels, k 20 (same bank)")
    ax.set_xlabel("pretraining epochs (55,000 images)")
    ax.set_ylabel("kNN top-1 on the holdout (%)")
    _finish(plt, fig, ax, path, None)


def _raw_knn(merged):
    """The raw-pixel kNN's holdout score at k 20 with the 1% bank of seed 0 (the monitor's)."""
    rec = merged["pixels"].get("pixels_knn", {}).get("1pct")
    for trial in (rec or {}).get("search", {}).get("trials", []):
        if trial["point"].get("k") == 20:
            return trial["score"]
    return None


def curves_figure(merged, arms, path: str, batch_key: str, agreement: bool):
    """Holdout top-1 (and teacher agreement) of each chosen seed-0 run at its checkpoints."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm in arms:
        for budget, r in merged["arms"].get(arm, {}).items():
            points = r.get("curve") or []
            if not points:
                continue
            steps = [p["step"] for p in points]
            xs = [st * r["batch"] / _per_epoch(budget, batch_key) for st in steps]
            line = ax.plot(xs, [100 * p["top1"] for p in points], marker="o",
                           label=f"{arm} {budget}: holdout top-1")[0]
            if agreement and "agreement" in points[0]:
                ax.plot(xs, [100 * p["agreement"] for p in points], marker="x", linestyle=":",
                        color=line.get_color(), label=f"{arm} {budget}: agreement with teacher")
    ax.set_xlabel("epochs of the 55,000 images" if batch_key == "distill" else
                  "epochs of the labelled images")
    ax.set_ylabel("% of the holdout")
    _finish(plt, fig, ax, path, None, legend_size=6)


def length_line(result) -> List[tuple]:
    """[(length factor, holdout top-1)] of an arm's search trials at its chosen learning rate
    and weight decay, ascending: the line that shows whether longer training still helps."""
    rec = result["search"]
    chosen = rec["chosen"]
    pts = {t["point"]["length"]: t["score"] for t in rec["trials"]
           if t["score"] is not None and all(
               t["point"][k] == v for k, v in chosen.items() if k != "length")}
    return sorted(pts.items())


def length_figure(merged, s: P.Scale, arms, path: str):
    """Holdout top-1 of the search's trials against training length (epochs of the labelled
    images), at each arm's chosen learning rate and weight decay: a plateau or not."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm in arms:
        for budget, r in merged["arms"].get(arm, {}).items():
            pts = length_line(r)
            if len(pts) > 1:
                epochs = s.images[budget] / P.BUDGET[budget].labels
                ax.plot([f * epochs for f, _ in pts], [100 * v for _, v in pts], marker="o",
                        label=f"{arm} {budget} ({s.nets[P.ARMS[arm].net].label})")
    ax.set_xscale("log")
    ax.set_xlabel("training epochs of the labelled images (the search's length line)")
    ax.set_ylabel("holdout top-1 (%)")
    _finish(plt, fig, ax, path, None, legend_size=6)


def _per_epoch(budget, batch_key):
    return P.TRAIN_POOL if batch_key == "distill" else P.BUDGET[budget].labels


def _finish(plt, fig, ax, path, legend_title, legend_size=8):
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_size, title=legend_title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_all(merged, s: P.Scale, directory: str) -> List[str]:
    t = merged["table"]
    paths = {name: os.path.join(directory, name) for name in (
        "figure1_size.png", "figure2_labels.png", "knn_epochs.png", "curves_supervised.png",
        "length_supervised.png", "curves_distill.png")}
    figure1(t, s, paths["figure1_size.png"])
    figure2(t, s, paths["figure2_labels.png"])
    knn_figure(merged, paths["knn_epochs.png"])
    curves_figure(merged, ("supervised", "supervised_big"), paths["curves_supervised.png"],
                  "finetune", agreement=False)
    length_figure(merged, s, ("supervised", "supervised_big"), paths["length_supervised.png"])
    curves_figure(merged, ("selfdistill", "big_to_small", "distill_labels", "selfdistill_long"),
                  paths["curves_distill.png"], "distill", agreement=True)
    return list(paths.values())
