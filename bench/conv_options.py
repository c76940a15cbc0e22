"""Convolution options that did not make the step faster on this CPU, measured; writes JSON.

The training step's time is ~80% convolutions (TensorFlow profiler, README "Speed options").
Two ways to run the same convolutions differently, each against the layout the program uses,
forward + backward (input and filter gradients) of one 3x3 convolution at ResNet-18 sizes for
batch 256 x 2 views, the variants interleaved so that machine noise hits both alike:

- data format: NHWC (ours, TensorFlow's CPU default) vs NCHW;
- stride-2 padding: explicit `tf.pad` then VALID (ours, the original code's "fixed padding")
  vs the convolution's own explicit padding argument (no separate Pad op, no Slice gradient).

    python -m bench.conv_options                 # writes bench/out/conv_options.json
"""
import argparse
import json
import statistics
import time

import tensorflow as tf

from bench import harness


def _time_once(fn):
    tic = time.perf_counter()
    fn().numpy()
    return time.perf_counter() - tic


def _train_step(conv, x, w):
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y = conv(x, w)
            loss = tf.reduce_sum(y * y)
        gx, gw = tape.gradient(loss, [x, w])
        return tf.reduce_sum(gx) + tf.reduce_sum(gw)
    return step


def data_format_case(batch, size, channels):
    """NHWC vs NCHW, 3x3 stride 1, same values (NCHW gets the transposed input)."""
    x_nhwc = tf.Variable(tf.random.stateless_normal((batch, size, size, channels), (1, 2)))
    x_nchw = tf.Variable(tf.transpose(x_nhwc, (0, 3, 1, 2)))
    w = tf.Variable(tf.random.stateless_normal((3, 3, channels, channels), (3, 4)) * 0.05)
    flops = 3 * 2 * batch * size * size * channels * channels * 9  # forward + 2 gradients
    return flops, {
        "NHWC": _train_step(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"), x_nhwc, w),
        "NCHW": _train_step(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME", data_format="NCHW"),
                            x_nchw, w),
    }


def padding_case(batch, size, channels):
    """Stride-2 3x3 convolution (channels -> 2 x channels): pad + VALID vs explicit padding."""
    x = tf.Variable(tf.random.stateless_normal((batch, size, size, channels), (5, 6)))
    w = tf.Variable(tf.random.stateless_normal((3, 3, channels, 2 * channels), (7, 8)) * 0.05)
    pads = [[0, 0], [1, 1], [1, 1], [0, 0]]
    out = size // 2
    flops = 3 * 2 * batch * out * out * channels * 2 * channels * 9
    return flops, {
        "pad_then_valid": _train_step(lambda x, k: tf.nn.conv2d(tf.pad(x, pads), k, 2, "VALID"),
                                      x, w),
        "explicit_padding": _train_step(lambda x, k: tf.nn.conv2d(x, k, 2, pads), x, w),
    }


def measure(case, repeats):
    flops, variants = case
    for fn in variants.values():  # trace and warm up
        fn().numpy()
        fn().numpy()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(_time_once(fn))
    return {name: {"median_ms": 1000 * statistics.median(t), "min_ms": 1000 * min(t),
                   "gflops_per_second": flops / min(t) / 1e9}
            for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/out/conv_options.json")
    args = parser.parse_args()
    results = {}
    for size, channels in ((32, 64), (16, 128), (8, 256), (4, 512)):
        results[f"data_format_{size}px_{channels}ch"] = measure(
            data_format_case(args.batch, size, channels), args.repeats)
        print(json.dumps({f"data_format_{size}px_{channels}ch":
                          results[f"data_format_{size}px_{channels}ch"]}), flush=True)
    for size, channels in ((32, 64), (16, 128), (8, 256)):
        key = f"stride2_padding_{size}px_{channels}ch"
        results[key] = measure(padding_case(args.batch, size, channels), args.repeats)
        print(json.dumps({key: results[key]}), flush=True)
    harness.write_json(args.out, {"cpu": harness.machine(), "batch": args.batch,
                                  "tensorflow": tf.__version__, "results": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
