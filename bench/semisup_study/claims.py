"""The paper's claims, judged on test top-1 over seeds by 95% t-intervals.

Two groups: Welch's interval for a difference of means (Welch-Satterthwaite degrees of
freedom), also for differences of differences (a linear contrast of group means). A student
against its own teacher: a paired interval over the seeds they share (n - 1 degrees of
freedom). With n = 3 per side a t-interval is about twice as wide as two standard errors,
which would claim too much; the standard errors are reported beside it. A claim holds when
its interval lies above 0, does not hold when it lies below, is "not shown" when it contains
0, and is "not judged" when either side has fewer than MIN_N seeds.
"""
import math
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

MIN_N = 3
LEVEL = 0.95
LONG = "the long part"  # the number of a claim about longer pretraining itself
TARGET_1PCT = 0.89  # the long part's target: test top-1 with 1% of the labels


def summary(by_seed: Optional[Dict[str, Optional[float]]]) -> Optional[dict]:
    """{'mean', 'std' (sample; 0 for one value), 'n', 'by_seed'} of the non-missing values."""
    values = {k: v for k, v in (by_seed or {}).items() if v is not None}
    if not values:
        return None
    xs = list(values.values())
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "n": len(xs), "by_seed": values}


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function, by Simpson's rule on its density (df >= 1)."""
    if t < 0:
        return 1.0 - t_cdf(-t, df)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = lambda x: math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))  # noqa: E731
    steps = 2000
    h = t / steps
    total = density(0) + density(t) + sum(
        (4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
    return 0.5 + total * h / 3


def t_quantile(p: float, df: float) -> float:
    """The p-quantile (p > 0.5) of Student's t with df degrees of freedom, by bisection."""
    low, high = 0.0, 1000.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def contrast(terms: Sequence[Tuple[float, dict]]) -> Optional[dict]:
    """sum(c * mean) with Welch's t-interval: var = sum(c^2 s^2 / n), Welch-Satterthwaite
    df = var^2 / sum((c^2 s^2 / n)^2 / (n - 1)). None when a group is missing."""
    if any(g is None for _, g in terms):
        return None
    value = sum(c * g["mean"] for c, g in terms)
    parts = [c * c * g["std"] ** 2 / g["n"] for c, g in terms]
    var = sum(parts)
    n_min = min(g["n"] for _, g in terms)
    df = (var * var / sum(p * p / (g["n"] - 1) for p, (_, g) in zip(parts, terms) if p > 0)
          if var > 0 and n_min > 1 else None)
    return _interval(value, math.sqrt(var), df, n_min)


def paired(a: dict, b: dict) -> Optional[dict]:
    """mean(a - b) over the seeds both have, with the paired t-interval (df = n - 1)."""
    if a is None or b is None:
        return None
    seeds = sorted(set(a["by_seed"]) & set(b["by_seed"]))
    diffs = [a["by_seed"][s] - b["by_seed"][s] for s in seeds]
    if not diffs:
        return None
    n = len(diffs)
    sd = statistics.stdev(diffs) if n > 1 else 0.0
    out = _interval(statistics.fmean(diffs), sd / math.sqrt(n), n - 1 if n > 1 else None, n)
    out["seeds"] = seeds
    return out


def _interval(value, se, df, n_min) -> dict:
    half = t_quantile(0.5 + LEVEL / 2, df) * se if df else None
    se = se if n_min > 1 else None  # one seed on a side: no spread to measure there
    return {"difference": value, "standard_error": se, "df": df, "n_min": n_min,
            "low": None if half is None else value - half,
            "high": None if half is None else value + half}


def relative(big: Optional[dict], small: Optional[dict]) -> Optional[dict]:
    """mean(big) / mean(small) - 1 with its standard error by the delta method (None with one
    seed on a side: it would count only the other side's spread)."""
    if big is None or small is None:
        return None
    mb, ms = big["mean"], small["mean"]
    se_b, se_s = big["std"] / math.sqrt(big["n"]), small["std"] / math.sqrt(small["n"])
    se = (math.hypot(se_b / ms, mb * se_s / ms ** 2) if min(big["n"], small["n"]) > 1
          else None)
    return {"relative": mb / ms - 1, "standard_error": se}


def verdict(comparison: Optional[dict]) -> str:
    if comparison is None:
        return "not measured"
    if comparison["n_min"] < MIN_N or comparison["low"] is None:
        return f"not judged (n < {MIN_N} on a side)"
    if comparison["low"] > 0:
        return "holds"
    if comparison["high"] < 0:
        return "does not hold"
    return "not shown (the interval contains 0)"


def _claim(number, text, comparison, **numbers) -> dict:
    return {"number": number, "claim": text, "verdict": verdict(comparison),
            "comparison": comparison, "numbers": numbers}


def judge(t: Dict[str, Dict[str, dict]]) -> List[dict]:
    """The claims on the table t: arm -> budget -> summary."""
    g = lambda arm, b: t.get(arm, {}).get(b)  # noqa: E731
    diff = lambda a, b: contrast([(1, a), (-1, b)])  # noqa: E731
    gain = lambda a1, b1, a2, b2: contrast([(1, a1), (-1, b1), (-1, a2), (1, b2)])  # noqa: E731
    out = []
    for b in ("13pc", "1pct", "10pct"):
        out.append(_claim(1, f"{b}: SimCLRv2 fine-tuned beats supervised from scratch",
                          diff(g("finetune", b), g("supervised", b))))
    for b in ("13pc", "1pct"):  # the same at x0.5 (no x0.5 from scratch at 10%: cut)
        out.append(_claim(1, f"{b}, ResNet-18 x0.5: SimCLRv2 fine-tuned beats the same "
                          "network from scratch", diff(g("finetune_big", b),
                                                      g("supervised_big", b))))
    for few in ("13pc", "1pct"):
        out.append(_claim(1, f"the gain over supervised is larger at {few} than at 10pct",
                          gain(g("finetune", few), g("supervised", few),
                               g("finetune", "10pct"), g("supervised", "10pct"))))
    out.append(_claim(2, "1pct: the self-distilled student (tau 0.1) beats its own teacher "
                      "(paired by seed)", paired(g("selfdistill", "1pct"), g("finetune", "1pct"))))
    out.append(_claim(2, "1pct: the big-to-small student (tau 1) against its own big teacher "
                      "(paired by seed)", paired(g("big_to_small", "1pct"),
                                                 g("finetune_big", "1pct"))))
    for arm, how in (("finetune", "fine-tuned directly"), ("supervised", "trained from scratch")):
        out.append(_claim(3, f"1pct: the big-to-small student beats the same small network {how}",
                          diff(g("big_to_small", "1pct"), g(arm, "1pct"))))
    for b in ("13pc", "1pct", "10pct"):
        out.append(_claim(4, f"{b}: the bigger pretrained network fine-tunes better (equal "
                          "pretraining epochs)", diff(g("finetune_big", b), g("finetune", b)),
                          relative=relative(g("finetune_big", b), g("finetune", b))))
    for few in ("13pc", "1pct"):
        out.append(_claim(4, f"the bigger network's gain is larger at {few} than at 10pct",
                          gain(g("finetune_big", few), g("finetune", few),
                               g("finetune_big", "10pct"), g("finetune", "10pct"))))
    for b in ("13pc", "1pct"):
        out.append(_claim(5, f"{b}: fine-tuning from the first head layer beats fine-tuning "
                          "from the encoder output", diff(g("finetune", b),
                                                          g("finetune_head0", b))))
    out.append(_claim(1, "1pct, long pretraining: SimCLRv2 fine-tuned after 30 pretraining "
                      "epochs beats supervised from scratch",
                      diff(g("finetune_long", "1pct"), g("supervised", "1pct"))))
    out.append(_claim(LONG, "1pct: 30 pretraining epochs fine-tune better than 4 (the same "
                      "network and recipe)", diff(g("finetune_long", "1pct"),
                                                  g("finetune", "1pct"))))
    out.append(_claim(2, "1pct, long pretraining: the self-distilled student (tau 0.1) beats "
                      "its own teacher (paired by seed)", paired(g("selfdistill_long", "1pct"),
                                                                 g("finetune_long", "1pct"))))
    return out


def references(t) -> dict:
    """The paper's ratios: 1% results as a fraction of supervised on all labels, and the
    long part against its target."""
    g = lambda arm, b: (t.get(arm, {}).get(b) or {}).get("mean")  # noqa: E731
    full = g("supervised", "100pct")
    out = {"supervised_all_labels": full, "target_1pct": TARGET_1PCT}
    for arm in ("finetune", "selfdistill", "big_to_small", "finetune_long", "selfdistill_long"):
        value = g(arm, "1pct")
        out[arm] = {"top1": value, "fraction_of_supervised_all":
                    None if value is None or not full else value / full,
                    "reaches_target": None if value is None else value >= TARGET_1PCT}
    return out
