"""Our pretraining step beside Google's original tf2 step, in the same run; writes JSON.

    python -m bench.vs_original --original=/path/to/simclr/tf2            # configs a, b, c
    python -m bench.vs_original --original=... --configs=a --rounds=3 --precisions=float32

`--original` is a checkout of google-research/simclr's `tf2/` folder (its run.py, model.py,
...); nothing of it is copied here: a child process puts that folder on sys.path, defines the
original's flags by importing its run.py, builds its `model.Model`, LARS and schedule, and
times a step written here the way the original's `single_step` is (forward, NT-Xent through
its `objective.add_contrastive_loss`, linear-eval loss, its weight decay, its metrics, one
`apply_gradients`) in its own `tf.range` loop. The original runs on tf-keras
(TF_USE_LEGACY_KERAS=1), as it needs. Its Gaussian blur is off: ours is in the input
pipeline, which neither side measures here (both get the same synthetic, already-augmented
views).

bfloat16: the original fails under the plain `mixed_bfloat16` policy (its NT-Xent subtracts a
float32 mask from bfloat16 logits, and its linear-eval loss is bfloat16 beside a float32
contrastive loss). The harness applies the one-line fix a user would make, casting both head
outputs to float32 before the losses; the JSON says so (`original_bf16_cast`).

The programs alternate in rounds (original fp32, ours fp32, original bf16, ours bf16, then
again), each measurement in a fresh process (its own peak memory), so that a machine whose
speed drifts within the hour affects every program alike. The JSON carries the CPU model and
its bfloat16/AMX flags; figures from two CPUs are not comparable.
"""
import argparse
import dataclasses
import json
import os
import resource
import statistics
import sys
import time

from bench import harness
from bench.steps import CONFIGS, run_config

PRECISIONS = ("float32", "mixed_bfloat16")
PROGRAMS = ("original", "ours")


def _original_argv(config: dict) -> list:
    return ["vs_original", "--train_mode=pretrain", "--lineareval_while_pretraining=true",
            f"--resnet_depth={config['depth']}", "--width_multiplier=1",
            f"--sk_ratio={config['sk_ratio']}", f"--image_size={config['image_size']}",
            f"--train_batch_size={config['batch']}", "--use_blur=false", "--global_bn=true",
            "--optimizer=lars", "--learning_rate=0.1", "--learning_rate_scaling=sqrt",
            "--weight_decay=1e-4", "--temperature=0.1", "--proj_head_mode=nonlinear",
            "--num_proj_layers=3", "--ft_proj_selector=0", "--warmup_epochs=0"]


def original_child(path, name, precision, repeats, steps_per_loop):
    """Times the original's pretraining step; prints one JSON line."""
    sys.path.insert(0, path)
    import tensorflow as tf
    import run as original_run  # noqa: F401  (defines the original's flags)
    import metrics as original_metrics
    import model as original_model
    import objective as original_objective
    from absl import flags
    config = CONFIGS[name]
    flags.FLAGS(_original_argv(config))
    if precision == "mixed_bfloat16":
        tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    strategy = tf.distribute.MirroredStrategy()  # as the original's main() on CPUs / GPUs
    with strategy.scope():
        model = original_model.Model(10)
        optimizer = original_model.build_optimizer(
            original_model.WarmUpAndCosineDecay(0.1, 60000))
        means = [tf.keras.metrics.Mean(n) for n in ("contrast_loss", "contrast_acc",
                                                    "contrast_entropy", "sup_loss", "sup_acc")]

    def single_step(images, labels):
        with tf.GradientTape() as tape:
            projection, supervised = model(images, training=True)
            if precision == "mixed_bfloat16":  # the harness's one-line fix
                projection, supervised = (tf.cast(t, tf.float32) for t in (projection, supervised))
            con_loss, logits, con_labels = original_objective.add_contrastive_loss(
                projection, hidden_norm=True, temperature=0.1, strategy=strategy)
            original_metrics.update_pretrain_metrics_train(*means[:3], con_loss, logits,
                                                           con_labels)
            labels = tf.concat([labels, labels], 0)
            sup_loss = original_objective.add_supervised_loss(labels=labels, logits=supervised)
            original_metrics.update_finetune_metrics_train(*means[3:], sup_loss, labels,
                                                           supervised)
            loss = con_loss + sup_loss + original_model.add_weight_decay(model, True)
            loss = loss / strategy.num_replicas_in_sync
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    batch = _synthetic(config, tf)
    labels = tf.one_hot(batch["label"], 10)

    @tf.function
    def loop(n):
        for _ in tf.range(n):
            strategy.run(single_step, (batch["image"], labels))
        return optimizer.iterations.read_value()

    _time(loop, config, repeats, steps_per_loop, tf, {
        "program": "original", "precision": precision,
        "original_bf16_cast": precision == "mixed_bfloat16"}, name)


def ours_child(name, precision, repeats, steps_per_loop):
    """Times our pretraining step (stages.pretrain's step_fn, the program's loop); one JSON line."""
    import keras
    import tensorflow as tf
    from stages import loop as loop_lib, pretrain
    cfg = dataclasses.replace(run_config(name, "pretrain", "float32", steps_per_loop),
                              precision=precision)
    keras.mixed_precision.set_global_policy(precision)
    model, optimizer = pretrain.build(cfg, 10)
    step_fn = pretrain.make_step_fn(cfg, model, optimizer, 10)
    strategy = tf.distribute.get_strategy()
    iterator = iter(tf.data.Dataset.from_tensors(_synthetic(CONFIGS[name], tf)).repeat())
    multi_step = loop_lib.make_multi_step(strategy, step_fn)

    def loop(n):
        return multi_step(iterator, n)["total_loss"]

    _time(loop, CONFIGS[name], repeats, steps_per_loop, tf,
          {"program": "ours", "precision": precision}, name)


def _synthetic(config, tf):
    s, b = config["image_size"], config["batch"]
    return {"image": tf.random.stateless_uniform((b, s, s, 6), [1, 1]),  # (b, s, s, 2 views)
            "label": tf.random.stateless_uniform((b,), [2, 2], maxval=10, dtype=tf.int32)}


def _time(loop, config, repeats, steps_per_loop, tf, row, name):
    n = tf.constant(steps_per_loop)
    _block(loop(n), tf)  # tracing and the first steps
    rates = []
    for _ in range(repeats):
        tic = time.perf_counter()
        _block(loop(n), tf)
        rates.append(steps_per_loop * config["batch"] / (time.perf_counter() - tic))
    print(json.dumps({**row, "config": name, "images_per_second": statistics.median(rates),
                      "rates": rates,
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}),
          flush=True)


def _block(result, tf):
    """Waits for the loop's work: its returned tensor is read after the last step."""
    del tf
    result.numpy()


def _measure(program, name, precision, args):
    env = {"TF_USE_LEGACY_KERAS": "1"} if program == "original" else {}
    return harness.child_row(
        "bench.vs_original", ["--child", program, name, precision,
                              f"--original={os.path.abspath(args.original)}",
                              f"--repeats={args.repeats}",
                              f"--steps_per_loop={args.steps_per_loop}"],
        {"program": program, "config": name, "precision": precision}, env)


def summarise(rows, configs, precisions) -> dict:
    """Per config: median images/s of each (program, precision) over rounds, and the ratios."""
    out = {}
    for name in configs:
        med = {}
        for program in PROGRAMS:
            for p in precisions:
                rates = [r["images_per_second"] for r in rows if r.get("config") == name
                         and r["program"] == program and r["precision"] == p
                         and "images_per_second" in r]
                if rates:
                    med[f"{program}_{p}"] = statistics.median(rates)
        entry = {"median_images_per_second": med}
        o32, ours32 = med.get("original_float32"), med.get("ours_float32")
        ours16 = med.get("ours_mixed_bfloat16")
        best_original = max((v for k, v in med.items() if k.startswith("original_")),
                            default=None)
        if o32 and ours32:
            entry["ours_fp32_vs_original_fp32"] = ours32 / o32
        if o32 and ours16:
            entry["ours_bf16_vs_original_fp32"] = ours16 / o32
        if best_original and ours16:
            entry["ours_bf16_vs_original_best"] = ours16 / best_original
        out[name] = entry
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original", required=True,
                        help="path of the original's tf2/ folder (google-research/simclr)")
    parser.add_argument("--configs", default="a,b,c")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps_per_loop", type=int, default=2)
    parser.add_argument("--out", default="bench/out/vs_original.json")
    parser.add_argument("--child", nargs=3, metavar=("PROGRAM", "CONFIG", "PRECISION"))
    args = parser.parse_args()
    if args.child:
        program, name, precision = args.child
        if program == "original":
            original_child(os.path.abspath(args.original), name, precision, args.repeats,
                           args.steps_per_loop)
        else:
            ours_child(name, precision, args.repeats, args.steps_per_loop)
        return
    if not os.path.exists(os.path.join(args.original, "model.py")):
        sys.exit(f"error: --original={args.original}: no model.py there; give the tf2/ "
                 "folder of a google-research/simclr checkout.")
    configs, precisions = args.configs.split(","), args.precisions.split(",")
    rows = []
    for round_ in range(args.rounds):
        for name in configs:
            for precision in precisions:
                for program in PROGRAMS:
                    row = {**_measure(program, name, precision, args), "round": round_,
                           "load_average": os.getloadavg()}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
                    report = _write(args.out, rows, configs, precisions)  # after every row
    print(json.dumps(report["summary"], indent=1))
    print(f"wrote {args.out}")


def _write(path, rows, configs, precisions) -> dict:
    report = {"cpu": harness.machine(), "tensorflow_keras": _versions(),
              "original_bf16_cast": "the harness casts the original's two head outputs to "
                                    "float32 before its losses (it fails under plain "
                                    "mixed_bfloat16 otherwise)",
              "rows": rows, "summary": summarise(rows, configs, precisions)}
    harness.write_json(path, report)
    return report


def _versions():
    import importlib.metadata as md
    return {p: md.version(p) for p in ("tensorflow", "keras", "tf-keras")}


if __name__ == "__main__":
    main()
