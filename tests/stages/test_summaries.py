"""Summaries read back from the event files, the image grid against a NumPy oracle, and the
exact progress lines for given numbers."""
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from stages import summaries


def _accumulator(logdir):
    acc = event_accumulator.EventAccumulator(str(logdir),
                                             size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    return acc


def test_scalars_read_back_exactly(tmp_path):
    writer = summaries.SummaryWriter(str(tmp_path))
    values = {1: (4.25, 0.1), 2: (3.5, 0.2), 3: (2.0625, 0.3)}
    for step, (loss, acc) in values.items():
        writer.scalars(step, {"train/contrast_loss": loss, "eval/top1": np.float64(acc)})
    writer.close()
    got = summaries.read_scalars(str(tmp_path))
    assert sorted(got) == ["eval/top1", "train/contrast_loss"]
    assert got["train/contrast_loss"] == [(1, 4.25), (2, 3.5), (3, 2.0625)]
    # Stored as float32: 0.1 comes back as float32(0.1).
    assert got["eval/top1"] == [(s, float(np.float32(a))) for s, (_, a) in values.items()]


def _grid_oracle(images, columns, pad=1):
    """Explicit per-pixel loops: image k at row k // columns, column k % columns."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    out = np.ones((rows * h + (rows - 1) * pad, columns * w + (columns - 1) * pad, c))
    for k in range(n):
        for y in range(h):
            for x in range(w):
                out[(k // columns) * (h + pad) + y, (k % columns) * (w + pad) + x] = images[k, y, x]
    return out


def test_tile_images_layout():
    images = np.random.RandomState(0).rand(5, 3, 4, 3).astype(np.float32)
    np.testing.assert_array_equal(summaries.tile_images(images), _grid_oracle(images, 3))
    assert summaries.tile_images(images, columns=5).shape == (3, 5 * 4 + 4, 3)
    np.testing.assert_array_equal(summaries.tile_images(images, columns=2),
                                  _grid_oracle(images, 2))


@pytest.mark.parametrize("count,max_images,side", [(8, 16, 3 * 32 + 2), (20, 16, 4 * 32 + 3)])
def test_images_written_as_one_grid(tmp_path, count, max_images, side):
    images = np.random.RandomState(1).rand(count, 32, 32, 3).astype(np.float32)
    writer = summaries.SummaryWriter(str(tmp_path))
    writer.images(5, "pretrain/views", images, max_images=max_images)
    writer.close()
    acc = _accumulator(tmp_path)
    events = acc.Tensors("pretrain/views")
    assert len(events) == 1 and events[0].step == 5
    assert acc.SummaryMetadata("pretrain/views").plugin_data.plugin_name == "images"
    width, height, *pngs = events[0].tensor_proto.string_val
    assert (int(width), int(height), len(pngs)) == (side, side, 1)  # ONE image
    grid = tf.io.decode_png(pngs[0]).numpy() / 255.0
    assert grid.shape == (side, side, 3)
    # 8 -> 3x3 cells (one empty, left white), 20 capped at 16 -> 4x4; uint8 quantisation.
    oracle = _grid_oracle(images[:max_images], columns=int(np.ceil(np.sqrt(min(count, 16)))))
    np.testing.assert_allclose(grid, oracle, atol=1.01 / 255)


def test_hparams_recorded_with_plugin(tmp_path):
    writer = summaries.SummaryWriter(str(tmp_path))
    writer.hparams({"learning_rate": 0.3, "width_multiplier": np.int64(2), "sk_ratio": 0.0625,
                    "use_blur": True, "optimizer": "lars", "eval_split": None,
                    "image_size": (32, 32)})
    writer.close()
    acc = _accumulator(tmp_path)
    tags = [t for t in acc.Tags()["tensors"]
            if acc.SummaryMetadata(t).plugin_data.plugin_name == "hparams"]
    assert tags == ["_hparams_/session_start_info"]
    data = plugin_data_pb2.HParamsPluginData.FromString(
        acc.SummaryMetadata(tags[0]).plugin_data.content)
    got = data.session_start_info.hparams
    assert got["learning_rate"].number_value == 0.3
    assert got["width_multiplier"].number_value == 2
    assert got["sk_ratio"].number_value == 0.0625
    assert got["use_blur"].bool_value is True
    assert got["optimizer"].string_value == "lars"
    assert got["eval_split"].string_value == "None"
    assert got["image_size"].string_value == "(32, 32)"


def test_disabled_writer_writes_nothing(tmp_path):
    logdir = tmp_path / "worker1"
    writer = summaries.SummaryWriter(str(logdir), enabled=False)
    writer.scalars(1, {"train/loss": 1.0})
    writer.images(1, "views", np.zeros((2, 4, 4, 3), np.float32))
    writer.hparams({"lr": 0.1})
    writer.flush()
    writer.close()
    assert not os.path.exists(logdir)


class _Clock:
    """Returns the given times in order, one per call."""

    def __init__(self, *times):
        self._times = list(times)

    def __call__(self):
        return self._times.pop(0)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


METRICS = {"train/contrast_loss": 9.9, "train/total_loss": 4.123, "train/top1": 0.5}


def test_format_duration():
    cases = {0: "0:00:00", 59.6: "0:01:00", 151: "0:02:31", 3 * 3600 + 5 * 60 + 7.4: "3:05:07",
             100000: "27:46:40"}
    assert {s: summaries.format_duration(s) for s in cases} == cases


def test_loss_formatting():
    cases = {4.1234: "4.123", 0.0: "0.000", 0.01: "0.010", 0.00123456: "1.235e-03",
             123456.0: "1.235e+05", float("nan"): "nan"}
    assert [summaries._format_loss(v) for v in cases] == list(cases.values())


def test_plain_lines_and_eta_from_measured_rate():
    stream = io.StringIO()
    # Constructed at t=0, step 0; updates at t=30 (step 120) and t=40 (step 200).
    progress = summaries.Progress(1000, stream=stream, clock=_Clock(0.0, 30.0, 40.0))
    progress.update(120, METRICS, 380.24)  # 4 steps/s, 880 left -> 220 s
    progress.update(200, {"loss": 3.0}, 400.0)  # 200 steps in 40 s, 800 left -> 160 s
    progress.close()
    assert stream.getvalue() == ("step 120/1000  contrast_loss 9.900  380.2 img/s  eta 0:03:40\n"
                                 "step 200/1000  loss 3.000  400.0 img/s  eta 0:02:40\n")


@pytest.mark.parametrize("metrics, shown", [
    # pretraining: the contrastive objective, its accuracy and the linear-evaluation monitor's
    # (named for what it is), not the total loss that the monitor's loss dominates
    ({"contrast_loss": 5.0, "contrast_acc": 0.25, "contrast_entropy": 3.0, "total_loss": 155.0,
      "monitor/linear_eval_loss": 150.0, "monitor/linear_eval_acc": 0.5, "weight_decay": 0.1},
     "contrast_loss 5.000  contrast_acc 0.250  linear_eval_acc 0.500"),
    ({"distill_loss": 0.75, "teacher_agreement": 0.875, "total_loss": 0.8},
     "distill_loss 0.750  teacher_agreement 0.875"),
    ({"supervised_loss": 2.302585, "supervised_acc": 0.125, "total_loss": 2.4},
     "supervised_loss 2.303  supervised_acc 0.125"),
    ({"train/total_loss": 4.0, "train/learning_rate": 0.1}, "total_loss 4.000"),
    ({"my_loss": 0.001, "other": 1.0}, "my_loss 1.000e-03"),
])
def test_progress_line_shows_the_stage_objective(metrics, shown):
    line = summaries.Progress(10, stream=io.StringIO(), use_bar=False).format_line(5, metrics, 1.0)
    assert line == f"step 5/10  {shown}  1.0 img/s  eta -:--:--"


def test_eta_uses_recent_window_and_resume_start():
    stream = io.StringIO()
    # window=1: the rate of the last interval only, 80 steps in 10 s, 800 left -> 100 s.
    progress = summaries.Progress(1000, start_step=0, stream=stream, window=1,
                                  clock=_Clock(0.0, 30.0, 40.0))
    progress.update(120, METRICS, 1.0)
    progress.update(200, METRICS, 1.0)
    assert stream.getvalue().splitlines()[1].endswith("eta 0:01:40")
    # Resumed at step 500: 100 steps in 50 s, 400 left -> 200 s.
    stream = io.StringIO()
    progress = summaries.Progress(1000, start_step=500, stream=stream, clock=_Clock(0.0, 50.0))
    progress.update(600, {}, 12.0)
    assert stream.getvalue() == "step 600/1000  12.0 img/s  eta 0:03:20\n"


def test_terminal_bar_redraws_with_carriage_return():
    stream = _Terminal()
    progress = summaries.Progress(10, stream=stream, clock=_Clock(0.0, 5.0, 10.0))
    progress.update(5, {"loss": 0.5}, 100.0)
    progress.update(10, {}, 100.0)  # shorter line: spaces wipe the old tail
    assert "\n" not in stream.getvalue()
    progress.close()
    first = "step 5/10 [" + "#" * 15 + "." * 15 + "]  loss 0.500  100.0 img/s  eta 0:00:05"
    second = "step 10/10 [" + "#" * 30 + "]  100.0 img/s  eta 0:00:00"
    assert stream.getvalue() == ("\r" + first + "\r" + second
                                 + " " * (len(first) - len(second)) + "\n")


def test_every_seconds_throttles_but_prints_last_step():
    stream = io.StringIO()
    progress = summaries.Progress(4, use_bar=False, stream=stream, every_seconds=60.0,
                                  clock=_Clock(0.0, 1.0, 30.0, 61.0, 62.0))
    for step in (1, 2, 3, 4):
        progress.update(step, {}, 1.0)
    steps = [line.split()[1] for line in stream.getvalue().splitlines()]
    assert steps == ["1/4", "3/4", "4/4"]


def test_countdown_lines_in_a_log_first_throttled_and_last():
    stream = io.StringIO()
    countdown = summaries.Countdown("evaluating the checkpoint of step 8", 79, stream=stream,
                                    every_seconds=10.0, clock=_Clock(0.0, 4.0, 11.0, 12.0, 13.0))
    for done in (1, 20, 40, 41, 79):
        countdown.update(done)
    countdown.close()  # 79 is on screen already: nothing more
    assert stream.getvalue().splitlines() == [
        "evaluating the checkpoint of step 8: 1/79 batches",
        "evaluating the checkpoint of step 8: 40/79 batches",
        "evaluating the checkpoint of step 8: 79/79 batches"]


def test_countdown_unknown_total_and_terminal_redraw():
    stream = io.StringIO()
    countdown = summaries.Countdown("reading", None, unit="files", stream=stream,
                                    clock=_Clock(0.0, 1.0))
    countdown.update(1)
    countdown.update(2)  # throttled ...
    countdown.close()  # ... then shown at the end
    assert stream.getvalue() == "reading: 1 files\nreading: 2 files\n"
    terminal = _Terminal()
    countdown = summaries.Countdown("evaluating", 2, stream=terminal)
    countdown.update(1)
    countdown.update(2)
    countdown.close()
    assert terminal.getvalue() == "\revaluating: 1/2 batches\revaluating: 2/2 batches\n"
