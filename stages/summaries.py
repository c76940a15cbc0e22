"""Monitoring: TensorBoard summaries (scalars, an image grid, hyperparameters) and progress.

`SummaryWriter` writes the events the host loop produces; on non-chief workers it is
disabled so that a multi-worker run writes one set of events. `Progress` prints a live bar on
a terminal and one plain line per update in a log file; `Countdown` does the same for the work
after training (evaluation batches). `read_scalars` reads events back.
"""
import collections
import math
import numbers
import sys
import time
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import api as hp


class SummaryWriter:
    """TensorBoard event writer for the chief; every method is a no-op when disabled."""

    def __init__(self, logdir: str, enabled: bool = True):
        """Opens an event file in `logdir` (creating it) unless `enabled` is False."""
        self.logdir = logdir
        self.enabled = enabled
        self._writer = tf.summary.create_file_writer(logdir) if enabled else None

    def scalars(self, step: int, metrics: Mapping[str, float]) -> None:
        """Writes each metric as a scalar summary under its own name, e.g. 'train/loss'.

        Args:
          step: global step (x axis).
          metrics: name -> Python float, NumPy or scalar tensor (stored as float32).
        """
        if not self.enabled:
            return
        with self._writer.as_default():
            for name, value in metrics.items():
                tf.summary.scalar(name, float(value), step=int(step))

    def images(self, step: int, name: str, images, max_images: int = 16,
               columns: Optional[int] = None) -> None:
        """Writes the first `max_images` images tiled into ONE grid image (see `tile_images`).

        Args:
          step: global step.
          name: summary tag.
          images: (n, h, w, 3) floats in [0, 1] (values outside are clipped).
          max_images: at most this many images are tiled.
          columns: grid columns; default ceil(sqrt(n)).
        """
        if not self.enabled:
            return
        images = tf.cast(tf.convert_to_tensor(images), tf.float32).numpy()[:max_images]
        grid = tile_images(np.clip(images, 0.0, 1.0), columns)  # (H, W, 3)
        with self._writer.as_default():
            tf.summary.image(name, grid[None], step=int(step), max_outputs=1)  # (1, H, W, 3)

    def hparams(self, hparams: Mapping[str, object]) -> None:
        """Records the run's hyperparameters for TensorBoard's HPARAMS tab.

        Args:
          hparams: name -> value; bools, ints, floats and strings are kept, anything else
            (None, tuples, enums) is recorded as its `str()`.
        """
        if not self.enabled:
            return
        values = {name: _hparam_value(value) for name, value in hparams.items()}
        with self._writer.as_default():
            hp.hparams(values)

    def flush(self) -> None:
        if self.enabled:
            self._writer.flush()

    def close(self) -> None:
        if self.enabled:
            self._writer.close()


def _hparam_value(value):
    """The hparams plugin takes bool, int, float or str only."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value if isinstance(value, str) else str(value)


def tile_images(images: np.ndarray, columns: Optional[int] = None, pad: int = 1,
                pad_value: float = 1.0) -> np.ndarray:
    """Tiles images row by row into one grid, `pad` pixels of `pad_value` between tiles.

    Image k goes to row k // columns, column k % columns; unused cells stay `pad_value`.

    Args:
      images: (n, h, w, c) float array, n >= 1.
      columns: tiles per row; default ceil(sqrt(n)).
      pad: gap between neighbouring tiles, in pixels (none around the border).
      pad_value: colour of the gaps and of empty cells.

    Returns:
      (rows*h + (rows-1)*pad, columns*w + (columns-1)*pad, c) float32 array, where
      rows = ceil(n / columns).
    """
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * h + (rows - 1) * pad, columns * w + (columns - 1) * pad, c),
                   pad_value, np.float32)
    for k in range(n):
        top, left = (k // columns) * (h + pad), (k % columns) * (w + pad)
        grid[top:top + h, left:left + w] = images[k]
    return grid


def read_scalars(logdir: str) -> Dict[str, List[Tuple[int, float]]]:
    """Reads scalar summaries back from the event files directly in `logdir`.

    Events from a run that restarted at an earlier step are dropped the way TensorBoard
    drops them (orphaned data is purged).

    Returns:
      tag -> [(step, value), ...] in the order written; values are float32 precision.
    """
    acc = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()
    out = {}
    for tag in tags[event_accumulator.TENSORS]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars":
            out[tag] = [(e.step, float(tf.make_ndarray(e.tensor_proto)))
                        for e in acc.Tensors(tag)]
    for tag in tags[event_accumulator.SCALARS]:  # TF1-style simple_value summaries
        out[tag] = [(e.step, float(e.value)) for e in acc.Scalars(tag)]
    return out


def format_duration(seconds: float) -> str:
    """Seconds as H:MM:SS (hours unbounded), e.g. 151 -> '0:02:31'."""
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


# What the progress line shows: the stage's own objective (first present of these), then its
# accuracies. Pretraining's total loss is not shown: it adds the linear-evaluation head's loss,
# whose scale says nothing about the representation being learnt.
_PROGRESS_LOSSES = ("contrast_loss", "distill_loss", "supervised_loss", "total_loss", "loss")
_PROGRESS_ACCURACIES = ("contrast_acc", "teacher_agreement", "supervised_acc", "linear_eval_acc")


def _progress_metrics(metrics: Mapping[str, float]) -> List[Tuple[str, float]]:
    """[(name, value)]: the first loss of _PROGRESS_LOSSES, then the accuracies present.

    Names are matched after the last '/' ('train/contrast_loss' counts as 'contrast_loss');
    without any known loss, the first metric whose name contains 'loss' is shown.
    """
    short = {name.rsplit("/", 1)[-1]: float(value) for name, value in metrics.items()}
    shown = next(([(n, short[n])] for n in _PROGRESS_LOSSES if n in short), None)
    if shown is None:
        shown = [(n, v) for n, v in short.items() if "loss" in n][:1]
    return shown + [(n, short[n]) for n in _PROGRESS_ACCURACIES if n in short]


def _format_loss(loss: float) -> str:
    """Three decimals at the usual scales; scientific notation for tiny or huge values."""
    if loss == 0 or not math.isfinite(loss) or 1e-2 <= abs(loss) < 1e5:
        return f"{loss:.3f}"
    return f"{loss:.3e}"


class Progress:
    """Reports training progress: a live bar on a terminal, plain log lines otherwise.

    The ETA divides the remaining steps by the step rate measured over the last `window`
    updates (since construction until there are that many), so the first loop's tracing
    time soon stops weighing on it.
    """

    def __init__(self, total_steps: int, start_step: int = 0, use_bar: Optional[bool] = None,
                 stream=None, every_seconds: float = 0.0, clock=time.monotonic,
                 bar_width: int = 30, window: int = 10):
        """Starts the clock.

        Args:
          total_steps: step at which training ends.
          start_step: step at which this process starts (after a resume).
          use_bar: True: redraw one line with '\\r'; False: one line per update; None: a bar
            only if `stream.isatty()`.
          stream: text stream; default sys.stdout (looked up now, not at import).
          every_seconds: print at most this often (the final step is always printed).
          clock: seconds as a float; injectable for tests.
          bar_width: characters in the bar.
          window: number of recent updates the step rate is measured over.
        """
        self.total_steps = total_steps
        self._stream = sys.stdout if stream is None else stream
        isatty = getattr(self._stream, "isatty", lambda: False)
        self._bar = isatty() if use_bar is None else use_bar
        self._every = every_seconds
        self._clock = clock
        self._bar_width = bar_width
        self._points = collections.deque([(clock(), start_step)], maxlen=window + 1)
        self._last_print = None
        self._line_len = 0  # length of the bar line on screen; 0: nothing to end

    def eta_seconds(self, step: int) -> Optional[float]:
        """Seconds left at the measured rate; None before a rate exists."""
        (t0, s0), (t1, s1) = self._points[0], self._points[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return max(self.total_steps - step, 0) * (t1 - t0) / (s1 - s0)

    def update(self, step: int, metrics: Mapping[str, float],
               images_per_second: float) -> None:
        """Records that `step` was reached and prints (unless throttled by every_seconds)."""
        now = self._clock()
        self._points.append((now, step))
        if (self._last_print is not None and now - self._last_print < self._every
                and step < self.total_steps):
            return
        self._last_print = now
        line = self.format_line(step, metrics, images_per_second)
        if self._bar:
            # Spaces wipe the tail of a longer previous line.
            self._stream.write("\r" + line + " " * max(0, self._line_len - len(line)))
            self._line_len = len(line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def format_line(self, step: int, metrics: Mapping[str, float],
                    images_per_second: float) -> str:
        """E.g. 'step 120/1000  contrast_loss 4.123  contrast_acc 0.250  380.2 img/s  eta 0:02:31'.

        With a bar, the bar follows the step.
        """
        parts = [f"step {step}/{self.total_steps}"]
        if self._bar:
            done = min(max(step / max(self.total_steps, 1), 0.0), 1.0)
            filled = int(done * self._bar_width)
            parts[0] += " [" + "#" * filled + "." * (self._bar_width - filled) + "]"
        parts += [f"{name} {_format_loss(value)}" for name, value in _progress_metrics(metrics)]
        parts.append(f"{images_per_second:.1f} img/s")
        eta = self.eta_seconds(step)
        parts.append("eta " + (format_duration(eta) if eta is not None else "-:--:--"))
        return "  ".join(parts)

    def message(self, text: str) -> None:
        """Prints `text` on a line of its own (ending a live bar's line first)."""
        self.close()
        self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Ends the bar's line so that later output starts on a fresh one."""
        if self._bar and self._line_len:
            self._stream.write("\n")
            self._stream.flush()
            self._line_len = 0


class Countdown:
    """'evaluating the checkpoint of step 8: 40/79 batches' for host-side work after training.

    On a terminal the line is redrawn in place; in a log file a line is written at the first
    update, then at most every `every_seconds`, and at the end.
    """

    def __init__(self, what: str, total: Optional[int], unit: str = "batches", stream=None,
                 use_bar: Optional[bool] = None, every_seconds: float = 10.0,
                 clock=time.monotonic):
        """Args:
          what: what is being done, e.g. 'evaluating the checkpoint of step 8'.
          total: the count at which it is done; None when unknown (no '/total' is shown).
          unit: what is counted.
          stream: text stream; default sys.stdout (looked up now).
          use_bar: True: redraw one line with '\\r'; None: only if `stream.isatty()`.
          every_seconds: in a log, the least time between two lines.
          clock: seconds as a float; injectable for tests.
        """
        self.what, self.total, self.unit = what, total, unit
        self._stream = sys.stdout if stream is None else stream
        isatty = getattr(self._stream, "isatty", lambda: False)
        self._redraw = isatty() if use_bar is None else use_bar
        self._every, self._clock = every_seconds, clock
        self._last_print = None
        self._done, self._shown = 0, None

    def line(self, done: int) -> str:
        of = f"/{self.total}" if self.total else ""
        return f"{self.what}: {done}{of} {self.unit}"

    def update(self, done: int) -> None:
        """Records that `done` units are done; prints unless throttled."""
        self._done, now = done, self._clock()
        if self._redraw:
            self._stream.write("\r" + self.line(done))
        elif (self._last_print is None or now - self._last_print >= self._every
              or (self.total is not None and done >= self.total)):
            self._stream.write(self.line(done) + "\n")
            self._last_print = now
        else:
            return
        self._shown = done
        self._stream.flush()

    def close(self) -> None:
        """Shows the final count unless it is on screen already, and ends a redrawn line."""
        if self._redraw:
            if self._shown is not None:
                self._stream.write("\n")
        elif self._shown != self._done:
            self._stream.write(self.line(self._done) + "\n")
        self._stream.flush()
