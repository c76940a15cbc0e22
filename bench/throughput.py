"""Training-step throughput and peak memory of pretraining and fine-tuning; writes JSON.

Each (config, stage, variant) runs in its own process so that its peak resident memory is its
own. A step is the program's real replica step (forward + backward + LARS, NT-Xent, global BN
code path) fed synthetic, already-augmented views, so the input pipeline is not measured.

    python -m bench.throughput                       # all configs, float32 / bf16 / XLA
    python -m bench.throughput --configs=a --variants=float32 --repeats=3

Configs (bench/steps.py): (a) ResNet-18, 32 px, batch 256; (b) ResNet-50, 64 px, batch 64;
(c) ResNet-50 + SK, 64 px, batch 64; (b224) ResNet-50, 224 px, batch 256, for GPUs. Our step
only: `bench/vs_original.py` times Google's original tf2 step beside ours in the same run
(constants measured on another CPU, or another hour of the same one, would mislead), and the
JSON here records this CPU's model and bfloat16 flags so that its figures are not compared
across machines.
"""
import argparse
import json
import resource
import statistics
import time

from bench import harness
from bench.steps import CONFIGS, VARIANTS, run_config, synthetic_batch

def _compute_dtype(variant):
    """The dtype the variant's matmuls run in: float32, bfloat16 or float16."""
    return VARIANTS[variant]["precision"].replace("mixed_", "")


def child(name, stage, variant, repeats, steps_per_loop):
    """Measures one (config, stage, variant); prints one JSON line."""
    import keras
    import tensorflow as tf
    from stages import finetune, loop, pretrain
    cfg = run_config(name, stage, variant, steps_per_loop)
    keras.mixed_precision.set_global_policy(cfg.precision)
    module = pretrain if stage == "pretrain" else finetune
    model, optimizer = module.build(cfg, 10)
    step_fn = module.make_step_fn(cfg, model, optimizer, 10)
    strategy = tf.distribute.get_strategy()
    iterator = iter(tf.data.Dataset.from_tensors(synthetic_batch(cfg, stage)).repeat())
    multi_step = loop.make_multi_step(strategy, step_fn, cfg.jit_compile)
    n = tf.constant(steps_per_loop)
    multi_step(iterator, n)["total_loss"].numpy()  # warm-up: tracing and first steps
    rates = []
    for _ in range(repeats):
        tic = time.perf_counter()
        multi_step(iterator, n)["total_loss"].numpy()
        rates.append(steps_per_loop * cfg.train.train_batch_size / (time.perf_counter() - tic))
    print(json.dumps({
        "config": name, "stage": stage, "variant": variant, **CONFIGS[name],
        "images_per_second": {"min": min(rates), "median": statistics.median(rates),
                              "max": max(rates)},
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "forward_gflops_per_image": forward_gflops(model, cfg.data.image_size)}))


def forward_gflops(model, image_size):
    """Forward FLOPs of one image (TF profiler on the inference graph), in GFLOPs."""
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants
    from tensorflow.python.profiler import model_analyzer, option_builder
    fn = tf.function(lambda x: model(x, training=False)["proj_head_output"])
    concrete = fn.get_concrete_function(tf.TensorSpec((1, image_size, image_size, 3)))
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    opts = option_builder.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = model_analyzer.profile(frozen.graph, options=opts)
    return info.total_float_ops / 1e9


def matmul_peak_gflops(dtype="float32", n=2048, repeats=5):
    """This machine's measured dense matmul rate, the yardstick for the step's efficiency."""
    import tensorflow as tf
    a = tf.random.uniform((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    mm = tf.function(lambda x: tf.matmul(x, x))
    mm(a).numpy()
    best = 0.0
    for _ in range(repeats):
        tic = time.perf_counter()
        mm(a).numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - tic) / 1e9)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="a,b,c")
    parser.add_argument("--stages", default="pretrain,finetune")
    parser.add_argument("--variants", default="float32,mixed_bfloat16,xla")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps_per_loop", type=int, default=2)
    parser.add_argument("--out", default="bench/out/throughput.json")
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "STAGE", "VARIANT"))
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.repeats, args.steps_per_loop)
        return
    results = []
    for name in args.configs.split(","):
        for stage in args.stages.split(","):
            for variant in args.variants.split(","):
                row = harness.child_row("bench.throughput", [
                    "--child", name, stage, variant, f"--repeats={args.repeats}",
                    f"--steps_per_loop={args.steps_per_loop}"],
                    {"config": name, "stage": stage, "variant": variant})
                print(json.dumps(row), flush=True)
                results.append(row)
    dtypes = sorted({_compute_dtype(v) for v in args.variants.split(",")})
    peak = {dtype: matmul_peak_gflops(dtype) for dtype in dtypes}
    for row in results:
        if "images_per_second" in row:
            flops = 3 * row["forward_gflops_per_image"] * row["images_per_second"]["median"]
            if row["stage"] == "pretrain":
                flops *= 2  # two views per image
            row["step_gflops_per_second"] = flops
            row["fraction_of_matmul_peak"] = flops / peak[_compute_dtype(row["variant"])]
    harness.write_json(args.out, {"cpu": harness.machine(), "matmul_peak_gflops": peak,
                                  "results": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
