"""The study's plots, from the merged results (report.merge): PNG files beside results.md.

What each plot shows is computed first, without matplotlib (the *_lines functions and `plan`),
so that a plot is drawn only when it has data and the decision is testable where matplotlib
is not installed; the drawers only draw those lines."""
import os
from typing import Dict, List, NamedTuple, Optional

from bench.semisup_study import claims as C
from bench.semisup_study import protocol as P

FIGURE1_BUDGETS = ("13pc", "1pct", "10pct")
FIGURE2_ARMS = ("supervised", "finetune", "finetune_big", "selfdistill", "big_to_small",
                "finetune_long", "pixels_logreg", "pixels_knn")
SUPERVISED_ARMS = ("supervised", "supervised_big")
DISTILL_ARMS = ("selfdistill", "big_to_small", "distill_labels", "selfdistill_long")


class Line(NamedTuple):
    label: str
    xs: List[float]
    ys: List[float]           # percent
    yerr: Optional[List[float]] = None
    style: str = "top1"       # "top1" or "agreement" (drawn dotted)
    colour_of: Optional[str] = None  # the label of the line whose colour this one takes


class Figure(NamedTuple):
    lines: List[Line]
    reference: Optional[tuple] = None  # (percent, label): a dashed horizontal line
    xlabel: str = ""
    ylabel: str = ""
    log_x: bool = False
    legend_title: Optional[str] = None
    legend_size: int = 8
    ticks: Optional[List[int]] = None
    size: tuple = (6, 4)


def figure1_lines(t, s: P.Scale) -> List[Line]:
    """Figure 1 in miniature: relative improvement (%) of the fine-tuned bigger network's test
    top-1 over the smaller one's, against encoder parameters (millions), one line per budget.
    A budget with one seed on a side has no error bar (its standard error would count only
    the other side's spread) and says so in its label."""
    small, big = s.nets["small"], s.nets["big"]
    xs = [a.parameters() / 1e6 for a in (small, big)]
    out = []
    for b in FIGURE1_BUDGETS:
        rel = C.relative(t.get("finetune_big", {}).get(b), t.get("finetune", {}).get(b))
        if not rel:
            continue
        ys, se = [0.0, 100 * rel["relative"]], rel["standard_error"]
        if se is None:
            out.append(Line(f"{P.BUDGET[b].label} (one seed on a side: no error bar)", xs, ys))
        else:
            out.append(Line(P.BUDGET[b].label, xs, ys, [0.0, 100 * se]))
    return out


def figure2_lines(t, s: P.Scale) -> List[Line]:
    """Figure 2 in miniature: test top-1 (mean ± std, %) against labelled images per method."""
    labels = {b.name: b.labels for b in P.BUDGETS if b.name != "100pct"}
    names = dict((k, f"{m} ({n})") for k, m, n in P.table_rows(s))
    out = []
    for arm in FIGURE2_ARMS:
        pts = sorted((labels[b], t[arm][b]) for b in labels if t.get(arm, {}).get(b))
        if pts:
            out.append(Line(names[arm], [x for x, _ in pts], [100 * y["mean"] for _, y in pts],
                            [100 * y["std"] for _, y in pts]))
    return out


def knn_lines(merged) -> List[Line]:
    """kNN top-1 (%, 1% bank vs holdout) of each pretraining against its epochs."""
    out = []
    for name, rec in merged["pretrains"].items():
        points = rec.get("knn_curve") or []
        if points:
            out.append(Line(name, [st * rec["batch"] / P.TRAIN_POOL for st, _ in points],
                            [100 * v for _, v in points]))
    return out


def _raw_knn(merged):
    """The raw-pixel kNN's holdout score at k 20 with the 1% bank of seed 0 (the monitor's)."""
    rec = merged["pixels"].get("pixels_knn", {}).get("1pct")
    for trial in (rec or {}).get("search", {}).get("trials", []):
        if trial["point"].get("k") == 20:
            return trial["score"]
    return None


def curve_lines(merged, arms, batch_key: str, agreement: bool) -> List[Line]:
    """Holdout top-1 (and teacher agreement) of each chosen seed-0 run at its checkpoints,
    against epochs (of the 55,000 images for distillation, of the labelled ones otherwise)."""
    out = []
    for arm in arms:
        for budget, r in merged["arms"].get(arm, {}).items():
            points = r.get("curve") or []
            if not points:
                continue
            per_epoch = P.TRAIN_POOL if batch_key == "distill" else P.BUDGET[budget].labels
            xs = [p["step"] * r["batch"] / per_epoch for p in points]
            top1 = Line(f"{arm} {budget}: holdout top-1", xs, [100 * p["top1"] for p in points])
            out.append(top1)
            if agreement and "agreement" in points[0]:
                out.append(Line(f"{arm} {budget}: agreement with teacher", xs,
                                [100 * p["agreement"] for p in points], style="agreement",
                                colour_of=top1.label))
    return out


def length_line(result) -> List[tuple]:
    """[(length factor, holdout top-1)] of an arm's search trials at its chosen learning rate
    and weight decay, ascending: the line that shows whether longer training still helps."""
    rec = result["search"]
    chosen = rec["chosen"]
    pts = {t["point"]["length"]: t["score"] for t in rec["trials"]
           if t["score"] is not None and all(
               t["point"][k] == v for k, v in chosen.items() if k != "length")}
    return sorted(pts.items())


def length_lines(merged, s: P.Scale, arms) -> List[Line]:
    """Holdout top-1 of the search's trials against training length (epochs of the labelled
    images), at each arm's chosen learning rate and weight decay: a plateau or not."""
    out = []
    for arm in arms:
        for budget, r in merged["arms"].get(arm, {}).items():
            pts = length_line(r)
            if len(pts) > 1:
                epochs = s.images[budget] / P.BUDGET[budget].labels
                out.append(Line(f"{arm} {budget} ({s.nets[P.ARMS[arm].net].label})",
                                [f * epochs for f, _ in pts], [100 * v for _, v in pts]))
    return out


def plan(merged, s: P.Scale) -> Dict[str, Figure]:
    """file name -> Figure, for the plots that have at least one line of data (a reference
    line alone is not data): the report draws these and only these."""
    t = merged["table"]
    small, big = s.nets["small"], s.nets["big"]
    full = t.get("supervised", {}).get("100pct")
    raw = _raw_knn(merged)
    labels = sorted(b.labels for b in P.BUDGETS if b.name != "100pct")
    figures = {
        "figure1_size.png": Figure(
            figure1_lines(t, s), xlabel=f"encoder parameters (millions): {small.label}, "
            f"{big.label}", ylabel=f"relative improvement over {small.label} (%)",
            legend_title="label budget", size=(5.5, 4)),
        "figure2_labels.png": Figure(
            figure2_lines(t, s),
            reference=(100 * full["mean"], "supervised, all 55,000 labels") if full else None,
            xlabel="labelled images (class-balanced, outside the holdout)",
            ylabel="Fashion-MNIST test top-1 (%)", log_x=True, legend_size=6, ticks=labels,
            size=(6.5, 4.2)),
        "knn_epochs.png": Figure(
            knn_lines(merged),
            reference=(100 * raw, "raw pixels, k 20 (same bank)") if raw is not None else None,
            xlabel="pretraining epochs (55,000 images)", ylabel="kNN top-1 on the holdout (%)"),
        "curves_supervised.png": Figure(
            curve_lines(merged, SUPERVISED_ARMS, "finetune", agreement=False),
            xlabel="epochs of the labelled images", ylabel="% of the holdout", legend_size=6),
        "length_supervised.png": Figure(
            length_lines(merged, s, SUPERVISED_ARMS), log_x=True, legend_size=6,
            xlabel="training epochs of the labelled images (the search's length line)",
            ylabel="holdout top-1 (%)"),
        "curves_distill.png": Figure(
            curve_lines(merged, DISTILL_ARMS, "distill", agreement=True),
            xlabel="epochs of the 55,000 images", ylabel="% of the holdout", legend_size=6),
    }
    return {name: f for name, f in figures.items() if f.lines}


def draw(figure: Figure, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, ax = plt.subplots(figsize=figure.size)
    colours = {}
    for line in figure.lines:
        colour = colours.get(line.colour_of)
        if line.style == "agreement":
            drawn = ax.plot(line.xs, line.ys, marker="x", linestyle=":", color=colour,
                            label=line.label)[0]
        elif line.yerr is not None:
            drawn = ax.errorbar(line.xs, line.ys, yerr=line.yerr, marker="o", capsize=3,
                                color=colour, label=line.label)[0]
        else:
            drawn = ax.plot(line.xs, line.ys, marker="o", color=colour, label=line.label)[0]
        colours[line.label] = drawn.get_color()
    if figure.reference:
        ax.axhline(figure.reference[0], color="gray", linestyle="--", label=figure.reference[1])
    if figure.log_x:
        ax.set_xscale("log")
    if figure.ticks:
        ax.set_xticks(figure.ticks, [f"{n:,}" for n in figure.ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(figure.xlabel)
    ax.set_ylabel(figure.ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=figure.legend_size, title=figure.legend_title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_all(merged, s: P.Scale, directory: str) -> List[str]:
    """Draws the plots that have data into `directory`; returns the paths written."""
    paths = []
    for name, figure in plan(merged, s).items():
        paths.append(os.path.join(directory, name))
        draw(figure, paths[-1])
    return paths
