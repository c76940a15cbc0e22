"""SimCLR augmentations of one image, reproducible from an explicit seed.

Every random decision is drawn with a stateless op from a `seed` of shape (2,), int32 or
int64, which each function splits into sub-seeds with
`tf.random.experimental.stateless_split`. The same seed therefore gives the same pixels
eagerly, inside `tf.data.Dataset.map` and in another process, whatever the global seed.

The building blocks (`random_resized_crop`, `random_flip`, colour ops, blur) take a float32
RGB image in [0, 1] of shape (h, w, 3), as made by `to_rgb_float`; the `preprocess_*` and
`two_views` entry points accept anything `to_rgb_float` accepts.

Choices, following SimCLR v2's `data_util.py` unless said otherwise:
- Crop: Inception-style random resized crop with SimCLR's law: the box is drawn by
  `tf.image.stateless_sample_distorted_bounding_box` (the stateless twin of the op the
  original's `crop_and_resize` calls) with the original's arguments: the whole image as the
  bounding box, `min_object_covered=0.1`, `aspect_ratio_range=(3/4, 4/3)` relative to the
  *output* (square, so 3:4 to 4:3 in pixels whatever the source's shape),
  `area_range=(0.08, 1.0)` (`--crop_area_range`) and 100 attempts; the op draws the aspect
  ratio uniformly, then the crop height uniformly between the heights of the smallest and
  largest allowed areas, so the area is not uniform (mean ~0.42 at 224 px). When no attempt
  fits, the op returns the whole image, as in the original. Bicubic resize. The crop's area
  and aspect distributions are tested against the original op's (tests/data/test_augment.py).
- Colour: brightness multiplies by a factor uniform in [1-b, 1+b] (SimCLR v2); contrast,
  saturation and hue are `tf.image.adjust_*`; applied in a random order, clipped after each.
  On single-channel sources (Fashion-MNIST) saturation, hue and the greyscale op do nothing,
  so `color_distortion='gray'` (chosen by 'auto' for them) jitters what a grey image has:
  brightness, contrast and gamma (x ** g, g log-uniform in [1/(1+0.8s), 1+0.8s]: a monotone
  change of the tone curve, as a different exposure or sensor response would make), in a
  random order, with probability 0.8, and no greyscale step.
- Blur: separable Gaussian, reflect padding by default; SimCLR zero-pads (`padding='SAME'`),
  which darkens the border.
"""
import functools

import tensorflow as tf

from data.config import CROP_MIN_OBJECT_COVERED

CROP_AREA_RANGE = (0.08, 1.0)
CROP_ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
BLUR_SIGMA_RANGE = (0.1, 2.0)
JITTER_PROBABILITY = 0.8
GRAYSCALE_PROBABILITY = 0.2
COLOR_DISTORTIONS = ("auto", "rgb", "gray", "none")


def _sub_seeds(seed, num):
    """Splits a (2,) seed into `num` independent (2,) seeds of the same dtype."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, num), num=num)  # num x (2,)


def _coin(seed, p):
    """A bool scalar, True with probability `p`."""
    return tf.random.stateless_uniform([], seed) < p


def _random_apply(fn, image, seed, p):
    """fn(image) with probability `p`, else the image unchanged."""
    return tf.cond(_coin(seed, p), lambda: fn(image), lambda: tf.identity(image))


def _resize(image, size):
    """Bicubic resize to (size, size), clipped back to [0, 1] (bicubic overshoots)."""
    image = tf.image.resize(image, [size, size], method=tf.image.ResizeMethod.BICUBIC)
    return tf.clip_by_value(image, 0.0, 1.0)


def to_rgb_float(image):
    """Converts any image to float32 RGB in [0, 1].

    Args:
      image: (h, w), (h, w, 1), (h, w, 3) or (h, w, 4). Integer images are divided by their
        dtype's maximum (255 for uint8); float images are assumed to be in [0, 1] already.
        Grayscale is repeated over three channels; an alpha channel is dropped.

    Returns:
      (h, w, 3) float32.
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[:, :, tf.newaxis]  # (h, w, 1)
    if image.dtype.is_integer:
        image = tf.cast(image, tf.float32) / float(image.dtype.max)
    else:
        image = tf.cast(image, tf.float32)
    channels = image.shape[-1]
    if channels == 1:
        image = tf.tile(image, [1, 1, 3])  # (h, w, 3)
    elif channels in (3, 4):
        image = image[:, :, :3]  # (h, w, 3)
    elif channels is None:  # e.g. tf.io.decode_image without `channels`
        image = tf.cond(tf.shape(image)[-1] == 1,
                        lambda: tf.tile(image[:, :, :1], [1, 1, 3]),
                        lambda: image[:, :, :3])
    else:
        raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")
    return tf.ensure_shape(image, [None, None, 3])


def sample_crop_box(shape, seed, area_range=CROP_AREA_RANGE,
                    aspect_ratio_range=CROP_ASPECT_RATIO_RANGE, max_attempts=100,
                    min_object_covered=CROP_MIN_OBJECT_COVERED):
    """Draws the box of a random resized crop, as SimCLR's `crop_and_resize` does.

    Args:
      shape: int tensor (3,), the image shape (height, width, channels).
      seed: (2,) int32/int64.
      area_range: bounds of the crop area as a fraction of the image area.
      aspect_ratio_range: bounds of the crop's width / height in pixels (the original passes
        the output's aspect ratio times (3/4, 4/3); our outputs are square).
      max_attempts: candidates to draw before falling back to the whole image.
      min_object_covered: the least fraction of the image the crop must cover (the
        original's 0.1: no crop is smaller than a tenth of the image, whatever `area_range`).

    Returns:
      (4,) int32: offset_y, offset_x, crop_height, crop_width.
    """
    shape = tf.cast(shape[:3], tf.int32)
    whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32)  # (1, 1, 4) the image itself
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=whole, seed=seed, min_object_covered=min_object_covered,
        aspect_ratio_range=list(aspect_ratio_range), area_range=list(area_range),
        max_attempts=max_attempts, use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])  # (4,)


def _with_channel_axis(image):
    """(h, w) -> (h, w, 1); other ranks unchanged."""
    image = tf.convert_to_tensor(image)
    return image[:, :, tf.newaxis] if image.shape.rank == 2 else image


def _crop(image, box):
    """The (box[2], box[3], c) window of (h, w, c) `image` at offset (box[0], box[1])."""
    return tf.slice(image, [box[0], box[1], 0], [box[2], box[3], -1])


def random_resized_crop(image, seed, size, area_range=CROP_AREA_RANGE,
                        aspect_ratio_range=CROP_ASPECT_RATIO_RANGE, max_attempts=100):
    """Crops a box from `sample_crop_box` and resizes it bicubically.

    Only the crop is converted by `to_rgb_float`: the same pixels as converting the whole
    image first, for a fraction of the work.

    Args:
      image: (h, w, c) or (h, w), anything `to_rgb_float` accepts (uint8 as decoded, or
        float32 in [0, 1]).
      seed: (2,) int32/int64.
      size: output side in pixels.
      area_range, aspect_ratio_range, max_attempts: as in `sample_crop_box`.

    Returns:
      (size, size, 3) float32 in [0, 1].
    """
    image = _with_channel_axis(image)
    box = sample_crop_box(tf.shape(image), seed, area_range, aspect_ratio_range, max_attempts)
    return _resize(to_rgb_float(_crop(image, box)), size)


def decode_rgb(contents):
    """JPEG, PNG, GIF or BMP bytes -> (h, w, 3) uint8 (grey repeated, alpha dropped)."""
    return tf.io.decode_image(contents, channels=3, expand_animations=False)


def decode_random_crop(contents, seed, area_range=CROP_AREA_RANGE,
                       aspect_ratio_range=CROP_ASPECT_RATIO_RANGE, max_attempts=100):
    """The window `random_resized_crop` would take of decode_rgb(contents), before resizing.

    A JPEG is decoded only inside the window (`tf.io.decode_and_crop_jpeg`), its box drawn
    from the shape in the file's header, which is the decoded image's shape: the same seed
    gives the same box, and the same pixels, as decoding first. Other formats are decoded
    whole, then cropped.

    Args:
      contents: scalar string, the encoded image.
      seed, area_range, aspect_ratio_range, max_attempts: as in `random_resized_crop`.

    Returns:
      (crop_height, crop_width, 3) uint8.
    """
    def jpeg_window():
        height_width = tf.image.extract_jpeg_shape(contents)[:2]  # header only
        box = sample_crop_box(tf.concat([height_width, [3]], 0), seed, area_range,
                              aspect_ratio_range, max_attempts)
        # A pixel more on each side (inside the image): the decoder upsamples the chroma of
        # an edge pixel from its neighbour's sample, which must therefore be decoded too.
        start = tf.maximum(box[:2] - 1, 0)
        end = tf.minimum(box[:2] + box[2:] + 1, height_width)
        wider = tf.io.decode_and_crop_jpeg(contents, tf.concat([start, end - start], 0),
                                           channels=3)
        return _crop(wider, tf.concat([box[:2] - start, box[2:]], 0))

    def decoded_window():
        image = decode_rgb(contents)
        return _crop(image, sample_crop_box(tf.shape(image), seed, area_range,
                                            aspect_ratio_range, max_attempts))
    return tf.ensure_shape(tf.cond(tf.io.is_jpeg(contents), jpeg_window, decoded_window),
                           [None, None, 3])


def random_flip(image, seed):
    """Flips (h, w, c) left-right with probability 0.5."""
    return tf.cond(_coin(seed, 0.5), lambda: tf.reverse(image, axis=[1]),
                   lambda: tf.identity(image))


def scale_brightness(image, factor):
    """Multiplies every value by `factor` (SimCLR v2 brightness), clipped to [0, 1]."""
    return tf.clip_by_value(image * factor, 0.0, 1.0)


def _clipped(adjust):
    """Wraps a tf.image.adjust_* op so that its result is clipped to [0, 1]."""
    def op(image, value):
        return tf.clip_by_value(adjust(image, value), 0.0, 1.0)
    return op


# Jitter ops in the order of `sample_color_jitter`'s factors; each clips its result.
JITTER_OPS = (scale_brightness, _clipped(tf.image.adjust_contrast),
              _clipped(tf.image.adjust_saturation), _clipped(tf.image.adjust_hue))


def sample_color_jitter(seed, strength):
    """Draws the four jitter parameters and the order in which to apply them.

    Args:
      seed: (2,) int32/int64.
      strength: s; brightness, contrast and saturation factors are uniform in
        [max(1 - 0.8s, 0), 1 + 0.8s] and the hue shift uniform in [-0.2s, 0.2s].

    Returns:
      factors: (4,) float32, [brightness, contrast, saturation, hue shift].
      order: (4,) int32, a permutation of range(4): order[i] is the op applied i-th.
    """
    strong, hue = 0.8 * strength, 0.2 * strength
    low = tf.constant([max(1.0 - strong, 0.0)] * 3 + [-hue], tf.float32)  # (4,)
    high = tf.constant([1.0 + strong] * 3 + [hue], tf.float32)  # (4,)
    factor_seed, order_seed = _sub_seeds(seed, 2)
    factors = low + (high - low) * tf.random.stateless_uniform([4], factor_seed)
    order = tf.argsort(tf.random.stateless_uniform([4], order_seed))  # uniform permutation
    return factors, tf.cast(order, tf.int32)


def apply_color_jitter(image, factors, order):
    """Applies the `JITTER_OPS` with `factors` in the given `order` (see sample_color_jitter)."""
    return apply_jitter(image, factors, order, JITTER_OPS)


def adjust_gamma(image, gamma):
    """image ** gamma (gamma > 0), clipped to [0, 1]; 0 and 1 stay fixed."""
    return tf.clip_by_value(tf.pow(image, gamma), 0.0, 1.0)


# Grey jitter ops in the order of `sample_gray_jitter`'s factors; each clips its result.
GRAY_JITTER_OPS = (scale_brightness, _clipped(tf.image.adjust_contrast), adjust_gamma)


def sample_gray_jitter(seed, strength):
    """Draws brightness, contrast and gamma and the order in which to apply them.

    Args:
      seed: (2,) int32/int64.
      strength: s; brightness and contrast factors are uniform in [max(1 - 0.8s, 0),
        1 + 0.8s] (as in `sample_color_jitter`); gamma is log-uniform in
        [1 / (1 + 0.8s), 1 + 0.8s], so darkening and lightening are equally likely.

    Returns:
      factors: (3,) float32, [brightness, contrast, gamma].
      order: (3,) int32, a permutation of range(3).
    """
    strong = 0.8 * strength
    factor_seed, order_seed = _sub_seeds(seed, 2)
    u = tf.random.stateless_uniform([3], factor_seed)  # (3,) in [0, 1)
    low, high = max(1.0 - strong, 0.0), 1.0 + strong
    log_gamma = tf.math.log(high) * (2.0 * u[2] - 1.0)  # uniform in [-log(high), log(high)]
    factors = tf.stack([low + (high - low) * u[0], low + (high - low) * u[1],
                        tf.exp(log_gamma)])
    order = tf.argsort(tf.random.stateless_uniform([3], order_seed))
    return factors, tf.cast(order, tf.int32)


def apply_jitter(image, factors, order, ops):
    """Applies `ops` with `factors` in the given `order` (ops[k] takes factors[k])."""
    for i in range(len(ops)):
        branches = [functools.partial(op, image, factors[k]) for k, op in enumerate(ops)]
        image = tf.switch_case(order[i], branches)
    return image


def gray_jitter(image, seed, strength):
    """Random brightness, contrast and gamma in a random order (see `sample_gray_jitter`).

    Args:
      image: (h, w, c) float32 in [0, 1].
      seed: (2,) int32/int64.
      strength: jitter strength s; 0 returns the image.

    Returns:
      (h, w, c) float32 in [0, 1].
    """
    if strength == 0:
        return image
    factors, order = sample_gray_jitter(seed, strength)
    return apply_jitter(image, factors, order, GRAY_JITTER_OPS)


def color_jitter(image, seed, strength):
    """Random brightness, contrast, saturation and hue in a random order.

    Args:
      image: (h, w, 3) float32 in [0, 1].
      seed: (2,) int32/int64.
      strength: jitter strength s (SimCLR's `color_jitter_strength`); 0 returns the image.

    Returns:
      (h, w, 3) float32 in [0, 1].
    """
    if strength == 0:  # SimCLR skips ops whose range is empty
        return image
    factors, order = sample_color_jitter(seed, strength)
    return apply_color_jitter(image, factors, order)


def to_grayscale(image):
    """ITU-R 601 luma (tf.image.rgb_to_grayscale) repeated over 3 channels: (h, w, 3)."""
    return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])  # (h, w, 3)


def resolve_color_distortion(mode, channels):
    """'auto' -> 'gray' for a single-channel source image (`channels` == 1), else 'rgb'."""
    if mode not in COLOR_DISTORTIONS:
        raise ValueError(f"color distortion must be one of {COLOR_DISTORTIONS}, got {mode!r}")
    if mode == "auto":
        return "gray" if channels == 1 else "rgb"
    return mode


def _source_channels(image):
    """Static channel count of an image as given (rank 2: 1), before `to_rgb_float`."""
    shape = tf.convert_to_tensor(image).shape
    return 1 if shape.rank == 2 else shape[-1]


def random_color_distortion(image, seed, strength, mode="rgb"):
    """Colour distortion of SimCLR ('rgb') or its greyscale counterpart ('gray').

    'rgb': colour jitter with probability 0.8, then grayscale with probability 0.2.
    'gray': `gray_jitter` with probability 0.8 (the same seeds as 'rgb'). 'none', or a
    strength <= 0, leaves the image unchanged (the original skips every colour op then).

    Args:
      image: (h, w, 3) float32 in [0, 1].
      seed: (2,) int32/int64.
      strength: colour jitter strength.
      mode: 'rgb', 'gray' or 'none' (resolve 'auto' with `resolve_color_distortion`).

    Returns:
      (h, w, 3) float32 in [0, 1].
    """
    jitter_seed, jitter_coin, gray_coin = _sub_seeds(seed, 3)
    if mode == "none" or strength <= 0:  # the original: no colour op at all, greyscale included
        return image
    if mode == "gray":
        return _random_apply(lambda x: gray_jitter(x, jitter_seed, strength), image,
                             jitter_coin, JITTER_PROBABILITY)
    if mode != "rgb":
        raise ValueError(f"color distortion must be 'rgb', 'gray' or 'none', got {mode!r}")
    image = _random_apply(lambda x: color_jitter(x, jitter_seed, strength), image,
                          jitter_coin, JITTER_PROBABILITY)
    return _random_apply(to_grayscale, image, gray_coin, GRAYSCALE_PROBABILITY)


def gaussian_kernel(sigma, kernel_size):
    """1-D Gaussian weights of odd length `kernel_size`, summing to 1: (kernel_size,) float32."""
    radius = kernel_size // 2
    x = tf.range(-radius, radius + 1, dtype=tf.float32)  # (kernel_size,)
    sigma = tf.cast(sigma, tf.float32)
    weights = tf.exp(-tf.square(x) / (2.0 * tf.square(sigma)))
    return weights / tf.reduce_sum(weights)


def _reflect_pad(image, radius, axis):
    """Mirrors `radius` rows (axis 0) or columns (axis 1) at both ends, the edge itself not
    repeated (numpy's 'reflect'); slices and a concat, faster than tf.pad's mirror mode."""
    size = tf.shape(image)[axis]
    begin = tf.reverse(tf.gather(image, tf.range(1, radius + 1), axis=axis), [axis])
    end = tf.reverse(tf.gather(image, tf.range(size - radius - 1, size - 1), axis=axis), [axis])
    return tf.concat([begin, image, end], axis)


def gaussian_blur(image, sigma, kernel_size, padding="REFLECT"):
    """Separable Gaussian blur, a vertical then a horizontal 1-D convolution.

    Args:
      image: (h, w, c) float32.
      sigma: scalar standard deviation in pixels (float or tensor).
      kernel_size: odd python int; an even one is treated as kernel_size + 1.
      padding: 'REFLECT' mirrors the border without repeating the edge pixel (numpy's
        'reflect'); 'SAME' pads with zeros, as SimCLR does.

    Returns:
      (h, w, c) float32.
    """
    radius = kernel_size // 2
    weights = gaussian_kernel(sigma, 2 * radius + 1)  # (k,)
    x = tf.convert_to_tensor(image)
    if padding == "REFLECT":
        x = _reflect_pad(_reflect_pad(x, radius, 0), radius, 1)  # (h + 2r, w + 2r, c)
        conv_padding = "VALID"
    elif padding == "SAME":
        conv_padding = "SAME"
    else:
        raise ValueError(f"padding must be 'REFLECT' or 'SAME', got {padding!r}")
    # One filter per channel (depthwise): about twice as fast on a CPU as a convolution of
    # the channels moved to the batch axis.
    channels = [1, 1, tf.shape(x)[-1], 1]
    vertical = tf.tile(tf.reshape(weights, [-1, 1, 1, 1]), channels)  # (k, 1, c, 1)
    horizontal = tf.tile(tf.reshape(weights, [1, -1, 1, 1]), channels)  # (1, k, c, 1)
    x = tf.nn.depthwise_conv2d(x[tf.newaxis], vertical, [1, 1, 1, 1], conv_padding)
    x = tf.nn.depthwise_conv2d(x, horizontal, [1, 1, 1, 1], conv_padding)
    return x[0]  # (h, w, c)


def blur_kernel_size(size):
    """SimCLR's kernel size: size // 10, rounded up to odd (32 -> 3, 224 -> 23)."""
    return (size // 10) // 2 * 2 + 1


def sample_blur(seed, p=0.5):
    """Draws whether to blur (bool scalar, True with probability p) and sigma in [0.1, 2]."""
    coin_seed, sigma_seed = _sub_seeds(seed, 2)
    sigma = tf.random.stateless_uniform([], sigma_seed, *BLUR_SIGMA_RANGE)
    return _coin(coin_seed, p), sigma


def random_blur(image, seed, size, p=0.5):
    """Gaussian blur with probability `p`, sigma uniform in [0.1, 2], reflect padding.

    Args:
      image: (h, w, 3) float32.
      seed: (2,) int32/int64.
      size: image side that sets the kernel size (`blur_kernel_size`).
      p: probability of blurring.

    Returns:
      (h, w, 3) float32.
    """
    apply, sigma = sample_blur(seed, p)
    kernel_size = blur_kernel_size(size)
    return tf.cond(apply, lambda: gaussian_blur(image, sigma, kernel_size),
                   lambda: tf.identity(image))


def preprocess_for_pretrain(image, seed, size, color_jitter_strength=1.0, use_blur=True,
                            area_range=CROP_AREA_RANGE, color_distortion="auto"):
    """One SimCLR pretraining view: crop, flip, colour distortion, blur, clip.

    Args:
      image: any image `to_rgb_float` accepts.
      seed: (2,) int32/int64.
      size: output side.
      color_jitter_strength: colour jitter strength s.
      use_blur: whether to blur with probability 0.5.
      area_range: crop area bounds as fractions of the image (see `sample_crop_box`).
      color_distortion: 'auto' (grey for single-channel `image`), 'rgb', 'gray' or 'none'.

    Returns:
      (size, size, 3) float32 in [0, 1].
    """
    mode = resolve_color_distortion(color_distortion, _source_channels(image))
    # The blur seed is split off even without blur, so switching blur off keeps the rest.
    crop_seed, flip_seed, color_seed, blur_seed = _sub_seeds(seed, 4)
    image = random_resized_crop(image, crop_seed, size, area_range)
    image = random_flip(image, flip_seed)
    image = random_color_distortion(image, color_seed, color_jitter_strength, mode)
    if use_blur:
        image = random_blur(image, blur_seed, size)
    return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), [size, size, 3])


def preprocess_for_finetune(image, seed, size, area_range=CROP_AREA_RANGE, encoded=False):
    """Random resized crop and flip only (fine-tuning and distillation): (size, size, 3).

    With `encoded`, `image` is the encoded file (scalar string) and a JPEG is decoded only
    inside the crop (`decode_random_crop`): the same pixels as decoding it first.
    """
    crop_seed, flip_seed = _sub_seeds(seed, 2)
    if encoded:
        window = decode_random_crop(image, crop_seed, area_range)  # (crop_h, crop_w, 3) uint8
        image = _resize(to_rgb_float(window), size)
    else:
        image = random_resized_crop(image, crop_seed, size, area_range)
    return tf.ensure_shape(random_flip(image, flip_seed), [size, size, 3])


def _center_crop(image, crop_proportion):
    """Central square of side rint(crop_proportion * shorter side), offsets rounded up."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    shorter = tf.cast(tf.minimum(height, width), tf.float32)
    side = tf.cast(tf.math.rint(crop_proportion * shorter), tf.int32)
    offset_y = (height - side + 1) // 2
    offset_x = (width - side + 1) // 2
    return tf.slice(image, [offset_y, offset_x, 0], [side, side, -1])  # (side, side, c)


def preprocess_for_eval(image, size, crop_proportion=0.875, center_crop=True):
    """SimCLR evaluation: central square crop, then bicubic resize.

    Args:
      image: any image `to_rgb_float` accepts.
      size: output side.
      crop_proportion: crop side as a fraction of the shorter image side.
      center_crop: False only resizes (used for images of 32 px or less).

    Returns:
      (size, size, 3) float32 in [0, 1].
    """
    image = to_rgb_float(image)
    if center_crop:
        image = _center_crop(image, crop_proportion)
    return tf.ensure_shape(_resize(image, size), [size, size, 3])


def two_views(image, seed, size, color_jitter_strength=1.0, use_blur=True,
              area_range=CROP_AREA_RANGE, color_distortion="auto"):
    """Two independent pretraining views stacked on channels.

    Args:
      image: any image `to_rgb_float` accepts.
      seed: (2,) int32/int64; each view gets a seed split from it.
      size, color_jitter_strength, use_blur, area_range, color_distortion: as in
        `preprocess_for_pretrain`.

    Returns:
      (size, size, 6) float32: view 1 in channels 0:3, view 2 in 3:6.
    """
    views = [preprocess_for_pretrain(image, view_seed, size, color_jitter_strength, use_blur,
                                     area_range, color_distortion)
             for view_seed in _sub_seeds(seed, 2)]
    return tf.concat(views, axis=-1)  # (size, size, 6)
