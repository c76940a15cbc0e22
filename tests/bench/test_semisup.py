"""bench/semisup.py's protocol without training: the search picks by holdout score and only
the chosen configuration reads the test split; every command keeps the holdout out."""
import importlib.util
from pathlib import Path

import pytest

from bench.semisup_study import protocol as P
from bench.semisup_study import runner

REPO = Path(__file__).resolve().parents[2]


def _semisup():
    spec = importlib.util.spec_from_file_location("semisup", REPO / "bench" / "semisup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def study(tmp_path):
    cpu = {"model": "test", "cpu_count": 2, "avx512_bf16": False, "amx_bf16": False,
           "auto_precision": "float32",
           "amx_tile": False}
    return _semisup().Study(P.FULL, "full", str(tmp_path), cpu)


def test_search_chooses_by_holdout_and_tests_only_the_choice(study, monkeypatch):
    holdout = {"t0": 0.70, "t1": 0.81, "t2": 0.75}  # trial 1 is best on the holdout
    calls = []

    def fake_execute(argv, model_dir, logs_dir, tag):
        name = Path(model_dir).name
        calls.append((name, tag, [a for a in argv if a.startswith("--eval_split")]))
        if tag == "test":
            top1 = 0.5
        else:
            top1 = holdout[name.rsplit("_", 1)[1]] if "_t" in name else 0.6
        return {"argv": argv, "wall_seconds": 1.0, "result": {"top1": top1}}

    monkeypatch.setattr(runner, "execute", fake_execute)
    monkeypatch.setattr(study, "write", lambda final=False: None)
    budget = P.BUDGET["1pct"]
    best = study.search("supervised", budget)
    assert best == 1
    assert [c[2] for c in calls] == [["--eval_split=holdout"]] * 3  # the search never tests
    calls.clear()
    study.finals("supervised", budget, best)
    assert calls[0] == ("supervised_1pct_t1", "test", ["--eval_split=test"])  # chosen only
    assert [c[:2] for c in calls[1:]] == [("supervised_1pct_s1", "train"),
                                          ("supervised_1pct_s2", "train")]
    assert study.state["finals"]["supervised"]["1pct"] == [0.5, 0.6, 0.6]
    records = study.state["search"]["supervised"]["1pct"]
    assert [r["holdout_top1"] for r in records] == [0.70, 0.81, 0.75]


def test_every_command_holds_out_and_trials_of_all_arms_are_alike(study):
    plan = _semisup().plan(study)
    assert all("--holdout_fraction=0.08333333333333333" in argv for _, _, argv in plan)
    pretrains = [argv for name, _, argv in plan if name.startswith(("phase0", "pretrain"))]
    assert len(pretrains) == 5  # the kNN bank is the 1% subset, never all 55,000 images
    assert all("--label_fraction=0.01" in argv and "--knn_every_steps=215" in argv
               for argv in pretrains)
    tests = [name for name, _, argv in plan if "--eval_split=test" in argv]
    trials = [name for name, _, argv in plan if "--eval_split=holdout" in argv]
    assert not any(name.endswith(("_t1", "_t2")) for name in tests)
    per_arm = {}
    for name in trials:
        arm_budget = name.rsplit("_", 1)[0]
        per_arm[arm_budget] = per_arm.get(arm_budget, 0) + 1
    assert set(per_arm.values()) == {len(P.TRIALS)}  # same number of trials everywhere
    assert len(per_arm) == 4 + 4 + 2 + 1 + 1 + 1


def test_claims_are_judged_against_the_spread_over_seeds():
    """Hand-computed: difference of means, its standard error sqrt(sa²/na + sb²/nb) (a
    one-seed arm borrows the other arm's std), and the verdict by two standard errors."""
    from bench.semisup_study import report
    finals = {"supervised": {"1pct": [0.70, 0.72, 0.74], "13pc": [0.6, 0.7, 0.8],
                             "10pct": [0.85, 0.86, 0.87]},
              "finetune_small": {"1pct": [0.80, 0.81, 0.82], "13pc": [0.66, 0.71, 0.76],
                                 "10pct": [0.86, 0.87, 0.88]},
              "selfdistill": {"1pct": [0.78]}}
    claims = report.claims(report.table(finals))
    beat_1pct = next(c for c in claims if c["claim"].startswith("1pct: SimCLRv2 fine-tuned"))
    assert beat_1pct["comparison"]["difference"] == pytest.approx(0.09)
    assert beat_1pct["comparison"]["standard_error"] == pytest.approx((0.0005 / 3) ** 0.5)
    assert beat_1pct["verdict"] == "holds"
    beat_13 = next(c for c in claims if c["claim"].startswith("13pc: SimCLRv2 fine-tuned"))
    assert beat_13["comparison"]["standard_error"] == pytest.approx((0.0125 / 3) ** 0.5)
    assert beat_13["holds"] is True and beat_13["verdict"] == "not shown (within the spread)"
    gain = next(c for c in claims if "(1pct vs 10pct)" in c["claim"])
    assert gain["comparison"]["difference"] == pytest.approx(0.08)
    assert gain["comparison"]["standard_error"] == pytest.approx(
        (0.0005 / 3 + 0.0002 / 3) ** 0.5)
    assert gain["verdict"] == "holds"
    distill = next(c for c in claims if c["claim"].startswith("1pct: self-distillation"))
    assert distill["comparison"]["difference"] == pytest.approx(-0.03)
    assert distill["comparison"]["standard_error"] == pytest.approx((0.0001 + 0.0001 / 3) ** 0.5)
    assert distill["verdict"] == "does not hold"
