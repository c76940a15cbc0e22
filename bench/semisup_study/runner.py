"""Runs of bench/semisup.py: run.py command lines, resumable execution, the machine, speeds.

A finished run leaves bench_run.json beside run.py's result.json and is reused when the same
command asks for it again; an unfinished one resumes from its checkpoint (run.py does that).
"""
import os
import re
import resource
import subprocess
import sys
import time
from typing import Dict, Optional

from bench.harness import ROOT, read_json, write_json
from bench.semisup_study import protocol as P

# Training images/s relative to pretraining the small network (two views per image), and
# seconds of start-up, tracing, export and evaluation per run, measured on a 2-core AMD EPYC
# (Zen 4, AVX512-BF16, no AMX) in mixed bfloat16 on 2026-12-02: pretraining ResNet-18 x0.25
# 487 images/s, x0.5 230; fine-tuning x0.25 ~1,050. The absolute speed comes from the CPU's
# capability (pretrain_speed) and, once a run of a kind has finished, from that run.
RELATIVE_SPEED = {"pretrain_small": 1.0, "pretrain_big": 0.47, "finetune_small": 2.1,
                  "finetune_big": 0.75, "distill": 1.45, "linear": 3.0}
OVERHEAD_SECONDS = {"train": 32, "eval": 15}


def precision_for(cpu: dict) -> str:
    """What run.py's --precision=auto picks on this CPU (tf2/precision.py), written out
    explicitly in every command so that results.json says which precision made them."""
    return cpu["auto_precision"]


def pretrain_speed(cpu: dict) -> float:
    """Estimated images/s of the small pretraining before anything was measured on this CPU:
    558 on the AMX Xeon in bf16 (issue 13), 485 on Zen 4 (AVX512-BF16 without AMX) in bf16,
    210 on a Xeon without native bfloat16 (float32)."""
    if cpu["amx_bf16"]:
        return 558.0
    return 485.0 if cpu["avx512_bf16"] else 210.0


class Speeds:
    """images/s per run kind: the estimate, replaced by this machine's measurements."""

    def __init__(self, cpu: dict):
        self.base, self.source = pretrain_speed(cpu), "estimate from the CPU's flags"
        self.measured: Dict[str, float] = {}

    def record(self, kind: str, images_per_second: Optional[float]):
        if not images_per_second:
            return
        self.measured[kind] = images_per_second
        if kind == "pretrain_small":
            self.base, self.source = images_per_second, "measured pretraining on this machine"

    def of(self, kind: str) -> float:
        return self.measured.get(kind) or self.base * RELATIVE_SPEED[kind]

    def seconds(self, run: P.Run, s: P.Scale) -> float:
        return run.steps(s) * run.batch / self.of(run.kind) + OVERHEAD_SECONDS["train"]


def command(run: P.Run, s: P.Scale, runs_dir: str, precision: str):
    """The run.py argv of `run`."""
    flags = dict(mode="train" if run.eval_split is None else "train_then_eval",
                 train_mode=run.stage, dataset="fashion_mnist", image_size=32,
                 holdout_fraction=P.HOLDOUT_FRACTION, seed=run.seed,
                 resnet_depth=run.arch.depth, width_multiplier=run.arch.width,
                 train_batch_size=run.batch, train_epochs=run.epochs,
                 eval_batch_size=s.eval_batch_size, eval_steps=s.eval_steps,
                 steps_per_loop=s.steps_per_loop, checkpoint_steps=s.checkpoint_steps,
                 precision=precision, progress_bar=False,
                 model_dir=os.path.join(runs_dir, run.name))
    if run.eval_split:
        flags["eval_split"] = run.eval_split
    if s.train_steps:
        flags["train_steps"] = s.train_steps
    flags.update(run.flags)
    flags.update({k: os.path.join(runs_dir, dep) for k, dep in run.needs})
    return _argv(flags)


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


def execute(argv, model_dir: str, logs_dir: str, tag: str) -> dict:
    """Runs argv (or reuses its record `model_dir`/bench_<tag>.json); returns the record with
    run.py's result.json (when it wrote one) under 'result'."""
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
    if rc != 0:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-15:])
        raise SystemExit(f"{os.path.basename(model_dir)} failed (exit {rc}):\n  "
                         f"{' '.join(argv)}\n{tail}")
    done = {"argv": argv, "wall_seconds": round(time.perf_counter() - tic, 1),
            "cpu_seconds": round(_children_cpu() - cpu0, 1),
            "load_average_after": os.getloadavg(),
            "result": read_json(os.path.join(model_dir, "result.json")),
            "images_per_second": images_per_second(log_path)}
    write_json(done_path, done)
    return dict(done, reused=False)


def images_per_second(log_path: str) -> Optional[float]:
    """Median img/s of the progress lines after the first (which includes tracing)."""
    with open(log_path) as f:
        rates = [float(m) for m in re.findall(r"([0-9.]+) img/s", f.read())]
    rates = sorted(rates[1:])
    return rates[len(rates) // 2] if rates else None


def knn_curve(model_dir: str):
    """[(step, kNN top-1)] of a pretraining run's monitor (TensorBoard knn/top1)."""
    from stages import summaries
    return summaries.read_scalars(model_dir).get("knn/top1", [])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


