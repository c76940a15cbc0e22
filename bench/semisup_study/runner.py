"""Runs of bench/semisup.py: run.py command lines, resumable execution, speeds.

A finished run leaves bench_<tag>.json beside run.py's result.json and is reused when the same
command asks for it again; an unfinished one resumes from its checkpoint (run.py does that).
A run whose loss became non-finite is recorded as diverged (no score), not retried.
"""
import math
import os
import re
import resource
import subprocess
import sys
import time
from typing import Dict, Optional

from bench.harness import ROOT, read_json, write_json
from bench.semisup_study import protocol as P

# Images/s relative to pretraining ResNet-18 x0.25 (two views per image), measured on a 2-core
# AMD EPYC (Zen 4, AVX512-BF16, no AMX) in mixed bfloat16 by the study of commit 34e652a
# (docs/semisup/old_protocol/34e652a/results.json, medians over its runs): pretraining x0.25
# 538 images/s, x0.5 223; fine-tuning x0.25 ~1,030, x0.5 390; linear evaluation 2,130;
# distillation into x0.25 800 from an x0.25 teacher, 591 from an x0.5 one. Other widths: each
# doubling of the width costs what it costs pretraining (223 / 538).
RELATIVE_SPEED = {"pretrain_x0.25": 1.0, "pretrain_x0.5": 223 / 538,
                  "finetune_x0.25": 1030 / 538, "finetune_x0.5": 390 / 538,
                  "linear_x0.25": 2130 / 538,
                  "distill_x0.25_from_x0.25": 800 / 538, "distill_x0.25_from_x0.5": 591 / 538}
WIDTH_DOUBLING = 223 / 538
# Seconds per run beyond its steps (start-up, tracing, export, the holdout evaluation), per
# test evaluation (mostly TensorFlow's start-up; median 20 s there), and per checkpoint of a
# holdout curve (plus one start-up).
OVERHEAD_SECONDS = {"train": 37, "eval": 20, "curve_point": 5}


def precision_for(cpu: dict) -> str:
    """What run.py's --precision=auto picks on this CPU (tf2/precision.py), written out
    explicitly in every command so that every record says which precision made it."""
    return cpu["auto_precision"]


def pretrain_speed(cpu: dict) -> float:
    """images/s of pretraining ResNet-18 x0.25 before anything was measured on this CPU: 558
    on the AMX Xeon in bf16 (issue 13), 538 on Zen 4 in bf16, 210 without native bfloat16."""
    if cpu["amx_bf16"]:
        return 558.0
    return 538.0 if cpu["avx512_bf16"] else 210.0


def relative_speed(key: str) -> float:
    """RELATIVE_SPEED, or for an unmeasured width the nearest measured one scaled."""
    if key in RELATIVE_SPEED:
        return RELATIVE_SPEED[key]
    stage, width, *rest = key.split("_x")
    width = float(width.split("_")[0])
    teacher = f"_from_x{rest[0]}" if rest else ""
    base = RELATIVE_SPEED.get(f"{stage}_x0.25{teacher}") or RELATIVE_SPEED.get(
        f"{stage}_x0.25_from_x0.25") or RELATIVE_SPEED[f"{stage}_x0.25"]
    return base * WIDTH_DOUBLING ** math.log2(width / 0.25)


class Speeds:
    """images/s per speed key: the estimate, replaced by this machine's measurements."""

    def __init__(self, cpu: dict, measured: Optional[Dict[str, float]] = None):
        self.base, self.source = pretrain_speed(cpu), (
            "measured on Zen 4 by the study of commit 34e652a" if cpu["avx512_bf16"] and not
            cpu["amx_bf16"] else "estimate from the CPU's flags")
        self.measured: Dict[str, float] = dict(measured or {})
        if "pretrain_x0.25" in self.measured:
            self.base, self.source = self.measured["pretrain_x0.25"], "measured here"

    def record(self, key: str, images_per_second: Optional[float]):
        if images_per_second:
            self.measured[key] = images_per_second
            if key == "pretrain_x0.25":
                self.base, self.source = images_per_second, "measured here"

    def of(self, key: str) -> float:
        return self.measured.get(key) or self.base * relative_speed(key)

    def seconds(self, run: P.Run) -> float:
        return run.images() / self.of(run.kind) + OVERHEAD_SECONDS["train"]


def command(run: P.Run, s: P.Scale, runs_dir: str, precision: str):
    """The run.py argv of `run`."""
    flags = dict(mode="train" if run.eval_split is None else "train_then_eval",
                 train_mode=run.stage, dataset="fashion_mnist", image_size=32,
                 holdout_fraction=P.HOLDOUT_FRACTION, seed=run.seed,
                 resnet_depth=run.arch.depth, width_multiplier=run.arch.width,
                 train_batch_size=run.batch, train_steps=run.steps,
                 eval_batch_size=s.eval_batch_size, eval_steps=s.eval_steps,
                 steps_per_loop=s.steps_per_loop, checkpoint_steps=_checkpoint_steps(run, s),
                 precision=precision, progress_bar=False,
                 model_dir=os.path.join(runs_dir, run.name))
    if run.curve:
        flags["keep_checkpoint_max"] = P.CURVE_POINTS + 1
    if run.eval_split:
        flags["eval_split"] = run.eval_split
    flags.update(run.flags)
    flags.update({k: os.path.join(runs_dir, dep) for k, dep in run.needs})
    return _argv(flags)


def _checkpoint_steps(run: P.Run, s: P.Scale) -> int:
    """CURVE_POINTS evenly spaced checkpoints for a curve (a multiple of steps_per_loop),
    else the scale's interval."""
    if not run.curve:
        return s.checkpoint_steps
    every = max(1, run.steps // P.CURVE_POINTS)
    return max(s.steps_per_loop, every - every % s.steps_per_loop)


def test_command(run: P.Run, s: P.Scale, runs_dir: str, precision: str):
    """run.py --mode=eval of `run`'s final checkpoint on the test split (read once)."""
    argv = command(run, s, runs_dir, precision)
    drop = ("--mode=", "--eval_split=", "--checkpoint=", "--teacher=", "--from_scratch")
    return [a for a in argv if not a.startswith(drop)] + ["--mode=eval", "--eval_split=test"]


def _argv(flags):
    argv = [sys.executable, os.path.join(ROOT, "run.py")]
    for k, v in flags.items():
        argv.append(f"--{k}" if v is True else f"--no{k}" if v is False else f"--{k}={v}")
    return argv


def shown(argv, out: str) -> str:
    """argv as the results record it: `python run.py ...` (or `python -m ...`) as run from
    the repository root, with the --out directory written as $OUT (so that a record does not
    name this machine's paths)."""
    words = ["python"] + ["run.py" if a.endswith(os.sep + "run.py") else a for a in argv[1:]]
    return " ".join(words).replace(os.path.abspath(out).rstrip("/") + "/", "$OUT/")


DIVERGED = "Non-finite values"


def execute(argv, model_dir: str, logs_dir: str, tag: str) -> dict:
    """Runs argv (or reuses its record `model_dir`/bench_<tag>.json); returns the record with
    run.py's result.json (when it wrote one) under 'result' ('diverged': the loss became
    non-finite: no result, recorded so that a rerun reuses it)."""
    done_path = os.path.join(model_dir, f"bench_{tag}.json")
    done = read_json(done_path)
    if done:
        if done["argv"][1:] != argv[1:]:
            raise SystemExit(f"{model_dir} was made by another command ({done['argv']}); "
                             "use another --out or delete it.")
        return dict(done, reused=True)
    os.makedirs(logs_dir, exist_ok=True)
    log_path = os.path.join(logs_dir, f"{os.path.basename(model_dir)}.{tag}.log")
    cpu0, tic = _children_cpu(), time.perf_counter()
    with open(log_path, "w") as log:
        rc = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    with open(log_path) as f:
        text = f.read()
    diverged = rc != 0 and DIVERGED in text
    if rc != 0 and not diverged:
        tail = "".join(text.splitlines(keepends=True)[-15:])
        raise SystemExit(f"{os.path.basename(model_dir)} failed (exit {rc}):\n  "
                         f"{' '.join(argv)}\n{tail}")
    done = {"argv": argv, "wall_seconds": round(time.perf_counter() - tic, 1),
            "cpu_seconds": round(_children_cpu() - cpu0, 1),
            "load_average_after": os.getloadavg(), "diverged": diverged,
            "result": None if diverged else read_json(os.path.join(model_dir, "result.json")),
            "images_per_second": images_per_second(text)}
    write_json(done_path, done)
    return dict(done, reused=False)


def images_per_second(log_text: str) -> Optional[float]:
    """Median img/s of the progress lines after the first (which includes tracing)."""
    rates = sorted(float(m) for m in re.findall(r"([0-9.]+) img/s", log_text)[1:])
    return rates[len(rates) // 2] if rates else None


def knn_curve(model_dir: str):
    """[(step, kNN top-1)] of a run's monitor (TensorBoard knn/top1)."""
    from stages import summaries
    return summaries.read_scalars(model_dir).get("knn/top1", [])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


