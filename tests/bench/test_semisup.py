"""bench/semisup.py's protocol without training: the search rule on synthetic score tables,
the plan of every part (holdout, test read once, teachers by seed, equal epochs), the merge of
the parts' files, relative improvements and the claims' verdicts by hand, the raw-pixel
logistic regression against finite differences, the runner's record of a diverged run, and
the argmax rescoring of the finals by hand."""
import math
import sys

import numpy as np
import pytest

from bench.semisup_study import claims as C
from bench.semisup_study import pixels
from bench.semisup_study import protocol as P
from bench.semisup_study import report
from bench.semisup_study import rescore
from bench.semisup_study import runner
from bench.semisup_study import search
from bench.semisup_study.study import Study

CPU = {"model": "test", "cpu_count": 2, "avx512_bf16": True, "amx_bf16": False,
       "amx_tile": False, "auto_precision": "mixed_bfloat16"}


def _table_score(table, calls):
    """A score from {(lr, wd, length): value}; missing points score 0; counts calls."""
    def score(p):
        calls.append(search.key(p))
        return table.get((p["learning_rate"], p["weight_decay"], p["length"]), 0.0)
    return score


def test_search_extends_past_an_edge_up_to_the_cap_and_marks_the_cap():
    # lr keeps improving upwards (0.3 -> 1 -> 3: the cap of 2 extensions); wd is best at the
    # lower edge, extended once to 5e-6, which loses; length 2 beats 1, 4 loses.
    t = {(0.01, 5e-4, 1.0): 0.50, (0.03, 5e-4, 1.0): 0.55, (0.1, 5e-4, 1.0): 0.60,
         (0.3, 5e-4, 1.0): 0.65, (1.0, 5e-4, 1.0): 0.70, (3.0, 5e-4, 1.0): 0.72,
         (3.0, 5e-5, 1.0): 0.74, (3.0, 5e-6, 1.0): 0.73,
         (3.0, 5e-5, 2.0): 0.80, (3.0, 5e-5, 4.0): 0.79}
    calls = []
    rec = search.search(search.RULE, _table_score(t, calls))
    assert [tuple(tr["point"][k] for k in ("learning_rate", "weight_decay", "length"))
            for tr in rec["trials"]] == [
        (0.01, 5e-4, 1.0), (0.03, 5e-4, 1.0), (0.1, 5e-4, 1.0), (0.3, 5e-4, 1.0),
        (1.0, 5e-4, 1.0), (3.0, 5e-4, 1.0), (3.0, 5e-5, 1.0), (3.0, 5e-6, 1.0),
        (3.0, 5e-5, 2.0), (3.0, 5e-5, 4.0)]
    assert [(e["axis"], e["direction"], e["value"]) for e in rec["extensions"]] == [
        ("learning_rate", "up", 1.0), ("learning_rate", "up", 3.0),
        ("weight_decay", "down", 5e-6), ("length", "up", 4.0)]
    assert rec["chosen"] == {"learning_rate": 3.0, "weight_decay": 5e-5, "length": 2.0}
    assert rec["chosen_score"] == 0.80
    assert rec["on_cap"] == [{"axis": "learning_rate", "direction": "up"}]
    assert len(calls) == len(set(calls)) == 10  # each point scored once


def test_search_inside_the_grid_extends_nothing_and_length_never_goes_below_the_budget():
    t = {(0.03, 5e-4, 1.0): 0.9, (0.03, 5e-5, 1.0): 0.8, (0.03, 5e-4, 2.0): 0.85}
    rec = search.search(search.RULE, _table_score(t, []))
    # wd 5e-4 is the upper edge of its grid: one extension (5e-3) is tried and loses.
    assert [(e["axis"], e["value"]) for e in rec["extensions"]] == [("weight_decay", 5e-3)]
    assert rec["chosen"] == {"learning_rate": 0.03, "weight_decay": 5e-4, "length": 1.0}
    assert rec["on_cap"] == []  # the budget itself is not an edge of the search
    assert len(rec["trials"]) == 4 + 2 + 1


def test_search_ties_keep_the_incumbent_and_diverged_trials_lose():
    t = {(0.01, 5e-4, 1.0): None, (0.03, 5e-4, 1.0): 0.7, (0.1, 5e-4, 1.0): 0.7,
         (0.3, 5e-4, 1.0): None, (0.03, 5e-5, 1.0): 0.7, (0.03, 5e-3, 1.0): 0.7,
         (0.03, 5e-6, 1.0): 0.7, (0.03, 5e-4, 2.0): 0.7}
    rec = search.search(search.RULE, lambda p: t.get(
        (p["learning_rate"], p["weight_decay"], p["length"]), 0.0))
    assert rec["chosen"] == {"learning_rate": 0.03, "weight_decay": 5e-4, "length": 1.0}
    assert rec["extensions"] == [{"axis": "weight_decay", "direction": "up", "value": 5e-3,
                                  "from": 5e-4}]


def test_projection_scores_extend_what_they_say():
    typical = search.search(search.RULE, search.typical_score(search.RULE))
    assert typical["chosen"] == {"learning_rate": 0.03, "weight_decay": 5e-4, "length": 2.0}
    assert [(e["axis"], e["value"]) for e in typical["extensions"]] == [
        ("weight_decay", 5e-3), ("length", 4.0)]
    worst = search.search(search.RULE, search.edge_score)
    assert worst["chosen"] == {"learning_rate": 3.0, "weight_decay": 5e-3, "length": 32.0}
    assert {c["axis"] for c in worst["on_cap"]} == {"learning_rate", "weight_decay", "length"}


@pytest.fixture
def projected(tmp_path):
    """Every part of the full study walked in order without running anything."""
    study = Study(P.FULL, "full", str(tmp_path), str(tmp_path), CPU,
                  projection=search.typical_score(P.FULL.rule))
    for part in P.PART_ORDER:
        study.run_part(part)
    return study


def test_every_part_holds_out_reads_test_once_and_teaches_by_seed(projected):
    runs = projected.records["runs"]
    commands = {name: r["command"] for name, r in runs.items() if r.get("command")}
    run_py = {n: c for n, c in commands.items() if c.startswith("python run.py")}
    assert all("--holdout_fraction=0.08333333333333333" in c for c in run_py.values())
    assert all("$OUT/runs/" in c and "/tmp" not in c for c in run_py.values())
    # the test split: the search's chosen run of seed 0 (mode=eval) and the other seeds' runs
    for arm, per_budget in projected.records["arms"].items():
        for budget, r in per_budget.items():
            chosen = P.run_name(P.ARMS[arm], P.BUDGET[budget], r["search"]["chosen"], 0)
            tested = [n for n, c in run_py.items() if "--eval_split=test" in c
                      and n.startswith(f"{arm}_{budget}_")]
            seeds = P.FULL.arm_seeds(P.ARMS[arm], P.BUDGET[budget])
            assert sorted(tested) == sorted([chosen + ":test"] + [
                P.run_name(P.ARMS[arm], P.BUDGET[budget], r["search"]["chosen"], s)
                for s in seeds[1:]])
            if r["teachers"]:
                teacher = projected.arm(P.ARMS[P.ARMS[arm].teacher], P.BUDGET[budget])
                assert r["teachers"] == {s: teacher["runs"][s] for s in r["teachers"]}
                for seed, name in r["runs"].items():
                    assert f"--teacher=$OUT/runs/{r['teachers'][seed]}" in commands[name]


def test_equal_pretraining_epochs_and_the_knn_bank(projected):
    pre = projected.records["pretrains"]
    small = pre["pretrain_r18x0.25_e4_p0"]
    big = pre["pretrain_r18x0.5_e4_p0"]
    assert small["epochs"] == big["epochs"] and small["batch"] == big["batch"]
    assert pre["pretrain_r18x0.25_e30_p0"]["epochs"] >= 30
    for name in pre:
        command = projected.records["runs"][name]["command"]
        assert "--label_fraction=0.01" in command and "--knn_every_steps=215" in command


def test_every_arm_gets_the_same_search(projected):
    arms = projected.records["arms"]
    assert set(arms) == P.arm_names()
    shapes = {(arm, b): [(t["axis"], t["role"]) for t in r["search"]["trials"]]
              for arm, per in arms.items() for b, r in per.items()}
    assert len(set(map(tuple, shapes.values()))) == 1  # the same trials everywhere


def test_projected_parts_fit_in_120_minutes(tmp_path):
    """The typical projection of each part (on an empty --out) on Zen 4 speeds."""
    study = Study(P.FULL, "full", str(tmp_path), str(tmp_path), CPU,
                  projection=search.typical_score(P.FULL.rule))
    for part in P.PART_ORDER:
        before = set(study.records["runs"])
        study.run_part(part)
        minutes = sum(r["wall_seconds"] or 0 for k, r in study.records["runs"].items()
                      if k not in before) / 60
        assert 5 < minutes <= 120, (part, minutes)  # size_10pct_seeds: 2 finals, ~10 min


def _part(name, arms, pixels_=None, runs=None):
    return {"part": name, "scale": "full", "commit": "abc", "cpu": CPU,
            "precision": "mixed_bfloat16", "minutes_of_runs": 1.0, "minutes_of_own_runs": 1.0,
            "arms": arms, "pixels": pixels_ or {}, "pretrains": {}, "runs": runs or {}}


def _result(finals):
    return {"finals": finals, "search": {}, "curve": None}


def test_merge_of_parts_keeps_each_arm_once_and_only_own_runs():
    a = _part("baselines", {"supervised": {"1pct": _result({"0": 0.7, "1": 0.72})}},
              {"pixels_knn": {"1pct": {"finals": {"0": 0.6}}}},
              {"sup_run": {"owner": "supervised"}, "pre": {"owner": "dependency"}})
    b = _part("head", {"finetune": {"1pct": _result({"0": 0.8})},
                       "supervised": {"10pct": _result({"0": 0.85})}},
              runs={"pre": {"owner": "finetune"}})
    merged = report.merge([a, b])
    assert merged["arms"]["supervised"]["1pct"]["part"] == "baselines"
    assert merged["arms"]["supervised"]["10pct"]["part"] == "head"
    assert merged["runs"]["pre"]["part"] == "head"  # its owner's record, not the dependency's
    t = report.table(merged)
    assert t["supervised"]["1pct"]["mean"] == pytest.approx(0.71)
    assert t["pixels_knn"]["1pct"]["n"] == 1
    with pytest.raises(ValueError, match="supervised at 1pct is in two parts"):
        report.merge([a, _part("size", {"supervised": {"1pct": _result({"0": 0.1})}})])


def test_a_claim_with_one_seed_on_a_side_prints_no_standard_error():
    """x0.5 at 10% with one seed: its difference by hand, and neither a standard error nor a
    ± on the relative improvement (they would count only x0.25's spread)."""
    head = _part("head", {"finetune": {"13pc": _result({"0": 0.76, "1": 0.77, "2": 0.78}),
                                       "10pct": _result({"0": 0.90, "1": 0.91, "2": 0.92})}})
    size = _part("size", {"finetune_big": {
        "13pc": _result({"0": 0.78, "1": 0.79, "2": 0.80}), "10pct": _result({"0": 0.915})}})
    merged = report.merge([head, size])
    for r in (r for per in merged["arms"].values() for r in per.values()):
        r["search"] = {"chosen": {"learning_rate": 0.03, "weight_decay": 5e-4, "length": 1.0},
                       "chosen_score": 0.8, "on_cap": [], "extensions": [], "trials": []}
    md = report.markdown(merged, P.FULL)
    line = lambda start: next(x for x in md.splitlines() if start in x)  # noqa: E731
    ten = line("10pct: the bigger pretrained network")
    assert "not judged" in ten and "difference +0.50 points, one seed on a side)" in ten
    assert "standard error" not in ten and "±" not in ten
    assert "relative improvement +0.5%" in ten  # 0.915 / 0.91 - 1 = 0.55%
    few = line("13pc: the bigger pretrained network")  # n = 3 a side: std 0.01 each
    assert f"standard error {100 * math.sqrt(2e-4 / 3):.2f}" in few and "±" in few
    assert "one seed on a side" in line("network's gain is larger at 13pc than at 10pct")


def test_t_quantiles_against_the_table():
    for df, t in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)):
        assert C.t_quantile(0.975, df) == pytest.approx(t, abs=2e-3)
    assert C.t_cdf(0.0, 3) == pytest.approx(0.5)


def _s(*values):
    return C.summary({str(i): v for i, v in enumerate(values)})


def test_welch_interval_and_verdicts_by_hand():
    a, b = _s(0.80, 0.81, 0.82), _s(0.70, 0.72, 0.74)
    d = C.contrast([(1, a), (-1, b)])
    se = math.sqrt(0.0001 / 3 + 0.0004 / 3)  # sample variances 1e-4 and 4e-4
    df = se ** 4 / ((0.0001 / 3) ** 2 / 2 + (0.0004 / 3) ** 2 / 2)  # = 2.353
    assert d["difference"] == pytest.approx(0.09)
    assert d["standard_error"] == pytest.approx(se)
    assert d["df"] == pytest.approx(df)
    half = C.t_quantile(0.975, df) * se
    assert (d["low"], d["high"]) == pytest.approx((0.09 - half, 0.09 + half))
    assert C.verdict(d) == "holds"
    assert C.verdict(C.contrast([(1, b), (-1, a)])) == "does not hold"
    close = C.contrast([(1, _s(0.70, 0.75, 0.80)), (-1, _s(0.69, 0.72, 0.75))])
    # 0.03 ahead, two standard errors (0.068) would not show it either; the interval says why
    assert C.verdict(close) == "not shown (the interval contains 0)"
    assert C.verdict(C.contrast([(1, _s(0.9, 0.91)), (-1, b)])) == "not judged (n < 3 on a side)"
    assert C.verdict(None) == "not measured"


def test_paired_student_against_its_own_teacher():
    student = C.summary({"0": 0.84, "1": 0.85, "2": 0.83})
    teacher = C.summary({"0": 0.82, "1": 0.84, "2": 0.80, "3": 0.5})
    d = C.paired(student, teacher)
    diffs = [0.02, 0.01, 0.03]
    sd = float(np.std(diffs, ddof=1))
    assert d["seeds"] == ["0", "1", "2"]  # seed 3 has no student
    assert d["difference"] == pytest.approx(0.02)
    assert d["standard_error"] == pytest.approx(sd / math.sqrt(3))
    assert d["df"] == 2
    assert d["low"] == pytest.approx(0.02 - 4.3027 * sd / math.sqrt(3), abs=1e-4)
    # two standard errors (0.012) would call it; the t-interval at n = 3 does not
    assert d["difference"] > 2 * d["standard_error"]
    assert C.verdict(d) == "not shown (the interval contains 0)"


def test_relative_improvement_by_hand():
    big, small = _s(0.88, 0.90, 0.92), _s(0.80, 0.80, 0.80)
    rel = C.relative(big, small)
    assert rel["relative"] == pytest.approx(0.90 / 0.80 - 1)
    assert rel["standard_error"] == pytest.approx((0.02 / math.sqrt(3)) / 0.80)
    # one seed on a side: no standard error (it would count only the other side's spread)
    one = C.relative(_s(0.915), small)
    assert one["relative"] == pytest.approx(0.915 / 0.80 - 1) and one["standard_error"] is None
    d = C.contrast([(1, _s(0.915)), (-1, big)])
    assert d["difference"] == pytest.approx(0.015) and d["standard_error"] is None
    assert C.verdict(d) == "not judged (n < 3 on a side)"


def test_claims_on_a_table_by_hand():
    t = {"supervised": {"13pc": _s(0.60, 0.62, 0.64), "10pct": _s(0.85, 0.86, 0.87),
                        "100pct": _s(0.92)},
         "finetune": {"13pc": _s(0.75, 0.76, 0.77), "10pct": _s(0.86, 0.87, 0.88),
                      "1pct": _s(0.82, 0.83, 0.84)},
         "selfdistill": {"1pct": C.summary({"0": 0.85, "1": 0.85, "2": 0.86})}}
    out = {c["claim"]: c for c in C.judge(t)}
    beat13 = out["13pc: SimCLRv2 fine-tuned beats supervised from scratch"]
    assert beat13["comparison"]["difference"] == pytest.approx(0.14)
    assert beat13["verdict"] == "holds"
    gain = out["the gain over supervised is larger at 13pc than at 10pct"]
    assert gain["comparison"]["difference"] == pytest.approx(0.14 - 0.01)
    assert gain["comparison"]["standard_error"] == pytest.approx(
        math.sqrt(3 * 0.0001 / 3 + 0.0004 / 3))
    assert gain["verdict"] == "holds"
    distill = out["1pct: the self-distilled student (tau 0.1) beats its own teacher "
                  "(paired by seed)"]
    assert distill["comparison"]["difference"] == pytest.approx(0.07 / 3)  # .03, .02, .02
    assert distill["verdict"] == "holds"
    assert out["1pct: SimCLRv2 fine-tuned beats supervised from scratch"]["verdict"] == (
        "not measured")
    t["finetune_big"] = {"1pct": _s(0.84, 0.85, 0.86)}
    t["supervised_big"] = {"1pct": _s(0.80, 0.84, 0.88)}
    big = {c["claim"]: c for c in C.judge(t)}[
        "1pct, ResNet-18 x0.5: SimCLRv2 fine-tuned beats the same network from scratch"]
    assert big["comparison"]["difference"] == pytest.approx(0.01)
    assert big["comparison"]["standard_error"] == pytest.approx(math.sqrt(0.0001 / 3 +
                                                                          0.0016 / 3))
    assert big["verdict"] == "not shown (the interval contains 0)"
    # the long part: against 4 pretraining epochs and against from scratch (none at 1%: not
    # measured); its one-seed self-distillation is not judged
    t["finetune_long"] = {"1pct": _s(0.85, 0.86, 0.87)}
    t["selfdistill_long"] = {"1pct": C.summary({"0": 0.86})}
    out = {c["claim"]: c for c in C.judge(t)}
    longer = out["1pct: 30 pretraining epochs fine-tune better than 4 (the same network and "
                 "recipe)"]
    assert longer["number"] == C.LONG and longer["verdict"] == "holds"
    assert longer["comparison"]["difference"] == pytest.approx(0.03)
    assert out["1pct, long pretraining: SimCLRv2 fine-tuned after 30 pretraining epochs beats "
               "supervised from scratch"]["verdict"] == "not measured"
    assert out["1pct, long pretraining: the self-distilled student (tau 0.1) beats its own "
               "teacher (paired by seed)"]["verdict"] == "not judged (n < 3 on a side)"
    ref = C.references(t)
    assert ref["finetune"]["fraction_of_supervised_all"] == pytest.approx(0.83 / 0.92)
    assert ref["selfdistill"]["reaches_target"] is False


def test_encoder_parameters_by_hand():
    # tests/tf2/test_resnet.py (by hand); run.py's banner counts the built networks
    assert P.Arch(18, 1.0).parameters() == 11_173_056
    assert P.Arch(18, 0.25).parameters() == 700_464
    assert P.Arch(18, 0.5).parameters() == 2_796_128


def test_logistic_regression_gradient_and_optimum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    xb = np.concatenate([x, np.ones((40, 1), np.float32)], axis=1).astype(np.float64)
    onehot = np.eye(3)[y]
    w = rng.normal(size=(6, 3))
    l2 = 0.1

    def loss(w):
        logits = xb @ w
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        return -np.mean((onehot * logp).sum(1)) + l2 / 2 * np.sum(w * w)
    numeric = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        e = np.zeros_like(w)
        e[i] = 1e-6
        numeric[i] = (loss(w + e) - loss(w - e)) / 2e-6
    assert np.allclose(pixels.gradient(xb, onehot, w, l2), numeric, atol=1e-6)
    fitted = pixels.softmax_regression(x, y, 3, l2, iterations=500)
    assert np.abs(pixels.gradient(xb, onehot, fitted.astype(np.float64), l2)).max() < 1e-4


def test_a_diverged_run_is_recorded_not_retried_and_a_failure_stops(tmp_path):
    argv = [sys.executable, "-c", "print('Non-finite values by step 3: {}'); raise SystemExit(1)"]
    rec = runner.execute(argv, str(tmp_path / "run"), str(tmp_path / "logs"), "train")
    assert rec["diverged"] is True and rec["result"] is None and rec["reused"] is False
    assert runner.execute(argv, str(tmp_path / "run"), str(tmp_path / "logs"), "train")[
        "reused"] is True
    bad = [sys.executable, "-c", "raise SystemExit(3)"]
    with pytest.raises(SystemExit, match="failed \\(exit 3\\)"):
        runner.execute(bad, str(tmp_path / "other"), str(tmp_path / "logs"), "train")


def test_recorded_commands_name_out_as_a_variable():
    argv = ["/usr/bin/python3", "/repo/run.py", "--model_dir=/data/out/runs/x",
            "--checkpoint=/data/out/runs/p"]
    assert runner.shown(argv, "/data/out") == (
        "python run.py --model_dir=$OUT/runs/x --checkpoint=$OUT/runs/p")
    curve = ["/usr/bin/python3", "-m", "bench.semisup_study.curves", "/data/out/runs/x",
             "/data/out/runs/x/bench_curve.json"]
    assert runner.shown(curve, "/data/out/") == (
        "python -m bench.semisup_study.curves $OUT/runs/x $OUT/runs/x/bench_curve.json")


def test_speeds_come_from_measurements_of_this_cpu_model(tmp_path):
    from bench import harness
    from bench.semisup_study import study
    harness.write_json(str(tmp_path / "part_head.json"), {
        "scale": "full", "cpu": {"model": "test"}, "speeds": {"measured": {
            "finetune_x0.25": 900.0}}})
    harness.write_json(str(tmp_path / "part_size.json"), {
        "scale": "full", "cpu": {"model": "another"}, "speeds": {"measured": {
            "finetune_x0.5": 1.0}}})
    measured = study.measured_speeds(str(tmp_path), CPU)
    assert measured == {"finetune_x0.25": 900.0}
    speeds = runner.Speeds(CPU, measured)
    assert speeds.of("finetune_x0.25") == 900.0
    assert speeds.of("finetune_x0.5") == pytest.approx(538.0 * 390 / 538)
    # an unmeasured width: each doubling costs what it costs pretraining
    assert runner.relative_speed("finetune_x1") == pytest.approx(1030 / 538 * (223 / 538) ** 2)


def test_length_line_keeps_the_chosen_rate_and_decay_only():
    from bench.semisup_study import figures
    trial = lambda lr, wd, f, v: {"point": {"learning_rate": lr, "weight_decay": wd,  # noqa
                                            "length": f}, "score": v}
    result = {"search": {"chosen": {"learning_rate": 1.0, "weight_decay": 5e-5, "length": 8.0},
                         "trials": [trial(1.0, 5e-4, 1.0, 0.70), trial(1.0, 5e-5, 1.0, 0.71),
                                    trial(1.0, 5e-5, 4.0, 0.80), trial(1.0, 5e-5, 2.0, 0.78),
                                    trial(1.0, 5e-5, 8.0, 0.81), trial(0.3, 5e-5, 16.0, 0.9),
                                    trial(1.0, 5e-5, 16.0, None)]}}
    assert figures.length_line(result) == [(1.0, 0.71), (2.0, 0.78), (4.0, 0.80), (8.0, 0.81)]


def test_each_arm_budget_and_seed_is_run_by_exactly_one_part():
    owners = {}
    for part in P.PART_ORDER:
        for name, only, seeds in P.part_arms(part):
            arm = P.ARMS[name]
            for budget in P.FULL.arm_budgets(arm, only):
                for seed in P.FULL.arm_seeds(arm, budget):
                    if seeds is None or seed in seeds:
                        owners.setdefault((name, budget.name, seed), []).append(part)
    assert all(len(parts) == 1 for parts in owners.values()), owners
    assert {k[:2] for k in owners} == {(a.name, b) for a in P.ARMS.values() for b in a.budgets}
    assert {k for k in owners if k[1] != "100pct" and P.ARMS[k[0]].seeds == 3} == {
        (a, b, s) for a, b, _ in owners if b != "100pct" and P.ARMS[a].seeds == 3
        for s in (0, 1, 2)}  # no seed of a three-seed arm left out
    assert owners["supervised", "10pct", 2] == ["baselines_10pct"]
    assert owners["supervised", "100pct", 0] == ["reference"]
    assert owners["finetune_big", "10pct", 0] == ["size_10pct"]
    assert [owners["finetune_big", "10pct", s] for s in (1, 2)] == [["size_10pct_seeds"]] * 2
    assert owners["finetune_big", "1pct", 2] == ["size"]
    assert owners["supervised_big", "1pct", 0] == ["scratch_big_1pct"]
    assert P.search_part("finetune_big", "10pct", 0) == "size_10pct"
    assert P.search_part("finetune_big", "1pct", 0) == "size"


def test_the_report_plans_only_plots_that_have_data_and_their_numbers_by_hand():
    """What the head part alone gives: no bigger network, no kNN curve, no student; so no
    Figure 1, no kNN plot and no distillation curves (a reference line alone is not data)."""
    from bench.semisup_study import figures
    s = P.SCALES["full"]
    trial = lambda f, v: {"point": {"learning_rate": 1.0, "weight_decay": 5e-4,  # noqa
                                    "length": f}, "score": v}
    sup = {"finals": {"0": 0.60, "1": 0.62, "2": 0.64}, "batch": 13,
           "curve": [{"step": 10, "top1": 0.50}, {"step": 20, "top1": 0.58}],
           "search": {"chosen": {"learning_rate": 1.0, "weight_decay": 5e-4, "length": 2.0},
                      "trials": [trial(1.0, 0.55), trial(2.0, 0.58)]}}
    merged = {"arms": {"supervised": {"13pc": sup},
                       "finetune": {"13pc": {"finals": {"0": 0.76, "1": 0.77, "2": 0.78},
                                             "search": {}, "curve": None}}},
              "pixels": {"pixels_knn": {"1pct": {"finals": {"0": 0.7}, "search": {
                  "trials": [{"point": {"k": 20}, "score": 0.66}]}}}},
              "pretrains": {"pretrain_r18x0.25_e4_p0": {"batch": 256, "knn_curve": []}}}
    merged["table"] = report.table(merged)
    planned = figures.plan(merged, s)
    assert sorted(planned) == ["curves_supervised.png", "figure2_labels.png",
                               "length_supervised.png"]
    fig2 = {line.label.rsplit(" (", 1)[0]: line for line in planned["figure2_labels.png"].lines}
    assert fig2["Supervised, from scratch"].ys == pytest.approx([62.0])
    assert fig2["Supervised, from scratch"].yerr == pytest.approx([2.0])
    assert fig2["Supervised, from scratch"].xs == [130]
    curve = planned["curves_supervised.png"].lines
    assert [line.xs for line in curve] == [pytest.approx([10 * 13 / 130, 20 * 13 / 130])]
    assert curve[0].ys == pytest.approx([50.0, 58.0])
    length = planned["length_supervised.png"].lines[0]  # factor x (200 * 128 / 130) epochs
    assert length.xs == pytest.approx([25600 / 130, 2 * 25600 / 130])

    # the bigger network and a kNN curve bring Figure 1 and the kNN plot, with these numbers
    merged["arms"]["finetune_big"] = {"13pc": {"finals": {"0": 0.80, "1": 0.81, "2": 0.82},
                                               "search": {}, "curve": None}}
    merged["pretrains"]["pretrain_r18x0.25_e4_p0"]["knn_curve"] = [[215, 0.70], [430, 0.74]]
    merged["table"] = report.table(merged)
    planned = figures.plan(merged, s)
    assert "knn_epochs.png" in planned and "curves_distill.png" not in planned
    fig1 = planned["figure1_size.png"].lines
    assert [line.label for line in fig1] == ["13/class"]
    assert fig1[0].ys == pytest.approx([0.0, 100 * (0.81 / 0.77 - 1)])
    assert fig1[0].xs == pytest.approx([0.700464, 2.796128])
    se = 0.01 / 3 ** 0.5  # both sides: std 0.01 over 3 seeds; delta method by hand
    assert fig1[0].yerr == pytest.approx([0.0, 100 * ((se / 0.77) ** 2 +
                                                      (0.81 * se / 0.77 ** 2) ** 2) ** 0.5])
    # one seed of the bigger network at 10%: the point without an error bar, said in the label
    merged["arms"]["finetune_big"]["10pct"] = {"finals": {"0": 0.909}, "search": {},
                                               "curve": None}
    merged["arms"].setdefault("finetune", {})["10pct"] = {
        "finals": {"0": 0.900, "1": 0.902, "2": 0.904}, "search": {}, "curve": None}
    merged["table"] = report.table(merged)
    fig1 = figures.plan(merged, s)["figure1_size.png"].lines
    assert [line.label for line in fig1] == ["13/class",
                                             "10% (one seed on a side: no error bar)"]
    assert fig1[1].ys == pytest.approx([0.0, 100 * (0.909 / 0.902 - 1)]) and fig1[1].yerr is None
    del merged["arms"]["finetune_big"]["10pct"], merged["arms"]["finetune"]["10pct"]
    merged["table"] = report.table(merged)
    knn = planned["knn_epochs.png"]
    assert knn.lines[0].xs == pytest.approx([215 * 256 / 55000, 430 * 256 / 55000])
    assert knn.reference == (pytest.approx(66.0), "raw pixels, k 20 (same bank)")

    # a student's curve brings the distillation plot: top-1 and teacher agreement against
    # epochs of the 55,000 images, the agreement drawn in its own top-1's colour
    merged["arms"]["selfdistill"] = {"1pct": {
        "finals": {"0": 0.82}, "search": {}, "batch": 256,
        "curve": [{"step": 215, "top1": 0.80, "agreement": 0.90},
                  {"step": 430, "top1": 0.81, "agreement": 0.93}]}}
    merged["table"] = report.table(merged)
    top1, agree = figures.plan(merged, s)["curves_distill.png"].lines
    assert top1.xs == agree.xs == pytest.approx([215 * 256 / 55000, 430 * 256 / 55000])
    assert (top1.ys, agree.ys) == (pytest.approx([80.0, 81.0]), pytest.approx([90.0, 93.0]))
    assert (agree.style, agree.colour_of) == ("agreement", top1.label)


def test_rescoring_counts_ties_once_and_replaces_the_finals_by_hand():
    # Row 0: label 1 ties class 0 at the top (argmax 0: a miss; ties as hits: a hit);
    # row 1: a clean hit; row 2: label 2 ties 0 and 1 below class 0's 5 (a miss either way);
    # row 3: label 0 ties class 2 at the top (argmax 0: a hit either way).
    logits = np.array([[2.0, 2.0, 0.0], [0.0, 1.0, 0.5], [5.0, 1.0, 1.0], [3.0, 1.0, 3.0]])
    got = rescore.counts(logits, np.array([1, 1, 2, 0]))
    assert got == {"top1": 0.5, "top1_ties_as_hits": 0.75, "rows_tied_at_the_top": 2,
                   "examples": 4}
    # The recorded final must be one of the two counts to the image (1/4 here).
    assert rescore.reproduces(0.75, got) and rescore.reproduces(0.5, got)
    assert not rescore.reproduces(0.25, got)

    merged = {"arms": {"selfdistill": {"1pct": {
        "finals": {"0": 0.80, "1": 0.82, "2": None},
        "runs": {"0": "sd_s0", "1": "sd_s1", "2": "sd_s2"}}}}}
    assert rescore.finals(merged) == [("sd_s0", 0.80), ("sd_s1", 0.82)]
    rescored = {"sd_s0": {"top1": 0.79, "top1_ties_as_hits": 0.80,
                          "rows_tied_at_the_top": 12, "examples": 100},
                "sd_s9": {"top1": 0.5, "top1_ties_as_hits": 0.5, "rows_tied_at_the_top": 0,
                          "examples": 100}}
    outcome = rescore.apply(merged, rescored)
    r = merged["arms"]["selfdistill"]["1pct"]
    assert r["finals"] == {"0": 0.79, "1": 0.82, "2": None}  # s1 not rescored: kept
    assert r["finals_recorded"] == {"0": 0.80, "1": 0.82, "2": None}
    assert outcome == {"rescored": 1, "finals": 2, "not_reproduced": [], "missing": ["sd_s1"]}
    lines = rescore.summary_lines(merged, rescored, outcome)
    assert "| selfdistill | 1pct | 80.00 | 79.00 | -1.00 | 12 |" in lines
    # A recorded value that neither count gives is named.
    rescored["sd_s0"]["top1_ties_as_hits"] = 0.70
    merged["arms"]["selfdistill"]["1pct"]["finals"] = {"0": 0.80, "1": 0.82, "2": None}
    assert rescore.apply(merged, rescored)["not_reproduced"] == ["sd_s0"]


def _fake_runs(monkeypatch, knn_curve):
    """runner.execute and the kNN monitor without run.py: the holdout score of a run is a
    function of its flags (best at lr 0.03 per 128 images, wd 5e-4, 4x the budget), its test
    score that minus 0.01 minus 0.001 per subset seed. Returns the list of (run, tag) run."""
    executed = []

    def flag(argv, name):
        return next(float(a.split("=")[1]) for a in argv if a.startswith(f"--{name}="))

    def execute(argv, model_dir, logs_dir, tag):
        name = model_dir.rsplit("/", 1)[-1]
        executed.append((name, tag))
        top1 = None
        if not name.startswith("pretrain"):
            steps = flag(argv, "train_steps") / 400  # the length factor at 10% (400 steps)
            top1 = 0.9 - 0.01 * (abs(math.log(flag(argv, "learning_rate") / 0.06)) + abs(
                math.log(flag(argv, "weight_decay") / 5e-4)) + abs(math.log2(steps / 4)))
            if "--eval_split=test" in argv:
                top1 -= 0.01 + 0.001 * flag(argv, "seed")
        return {"argv": argv, "wall_seconds": 1.0, "cpu_seconds": 1.0, "diverged": False,
                "reused": False, "images_per_second": None, "result": {"top1": top1}}
    monkeypatch.setattr(runner, "execute", execute)
    monkeypatch.setattr(runner, "knn_curve", lambda model_dir: knn_curve)
    return executed


def test_a_part_of_seeds_trains_at_its_search_parts_choice_from_the_same_encoder(
        tmp_path, monkeypatch):
    """x0.5 at 10%: part size_10pct searches and tests seed 0; part size_10pct_seeds, in
    another --out, builds the encoder again and trains seeds 1 and 2 only, at the recorded
    choice; the merge joins the seeds. A different encoder or no recorded search stops it."""
    docs = tmp_path / "docs"
    executed = _fake_runs(monkeypatch, [(0, 0.39), (215, 0.74)])  # as TensorBoard reads
    first = Study(P.FULL, "full", str(tmp_path / "a"), str(docs), CPU)
    first.run_part("size_10pct")
    first.write("size_10pct")
    searched = first.records["arms"]["finetune_big"]["10pct"]
    assert searched["search"]["chosen"] == {"learning_rate": 0.03, "weight_decay": 5e-4,
                                            "length": 4.0}
    assert searched["finals"] == {"0": pytest.approx(0.89)}
    trials = len(searched["search"]["trials"])
    assert len(executed) == 1 + trials + 1  # the encoder, the search, seed 0's test read

    executed.clear()
    seeds = Study(P.FULL, "full", str(tmp_path / "b"), str(docs), CPU)
    seeds.run_part("size_10pct_seeds")
    seeds.write("size_10pct_seeds")
    chosen = "finetune_big_10pct_lr0.03_wd0.0005_x4"
    assert executed == [("pretrain_r18x0.5_e4_p0", "train"), (f"{chosen}_s1", "train"),
                        (f"{chosen}_s2", "train")]
    got = seeds.records["arms"]["finetune_big"]["10pct"]
    assert got["finals"] == {"1": pytest.approx(0.889), "2": pytest.approx(0.888)}
    assert got["search"]["recorded_by"].startswith("part size_10pct, commit ")
    assert got["curve"] is None

    merged = report.merge(report.read_parts(str(docs)))
    joined = merged["arms"]["finetune_big"]["10pct"]
    assert joined["part"] == "size_10pct+size_10pct_seeds"
    assert sorted(joined["finals"]) == ["0", "1", "2"]
    assert joined["runs"] == {str(s): f"{chosen}_s{s}" for s in (0, 1, 2)}
    assert joined["search"] == searched["search"]  # the search part's record, as run
    assert report.table(merged)["finetune_big"]["10pct"]["mean"] == pytest.approx(0.889)

    _fake_runs(monkeypatch, [(0, 0.39), (215, 0.75)])  # another encoder
    with pytest.raises(SystemExit, match="not the one part size_10pct searched from"):
        Study(P.FULL, "full", str(tmp_path / "c"), str(docs), CPU).run_part(
            "size_10pct_seeds")
    with pytest.raises(SystemExit, match=f"run `python -m bench.semisup --part=size_10pct "
                       f"--scale=full --out={tmp_path / 'd'}` first"):
        Study(P.FULL, "full", str(tmp_path / "d"), str(tmp_path / "empty"), CPU).run_part(
            "size_10pct_seeds")


def test_the_merge_refuses_shared_seeds_another_choice_and_another_encoder():
    def part(name, finals, chosen, curve):
        result = dict(_result(finals), search={"chosen": {"learning_rate": chosen}},
                      runs={s: f"r{s}" for s in finals}, teachers=None)
        return dict(_part(name, {"finetune_big": {"10pct": result}}),
                    pretrains={"pre": {"knn_curve": curve}})
    a = part("size_10pct", {"0": 0.9}, 0.03, [[0, 0.4]])
    assert report.merge([a, part("size_10pct_seeds", {"1": 0.8, "2": 0.7}, 0.03, [[0, 0.4]])])[
        "arms"]["finetune_big"]["10pct"]["finals"] == {"0": 0.9, "1": 0.8, "2": 0.7}
    with pytest.raises(ValueError, match="with the same seeds or another configuration"):
        report.merge([a, part("size_10pct_seeds", {"0": 0.8}, 0.03, [[0, 0.4]])])
    with pytest.raises(ValueError, match="with the same seeds or another configuration"):
        report.merge([a, part("size_10pct_seeds", {"1": 0.8}, 0.1, [[0, 0.4]])])
    with pytest.raises(ValueError, match="another encoder pre"):
        report.merge([a, part("size_10pct_seeds", {"1": 0.8}, 0.03, [[0, 0.41]])])
