"""Tests for data/augment.py: reproducibility, statistics and pixels against oracles.

Statistics use 2000 seeds (fixed, so the tests are deterministic); tolerances are about
3.5 binomial standard deviations (sqrt(p(1-p)/2000) <= 0.011).
"""
import colorsys
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from data import augment
from tests import hang_guard

DRAWS = 2000


def _seed(i, base=7):
    return tf.stack([tf.constant(base, tf.int64), tf.cast(i, tf.int64)])  # (2,)


def _over_seeds(fn, draws=DRAWS):
    """fn(seed) for seeds (7, i), i < draws, computed in a tf.data map: stacked numpy."""
    ds = tf.data.Dataset.range(draws).map(lambda i: fn(_seed(i)), num_parallel_calls=2)
    return tf.nest.map_structure(lambda x: x.numpy(), ds.batch(draws).get_single_element())


def _random_image(shape, seed=0):
    return np.random.RandomState(seed).uniform(0.0, 1.0, shape).astype(np.float32)


# ------------------------------------------------------------------ to_rgb_float

def test_to_rgb_float_exact_values():
    gray = np.arange(15, dtype=np.uint8).reshape(3, 5) * 17  # odd size, values 0..238
    expected = np.repeat((gray.astype(np.float32) / np.float32(255))[..., None], 3, axis=-1)
    np.testing.assert_array_equal(augment.to_rgb_float(gray).numpy(), expected)
    np.testing.assert_array_equal(augment.to_rgb_float(gray[..., None]).numpy(), expected)

    rgba = np.random.RandomState(1).randint(0, 256, (7, 3, 4)).astype(np.uint8)
    out = augment.to_rgb_float(rgba).numpy()
    np.testing.assert_array_equal(out, rgba[..., :3].astype(np.float32) / np.float32(255))
    assert out.dtype == np.float32 and out[0, 0, 0] == np.float32(rgba[0, 0, 0] / 255.0)
    assert augment.to_rgb_float(np.full((1, 1, 3), 255, np.uint8)).numpy().max() == 1.0

    rgba_float = _random_image((5, 9, 4)).astype(np.float64)
    np.testing.assert_array_equal(augment.to_rgb_float(rgba_float).numpy(),
                                  rgba_float[..., :3].astype(np.float32))
    wide = np.array([[0, 65535, 13107]], np.uint16)  # 13107 / 65535 = 0.2
    np.testing.assert_allclose(augment.to_rgb_float(wide).numpy()[0, :, 1], [0.0, 1.0, 0.2])


def test_to_rgb_float_unknown_channels_in_graph():
    fn = tf.function(augment.to_rgb_float,
                     input_signature=[tf.TensorSpec([None, None, None], tf.uint8)])
    gray = np.array([[[0], [51]]], np.uint8)  # (1, 2, 1)
    np.testing.assert_allclose(fn(gray).numpy(), [[[0.0] * 3, [0.2] * 3]], atol=1e-7)
    rgba = np.array([[[255, 0, 51, 9]]], np.uint8)
    np.testing.assert_allclose(fn(rgba).numpy(), [[[1.0, 0.0, 0.2]]], atol=1e-7)


# ------------------------------------------------------------------ reproducibility

RANDOM_FNS = {
    "crop": lambda x, s: augment.random_resized_crop(x, s, 16),
    "flip": augment.random_flip,
    "jitter": lambda x, s: augment.color_jitter(x, s, 1.0),
    "distortion": lambda x, s: augment.random_color_distortion(x, s, 1.0),
    "blur": lambda x, s: augment.random_blur(x, s, 32, p=0.5),
    "pretrain": lambda x, s: augment.preprocess_for_pretrain(x, s, 16),
    "finetune": lambda x, s: augment.preprocess_for_finetune(x, s, 16),
    "two_views": lambda x, s: augment.two_views(x, s, 16),
}


@pytest.mark.parametrize("name", sorted(RANDOM_FNS))
def test_same_seed_same_pixels_eagerly_and_in_tf_data(name):
    fn = RANDOM_FNS[name]
    image = _random_image((24, 20, 3))
    seeds = [tf.constant([3, 11], tf.int32), tf.constant([5, 2], tf.int64)]
    for seed in seeds:
        tf.random.set_seed(1)  # a different global seed must not matter
        eager = fn(image, seed).numpy()
        tf.random.set_seed(2)
        again = fn(image, seed).numpy()
        ds = tf.data.Dataset.from_tensors((image, seed)).map(fn)
        in_graph = ds.get_single_element().numpy()
        np.testing.assert_array_equal(eager, again)
        np.testing.assert_array_equal(eager, in_graph)
    # Different seeds give different pixels (a coin needs a few tries: stop at the first).
    first = fn(image, tf.constant([9, 0], tf.int64)).numpy()
    assert any(not np.array_equal(first, fn(image, tf.constant([9, k], tf.int64)).numpy())
               for k in range(1, 6))


def test_same_pixels_in_another_process(tmp_path):
    script = (
        "import numpy as np, tensorflow as tf\n"
        "from data import augment\n"
        "image = np.random.RandomState(0).uniform(0, 1, (24, 20, 3)).astype(np.float32)\n"
        f"np.save(r'{tmp_path / 'views.npy'}', augment.two_views(image, tf.constant([4, 2]), 16))\n")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
               TF_ENABLE_ONEDNN_OPTS="0", PYTHONPATH=os.getcwd())
    hang_guard.run([sys.executable, "-c", script], env=env, check=True,
                   capture_output=True)
    here = augment.two_views(_random_image((24, 20, 3)), tf.constant([4, 2]), 16).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "views.npy"), here)


# ------------------------------------------------------------------ crop

KS_DRAWS = 3000
# Two-sample Kolmogorov-Smirnov at alpha = 0.001 for 3000 against 3000 draws:
# 1.95 * sqrt(2 / 3000) = 0.050. The crop before this law (area uniform in [0.08, 1], aspect
# relative to the source) was 0.12 away in area at 224 px and ~0.7 in aspect at 224 x 320.
KS_LIMIT = 1.95 * np.sqrt(2.0 / KS_DRAWS)


def _ks(x, y):
    """Two-sample Kolmogorov-Smirnov statistic: sup |F_x - F_y| over the pooled points."""
    x, y = np.sort(x), np.sort(y)
    grid = np.concatenate([x, y])
    fx = np.searchsorted(x, grid, side="right") / len(x)
    fy = np.searchsorted(y, grid, side="right") / len(y)
    return np.abs(fx - fy).max()


def _original_boxes(height, width, area_range=(0.08, 1.0), draws=KS_DRAWS):
    """The original's crop: tf.image.sample_distorted_bounding_box (the stateful op) with the
    arguments of SimCLR's data_util.crop_and_resize for a square output."""
    shape = tf.constant([height, width, 3])
    whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])
    tf.random.set_seed(11)

    def one(_):
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            shape, whole, min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=area_range, max_attempts=100, use_image_if_no_bounding_boxes=True,
            seed=5)
        return tf.stack([begin[0], begin[1], size[0], size[1]])

    return tf.data.Dataset.range(draws).map(one).batch(draws).get_single_element().numpy()


@pytest.mark.parametrize("height, width", [(224, 224), (224, 320), (32, 32)])
def test_crop_box_law_equals_the_originals(height, width):
    ours = _over_seeds(lambda s: augment.sample_crop_box(tf.constant([height, width, 3]), s),
                       draws=KS_DRAWS).astype(np.float64)
    theirs = _original_boxes(height, width).astype(np.float64)
    off_y, off_x, crop_h, crop_w = ours.T
    assert (off_y >= 0).all() and (off_x >= 0).all() and (crop_h >= 1).all()
    assert (off_y + crop_h <= height).all() and (off_x + crop_w <= width).all()
    area = lambda b: b[:, 2] * b[:, 3] / (height * width)
    aspect = lambda b: b[:, 3] / b[:, 2]  # width / height in pixels: the output is square
    assert _ks(area(ours), area(theirs)) < KS_LIMIT
    assert _ks(aspect(ours), aspect(theirs)) < KS_LIMIT
    # The original's law by hand: at least a tenth of the image (min_object_covered), and
    # 3:4 to 4:3 in pixels whatever the source's shape (one pixel of rounding at 32 px).
    assert area(ours).min() >= 0.1 - 1e-9 and area(ours).max() <= 1.0
    slack = 1.0 / min(height, width) * 4 / 3
    assert aspect(ours).min() > 0.75 - slack and aspect(ours).max() < 4 / 3 + slack
    assert 0.98 < aspect(ours).mean() < 1.08  # not the source's 320/224 = 1.43
    # Offsets: the op draws them uniformly in [0, room) (never the last position).
    offset = lambda b: (b[:, :2] / np.maximum(np.stack([height - b[:, 2], width - b[:, 3]],
                                                       axis=1), 1)).ravel()
    assert _ks(offset(ours), offset(theirs)) < KS_LIMIT
    assert offset(ours).min() == 0.0 and offset(ours).max() < 1.0


def test_crop_falls_back_to_whole_image():
    shape = tf.constant([12, 10, 3])
    for k in range(5):  # aspect ratio 2..3 never fits at area >= 0.9
        box = augment.sample_crop_box(shape, _seed(k), area_range=(0.9, 1.0),
                                      aspect_ratio_range=(2.0, 3.0))
        np.testing.assert_array_equal(box.numpy(), [0, 0, 12, 10])
    image = _random_image((12, 12, 3))
    whole = augment.random_resized_crop(image, _seed(0), 12, area_range=(0.9, 1.0),
                                        aspect_ratio_range=(2.0, 3.0))
    np.testing.assert_array_equal(whole.numpy(), image)  # same-size bicubic is the identity


def test_random_resized_crop_takes_the_sampled_box():
    image = _random_image((30, 22, 3), seed=3)
    for k in range(4):
        seed = _seed(k, base=3)
        y, x, h, w = augment.sample_crop_box(tf.shape(image), seed).numpy()
        crop = image[y:y + h, x:x + w]
        expected = np.clip(tf.image.resize(crop, [16, 16], method="bicubic").numpy(), 0, 1)
        np.testing.assert_allclose(augment.random_resized_crop(image, seed, 16).numpy(),
                                   expected, atol=1e-6)


def test_crop_of_uint8_equals_crop_of_the_converted_image():
    """Only the window is converted: the pixels of converting the whole image first."""
    image = np.random.RandomState(4).randint(0, 256, (30, 22, 3)).astype(np.uint8)
    gray = image[..., 0]  # (h, w): repeated over three channels
    for k in range(4):
        for source in (image, gray):
            ours = augment.random_resized_crop(source, _seed(k), 16).numpy()
            whole = augment.random_resized_crop(augment.to_rgb_float(source), _seed(k), 16)
            np.testing.assert_array_equal(ours, whole.numpy())


def _blocks_jpeg(shape, seed, subsampling):
    """A JPEG of random colour blocks: sharp chroma edges everywhere, the hard case for a
    decoder that upsamples the chroma of a window's edge pixels."""
    rng = np.random.RandomState(seed)
    blocks = rng.randint(0, 256, (shape[0] // 5 + 1, shape[1] // 3 + 1, shape[2]))
    pixels = np.kron(blocks, np.ones((5, 3, 1)))[:shape[0], :shape[1]].astype(np.uint8)
    return tf.io.encode_jpeg(pixels, quality=90, chroma_downsampling=subsampling)


@pytest.mark.parametrize("shape, subsampling", [((61, 83, 3), True), ((77, 50, 3), False),
                                                ((40, 57, 1), True)])
def test_decoding_only_the_crop_gives_the_crop_of_the_decoded_image(shape, subsampling):
    """The same box and the same pixels for a seed, JPEG (colour or grey) or PNG."""
    contents = _blocks_jpeg(shape, sum(shape), subsampling)
    decoded = augment.decode_rgb(contents).numpy()
    for k in range(40):
        seed = _seed(k, base=11)
        y, x, h, w = augment.sample_crop_box(tf.shape(decoded), seed).numpy()
        np.testing.assert_array_equal(augment.decode_random_crop(contents, seed).numpy(),
                                      decoded[y:y + h, x:x + w])
    png = tf.io.encode_png(decoded)  # not a JPEG: decoded whole, then cropped
    for k in range(3):
        y, x, h, w = augment.sample_crop_box(tf.shape(decoded), _seed(k)).numpy()
        np.testing.assert_array_equal(augment.decode_random_crop(png, _seed(k)).numpy(),
                                      decoded[y:y + h, x:x + w])


def test_finetune_view_from_the_encoded_file_equals_the_decoded_one():
    contents = _blocks_jpeg((90, 120, 3), 5, True)
    decoded = augment.decode_rgb(contents)
    fn = lambda c, s: augment.preprocess_for_finetune(c, s, 32, encoded=True)  # noqa: E731
    for k in range(8):
        slow = augment.preprocess_for_finetune(decoded, _seed(k), 32).numpy()
        in_graph = tf.data.Dataset.from_tensors((contents, _seed(k))).map(fn)
        np.testing.assert_array_equal(fn(contents, _seed(k)).numpy(), slow)
        np.testing.assert_array_equal(in_graph.get_single_element().numpy(), slow)


# ------------------------------------------------------------------ flip

def test_flip_rate_and_pixels():
    image = np.arange(8 * 5 * 3, dtype=np.float32).reshape(8, 5, 3) / 120.0
    outs = _over_seeds(lambda s: augment.random_flip(image, s))
    flipped = np.all(outs == image[:, ::-1], axis=(1, 2, 3))
    kept = np.all(outs == image, axis=(1, 2, 3))
    assert np.all(flipped ^ kept)
    assert abs(flipped.mean() - 0.5) < 0.04


# ------------------------------------------------------------------ colour

def _hsv_map(image, fn):
    """Applies fn(h, s, v) -> (h, s, v) to every pixel through colorsys (the oracle)."""
    out = np.empty_like(image, dtype=np.float64)
    for idx in np.ndindex(image.shape[:-1]):
        out[idx] = colorsys.hsv_to_rgb(*fn(*colorsys.rgb_to_hsv(*image[idx])))
    return out


NUMPY_JITTER = (
    lambda x, f: np.clip(x * f, 0, 1),
    lambda x, f: np.clip((x - x.mean(axis=(0, 1))) * f + x.mean(axis=(0, 1)), 0, 1),
    lambda x, f: np.clip(_hsv_map(x, lambda h, s, v: (h, min(s * f, 1.0), v)), 0, 1),
    lambda x, f: np.clip(_hsv_map(x, lambda h, s, v: ((h + f) % 1.0, s, v)), 0, 1),
)


def test_colour_ops_hand_computed():
    pixel = np.array([[[0.5, 0.25, 0.9]]], np.float32)
    np.testing.assert_allclose(augment.scale_brightness(pixel, 1.2).numpy(),
                               [[[0.6, 0.3, 1.0]]], atol=1e-6)  # 1.08 clipped to 1
    gray = augment.to_grayscale(np.array([[[0.2, 0.4, 0.6]]], np.float32)).numpy()
    np.testing.assert_allclose(gray, [[[0.36298] * 3]], atol=1e-6)  # .2989 .5870 .1140
    contrast = augment.JITTER_OPS[1](np.array([[[0.2], [0.6]]], np.float32), 0.5)
    np.testing.assert_allclose(contrast.numpy()[:, :, 0], [[0.3, 0.5]], atol=1e-6)
    orange = np.array([[[0.8, 0.4, 0.2]]], np.float32)  # h = 1/18, s = 0.75, v = 0.8
    np.testing.assert_allclose(augment.JITTER_OPS[2](orange, 0.5).numpy(),
                               [[[0.8, 0.6, 0.5]]], atol=1e-6)  # s = 0.375
    np.testing.assert_allclose(augment.JITTER_OPS[3](orange, 0.5).numpy(),
                               [[[0.2, 0.6, 0.8]]], atol=1e-6)  # h = 1/18 + 1/2
    red = np.array([[[1.0, 0.0, 0.0]]], np.float32)
    np.testing.assert_allclose(augment.JITTER_OPS[3](red, 1 / 6).numpy(),
                               [[[1.0, 1.0, 0.0]]], atol=1e-6)


def test_color_jitter_matches_numpy_in_sampled_order():
    image = _random_image((4, 5, 3), seed=4)
    fixed = np.array([1.3, 0.6, 1.5, 0.1], np.float32)
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        expected = image.astype(np.float64)
        for k in order:
            expected = NUMPY_JITTER[k](expected, fixed[k])
        got = augment.apply_color_jitter(image, tf.constant(fixed), tf.constant(order))
        np.testing.assert_allclose(got.numpy(), expected, atol=2e-5)
    for k in range(3):  # color_jitter is apply_color_jitter with the sampled parameters
        factors, order = augment.sample_color_jitter(_seed(k), 1.0)
        expected = image.astype(np.float64)
        for op in order.numpy():
            expected = NUMPY_JITTER[op](expected, factors.numpy()[op])
        np.testing.assert_allclose(augment.color_jitter(image, _seed(k), 1.0).numpy(),
                                   expected, atol=2e-5)


def test_color_jitter_parameter_statistics():
    factors, order = _over_seeds(lambda s: augment.sample_color_jitter(s, 0.5))
    # Strength 0.5: factors uniform in [0.6, 1.4], hue uniform in [-0.1, 0.1].
    low, high = np.array([0.6, 0.6, 0.6, -0.1]), np.array([1.4, 1.4, 1.4, 0.1])
    assert (factors >= low - 1e-6).all() and (factors <= high + 1e-6).all()
    rel = (factors - low) / (high - low)  # U(0, 1) each
    np.testing.assert_allclose(rel.mean(axis=0), 0.5, atol=0.02)
    np.testing.assert_allclose(np.quantile(rel, [0.1, 0.9], axis=0), [[0.1] * 4, [0.9] * 4],
                               atol=0.03)
    assert (np.sort(order, axis=1) == np.arange(4)).all()  # permutations
    first = np.bincount(order[:, 0], minlength=4) / DRAWS
    np.testing.assert_allclose(first, 0.25, atol=0.035)


def test_color_distortion_rates():
    image = _random_image((4, 4, 3), seed=5)
    gray_image = augment.to_grayscale(image).numpy()
    outs = _over_seeds(lambda s: augment.random_color_distortion(image, s, 1.0))
    is_gray = np.all((outs[..., 0] == outs[..., 1]) & (outs[..., 1] == outs[..., 2]),
                     axis=(1, 2))
    untouched = np.where(is_gray, np.all(np.abs(outs - gray_image) < 1e-6, axis=(1, 2, 3)),
                         np.all(outs == image, axis=(1, 2, 3)))
    jittered = ~untouched
    assert abs(jittered.mean() - 0.8) < 0.035
    assert abs(is_gray.mean() - 0.2) < 0.03
    assert abs((jittered & is_gray).mean() - 0.16) < 0.03  # independent decisions


@pytest.mark.parametrize("mode", ["rgb", "gray"])
def test_strength_zero_means_no_colour_op(mode):
    # The original's preprocess_for_train skips random_color_jitter (greyscale included) when
    # color_jitter_strength <= 0; before, 20% of views still turned grey.
    image = _random_image((6, 5, 3), seed=8)
    outs = _over_seeds(lambda s: augment.random_color_distortion(image, s, 0.0, mode),
                       draws=400)
    np.testing.assert_array_equal(outs, np.broadcast_to(image, outs.shape))
    views = _over_seeds(lambda s: augment.preprocess_for_pretrain(
        image, s, 5, color_jitter_strength=0.0, use_blur=False, color_distortion=mode,
        area_range=(1.0, 1.0)), draws=200)
    unflipped = np.clip(tf.image.resize(image, [5, 5], method="bicubic").numpy(), 0, 1)
    same = [np.abs(v - unflipped).max() < 1e-6 or np.abs(v - unflipped[:, ::-1]).max() < 1e-6
            for v in views]
    assert all(same)  # only the flip acts


# ------------------------------------------------------------------ blur

def _numpy_blur(image, sigma, kernel_size, mode):
    """Explicit 2-D convolution with outer(g, g); mode is numpy's pad mode."""
    radius = kernel_size // 2
    g = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2))
    kernel = np.outer(g, g) / g.sum() ** 2
    padded = np.pad(image.astype(np.float64), [(radius, radius), (radius, radius), (0, 0)],
                    mode=mode)
    out = np.zeros(image.shape)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            window = padded[i:i + 2 * radius + 1, j:j + 2 * radius + 1]  # (k, k, c)
            out[i, j] = np.einsum("ab,abc->c", kernel, window)
    return out


def test_gaussian_kernel_sums_to_one():
    kernel = augment.gaussian_kernel(1.5, 7).numpy()
    np.testing.assert_allclose(kernel.sum(), 1.0, atol=1e-6)
    g = np.exp(-np.arange(-3, 4) ** 2 / (2 * 1.5 ** 2))
    np.testing.assert_allclose(kernel, g / g.sum(), atol=1e-7)
    assert [augment.blur_kernel_size(s) for s in (9, 32, 40, 224)] == [1, 3, 5, 23]


@pytest.mark.parametrize("padding,mode", [("REFLECT", "reflect"), ("SAME", "constant")])
@pytest.mark.parametrize("sigma,kernel_size", [(1.3, 5), (0.7, 3), (2.0, 4)])
def test_gaussian_blur_matches_numpy(padding, mode, sigma, kernel_size):
    image = _random_image((9, 11, 3), seed=6)
    got = augment.gaussian_blur(image, sigma, kernel_size, padding=padding).numpy()
    odd = kernel_size // 2 * 2 + 1
    np.testing.assert_allclose(got, _numpy_blur(image, sigma, odd, mode), atol=1e-6)


def test_blur_rate_sigma_and_pixels():
    apply, sigma = _over_seeds(lambda s: augment.sample_blur(s, 0.5))
    assert abs(apply.mean() - 0.5) < 0.04
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0
    np.testing.assert_allclose(np.quantile(sigma, [0.1, 0.5, 0.9]), [0.29, 1.05, 1.81],
                               atol=0.06)  # uniform on [0.1, 2]
    image = _random_image((32, 32, 3), seed=7)
    for k in range(6):
        seed = _seed(k)
        applied, s = augment.sample_blur(seed)
        expected = _numpy_blur(image, float(s), 3, "reflect") if applied else image
        np.testing.assert_allclose(augment.random_blur(image, seed, 32).numpy(), expected,
                                   atol=1e-6)


# ------------------------------------------------------------------ eval crop

def _coordinate_image(height, width):
    """Channel 0 encodes the row (y / 32), channel 1 the column (x / 32)."""
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([y / 32, x / 32, np.full(y.shape, 0.5)], axis=-1).astype(np.float32)


def test_eval_center_crop_hand_computed():
    image = _coordinate_image(16, 24)
    # side = rint(0.875 * 16) = 14; offsets ((16 - 14) + 1) // 2 = 1, ((24 - 14) + 1) // 2 = 5.
    out = augment.preprocess_for_eval(image, 14).numpy()
    np.testing.assert_array_equal(out, image[1:15, 5:19])
    # Halving 14 -> 7: output pixel i samples crop position 2i + 0.5, which bicubic
    # interpolation of a linear ramp reproduces wherever its 4 taps are inside (1 <= i <= 5).
    out = augment.preprocess_for_eval(image, 7).numpy()
    inner = np.arange(1, 6)
    np.testing.assert_allclose(out[1:6, 1:6, 0], np.repeat(((1 + 2 * inner + 0.5) / 32)[:, None],
                                                             5, axis=1), atol=1e-6)
    np.testing.assert_allclose(out[1:6, 1:6, 1], np.repeat(((5 + 2 * inner + 0.5) / 32)[None],
                                                             5, axis=0), atol=1e-6)
    # Odd sizes: side = rint(0.5 * 15) = 8 (half to even); offsets (7 + 1) // 2 = 4, 13 // 2 = 6.
    odd = _coordinate_image(15, 20)
    out = augment.preprocess_for_eval(odd, 8, crop_proportion=0.5).numpy()
    np.testing.assert_array_equal(out, odd[4:12, 6:14])


def test_eval_without_center_crop_only_resizes():
    image = (np.arange(12 * 12 * 3) % 256).astype(np.uint8).reshape(12, 12, 3)
    out = augment.preprocess_for_eval(image, 12, center_crop=False).numpy()
    np.testing.assert_array_equal(out, image.astype(np.float32) / np.float32(255))
    ramp = _coordinate_image(8, 8)
    out = augment.preprocess_for_eval(ramp, 16, center_crop=False).numpy()
    # Doubling: output pixel i samples input position (i + 0.5) / 2 - 0.5.
    inner = np.arange(4, 12)  # taps inside the image
    np.testing.assert_allclose(out[4:12, 6, 0], ((inner + 0.5) / 2 - 0.5) / 32, atol=1e-6)


# ------------------------------------------------------------------ full pipelines

def test_pretrain_changes_colour_and_finetune_never_does():
    colour = np.array([0.2, 0.5, 0.7], np.float32)
    image = np.tile(colour, (20, 24, 1))  # constant: crop, flip and blur cannot change it
    pre = _over_seeds(lambda s: augment.preprocess_for_pretrain(image, s, 8), draws=600)
    changed = ~np.all(np.abs(pre - colour) < 1e-5, axis=(1, 2, 3))
    assert abs(changed.mean() - (1 - 0.2 * 0.8)) < 0.05  # not (no jitter and no gray)
    fine = _over_seeds(lambda s: augment.preprocess_for_finetune(image, s, 8), draws=200)
    np.testing.assert_allclose(fine, np.broadcast_to(colour, fine.shape), atol=1e-5)


def test_two_views_are_pretrain_views_of_split_seeds():
    image = (_random_image((20, 18, 3), seed=8) * 255).astype(np.uint8)
    seed = tf.constant([6, 1], tf.int64)
    views = augment.two_views(image, seed, 16, color_jitter_strength=0.5).numpy()
    seed_1, seed_2 = tf.random.experimental.stateless_split(seed, 2)
    for view, view_seed in ((views[..., :3], seed_1), (views[..., 3:], seed_2)):
        np.testing.assert_array_equal(
            view, augment.preprocess_for_pretrain(image, view_seed, 16, 0.5).numpy())
    assert np.abs(views[..., :3] - views[..., 3:]).max() > 0.05
    assert views.min() >= 0.0 and views.max() <= 1.0


# ------------------------------------------------------------------ crop area range (flag)

@pytest.mark.parametrize("low, high", [(0.3, 0.7), (0.5, 0.75), (0.05, 0.5)])
def test_crop_area_range_sets_the_ops_area_range(low, high):
    # --crop_area_range is the op's area_range; min_object_covered keeps crops >= 0.1.
    side = 200
    ours = _over_seeds(lambda s: augment.sample_crop_box(tf.constant([side, side, 1]), s,
                                                         area_range=(low, high)),
                       draws=KS_DRAWS).astype(np.float64)
    theirs = _original_boxes(side, side, area_range=(low, high)).astype(np.float64)
    area = lambda b: b[:, 2] * b[:, 3] / side ** 2
    assert _ks(area(ours), area(theirs)) < KS_LIMIT
    assert area(ours).min() >= max(low, 0.1) - 1e-9 and area(ours).max() <= high + 1e-9
    assert area(ours).min() < max(low, 0.1) + 0.02 and area(ours).max() > high - 0.02


def test_crop_area_range_reaches_every_training_view():
    image = (_random_image((28, 28, 1), seed=2) * 255).astype(np.uint8)
    seed = tf.constant([3, 4], tf.int64)
    whole = {"pretrain": lambda r: augment.preprocess_for_pretrain(
                 image, seed, 28, use_blur=False, color_distortion="none", area_range=r),
             "finetune": lambda r: augment.preprocess_for_finetune(image, seed, 28,
                                                                   area_range=r)}
    for name, fn in whole.items():
        # Area 1 leaves only the whole image (maybe flipped); the default range crops.
        got = fn((1.0, 1.0)).numpy()[..., 0]
        full = image[..., 0] / 255.0
        assert (np.abs(got - full).max() < 1e-5 or np.abs(got - full[:, ::-1]).max() < 1e-5), name
        assert np.abs(fn((0.08, 1.0)).numpy()[..., 0] - got).max() > 0.05, name


# ------------------------------------------------------------------ colour distortion modes

def _numpy_gray_jitter(x, factors, order):
    ops = (lambda x, f: np.clip(x * f, 0, 1),
           lambda x, f: np.clip((x - x.mean(axis=(0, 1))) * f + x.mean(axis=(0, 1)), 0, 1),
           lambda x, f: np.clip(x ** f, 0, 1))
    for k in order:
        x = ops[k](x, factors[k])
    return x


def test_gamma_hand_computed():
    pixel = np.array([[[0.25, 0.0, 1.0]]], np.float32)
    np.testing.assert_allclose(augment.adjust_gamma(pixel, 0.5).numpy(), [[[0.5, 0.0, 1.0]]],
                               atol=1e-6)
    np.testing.assert_allclose(augment.adjust_gamma(pixel, 2.0).numpy(),
                               [[[0.0625, 0.0, 1.0]]], atol=1e-6)


def test_gray_jitter_matches_numpy_in_sampled_order():
    image = np.tile(_random_image((5, 6, 1), seed=9), (1, 1, 3))  # grey, 3 channels
    fixed = np.array([1.3, 0.6, 0.8], np.float32)
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        got = augment.apply_jitter(image, tf.constant(fixed), tf.constant(order),
                                   augment.GRAY_JITTER_OPS)
        np.testing.assert_allclose(got.numpy(), _numpy_gray_jitter(
            image.astype(np.float64), fixed, order), atol=2e-5)
    for k in range(3):
        factors, order = augment.sample_gray_jitter(_seed(k), 0.5)
        np.testing.assert_allclose(augment.gray_jitter(image, _seed(k), 0.5).numpy(),
                                   _numpy_gray_jitter(image.astype(np.float64),
                                                      factors.numpy(), order.numpy()),
                                   atol=2e-5)


def test_gray_jitter_parameter_statistics():
    factors, order = _over_seeds(lambda s: augment.sample_gray_jitter(s, 0.5))
    # Strength 0.5: brightness, contrast U(0.6, 1.4); log gamma U(-log 1.4, log 1.4).
    rel = np.stack([(factors[:, 0] - 0.6) / 0.8, (factors[:, 1] - 0.6) / 0.8,
                    (np.log(factors[:, 2]) + np.log(1.4)) / (2 * np.log(1.4))], axis=1)
    assert rel.min() >= -1e-5 and rel.max() <= 1 + 1e-5
    np.testing.assert_allclose(rel.mean(axis=0), 0.5, atol=0.02)
    np.testing.assert_allclose(np.quantile(rel, [0.1, 0.9], axis=0), [[0.1] * 3, [0.9] * 3],
                               atol=0.03)
    assert (np.sort(order, axis=1) == np.arange(3)).all()
    np.testing.assert_allclose(np.bincount(order[:, 0], minlength=3) / DRAWS, 1 / 3, atol=0.04)


def test_gray_mode_rates_none_mode_and_auto():
    image = np.tile(_random_image((4, 4, 1), seed=5), (1, 1, 3))
    outs = _over_seeds(lambda s: augment.random_color_distortion(image, s, 1.0, mode="gray"))
    assert np.all((outs[..., 0] == outs[..., 1]) & (outs[..., 1] == outs[..., 2]))  # stays grey
    jittered = ~np.all(outs == image, axis=(1, 2, 3))
    assert abs(jittered.mean() - 0.8) < 0.035
    none = _over_seeds(lambda s: augment.random_color_distortion(image, s, 1.0, mode="none"),
                       draws=50)
    np.testing.assert_array_equal(none, np.broadcast_to(image, none.shape))
    assert augment.resolve_color_distortion("auto", 1) == "gray"
    assert augment.resolve_color_distortion("auto", 3) == "rgb"
    assert augment.resolve_color_distortion("rgb", 1) == "rgb"
    with pytest.raises(ValueError, match="color distortion"):
        augment.resolve_color_distortion("sepia", 3)
    # 'auto' decides from the image as given: one channel -> grey jitter, three -> SimCLR's.
    grey = (_random_image((20, 20, 1), seed=1) * 255).astype(np.uint8)
    rgb = (_random_image((20, 20, 3), seed=1) * 255).astype(np.uint8)
    for img, mode in ((grey, "gray"), (grey[..., 0], "gray"), (rgb, "rgb")):
        for k in range(4):
            np.testing.assert_array_equal(
                augment.preprocess_for_pretrain(img, _seed(k), 16, 0.5).numpy(),
                augment.preprocess_for_pretrain(img, _seed(k), 16, 0.5,
                                                color_distortion=mode).numpy())
