"""Where the pretraining step's time goes: TensorFlow profiler op times by op type; JSON out.

    python -m bench.profile_step                                  # (a) and (b), fp32 and bf16
    python -m bench.profile_step --configs=b --precisions=mixed_bfloat16 --steps=3

The step is bench/throughput.py's (bench/steps.py, the program's real replica step on synthetic views). Each
(config, precision) runs in its own process: after the warm-up it traces `--steps` steps with
tf.profiler and sums, per op type, the time of the ops the executor ran on the compute
threads (both cores: CPU time, so it can exceed wall time). Groups: convolution (forward and
both gradients), matmul, batch norm (forward and gradient), casts, element-wise, reductions,
the optimizer's updates, other. The JSON records the CPU model and its bfloat16 / AMX flags.
"""
import argparse
import collections
import glob
import json
import os
import shutil
import tempfile
import time

from bench import harness
from bench.steps import CONFIGS, run_config, synthetic_batch

GROUPS = (  # (group, substrings of op types), first match wins
    ("batch_norm", ("BatchNorm",)),
    ("convolution", ("Conv2D", "Conv3D", "DepthwiseConv")),
    ("matmul", ("MatMul", "BatchMatMul", "Einsum")),
    ("cast", ("Cast",)),
    ("optimizer", ("ResourceApply", "AssignVariable", "AssignSub", "AssignAdd",
                   "ReadVariableOp", "ResourceScatter")),
    ("reduction", ("Sum", "Mean", "Max", "Min", "Prod", "Norm", "ArgMax", "All", "Any")),
    ("element_wise", ("Relu", "Add", "Mul", "Sub", "RealDiv", "Div", "Square", "Sqrt",
                      "Rsqrt", "Exp", "Log", "Neg", "Maximum", "Minimum", "Select", "Sigmoid",
                      "Softmax", "Greater", "Less", "Equal", "Pow", "Abs", "Sign",
                      "Tanh", "Reciprocal", "ZerosLike", "OnesLike", "Fill", "BiasAdd")),
)


def group_of(op_type: str) -> str:
    for group, keys in GROUPS:
        if any(k in op_type for k in keys):
            return group
    return "other"


def op_times(logdir: str) -> dict:
    """{op type: [total microseconds, count]} of the executor's ops in the profile at logdir."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    totals = collections.defaultdict(lambda: [0.0, 0])
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            names = {k: v.name for k, v in plane.event_metadata.items()}
            for line in plane.lines:
                if not line.name.startswith("tf_Compute") and line.name != "tf_inter_op":
                    continue
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    if ":" not in name or "::" in name:  # ThreadpoolListener::, Executor::
                        continue
                    op_type = name.rsplit(":", 1)[1]
                    totals[op_type][0] += event.duration_ps / 1e6
                    totals[op_type][1] += 1
    return dict(totals)


def child(name: str, precision: str, steps: int) -> dict:
    import keras
    import tensorflow as tf
    from stages import loop, pretrain
    variant = "float32" if precision == "float32" else precision
    cfg = run_config(name, "pretrain", variant, steps_per_loop=1)
    keras.mixed_precision.set_global_policy(cfg.precision)
    model, optimizer = pretrain.build(cfg, 10)
    step_fn = pretrain.make_step_fn(cfg, model, optimizer, 10)
    strategy = tf.distribute.get_strategy()
    iterator = iter(tf.data.Dataset.from_tensors(
        synthetic_batch(cfg, "pretrain")).repeat())
    multi_step = loop.make_multi_step(strategy, step_fn, cfg.jit_compile)
    one = tf.constant(1)
    for _ in range(3):  # tracing and the first steps
        multi_step(iterator, one)["total_loss"].numpy()
    tic = time.perf_counter()
    for _ in range(steps):
        multi_step(iterator, one)["total_loss"].numpy()
    untraced = (time.perf_counter() - tic) / steps
    logdir = tempfile.mkdtemp(prefix="profile_step_")
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        multi_step(iterator, one)["total_loss"].numpy()
    tf.profiler.experimental.stop()
    totals = op_times(logdir)
    shutil.rmtree(logdir, ignore_errors=True)
    per_step = {op: {"ms": t / steps / 1e3, "count": c // steps, "group": group_of(op)}
                for op, (t, c) in totals.items()}
    groups = collections.defaultdict(float)
    for row in per_step.values():
        groups[row["group"]] += row["ms"]
    total = sum(groups.values())
    top = sorted(per_step.items(), key=lambda kv: -kv[1]["ms"])[:30]
    batch = cfg.train.train_batch_size
    return {"config": name, "precision": precision, **CONFIGS[name],
            "step_ms_untraced": untraced * 1e3, "images_per_second": batch / untraced,
            "op_cpu_ms_per_step": total,
            "groups_ms": {g: round(v, 2) for g, v in sorted(groups.items(),
                                                            key=lambda kv: -kv[1])},
            "groups_share": {g: round(v / total, 4) for g, v in groups.items()},
            "top_ops": [{"op": op, **row} for op, row in top]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="a,b")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="bench/out/profile_step.json")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "PRECISION"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.steps)))
        return
    results = []
    for name in args.configs.split(","):
        for precision in args.precisions.split(","):
            row = harness.child_row(
                "bench.profile_step", ["--child", name, precision, f"--steps={args.steps}"],
                {"config": name, "precision": precision})
            shown = {k: row.get(k) for k in ("config", "precision", "images_per_second",
                                             "groups_ms", "error") if k in row}
            print(json.dumps(shown), flush=True)
            results.append(row)
    harness.write_json(args.out, {"cpu": harness.machine(), "results": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
