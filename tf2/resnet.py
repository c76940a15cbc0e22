"""The encoder f(.): (SK-)ResNet of SimCLRv2 as Keras 3 layers.

ResNet-18/34 (basic blocks) and 50/101/152/200 (bottleneck blocks), optionally wider, with
selective kernels (SK) and, as the paper says, the ResNet-D stem and average-pool shortcuts that
go with them, and optional squeeze-excitation (SE). Layer order, "fixed padding" and
initialisers follow the original SimCLR code, so parameter counts match the paper's Table 1
(e.g. ResNet-50 1x 23.51M, ResNet-152 3x+SK 794.70M trainable parameters).

`ResNet(images)` returns `(features, endpoints)`: the float32 global average pool and a dict
keyed by the endpoint constants below. `frozen_blocks` freezes a prefix of the network for
fine-tuning (the original's `fine_tune_after_block`) without any mode branch inside the layers.
"""
import dataclasses
from typing import Dict, Tuple

import keras
import tensorflow as tf

from tf2.batch_norm import BatchNorm
from tf2 import config as config_lib

INITIAL_CONV = "initial_conv"
INITIAL_MAX_POOL = "initial_max_pool"
BLOCK_GROUP1 = "block_group1"
BLOCK_GROUP2 = "block_group2"
BLOCK_GROUP3 = "block_group3"
BLOCK_GROUP4 = "block_group4"
FINAL_AVG_POOL = "final_avg_pool"
ENDPOINT_NAMES = (INITIAL_CONV, INITIAL_MAX_POOL, BLOCK_GROUP1, BLOCK_GROUP2, BLOCK_GROUP3,
                  BLOCK_GROUP4, FINAL_AVG_POOL)
_GROUP_ENDPOINTS = (BLOCK_GROUP1, BLOCK_GROUP2, BLOCK_GROUP3, BLOCK_GROUP4)

# Residual blocks in each of the four block groups, by depth.
LAYERS_PER_GROUP = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
BOTTLENECK_DEPTHS = (50, 101, 152, 200)
GROUP_FILTERS = (64, 128, 256, 512)  # times the width multiplier
_GROUP_STRIDES = (1, 2, 2, 2)
SK_MIN_DIM = 32  # floor of the SK attention bottleneck, as in the original code


@dataclasses.dataclass(frozen=True)
class BatchNormSpec:
    """Settings shared by every batch norm of the network.

    Attributes:
      decay: moving-average momentum.
      epsilon: variance epsilon.
      synchronized: all-reduce batch statistics across replicas (global BN).
    """
    decay: float = 0.9
    epsilon: float = 1e-5
    synchronized: bool = False


def _output_shape(input_shape, strides, channels):
    """(b, h, w, c) -> (b, ceil(h / s), ceil(w / s), channels): every strided op here pads so."""
    def down(n):
        return None if n is None else -(-n // strides)

    return (input_shape[0], down(input_shape[1]), down(input_shape[2]), channels)


def _chain_shape(layers, input_shape, build=False):
    """Output shape of layers that run one after another; with build=True, builds them too."""
    for layer in layers:
        if build:
            layer.build(input_shape)
        input_shape = layer.compute_output_shape(input_shape)
    return input_shape


def _attach(owner, prefix, layers):
    """Sets `owner.<prefix>1`, `<prefix>2`, ...: tf.train.Checkpoint follows attributes that
    hold layers but not Keras-tracked lists of layers. Returns how many were attached."""
    for i, layer in enumerate(layers, 1):
        setattr(owner, f"{prefix}{i}", layer)
    return len(layers)


def _attached(owner, prefix, count):
    return [getattr(owner, f"{prefix}{i}") for i in range(1, count + 1)]


def _conv_initializer():
    # A fresh instance per layer so that no two kernels share a seed.
    return keras.initializers.VarianceScaling()  # scale 1, fan_in, truncated normal


def _strided_1x1_is_unsafe(kernel_size, strides, in_channels):
    """Whether oneDNN's strided 1x1 filter gradient would corrupt memory (see the call)."""
    return kernel_size == 1 and strides > 1 and in_channels is not None and in_channels < 16


class Conv2DFixedPadding(keras.layers.Conv2D):
    """Bias-free convolution whose padding does not depend on the input size.

    For stride > 1 the input is padded by k - 1 in total (the odd pixel at the end), then the
    convolution is VALID; for stride 1 it is SAME, the same padding for odd k. (TF's SAME with
    stride 2 pads by an amount that depends on whether the size is even.)

    Args:
      filters: output channels.
      kernel_size: square kernel side k.
      strides: square stride s.
    """

    def __init__(self, filters, kernel_size, strides=1, **kwargs):
        super().__init__(filters, kernel_size, strides,
                         padding="same" if strides == 1 else "valid", use_bias=False,
                         kernel_initializer=_conv_initializer(), **kwargs)

    def _pads(self):
        if self.strides[0] == 1:
            return 0, 0
        total = self.kernel_size[0] - 1
        return total // 2, total - total // 2

    def build(self, input_shape):
        pad = sum(self._pads())
        super().build(tuple(n + pad if i in (1, 2) and n is not None else n
                            for i, n in enumerate(input_shape)))  # (b, h + pad, w + pad, c)

    def compute_output_shape(self, input_shape):
        return _output_shape(input_shape, self.strides[0], self.filters)

    def _subsample_first(self, inputs):
        return _strided_1x1_is_unsafe(self.kernel_size[0], self.strides[0], inputs.shape[-1])

    def call(self, inputs):
        """(b, h, w, c) -> (b, ceil(h / s), ceil(w / s), filters)."""
        if self._subsample_first(inputs):
            # oneDNN's filter gradient of a strided 1x1 convolution with fewer than 16 input
            # channels writes outside its buffers (heap corruption, then a segfault or abort;
            # ResNet-18 at width 0.125 from 48 px up). A 1x1 VALID convolution of stride s is
            # the stride-1 one of every s-th pixel: the same products, another kernel.
            s = self.strides[0]
            return tf.nn.convolution(inputs[:, ::s, ::s, :], tf.cast(self.kernel, inputs.dtype))
        beg, end = self._pads()
        if beg or end:
            pads = [[0, 0], [beg, end], [beg, end], [0, 0]]
            inputs = tf.pad(inputs, pads)  # (b, h + k - 1, w + k - 1, c)
        return super().call(inputs)


class ConvBN(keras.layers.Layer):
    """Fixed-padding convolution, batch norm, optional ReLU.

    Args:
      filters, kernel_size, strides: of the convolution.
      bn: batch-norm settings.
      relu: apply a ReLU after the batch norm.
      zero_gamma: initialise the BN scale to zero (last BN of a residual block, so every block
        starts as the identity of its shortcut).
    """

    def __init__(self, filters, kernel_size, strides, bn, relu=True, zero_gamma=False, **kwargs):
        super().__init__(**kwargs)
        self.conv = Conv2DFixedPadding(filters, kernel_size, strides, name="conv")
        self.bn = BatchNorm(
            momentum=bn.decay, epsilon=bn.epsilon, global_bn=bn.synchronized,
            gamma_initializer="zeros" if zero_gamma else "ones", name="bn")
        self.relu = relu

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.compute_output_shape(input_shape))
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def call(self, inputs, training=False):
        x = self.bn(self.conv(inputs), training=training)
        return tf.nn.relu(x) if self.relu else x


class SelectiveKernelConv(keras.layers.Layer):
    """Selective-kernel 3x3 convolution as in the original SimCLRv2 code.

    One 3x3 convolution produces two branches of `filters` channels; a softmax over the branch
    axis, computed from the globally pooled sum of the branches, mixes them per channel.

    Args:
      filters: output channels f.
      strides: stride of the 3x3 convolution.
      sk_ratio: width of the attention bottleneck relative to f (floored at 32 channels).
      bn: batch-norm settings.
    """

    def __init__(self, filters, strides, sk_ratio, bn, **kwargs):
        super().__init__(**kwargs)
        self.branches = ConvBN(2 * filters, 3, strides, bn, name="branches")
        mid_dim = sk_mid_dim(filters, sk_ratio)
        self.reduce = ConvBN(mid_dim, 1, 1, bn, name="reduce")
        self.attend = Conv2DFixedPadding(2 * filters, 1, 1, name="attend")
        self.filters = filters

    def build(self, input_shape):
        self.branches.build(input_shape)
        self.reduce.build((input_shape[0], 1, 1, self.filters))
        self.attend.build(self.reduce.compute_output_shape((input_shape[0], 1, 1, self.filters)))
        self.built = True

    def compute_output_shape(self, input_shape):
        return _output_shape(input_shape, self.branches.conv.strides[0], self.filters)

    def call(self, inputs, training=False):
        """(b, h, w, c) -> (b, h / s, w / s, f)."""
        x = self.branches(inputs, training=training)  # (b, h', w', 2f)
        x = tf.stack(tf.split(x, 2, axis=-1), axis=0)  # (2, b, h', w', f)
        descriptor = tf.reduce_mean(tf.reduce_sum(x, axis=0), axis=[1, 2], keepdims=True)
        logits = self.attend(self.reduce(descriptor, training=training))  # (b, 1, 1, 2f)
        logits = tf.stack(tf.split(logits, 2, axis=-1), axis=0)  # (2, b, 1, 1, f)
        attention = tf.nn.softmax(logits, axis=0)  # sums to one over the two branches
        return tf.reduce_sum(x * attention, axis=0)  # (b, h', w', f)


class SqueezeExcite(keras.layers.Layer):
    """Squeeze-excitation: rescale channels by a gate computed from their spatial means.

    Args:
      channels: input (and output) channels c.
      se_ratio: bottleneck width relative to c (at least one channel).
    """

    def __init__(self, channels, se_ratio, **kwargs):
        super().__init__(**kwargs)
        reduced = max(1, int(channels * se_ratio))
        self.reduce = keras.layers.Conv2D(
            reduced, 1, use_bias=True, kernel_initializer=_conv_initializer(), name="reduce")
        self.expand = keras.layers.Conv2D(
            channels, 1, use_bias=True, kernel_initializer=_conv_initializer(), name="expand")

    def build(self, input_shape):
        self.reduce.build((input_shape[0], 1, 1, input_shape[-1]))
        self.expand.build((input_shape[0], 1, 1, self.reduce.filters))
        self.built = True

    def call(self, inputs):
        """(b, h, w, c) -> (b, h, w, c)."""
        squeezed = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)  # (b, 1, 1, c)
        gate = tf.sigmoid(self.expand(tf.nn.relu(self.reduce(squeezed))))
        return inputs * gate


class ProjectionShortcut(keras.layers.Layer):
    """1x1 projection + BN of a block's input, to the block's output shape.

    Args:
      filters: output channels.
      strides: spatial stride of the block.
      avg_pool_downsample: ResNet-D: downsample with a 2x2 average pool, then a stride-1 1x1
        convolution, rather than a strided 1x1 convolution that drops 3/4 of the pixels.
      bn: batch-norm settings.
    """

    def __init__(self, filters, strides, avg_pool_downsample, bn, **kwargs):
        super().__init__(**kwargs)
        self.pool = None
        # As the original: stride 2 pads one zero row/column at the end and pools VALID (the
        # zeros count at odd sizes); stride 1 (first group) still smooths with a SAME pool.
        self.pad_end = avg_pool_downsample and strides > 1
        if avg_pool_downsample:
            self.pool = keras.layers.AveragePooling2D(
                2, strides, padding="valid" if strides > 1 else "same", name="pool")
            strides = 1
        self.proj = ConvBN(filters, 1, strides, bn, relu=False, name="proj")

    def build(self, input_shape):
        self.proj.build(input_shape)  # the pool has no weights; channels are unchanged by it
        self.built = True

    def call(self, inputs, training=False):
        x = inputs
        if self.pad_end:
            x = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])  # (b, h+1, w+1, c)
        x = self.pool(x) if self.pool is not None else x
        return self.proj(x, training=training)


class ResidualBlock(keras.layers.Layer):
    """Basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 with 4x expansion) residual block.

    Args:
      filters: channels f of the 3x3 convolution; the block outputs 4f (bottleneck) or f.
      strides: stride of the 3x3 convolution (and of the shortcut).
      bottleneck: bottleneck block instead of a basic one.
      use_projection: project the shortcut (first block of each group).
      sk_ratio: > 0 uses a selective-kernel 3x3 and ResNet-D shortcuts.
      se_ratio: > 0 adds squeeze-excitation before the residual sum.
      bn: batch-norm settings.
    """

    def __init__(self, filters, strides, bottleneck, use_projection, sk_ratio, se_ratio, bn,
                 **kwargs):
        super().__init__(**kwargs)
        out_channels = 4 * filters if bottleneck else filters
        self.shortcut = None
        if use_projection:
            self.shortcut = ProjectionShortcut(out_channels, strides, sk_ratio > 0, bn,
                                               name="shortcut")
        # Main path: [1x1 reduce (bottleneck only)], 3x3 or SK, closing conv with zero gamma.
        self.reduce = ConvBN(filters, 1, 1, bn, name="reduce") if bottleneck else None
        if sk_ratio > 0:
            self.spatial = SelectiveKernelConv(filters, strides, sk_ratio, bn, name="sk_conv")
        else:
            self.spatial = ConvBN(filters, 3, strides, bn, name="conv3x3")
        self.out = ConvBN(out_channels, 1 if bottleneck else 3, 1, bn, relu=False,
                          zero_gamma=True, name="out")
        self.se = SqueezeExcite(out_channels, se_ratio, name="se") if se_ratio > 0 else None
        self.strides = strides
        self.out_channels = out_channels

    def build(self, input_shape):
        if self.shortcut is not None:
            self.shortcut.build(input_shape)
        shape = _chain_shape(self.main_path, input_shape, build=True)
        if self.se is not None:
            self.se.build(shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return _output_shape(input_shape, self.strides, self.out_channels)

    @property
    def main_path(self):
        """The residual branch's layers in order (before squeeze-excitation)."""
        return [layer for layer in (self.reduce, self.spatial, self.out) if layer is not None]

    @property
    def last_bn(self):
        """The batch norm closing the residual branch (its gamma starts at zero)."""
        return self.out.bn

    def call(self, inputs, training=False):
        """(b, h, w, c) -> (b, h / s, w / s, 4f or f)."""
        shortcut = inputs
        if self.shortcut is not None:
            shortcut = self.shortcut(inputs, training=training)
        x = inputs
        for layer in self.main_path:
            x = layer(x, training=training)
        if self.se is not None:
            x = self.se(x)
        return tf.nn.relu(x + shortcut)


class BlockGroup(keras.layers.Layer):
    """`num_blocks` residual blocks; the first strides and projects its shortcut.

    Args:
      filters, bottleneck, sk_ratio, se_ratio, bn: passed to every ResidualBlock.
      num_blocks: blocks in the group.
      strides: stride of the first block.
    """

    def __init__(self, filters, num_blocks, strides, bottleneck, sk_ratio, se_ratio, bn,
                 **kwargs):
        super().__init__(**kwargs)
        self._num_blocks = _attach(self, "block", [
            ResidualBlock(filters, strides if i == 0 else 1, bottleneck, use_projection=i == 0,
                          sk_ratio=sk_ratio, se_ratio=se_ratio, bn=bn, name=f"block{i + 1}")
            for i in range(num_blocks)])

    @property
    def blocks(self):
        return _attached(self, "block", self._num_blocks)

    def build(self, input_shape):
        _chain_shape(self.blocks, input_shape, build=True)
        self.built = True

    def compute_output_shape(self, input_shape):
        return _chain_shape(self.blocks, input_shape)

    def call(self, inputs, training=False):
        x = inputs
        for block in self.blocks:
            x = block(x, training=training)
        return x


class Stem(keras.layers.Layer):
    """The layers before the first block group.

    ImageNet: 7x7/2 convolution (or, with SK, the ResNet-D deep stem of three 3x3
    convolutions), then a 3x3/2 max pool. CIFAR: one 3x3/1 convolution and no pool.

    Args:
      width_multiplier: channel multiplier; the stem outputs 64 * width_multiplier channels.
      cifar_stem: use the CIFAR stem.
      deep_stem: use the ResNet-D deep stem (ignored with cifar_stem).
      bn: batch-norm settings.
    """

    def __init__(self, width_multiplier, cifar_stem, deep_stem, bn, **kwargs):
        super().__init__(**kwargs)
        layout = stem_layout(width_multiplier, cifar_stem, deep_stem)
        convs = [ConvBN(filters, kernel, strides, bn, name=f"conv{i + 1}")
                 for i, (filters, kernel, strides) in enumerate(layout)]
        self._num_convs = _attach(self, "conv", convs)
        self.pool = None
        if not cifar_stem:
            self.pool = keras.layers.MaxPooling2D(3, 2, padding="same", name="max_pool")

    @property
    def convs(self):
        return _attached(self, "conv", self._num_convs)

    def build(self, input_shape):
        _chain_shape(self.convs, input_shape, build=True)
        self.built = True

    def compute_output_shape(self, input_shape):
        """Shapes of (initial_conv, initial_max_pool)."""
        shape = _chain_shape(self.convs, input_shape)
        return shape, shape if self.pool is None else _output_shape(shape, 2, shape[-1])

    def call(self, images, training=False):
        """Returns (initial_conv, initial_max_pool).

        initial_conv is the last stem convolution before its batch norm, as the original
        code's endpoint (and the official SavedModels) define it.
        """
        x = images
        for conv in self.convs[:-1]:
            x = conv(x, training=training)
        last = self.convs[-1]
        initial_conv = last.conv(x)
        x = last.bn(initial_conv, training=training)
        x = tf.nn.relu(x) if last.relu else x
        pooled = self.pool(x) if self.pool is not None else x
        return initial_conv, pooled


def stem_layout(width_multiplier: float, cifar_stem: bool, deep_stem: bool) -> list:
    """[(filters, kernel, strides)] of the stem's convolutions, in order (see Stem)."""
    width = _scaled(64, width_multiplier)
    if cifar_stem:
        return [(width, 3, 1)]
    if deep_stem:
        return [(width // 2, 3, 2), (width // 2, 3, 1), (width, 3, 1)]
    return [(width, 7, 2)]


def sk_mid_dim(filters: int, sk_ratio: float) -> int:
    """Width of a selective-kernel block's attention bottleneck, floored at SK_MIN_DIM."""
    return max(int(filters * sk_ratio), SK_MIN_DIM)


def _scaled(channels: int, width_multiplier: float) -> int:
    """Channels times the width multiplier, rounded (exact for the paper's integers)."""
    return int(round(channels * width_multiplier))


def _check_arguments(depth, width_multiplier, sk_ratio, se_ratio, frozen_blocks):
    if depth not in LAYERS_PER_GROUP:
        raise ValueError(f"resnet depth must be one of {sorted(LAYERS_PER_GROUP)}, got {depth}")
    if width_multiplier <= 0 or _scaled(64, width_multiplier) < 2:
        raise ValueError(f"width_multiplier must be > 0 (1, 2, 3 in the paper; fractions such "
                         f"as 0.25 give thin networks for CPUs), got {width_multiplier}")
    if not 0.0 <= sk_ratio < 1.0:
        raise ValueError(f"sk_ratio must be in [0, 1), got {sk_ratio}")
    if not 0.0 <= se_ratio < 1.0:
        raise ValueError(f"se_ratio must be in [0, 1), got {se_ratio}")
    if not -1 <= frozen_blocks <= len(GROUP_FILTERS):
        raise ValueError(f"frozen_blocks must be in [-1, 4], got {frozen_blocks}")


class ResNet(keras.Model):
    """The (SK-)ResNet encoder, up to and including the final global average pool.

    Args:
      depth: 18, 34, 50, 101, 152 or 200.
      width_multiplier: channel multiplier (paper: 1, 2, 3; fractions give thin networks).
      sk_ratio: selective-kernel ratio in [0, 1); > 0 also switches to ResNet-D.
      se_ratio: squeeze-excitation ratio in [0, 1); 0 disables it.
      cifar_stem: 3x3/1 stem without max pool, for images of 32 px or less.
      batch_norm_decay, batch_norm_epsilon: batch-norm settings.
      global_bn: synchronise batch statistics across replicas.
      frozen_blocks: -1 trains everything; 0 freezes the stem; k in 1..4 freezes the stem and
        block groups 1..k. Frozen layers are not trainable (their BN uses moving statistics)
        and get no gradient.

    Call: `images` (b, h, w, 3) float -> `(features, endpoints)`, features (b, output_dim)
    float32, endpoints a dict keyed by ENDPOINT_NAMES of (b, h', w', c') tensors in the
    compute dtype (and the features).
    """

    def __init__(self, depth, width_multiplier=1, sk_ratio=0.0, se_ratio=0.0, cifar_stem=False,
                 batch_norm_decay=0.9, batch_norm_epsilon=1e-5, global_bn=False,
                 frozen_blocks=-1, name="resnet", **kwargs):
        super().__init__(name=name, **kwargs)
        _check_arguments(depth, width_multiplier, sk_ratio, se_ratio, frozen_blocks)
        if float(width_multiplier).is_integer():
            width_multiplier = int(width_multiplier)
        self.depth = depth
        self.width_multiplier = width_multiplier
        self.sk_ratio = sk_ratio
        self.frozen_blocks = frozen_blocks
        bottleneck = depth in BOTTLENECK_DEPTHS
        bn = BatchNormSpec(batch_norm_decay, batch_norm_epsilon, global_bn)
        self.stem = Stem(width_multiplier, cifar_stem, sk_ratio > 0, bn, name="stem")
        _attach(self, "block_group", [
            BlockGroup(_scaled(filters, width_multiplier), num_blocks, strides, bottleneck, sk_ratio,
                       se_ratio, bn, name=f"block_group{i + 1}")
            for i, (filters, num_blocks, strides) in enumerate(
                zip(GROUP_FILTERS, LAYERS_PER_GROUP[depth], _GROUP_STRIDES))])
        self._output_dim = (4 if bottleneck else 1) * _scaled(GROUP_FILTERS[-1],
                                                              width_multiplier)
        # Setting trainable on the parents reaches every sub-layer, built or not.
        for part in [self.stem, *self.block_groups][:frozen_blocks + 1]:
            part.trainable = False

    @property
    def block_groups(self):
        return _attached(self, "block_group", len(GROUP_FILTERS))

    @property
    def output_dim(self) -> int:
        """Channels of the features: 512 * width (basic) or 2048 * width (bottleneck)."""
        return self._output_dim

    def build(self, input_shape):
        """Creates every variable from the image shape (b, h, w, 3), without running a pass."""
        self.stem.build(input_shape)
        _, shape = self.stem.compute_output_shape(input_shape)
        _chain_shape(self.block_groups, shape, build=True)
        self.built = True

    def call(self, images, training=False) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """(b, h, w, 3) -> ((b, output_dim) float32, endpoints)."""
        # stop_gradient on every frozen output (part 0 is the stem, 1..4 the block groups), so
        # that no endpoint leaks a gradient into frozen variables either.
        def cut(x, part_index):
            return tf.stop_gradient(x) if part_index <= self.frozen_blocks else x

        endpoints = {}
        initial_conv, x = self.stem(images, training=training)
        endpoints[INITIAL_CONV] = cut(initial_conv, 0)
        x = endpoints[INITIAL_MAX_POOL] = cut(x, 0)
        for i, (group, endpoint) in enumerate(zip(self.block_groups, _GROUP_ENDPOINTS), 1):
            x = endpoints[endpoint] = cut(group(x, training=training), i)
        # Average in float32: under mixed precision a bfloat16 mean over many pixels is coarse.
        features = tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2])  # (b, c)
        endpoints[FINAL_AVG_POOL] = features
        return features, endpoints


def build_resnet(cfg: config_lib.ModelConfig) -> ResNet:
    """The encoder described by a ModelConfig (not yet built: call it on images)."""
    return ResNet(
        depth=cfg.resnet_depth, width_multiplier=cfg.width_multiplier, sk_ratio=cfg.sk_ratio,
        se_ratio=cfg.se_ratio, cifar_stem=cfg.cifar_stem,
        batch_norm_decay=cfg.batch_norm_decay, batch_norm_epsilon=cfg.batch_norm_epsilon,
        global_bn=cfg.global_bn, frozen_blocks=cfg.frozen_blocks)
