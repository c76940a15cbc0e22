"""What bench/semisup.py reports: the parts' results files merged into one table, the claims,
and the plots (Figure 1 and Figure 2 in miniature, kNN against pretraining epochs, holdout
curves of the supervised baselines and of the students)."""
import glob
import os
from typing import Dict, List

from bench import harness
from bench.semisup_study import claims as C
from bench.semisup_study import protocol as P
from bench.semisup_study import rescore

COLUMNS = tuple(b.name for b in P.BUDGETS)


def read_parts(directory: str) -> List[dict]:
    """Every part_*.json in `directory`, in the study's part order."""
    parts = [harness.read_json(p) for p in glob.glob(os.path.join(directory, "part_*.json"))]
    return sorted(parts, key=lambda p: P.PART_ORDER.index(p["part"]))


def merge(parts: List[dict]) -> dict:
    """One study from its parts: arms, pixel references, pretrainings, runs, and each part's
    commit, CPU, precision and minutes. An arm at a budget comes from one part, or from
    parts holding disjoint seeds of it at the configuration that one search chose; an encoder
    recorded by two parts must be the same one (the same kNN monitor)."""
    out = {"arms": {}, "pixels": {}, "pretrains": {}, "runs": {}, "parts": {}}
    for part in parts:
        name = part["part"]
        for arm, per_budget in part.get("arms", {}).items():
            for budget, result in per_budget.items():
                have = out["arms"].get(arm, {}).get(budget)
                out["arms"].setdefault(arm, {})[budget] = (
                    _seeds_joined(have, result, arm, budget, name) if have
                    else dict(result, part=name))
        for method, per_budget in part.get("pixels", {}).items():
            out["pixels"].setdefault(method, {}).update(per_budget)
        for pre, rec in part.get("pretrains", {}).items():
            if pre in out["pretrains"] and out["pretrains"][pre]["knn_curve"] != rec["knn_curve"]:
                raise ValueError(f"part {name} was made from another encoder {pre} than an "
                                 "earlier part (their kNN monitors differ): rerun one of them "
                                 "into the other's --out.")
            out["pretrains"][pre] = rec
        for run, rec in part.get("runs", {}).items():
            if rec.get("owner") != "dependency":
                out["runs"][run] = dict(rec, part=name)
        out["parts"][name] = {k: part.get(k) for k in (
            "scale", "commit", "cpu", "precision", "minutes_of_runs", "minutes_of_own_runs")}
    return out


def _seeds_joined(have: dict, result: dict, arm: str, budget: str, name: str) -> dict:
    """One arm at one budget from two parts: disjoint seeds, the same chosen configuration."""
    if set(have["finals"]) & set(result["finals"]) or (
            have["search"].get("chosen") != result["search"].get("chosen")):
        raise ValueError(f"{arm} at {budget} is in two parts' results ({name} and "
                         f"{have['part']}) with the same seeds or another configuration: "
                         "delete one of the part files.")
    searched = have if "recorded_by" not in have["search"] else result
    joined = dict(searched, part=f"{have['part']}+{name}")
    for key in ("finals", "runs", "teachers"):
        if have.get(key) is not None:
            joined[key] = dict(sorted({**have[key], **result[key]}.items()))
    return joined


def table(merged: dict) -> Dict[str, Dict[str, dict]]:
    """arm (or pixel method) -> budget -> summary of its test top-1 over seeds."""
    t = {arm: {b: C.summary(r["finals"]) for b, r in per_budget.items()}
         for arm, per_budget in merged["arms"].items()}
    for method, per_budget in merged["pixels"].items():
        t[method] = {b: C.summary(r["finals"]) for b, r in per_budget.items()}
    return t


def cell(x) -> str:
    if not x:
        return "-"
    if x["n"] == 1:
        return f"{100 * x['mean']:.1f} (n=1)"
    return f"{100 * x['mean']:.1f} ± {100 * x['std']:.1f} (n={x['n']})"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _comparison(c) -> str:
    """The comparison's numbers (claims.py gives no standard error with one seed on a side)."""
    if not c:
        return ""
    if c["standard_error"] is None:
        return f" (difference {100 * c['difference']:+.2f} points, one seed on a side)"
    ci = ("" if c["low"] is None else
          f", 95% t-interval [{100 * c['low']:+.2f}, {100 * c['high']:+.2f}]")
    return (f" (difference {100 * c['difference']:+.2f} points, standard error "
            f"{100 * c['standard_error']:.2f}{ci}, smallest n {c['n_min']})")


def markdown(merged: dict, s: P.Scale) -> str:
    t = table(merged)
    lines = ["# SimCLRv2 in miniature on Fashion-MNIST: the study's results", ""]
    for name, info in merged["parts"].items():
        cpu = info["cpu"] or {}
        lines.append(f"- part `{name}` ({info['scale']} scale): commit {info['commit']}, "
                     f"{cpu.get('model')} ({cpu.get('cpu_count')} cores, AVX512-BF16 "
                     f"{cpu.get('avx512_bf16')}, AMX {cpu.get('amx_bf16')}), "
                     f"{info['precision']}, {info['minutes_of_own_runs']:.0f} min of its own "
                     f"runs ({info['minutes_of_runs']:.0f} with what it built for others)")
    counted = ("by argmax, re-evaluated from the checkpoints (see 'Top-1 by argmax' below)"
               if merged.get("rescore", {}).get("outcome", {}).get("rescored") else
               "as each part's commit counted it")
    lines += ["", "Test top-1 (%), mean ± std over subset seeds, each arm at the configuration "
              "its holdout search chose; the test split read once per chosen configuration; "
              f"top-1 {counted}.",
              "", "| Method | Network | " + " | ".join(
                  P.BUDGET[b].label for b in COLUMNS) + " |",
              "|---|---|" + "---|" * len(COLUMNS)]
    for key, label, network in P.table_rows(s):
        if key in t:
            lines.append(f"| {label} | {network} | " + " | ".join(
                cell(t[key].get(b)) for b in COLUMNS) + " |")
    lines += ["", "## Claims (95% t-intervals; see bench/semisup_study/claims.py)", ""]
    for c in C.judge(t):
        rel = c["numbers"].get("relative")
        extra = ("" if not rel else f"; relative improvement {100 * rel['relative']:+.1f}%"
                 + ("" if rel["standard_error"] is None else
                    f" ± {100 * rel['standard_error']:.1f}"))
        number = c["number"] if c["number"] == C.LONG else f"claim {c['number']}"
        lines.append(f"- {number}, **{c['verdict']}**: {c['claim']}"
                     f"{_comparison(c['comparison'])}{extra}")
    ref = C.references(t)
    lines += ["", "## References", "", f"- supervised from scratch on all 55,000 labels: "
              f"{_pct(ref['supervised_all_labels'])}"]
    for arm in ("finetune", "selfdistill", "big_to_small", "finetune_long", "selfdistill_long"):
        r = ref[arm]
        frac, line = r["fraction_of_supervised_all"], f"- {arm} at 1%: {_pct(r['top1'])}"
        if frac:
            line += f" = {100 * frac:.1f}% of it"
        if arm.endswith("_long") and r["top1"] is not None:
            reached = "reached" if r["reaches_target"] else "not reached"
            line += f"; the target, {100 * C.TARGET_1PCT:.0f}% test top-1, {reached}"
        lines.append(line)
    if "rescore" in merged:
        lines += rescore.summary_lines(merged, merged["rescore"]["runs"],
                                       merged["rescore"]["outcome"])
    lines += search_tables(merged)
    return "\n".join(lines) + "\n"


def search_tables(merged: dict) -> List[str]:
    """Every arm's search: each trial and its holdout score, the extensions, the choice and
    whether it sits on a cap."""
    lines = ["", "## The searches (holdout top-1 %, subset seed 0)", ""]
    for arm, per_budget in merged["arms"].items():
        for budget, r in per_budget.items():
            rec = r["search"]
            caps = ", ".join(f"{c['axis']} {c['direction']}" for c in rec["on_cap"])
            exts = "; ".join(f"{e['axis']} {e['direction']} to {e['value']:g}"
                             for e in rec["extensions"]) or "none"
            lines.append(f"**{arm} at {budget}** (part {r['part']}): chosen "
                         f"{P.point_label(rec['chosen'])} ({_pct(rec['chosen_score'])})"
                         f"{'; ON A CAP: ' + caps if caps else ''}; extensions: {exts}")
            lines.append("")
            lines.append("| trial | axis | role | holdout |")
            lines.append("|---|---|---|---|")
            for trial in rec["trials"]:
                lines.append(f"| {P.point_label(trial['point'])} | {trial['axis']} | "
                             f"{trial['role']} | {_pct(trial['score'])} |")
            lines.append("")
    return lines


def write(directory: str, s: P.Scale) -> List[str]:
    """Merges the part files of `directory` into results.json, results.md and the plots
    there (when matplotlib, of requirements-bench.txt, is installed); returns the paths
    written."""
    merged = merge(read_parts(directory))
    rescored = rescore.read(directory)
    merged["rescore"] = {"runs": rescored, "outcome": rescore.apply(merged, rescored)}
    t = table(merged)
    merged.update(table=t, claims=C.judge(t), references=C.references(t))
    paths = [os.path.join(directory, "results.json"), os.path.join(directory, "results.md")]
    harness.write_json(paths[0], merged)
    with open(paths[1], "w") as f:
        f.write(markdown(merged, s))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed (pip install -r requirements-bench.txt): no plots")
        return paths
    from bench.semisup_study import figures
    return paths + figures.write_all(merged, s, directory)
