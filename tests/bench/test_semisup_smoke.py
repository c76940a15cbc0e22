"""Every part of bench/semisup.py at --scale=smoke through run.py, as the study runs them: the
hand-overs (pretraining -> fine-tuning -> distillation with each seed's own teacher, test reads,
curves, raw-pixel references, the part files and their merge), the finals re-evaluated by
argmax (--part=rescore), then a rerun that reuses every run. About 40 run.py invocations:
15-40 minutes on 2 cores, so CI runs it in its slow step (.ci/run), not in the default suite."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.semisup_study import protocol as P
from bench.semisup_study import report

REPO = Path(__file__).resolve().parents[2]


def _semisup(*args):
    return subprocess.run([sys.executable, "-m", "bench.semisup", *args], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ,
                                                               "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_every_part_hands_over_and_resumes(tmp_path):
    out = str(tmp_path / "study")
    done = _semisup("--part=all", "--scale=smoke", f"--out={out}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    parts = {p: json.loads((tmp_path / "study" / f"part_{p}.json").read_text())
             for p in P.PART_ORDER}
    runs = {}
    for name, part in parts.items():
        runs.update(part["runs"])
        assert part["scale"] == "smoke" and part["precision"] and part["cpu"]["cpu_count"]
        for rec in part["runs"].values():
            if rec.get("command", "").startswith("python run.py"):
                assert "$OUT/runs/" in rec["command"] and out not in rec["command"]
                assert rec["wall_seconds"] > 0
    arms = report.merge(list(parts.values()))["arms"]  # an arm's seeds may span two parts
    assert set(arms) == P.arm_names()
    for arm, per_budget in arms.items():
        for budget, r in per_budget.items():
            seeds = P.SMOKE.arm_seeds(P.ARMS[arm], P.BUDGET[budget])
            assert sorted(r["finals"]) == [str(s) for s in seeds], (arm, budget)
            assert all(0.0 <= v <= 1.0 for v in r["finals"].values())
            if r["teachers"]:  # student seed s is taught by its teacher arm's run of seed s
                teacher = arms.get(P.ARMS[arm].teacher, {}).get(budget)
                assert r["teachers"] == {s: teacher["runs"][s] for s in r["teachers"]}
            if P.ARMS[arm].curve:  # its last point is the run's own holdout score as run.py
                # scored it after training (a final's result.json is overwritten by its test read)
                assert r["curve"][-1]["top1"] == pytest.approx(
                    runs[r["curve_run"]]["top1"], abs=0.02), (arm, budget)
                assert ("agreement" in r["curve"][0]) == bool(r["teachers"])
    pixels = parts["baselines"]["pixels"]
    assert set(pixels) == {"pixels_logreg", "pixels_knn"}
    assert set(pixels["pixels_knn"]["1pct"]["finals"]) == {"0", "1"}
    for pre in ("pretrain_r18x0.25_e0.01_p0", "pretrain_r18x0.5_e0.01_p0",
                "pretrain_r18x0.25_e0.02_p0"):
        assert parts["head"]["pretrains"].get(pre) or parts["size"]["pretrains"].get(pre) or \
            parts["long"]["pretrains"].get(pre)
    # x0.5 at 10%: size_10pct searched and tested seed 0; size_10pct_seeds trained seed 1 at
    # the configuration it recorded (no trial of its own), from the same encoder; merged
    seeds_part = parts["size_10pct_seeds"]
    assert [r for r in seeds_part["runs"] if r.startswith("finetune_big")] == [
        parts["size_10pct"]["arms"]["finetune_big"]["10pct"]["runs"]["0"][:-1] + "1"]
    assert seeds_part["arms"]["finetune_big"]["10pct"]["search"]["recorded_by"].startswith(
        "part size_10pct")
    merged = json.loads((tmp_path / "study" / "results.json").read_text())
    assert merged["table"]["finetune_big"]["10pct"]["n"] == 2
    assert set(merged["table"]) >= set(arms) | {"pixels_logreg", "pixels_knn"}
    md = (tmp_path / "study" / "results.md").read_text()
    assert "| Supervised, from scratch | ResNet-18 x0.25 |" in md and "claim 4" in md

    # Every final evaluated again by argmax from its checkpoint: made by this commit's
    # run.py, which counts ties that way, each recorded value is the argmax count.
    rescored = _semisup("--part=rescore", "--scale=smoke", f"--out={out}")
    assert rescored.returncode == 0, rescored.stdout[-3000:] + rescored.stderr[-3000:]
    records = json.loads((tmp_path / "study" / "rescore.json").read_text())["runs"]
    finals = {r["runs"][seed]: value for part in parts.values()  # (arms merges by arm only)
              for per_budget in part["arms"].values() for r in per_budget.values()
              for seed, value in r["finals"].items()}
    assert set(records) == set(finals)
    for run, rec in records.items():
        assert rec["split"] == "test" and rec["reproduces"], (run, rec)
        assert abs(rec["top1"] - finals[run]) < 0.5 / rec["examples"], (run, rec)
        assert rec["top1_ties_as_hits"] >= rec["top1"]
    assert "top-1 by argmax, re-evaluated" in (tmp_path / "study" / "results.md").read_text()

    again = _semisup("--part=head", "--scale=smoke", f"--out={out}")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    lines = [line for line in again.stdout.splitlines() if line.startswith("  ")]
    assert lines and all(line.endswith("(reused)") for line in lines), lines
