"""The default run in float32 and in mixed bfloat16, over seeds: does bfloat16 learn alike?

    python -m bench.bf16_learning                      # 3 seeds x 2 precisions, ~30-60 min
    python -m bench.bf16_learning --seeds=0 --dry_run  # the commands only

Each run is the README's default pretraining (`run.py --mode=train_then_eval
--train_mode=pretrain`: ResNet-18 x0.5 on Fashion-MNIST, half an epoch) with `--seed` and an
explicit `--precision`; `train_then_eval` evaluates the linear-eval head (trained on
stop-gradient features beside the contrastive loss) on the 10,000 test images. The precisions
share everything else, seed for seed, so the difference between them can be held against the
spread between seeds. Wall time and images/s come from each run's own record;
they are only comparable between runs made on a quiet machine (the load average is recorded).

A run whose model_dir holds result.json is reused, so an interrupted study continues.
Writes out/results.json with the CPU model and its bfloat16/AMX flags.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench import harness
from bench.harness import ROOT


def _command(precision, seed, model_dir):
    return [sys.executable, os.path.join(ROOT, "run.py"), "--mode=train_then_eval",
            "--train_mode=pretrain", f"--precision={precision}", f"--seed={seed}",
            f"--model_dir={model_dir}", "--progress_bar=false"]


def _train_rate(model_dir):
    """Median train/images_per_second of the run's loops after the first (tracing) one."""
    from stages import summaries
    rates = [v for _, v in summaries.read_scalars(model_dir).get(
        "train/images_per_second", [])][1:]
    return statistics.median(rates) if rates else None


def run_one(precision, seed, out_dir, dry_run):
    model_dir = os.path.join(out_dir, f"{precision}_seed{seed}")
    record = os.path.join(model_dir, "bench.json")
    if os.path.exists(record):
        return harness.read_json(record)
    cmd = _command(precision, seed, model_dir)
    print(" ".join(cmd), flush=True)
    if dry_run:
        return None
    load, tic = os.getloadavg(), time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    result = harness.read_json(os.path.join(model_dir, "result.json"))
    row = {"precision": precision, "seed": seed, "top1": result["top1"],
           "top5": result["top5"], "wall_seconds": time.time() - tic,
           "train_images_per_second": _train_rate(model_dir),
           "load_average_at_start": load, "load_average_at_end": os.getloadavg()}
    harness.write_json(record, row)
    print(json.dumps(row), flush=True)
    return row


def summarise(rows):
    out = {}
    for precision in sorted({r["precision"] for r in rows}):
        top1 = [r["top1"] for r in rows if r["precision"] == precision]
        out[precision] = {"seeds": len(top1), "top1_mean": statistics.mean(top1),
                          "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
                          "top1": top1}
    if {"float32", "mixed_bfloat16"} <= out.keys():
        pairs = {}
        for r in rows:
            pairs.setdefault(r["seed"], {})[r["precision"]] = r["top1"]
        diffs = [p["mixed_bfloat16"] - p["float32"] for p in pairs.values() if len(p) == 2]
        out["bf16_minus_fp32_per_seed"] = diffs
        out["seed_spread_fp32"] = out["float32"]["top1_std"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--out_dir", default="bench/out/bf16_learning")
    parser.add_argument("--dry_run", action="store_true")
    args = parser.parse_args()
    out_dir = os.path.abspath(args.out_dir)
    rows = []
    for seed in map(int, args.seeds.split(",")):
        for precision in args.precisions.split(","):
            row = run_one(precision, seed, out_dir, args.dry_run)
            if row:
                rows.append(row)
    if args.dry_run:
        return
    report = {"cpu": harness.machine(), "rows": rows, "summary": summarise(rows)}
    harness.write_json(os.path.join(out_dir, "results.json"), report)
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    main()
