"""bench/default_pipeline.py: the summary over seeds and the check against the README's numbers."""
import statistics

import pytest

from bench import default_pipeline as dp


def _seed(pre, ft, dist):
    return {"pretrain": {"top1": pre}, "finetune": {"top1": ft}, "distill": {"top1": dist}}


def test_summary_mean_spread_and_student_against_teacher_by_hand():
    per_seed = {0: _seed(0.60, 0.76, 0.77), 1: _seed(0.50, 0.75, 0.74), 2: _seed(0.70, 0.77, 0.78)}
    got = dp.summary(per_seed)
    assert got["finetune"]["mean"] == pytest.approx(76.0)
    assert got["finetune"]["std"] == pytest.approx(1.0)  # sample std of 76, 75, 77
    assert got["pretrain"]["std"] == pytest.approx(statistics.stdev([60, 50, 70]), abs=0.01)
    assert got["distill"]["values"] == [77.0, 74.0, 78.0]
    assert got["student_minus_teacher"] == [1.0, -1.0, 1.0]
    assert got["pretrain"]["n"] == 3


def test_check_names_each_stage_outside_its_tolerance():
    expected = dp.EXPECTED
    inside = {name: {"mean": mean} for name, (mean, _) in expected.items()}
    assert dp.check({"summary": inside}) == []
    mean, tolerance = expected["distill"]
    off = dict(inside, distill={"mean": mean - tolerance - 0.1})
    assert dp.check({"summary": off}) == [
        f"distill: {mean - tolerance - 0.1:.1f} expected {mean:.1f} +- {tolerance:.1f}"]
    # The student is expected to match its teacher: the README's numbers say so.
    assert expected["distill"][0] >= expected["finetune"][0]
