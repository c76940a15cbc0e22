"""Augmented pretraining views per second of `data.pipeline.pretrain_input_fn`; writes JSON.

    python -m bench.input_pipeline                       # both configs, 5 repeats
    python -m bench.input_pipeline --configs=fmnist32 --repeats=3

Configs: `fmnist32` is the embedded Fashion-MNIST at 32 px (cache on, colour strength 0.5, no
blur, batch 256: the CPU default); `folder224` is a folder of random JPEGs of 256-500 px
(generated once into a temporary folder) at 224 px with blur and colour strength 1.0, batch
32 (the paper's ImageNet augmentation), read and decoded every epoch (cache off, as for
ImageNet). `folder224_cache` is the same with decoded images cached in memory.

The pipeline runs alone (no training step) for a warm-up (Fashion-MNIST: one epoch, so the
cache is full and the shuffle buffer primed), then `repeats` timed windows; a view is one
augmented crop (a pretraining example is two views). The yardstick is what a pretraining step
eats: the original code's ResNet-18 step at 32 px, batch 256, took ~55 images/s = ~110 views/s
on this 2-core CPU (DESIGN.md); the pipeline should deliver >= 3x that at 32 px so it never
starves the step. The load average is recorded: other processes on the 2 cores lower the
numbers, so measure on a quiet machine.
"""
import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import logging as absl_logging  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import harness  # noqa: E402
from data import datasets, pipeline  # noqa: E402
from data.config import DataConfig  # noqa: E402

STEP_VIEWS_PER_SECOND = 110.0  # original ResNet-18 pretraining step, 32 px (DESIGN.md)
REQUIRED_FACTOR = 3.0
CONFIGS = {
    "fmnist32": dict(batch=256, window_batches=20, data=dict(
        dataset="fashion_mnist", image_size=32, cache=True, color_jitter_strength=0.5,
        use_blur=False)),
    "folder224": dict(batch=32, window_batches=8, data=dict(
        image_size=224, cache=False, color_jitter_strength=1.0, use_blur=True)),
    "folder224_cache": dict(batch=32, window_batches=8, data=dict(
        image_size=224, cache=True, color_jitter_strength=1.0, use_blur=True)),
}


def make_jpeg_folder(root: str, count: int = 200, seed: int = 0) -> str:
    """Writes `count` JPEGs of random sides in [256, 500] px in two class folders.

    Smooth random colour fields (noise upsampled from 8x8) plus fine noise, so that the files
    compress like photographs rather than like pure noise.

    Returns:
      `root`, ready for `--dataset=folder:<root>`.
    """
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = rng.integers(256, 501, size=2)
        coarse = rng.uniform(0, 255, size=(1, 8, 8, 3)).astype(np.float32)
        image = tf.image.resize(coarse, (int(h), int(w)), method="bicubic")[0]  # (h, w, 3)
        image += rng.normal(0, 12, size=(int(h), int(w), 3)).astype(np.float32)
        jpeg = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8),
                                 quality=90)
        folder = os.path.join(root, f"class_{i % 2}")
        os.makedirs(folder, exist_ok=True)
        tf.io.write_file(os.path.join(folder, f"{i:04d}.jpg"), jpeg)
    return root


def measure(source, cfg: DataConfig, batch: int, warmup_batches: int, window_batches: int,
            repeats: int) -> dict:
    """Views/s of the pretraining stream over `repeats` windows after a warm-up."""
    input_fn = pipeline.pretrain_input_fn(source, cfg, batch)
    iterator = iter(input_fn(tf.distribute.InputContext()))
    tic = time.perf_counter()
    for _ in range(warmup_batches):
        first = next(iterator)
    warmup_seconds = time.perf_counter() - tic
    assert first["image"].shape == (batch, cfg.image_size, cfg.image_size, 6)
    rates = []
    for _ in range(repeats):
        tic = time.perf_counter()
        for _ in range(window_batches):
            next(iterator)["image"].numpy()  # a host copy, as the step's input would be
        rates.append(2 * window_batches * batch / (time.perf_counter() - tic))  # 2 views each
    return {"views_per_second": {"min": min(rates), "median": statistics.median(rates),
                                 "max": max(rates), "all": rates},
            "warmup_batches": warmup_batches, "warmup_seconds": warmup_seconds,
            "window_batches": window_batches, "repeats": repeats}


def run_config(name: str, repeats: int, jpeg_root: str) -> dict:
    spec = CONFIGS[name]
    data = dict(spec["data"])
    if name.startswith("folder"):
        data["dataset"] = f"folder:{jpeg_root}"
    cfg = DataConfig(**data)
    source = datasets.load(cfg)
    examples = source.num_examples(cfg.train_split)
    # One epoch plus a little: the cache is then full and the shuffle buffer primed.
    warmup = -(-examples // spec["batch"]) + 2
    load_before = os.getloadavg()
    row = measure(source, cfg, spec["batch"], warmup, spec["window_batches"], repeats)
    row.update(config=name, batch=spec["batch"], train_examples=examples,
               load_average_before=load_before, load_average_after=os.getloadavg(),
               **{k: v for k, v in data.items() if k != "dataset"},
               dataset=data["dataset"])
    return row


def wait_for_quiet(max_load: float, wait_s: float) -> dict:
    """Waits up to `wait_s` seconds for the 1-minute load average to fall below `max_load`."""
    deadline = time.monotonic() + wait_s
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(10)
    load = os.getloadavg()
    return {"max_load": max_load, "waited_up_to_s": wait_s, "load_average": load,
            "quiet": load[0] < max_load}


def verdict(rows) -> dict:
    """Pass/fail of the 32 px pipeline against REQUIRED_FACTOR x the step's consumption."""
    row = next((r for r in rows if r["config"] == "fmnist32"), None)
    if row is None:
        return {"passed": None, "reason": "fmnist32 not measured"}
    median = row["views_per_second"]["median"]
    needed = REQUIRED_FACTOR * STEP_VIEWS_PER_SECOND
    return {"passed": median >= needed, "fmnist32_median_views_per_second": median,
            "required_views_per_second": needed,
            "factor_over_step": median / STEP_VIEWS_PER_SECOND,
            "rule": f"median views/s at 32 px >= {REQUIRED_FACTOR:g} x {STEP_VIEWS_PER_SECOND:g}"
                    " (original ResNet-18 pretraining step, 32 px, batch 256)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="fmnist32,folder224,folder224_cache")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join("bench", "out", "input_pipeline.json"))
    parser.add_argument("--wait_s", type=float, default=0,
                        help="wait up to this long for a load average below --max_load")
    parser.add_argument("--max_load", type=float, default=1.0)
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")
    absl_logging.set_verbosity(absl_logging.ERROR)  # TFDS deprecation notes, not ours
    jpeg_root = tempfile.mkdtemp(prefix="simclr_jpegs_")
    try:
        make_jpeg_folder(jpeg_root)
        quiet = wait_for_quiet(args.max_load, args.wait_s)
        rows = []
        for name in args.configs.split(","):
            rows.append(run_config(name, args.repeats, jpeg_root))
            v = rows[-1]["views_per_second"]
            print(f"{name}: views/s min {v['min']:.0f} median {v['median']:.0f} "
                  f"max {v['max']:.0f} (load {rows[-1]['load_average_after'][0]:.2f})",
                  flush=True)
    finally:
        shutil.rmtree(jpeg_root, ignore_errors=True)
    result = {"cpu": harness.machine(), "tensorflow": tf.__version__, "quiet_check": quiet,
              "step_views_per_second": STEP_VIEWS_PER_SECOND, "results": rows,
              "verdict": verdict(rows)}
    harness.write_json(args.out, result)
    print(f"verdict: {'PASS' if result['verdict']['passed'] else 'FAIL'} "
          f"({json.dumps(result['verdict'])}); wrote {args.out}")


if __name__ == "__main__":
    main()
