"""What bench/semisup.py reports: test top-1 mean ± std over seeds, the claims, two plots."""
import statistics
from typing import Dict, List, Optional

from bench.semisup_study import protocol as P

MOST = 0.9  # "most of the teacher's accuracy": >= 90% of its top-1 gain over chance
ROWS = (("supervised", "Supervised, from scratch", "small"),
        ("finetune_small", "SimCLRv2 fine-tuned", "small"),
        ("selfdistill", "SimCLRv2 self-distilled", "small"),
        ("finetune_big", "SimCLRv2 fine-tuned (big teacher)", "big"),
        ("big_to_small", "SimCLRv2 big-to-small distilled", "small"),
        ("linear", "SimCLRv2 linear eval (frozen encoder)", "small"))


def summary(values: List[float]) -> Optional[dict]:
    """{'mean', 'std' (sample std; 0 for one value), 'n', 'values'} or None for none."""
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values),
            "values": values}


def table(finals: Dict[str, Dict[str, List[float]]]) -> Dict[str, Dict[str, dict]]:
    """arm -> budget -> summary of its test top-1 over seeds."""
    return {arm: {b: summary(v) for b, v in per_budget.items()}
            for arm, per_budget in finals.items()}


def _diff(a: Optional[dict], b: Optional[dict]) -> Optional[dict]:
    """a - b with its standard error from the spreads over seeds (sqrt(sa²/na + sb²/nb)).

    An arm of one seed has no spread of its own: it is given the other arm's (the same
    recipe's spread over labelled subsets is the best estimate there is).
    """
    if not a or not b:
        return None
    sa = a["std"] if a["n"] > 1 else b["std"]
    sb = b["std"] if b["n"] > 1 else a["std"]
    se = (sa ** 2 / a["n"] + sb ** 2 / b["n"]) ** 0.5
    d = a["mean"] - b["mean"]
    return {"difference": d, "standard_error": se, "beyond_two_se": abs(d) > 2 * se > 0}


def verdict(holds: Optional[bool], diff: Optional[dict]) -> str:
    """'holds' / 'does not hold' when the difference is beyond two standard errors (or there
    is no spread to judge it by: a threshold claim), else 'not shown (within the spread)'."""
    if holds is None:
        return "not measured"
    if diff is not None and not diff["beyond_two_se"]:
        return "not shown (within the spread)"
    return "holds" if holds else "does not hold"


def _claim(text, holds, numbers, diff=None):
    return {"claim": text, "holds": holds, "verdict": verdict(holds, diff), "numbers": numbers,
            "comparison": diff}


def _gain_diff(few: dict, many: dict) -> dict:
    """Difference of two gains, its standard error from theirs."""
    d = few["difference"] - many["difference"]
    se = (few["standard_error"] ** 2 + many["standard_error"] ** 2) ** 0.5
    return {"difference": d, "standard_error": se, "beyond_two_se": abs(d) > 2 * se > 0}


def claims(t) -> List[dict]:
    """The issue's four claims, judged on test top-1 with the spread over seeds."""
    g = lambda arm, b: t.get(arm, {}).get(b)  # noqa: E731
    out = []
    gains = {}
    for b in ("13pc", "1pct", "128pc", "10pct"):
        d = _diff(g("finetune_small", b), g("supervised", b))
        gains[b] = d
        if b in ("13pc", "1pct"):
            out.append(_claim(f"{b}: SimCLRv2 fine-tuned beats supervised on the same labels",
                              None if d is None else d["difference"] > 0,
                              {"finetuned": g("finetune_small", b),
                               "supervised": g("supervised", b)}, d))
    for few, many in (("13pc", "128pc"), ("1pct", "10pct")):
        if gains.get(few) and gains.get(many):
            d = _gain_diff(gains[few], gains[many])
            out.append(_claim(f"the gain is larger with fewer labels ({few} vs {many})",
                              d["difference"] > 0, {few: gains[few], many: gains[many]}, d))
    for b in ("13pc", "1pct"):
        d = _diff(g("selfdistill", b), g("finetune_small", b))
        if d:
            out.append(_claim(f"{b}: self-distillation improves on its fine-tuned teacher "
                              "(student: one seed)", d["difference"] > 0,
                              {"student": g("selfdistill", b),
                               "teacher_arm": g("finetune_small", b)}, d))
        st, te = g("big_to_small", b), g("finetune_big", b)
        if st and te:
            keeps = st["mean"] - P.CHANCE >= MOST * (te["mean"] - P.CHANCE)
            out.append(_claim(f"{b}: the small student keeps most (>= {MOST:.0%} of the gain "
                              "over chance) of the big teacher's accuracy", keeps,
                              {"student": st, "teacher": te}))
        d = _diff(g("finetune_big", b), g("finetune_small", b))
        if d:
            out.append(_claim(f"{b}: the bigger pretrained network fine-tunes better (big: "
                              "one seed)", d["difference"] > 0,
                              {"big": g("finetune_big", b), "small": g("finetune_small", b)},
                              d))
    return out


def _cell(x: Optional[dict]) -> str:
    if not x:
        return "-"
    if x["n"] == 1:  # one seed: no spread to show
        return f"{100 * x['mean']:.1f} (n=1)"
    return f"{100 * x['mean']:.1f} ± {100 * x['std']:.1f} (n={x['n']})"


def markdown(t, claim_list, info: dict, s: P.Scale) -> str:
    budgets = [b.name for b in P.BUDGETS] + ["100pct"]
    lines = [f"# SimCLRv2 in miniature on Fashion-MNIST ({info['scale']} scale)", "",
             f"Commit {info['commit']}, CPU {info['cpu']['model']} "
             f"({info['cpu']['cpu_count']} cores, AVX512-BF16 {info['cpu']['avx512_bf16']}, "
             f"AMX {info['cpu']['amx_bf16']}), precision {info['precision']}, "
             f"{info['total_minutes']:.1f} min of runs.", "",
             "Test top-1 (%), mean ± std over subset seeds, each arm at the configuration its "
             "holdout search chose (5,000 held-out training images; the test split read "
             "once per chosen configuration).", ""]
    if s.train_steps:
        lines += [f"**Smoke scale: {s.train_steps} steps per run; the numbers only show that "
                  "every hand-over works.**", ""]
    lines += ["| Method | Network | " + " | ".join(budgets) + " |",
              "|---|---|" + "---|" * len(budgets)]
    for arm, label, size in ROWS:
        cells = [_cell(t.get(arm, {}).get(b)) for b in budgets]
        lines.append(f"| {label} | {getattr(s, size).label} | " + " | ".join(cells) + " |")
    raw = info.get("raw_pixel_knn", {})
    lines.append("| *kNN on raw pixels (holdout)* | | " + " | ".join(
        f"{100 * raw[b]:.1f}" if b in raw else "-" for b in budgets) + " |")
    lines += ["", "## Claims", ""]
    for c in claim_list:
        comp = c.get("comparison")
        extra = ""
        if comp:
            extra = (f" (difference {100 * comp['difference']:+.2f} points, standard error "
                     f"{100 * comp['standard_error']:.2f}: "
                     f"{'beyond' if comp['beyond_two_se'] else 'within'} two)")
        lines.append(f"- **{c['verdict']}**: {c['claim']}{extra}")
    lines += ["", "## The search (holdout top-1 %, subset seed 0; * = chosen)", "",
              "| Arm | Budget | " + " | ".join(t_.label() for t_ in s.trials) + " |",
              "|---|---|" + "---|" * len(s.trials)]
    for arm, per_budget in info.get("search", {}).items():
        for budget, records in per_budget.items():
            if budget.endswith(":chosen") or not isinstance(records, list):
                continue
            chosen = per_budget.get(budget + ":chosen")
            cells = [f"{100 * r['holdout_top1']:.1f}{'*' if i == chosen else ''}"
                     for i, r in enumerate(records)]
            lines.append(f"| {arm} | {budget} | " + " | ".join(cells) + " |")
    lines += ["", "## The representation before fine-tuning (kNN top-1 on the holdout)", ""]
    raw_1pct = raw.get("1pct")
    for name, points in info.get("knn_curves", {}).items():
        if name.startswith("pretrain") and points:
            step, value = points[-1]
            epochs = step * s.batch["pretrain"] / P.TRAIN_POOL
            against = (f", raw pixels {100 * raw_1pct:.1f} (same bank): "
                       f"{100 * (value - raw_1pct):+.1f} points" if raw_1pct else "")
            lines.append(f"- {name} after {epochs:.1f} epochs: {100 * value:.1f}%{against}")
    lines += ["", "## Phase 0 (augmentation, kNN top-1 on the holdout)", ""]
    for name, score in info.get("phase0", {}).items():
        lines.append(f"- {name}: {100 * score:.2f}%")
    lines.append(f"- chosen: {info.get('augmentation')}")
    return "\n".join(lines) + "\n"


def figure(t, s: P.Scale, path: str):
    """Figure 2 in miniature: test top-1 against the label budget, error bars = std."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 (matplotlib.ticker below)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    names = [b.name for b in P.BUDGETS]
    labels = {b.name: b.labels for b in P.BUDGETS}
    for arm, label, size in ROWS[:5]:
        pts = [(labels[b], t[arm][b]) for b in names if t.get(arm, {}).get(b)]
        if pts:
            xs, ys = zip(*sorted(pts))
            ax.errorbar(xs, [100 * y["mean"] for y in ys], yerr=[100 * y["std"] for y in ys],
                        marker="o", capsize=3, label=f"{label} ({getattr(s, size).label})")
    ax.set_xscale("log")
    ticks = sorted(labels.values())  # the budgets themselves, no crowded minor labels
    ax.set_xticks(ticks, [f"{n:,}" for n in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("labelled images (class-balanced, outside the holdout)")
    ax.set_ylabel("Fashion-MNIST test top-1 (%)")
    _finish(plt, fig, ax, path, legend_size=7)


def knn_figure(curves: Dict[str, list], raw: Optional[float], batch: int, path: str):
    """kNN top-1 (1% bank vs holdout) against pretraining epochs; raw pixels as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        if points:
            ax.plot([st * batch / P.TRAIN_POOL for st, _ in points],
                    [100 * v for _, v in points], marker=".", label=name)
    if raw is not None:
        ax.axhline(100 * raw, color="gray", linestyle="--", label="raw pixels (same bank)")
    ax.set_xlabel("pretraining epochs (55,000 images)")
    ax.set_ylabel("kNN top-1 on the holdout (%)")
    _finish(plt, fig, ax, path, legend_size=8)


def _finish(plt, fig, ax, path, legend_size):
    """Grid, legend (when anything is labelled), layout; writes the PNG and closes it."""
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
