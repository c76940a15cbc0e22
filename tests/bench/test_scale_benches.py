"""bench/startup.py and bench/input_pipeline.py's arithmetic on hand-made rows, and the
synthetic JPEGs they measure on."""
import numpy as np
import pytest
import tensorflow as tf

from bench import input_pipeline, startup


def test_startup_summary_medians_target_and_extrapolation():
    rows = [{"first": {"seconds": s1}, "second": {"seconds": s2}, "changed": {"seconds": s3}}
            for s1, s2, s3 in ((40.0, 1.0, 2.0), (30.0, 3.0, 4.0))]
    got = startup.summary(rows, 100_000, {"files_per_second": 1_281_167 / 1000.0})
    assert got["median_seconds"] == {"first": 35.0, "second": 2.0, "changed": 3.0}
    assert got["first_over_second"] == 17.5 and got["target"]["passed"] is False  # < 20x
    far = got["extrapolated_to_imagenet_train"]
    scale = 1_281_167 / 100_000
    assert far["second_start_seconds"] == pytest.approx(2.0 * scale)
    assert far["first_start_seconds"] == pytest.approx(2.0 * scale + 1000.0)
    assert far["changed_1pct_seconds"] == pytest.approx(2.0 * scale + 10.0)
    fast = [{"first": {"seconds": 50.0}, "second": {"seconds": 2.0}, "changed": {"seconds": 3.0}}]
    assert startup.summary(fast, 100_000, {"files_per_second": 1.0})["target"]["passed"]


def test_per_core_summary_ratios_and_cores_per_accelerator():
    rate = {("decode", "ceiling"): 900.0, ("finetune", "original"): 400.0,
            ("finetune", "ours"): 500.0, ("pretrain", "original"): 300.0,
            ("pretrain", "ours"): 260.0, ("pretrain_blur", "original"): 200.0,
            ("pretrain_blur", "ours"): 260.0}
    rows = [{"row": row, "program": program, "views_per_second": v * k,
             "views_per_cpu_second": 2 * v * k}
            for k in (0.5, 1.0, 1.5) for (row, program), v in rate.items()]  # median: k = 1
    rows.append({"row": "finetune", "program": "ours", "error": "a failed child"})
    got = input_pipeline.compare_summary(rows)
    wall = got["views_per_second"]
    assert wall["median"]["finetune/ours"] == 500.0
    assert wall["ours_over_original"] == {"finetune": 1.25, "pretrain": 260 / 300,
                                          "pretrain_blur": 1.3}
    assert wall["decode_over_finetune_ours"] == 1.8
    assert wall["targets_met"] == {"ours_at_least_original": False,
                                   "finetune_within_1.5x_of_decode": False}
    assert wall["cores_per_accelerator_at_224px"]["pretrain_blur"] == 2600.0 / 260.0
    assert got["views_per_cpu_second"]["median"]["decode/ceiling"] == 1800.0
    assert got["views_per_cpu_second"]["ours_over_original"] == wall["ours_over_original"]


def test_random_jpegs_have_the_asked_sides_and_decode():
    jpegs = list(input_pipeline.encode_random_jpegs(6, sides=(20, 30), seed=3))
    shapes = [tuple(tf.io.decode_jpeg(j).shape) for j in jpegs]
    assert len(set(shapes)) > 1  # random sides
    assert all(20 <= h <= 30 and 20 <= w <= 30 and c == 3 for h, w, c in shapes)
    again = list(input_pipeline.encode_random_jpegs(6, sides=(20, 30), seed=3))
    assert again == jpegs  # a seed makes the same files
    pixels = tf.io.decode_jpeg(jpegs[0]).numpy().astype(float)
    assert 20 < pixels.std() < 120  # neither flat nor saturated noise
    assert np.abs(np.diff(pixels, axis=0)).mean() < 40  # smooth: photograph-like
