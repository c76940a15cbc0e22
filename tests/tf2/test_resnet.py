"""Tests of the (SK-)ResNet encoder: Table 1 parameter counts, NumPy oracles of its layers,
freezing, zero-initialised gammas, endpoint sizes, mixed precision and global batch norm."""
import gc

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf2 import config as config_lib
from tf2 import resnet

EPS = 1e-3  # a BN epsilon different from the default, so that the oracle must use the layer's
BN = resnet.BatchNormSpec(decay=0.9, epsilon=EPS, synchronized=False)
SK = 0.0625  # the paper's sk_ratio


# ----------------------------------------------------------------------------- helpers

def _count(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def _build_without_values(model, image_shape=(1, 32, 32, 3)):
    """Builds `model`, leaving its variable values uninitialised; returns the model.

    The variables are the model's real ones (shapes come from build()), but inside a
    StatelessScope Keras defers their initialisers, so even the 795M-parameter network costs
    no random numbers and almost no memory.
    """
    with keras.StatelessScope(initialize_variables=False):
        model.build(image_shape)
    return model


def _forget_models():
    """Call after `del model`: frees what Keras still holds, never-initialised variables too."""
    keras.backend.clear_session()
    gc.collect()


def _randomize(layer, rng):
    """Non-trivial BN scales/offsets/moving statistics and biases (zero gammas included)."""
    for v in layer.weights:
        shape = tuple(v.shape)
        if v.name == "gamma":
            v.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif v.name in ("beta", "moving_mean", "bias"):
            v.assign(rng.normal(0.0, 0.2, shape).astype(np.float32))
        elif v.name == "moving_variance":
            v.assign(rng.uniform(0.5, 2.0, shape).astype(np.float32))


# NumPy oracles, float64, written from the architecture description (not from the layer code).

def np_conv(x, kernel, strides, bias=None):
    """Convolution with the original SimCLR fixed padding: k - 1 pixels, the odd one at the end."""
    k = kernel.shape[0]
    beg = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (beg, k - 1 - beg), (beg, k - 1 - beg), (0, 0)))
    ho = (xp.shape[1] - k) // strides + 1
    wo = (xp.shape[2] - k) // strides + 1
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]))
    for i in range(k):
        for j in range(k):
            rows = slice(i, i + strides * (ho - 1) + 1, strides)
            cols = slice(j, j + strides * (wo - 1) + 1, strides)
            patch = xp[:, rows, cols]  # (b, ho, wo, cin)
            out += patch @ kernel[i, j]  # (b, ho, wo, cin) @ (cin, cout)
    return out if bias is None else out + bias


def np_bn(x, bn_layer, relu):
    g, b, m, v = (w.numpy().astype(np.float64) for w in (
        bn_layer.gamma, bn_layer.beta, bn_layer.moving_mean, bn_layer.moving_variance))
    y = (x - m) / np.sqrt(v + EPS) * g + b
    return np.maximum(y, 0.0) if relu else y


def np_conv_bn(x, conv_bn, strides, relu=True):
    return np_bn(np_conv(x, conv_bn.conv.kernel.numpy(), strides), conv_bn.bn, relu)


def np_sk(x, sk, strides):
    """SK conv: one 3x3 conv to 2f channels = two branches mixed by a softmax attention."""
    y = np_conv_bn(x, sk.branches, strides)
    f = y.shape[-1] // 2
    a, b = y[..., :f], y[..., f:]
    descriptor = (a + b).mean(axis=(1, 2), keepdims=True)  # (n, 1, 1, f)
    z = np_conv_bn(descriptor, sk.reduce, 1)
    logits = np_conv(z, sk.attend.kernel.numpy(), 1)  # (n, 1, 1, 2f)
    weight_a = 1.0 / (1.0 + np.exp(logits[..., f:] - logits[..., :f]))  # softmax of two
    return a * weight_a + b * (1.0 - weight_a)


def np_se(x, se):
    s = x.mean(axis=(1, 2), keepdims=True)
    s = np.maximum(np_conv(s, se.reduce.kernel.numpy(), 1, se.reduce.bias.numpy()), 0.0)
    s = np_conv(s, se.expand.kernel.numpy(), 1, se.expand.bias.numpy())
    return x / (1.0 + np.exp(-s))  # x * sigmoid(s)


def np_block(x, block, bottleneck, strides, sk_ratio, se_ratio, projection):
    """Residual block oracle; reads the layer's weights by role."""
    shortcut = x
    if projection:
        if sk_ratio > 0 and strides > 1:  # ResNet-D: 2x2 average pool (even sizes), 1x1/1 conv
            n, h, w, c = x.shape
            pooled = x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
            shortcut = np_conv_bn(pooled, block.shortcut.proj, 1, relu=False)
        else:
            shortcut = np_conv_bn(x, block.shortcut.proj, strides, relu=False)
    path = block.main_path
    y = x
    if bottleneck:
        y = np_conv_bn(y, path[0], 1)
    y = np_sk(y, path[-2], strides) if sk_ratio > 0 else np_conv_bn(y, path[-2], strides)
    y = np_conv_bn(y, path[-1], 1, relu=False)
    if se_ratio > 0:
        y = np_se(y, block.se)
    return np.maximum(y + shortcut, 0.0)


# ----------------------------------------------------------------------------- Table 1

# (depth, width, sk_ratio, Table 1 "Param (M)", the original code's exact trainable count in M
# or None). Table 1 rounds the count of ALL the base network's variables, BN moving statistics
# included: trainable parameters alone round to 232 and 353 for R152 2x and 2x+SK (232.25M,
# 353.40M), while all variables give every one of the 13 figures.
TABLE1 = [
    (50, 1, 0.0, 24, 23.51), (50, 1, SK, 35, 35.22), (50, 2, 0.0, 94, None),
    (50, 2, SK, 140, None), (101, 1, 0.0, 43, None), (101, 1, SK, 65, None),
    (101, 2, 0.0, 170, None), (101, 2, SK, 257, None), (152, 1, 0.0, 58, None),
    (152, 1, SK, 89, None), (152, 2, 0.0, 233, None), (152, 2, SK, 354, None),
    (152, 3, SK, 795, 794.70),
]


@pytest.mark.parametrize("depth,width,sk_ratio,table_m,exact_m", TABLE1)
def test_parameter_counts_match_table1(depth, width, sk_ratio, table_m, exact_m):
    model = _build_without_values(resnet.ResNet(depth, width, sk_ratio))
    all_m, trainable_m = _count(model.weights) / 1e6, _count(model.trainable_weights) / 1e6
    # What separates the two counts is exactly the BN moving mean and variance, one pair of
    # numbers per trainable (gamma, beta) pair.
    bn_m = _count(v for v in model.weights if v.name == "gamma") * 2 / 1e6
    del model
    _forget_models()
    assert round(all_m) == table_m
    assert all_m - trainable_m == pytest.approx(bn_m, abs=1e-6)
    if exact_m is not None:
        assert abs(trainable_m - exact_m) <= 0.005, trainable_m


def test_resnet18_cifar_parameter_count_by_hand():
    # Stem 3x3 conv 3->64 + BN; four groups of two basic blocks (two 3x3 convs + BN each);
    # the first block of each group projects its shortcut with a 1x1 conv + BN. BN = 2c.
    def conv_bn(k, cin, cout):
        return k * k * cin * cout + 2 * cout
    expected, cin = conv_bn(3, 3, 64), 64
    for filters in (64, 128, 256, 512):
        expected += conv_bn(1, cin, filters)  # projection of the first block
        for _ in range(2):
            expected += conv_bn(3, cin, filters) + conv_bn(3, filters, filters)
            cin = filters
    assert expected == 11_173_056
    model = _build_without_values(resnet.ResNet(18, cifar_stem=True))
    assert _count(model.trainable_weights) == expected  # 11.17M
    assert model.output_dim == 512
    del model
    _forget_models()


def test_build_creates_exactly_the_variables_a_forward_pass_uses():
    # Table 1 counts come from build(); a forward pass must not need one variable more or less.
    def shapes(layer):
        return sorted((v.path, tuple(v.shape)) for v in layer.weights)
    kwargs = dict(depth=18, width_multiplier=1, sk_ratio=0.5, se_ratio=0.25)
    by_build = resnet.ResNet(**kwargs)
    by_build.build((1, 32, 32, 3))
    by_call = resnet.ResNet(**kwargs)
    by_call(tf.zeros((1, 32, 32, 3)))
    assert shapes(by_build) == shapes(by_call)
    block_kwargs = dict(filters=8, strides=2, bottleneck=True, use_projection=True,
                        sk_ratio=0.5, se_ratio=0.25, bn=BN, name="b")
    block_by_build = resnet.ResidualBlock(**block_kwargs)
    block_by_build.build((1, 8, 8, 16))
    block_by_call = resnet.ResidualBlock(**block_kwargs)
    block_by_call(tf.zeros((1, 8, 8, 16)))
    assert shapes(block_by_build) == shapes(block_by_call)


def test_build_resnet_reads_every_config_field(two_replicas):
    cfg = config_lib.ModelConfig(resnet_depth=50, width_multiplier=2, sk_ratio=SK,
                                 se_ratio=0.25, cifar_stem=True, batch_norm_decay=0.99,
                                 batch_norm_epsilon=1e-3, global_bn=True, frozen_blocks=2)
    with two_replicas.scope():  # global BN synchronises only when there are several replicas
        model = resnet.build_resnet(cfg)
    assert (model.depth, model.width_multiplier, model.frozen_blocks) == (50, 2, 2)
    assert model.output_dim == 4096
    assert len(model.stem.convs) == 1  # CIFAR stem wins over the deep stem
    block = model.block_groups[0].blocks[0]
    assert isinstance(block.main_path[1], resnet.SelectiveKernelConv)
    assert block.se is not None and block.se.reduce.filters == 128  # int(512 * 0.25)
    bn = block.last_bn
    assert (bn.momentum, bn.epsilon, bn.synchronized) == (0.99, 1e-3, True)
    assert not model.block_groups[1].trainable and model.block_groups[2].trainable


@pytest.mark.parametrize("kwargs,message", [
    (dict(depth=19), "depth"), (dict(depth=50, sk_ratio=1.0), "sk_ratio"),
    (dict(depth=50, sk_ratio=-0.1), "sk_ratio"), (dict(depth=50, width_multiplier=0), "width"),
    (dict(depth=50, width_multiplier=0.01), "width"), (dict(depth=50, frozen_blocks=5), "frozen"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resnet.ResNet(**kwargs)


# ----------------------------------------------------------------------------- layers vs NumPy

@pytest.mark.parametrize("kernel_size,strides", [(7, 2), (3, 2), (1, 2), (3, 1)])
def test_fixed_padding_conv_matches_numpy(kernel_size, strides):
    # 8 px is even: there TF's SAME with stride 2 pads one pixel less at the start, so this
    # tells fixed padding from SAME.
    x = np.random.normal(size=(2, 8, 8, 3)).astype(np.float32)
    conv = resnet.Conv2DFixedPadding(5, kernel_size, strides)
    out = conv(x).numpy()
    np.testing.assert_allclose(out, np_conv(x, conv.kernel.numpy(), strides), atol=1e-5)


@pytest.mark.parametrize("channels", [3, 8, 15, 16])
def test_strided_1x1_conv_avoids_onednns_strided_filter_gradient(channels):
    """oneDNN corrupts memory in the stride-2 1x1 filter gradient below 16 input channels
    (ResNet-18 x0.125 at 224 px segfaulted): there the layer must not emit that kernel, and
    its output and both gradients must still be those of the strided convolution (NumPy)."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 7, 7, channels)).astype(np.float32))
    conv = resnet.Conv2DFixedPadding(4, 1, 2)
    conv(x)
    dy = rng.normal(size=(2, 4, 4, 4)).astype(np.float32)  # ceil(7 / 2) = 4

    @tf.function
    def grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(conv(x) * dy)
        return conv(x), tape.gradient(loss, [x, conv.kernel])

    graph = grads.get_concrete_function(x).graph
    strided = [op for op in graph.get_operations() if op.type == "Conv2DBackpropFilter"
               and list(op.get_attr("strides")) != [1, 1, 1, 1]]
    assert bool(strided) == (channels >= 16)
    out, (dx, dw) = grads(x)
    x_np, w_np = x.numpy(), conv.kernel.numpy()[0, 0]  # (cin, cout)
    sub = x_np[:, ::2, ::2, :]  # the pixels a 1x1 stride-2 VALID convolution reads
    np.testing.assert_allclose(out.numpy(), np_conv(x_np, conv.kernel.numpy(), 2), atol=1e-5)
    np.testing.assert_allclose(dw.numpy()[0, 0], np.einsum("bhwc,bhwf->cf", sub, dy),
                               atol=1e-4)
    dx_np = np.zeros_like(x_np)
    dx_np[:, ::2, ::2, :] = np.einsum("bhwf,cf->bhwc", dy, w_np)
    np.testing.assert_allclose(dx.numpy(), dx_np, atol=1e-5)


@pytest.mark.parametrize("strides", [1, 2])
def test_selective_kernel_conv_matches_numpy(strides):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 6, 5)).astype(np.float32)
    sk = resnet.SelectiveKernelConv(4, strides, sk_ratio=0.5, bn=BN)
    sk(x)
    assert sk.reduce.conv.filters == 32  # max(int(4 * 0.5), 32)
    _randomize(sk, rng)
    out = sk(x, training=False).numpy()
    assert out.shape == (3, 6 // strides, 6 // strides, 4)
    np.testing.assert_allclose(out, np_sk(x.astype(np.float64), sk, strides),
                               rtol=1e-4, atol=1e-4)


# (bottleneck, filters, strides, sk_ratio, se_ratio, projection, input channels)
BLOCKS = [
    (False, 4, 2, 0.0, 0.5, True, 3),    # basic, strided 1x1 projection, SE
    (False, 4, 1, 0.0, 0.0, False, 4),   # basic, identity shortcut
    (False, 4, 2, 0.5, 0.0, True, 3),    # basic with SK and the ResNet-D shortcut
    (True, 2, 2, 0.5, 0.25, True, 5),    # bottleneck with SK, ResNet-D shortcut and SE
    (True, 2, 2, 0.0, 0.0, True, 5),     # plain bottleneck
]


@pytest.mark.parametrize("bottleneck,filters,strides,sk_ratio,se_ratio,projection,cin", BLOCKS)
def test_residual_block_matches_numpy(bottleneck, filters, strides, sk_ratio, se_ratio,
                                      projection, cin):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, cin)).astype(np.float32)
    block = resnet.ResidualBlock(filters, strides, bottleneck, projection, sk_ratio, se_ratio,
                                 BN)
    block(x)
    _randomize(block, rng)  # also makes the zero-initialised gamma non-zero
    out = block(x, training=False).numpy()
    expected = np_block(x.astype(np.float64), block, bottleneck, strides, sk_ratio, se_ratio,
                        projection)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_last_gamma_of_every_block_starts_at_zero():
    model = resnet.ResNet(18, sk_ratio=0.5, se_ratio=0.25)
    model.build((1, 32, 32, 3))
    last = {id(b.last_bn.gamma) for g in model.block_groups for b in g.blocks}
    assert len(last) == sum(resnet.LAYERS_PER_GROUP[18])
    for v in model.weights:
        if v.name == "gamma":
            assert np.all(v.numpy() == (0.0 if id(v) in last else 1.0)), v.path
    # So, freshly built, a block is the ReLU of its shortcut.
    block = resnet.ResidualBlock(2, 2, True, True, 0.0, 0.0, BN)
    x = np.random.normal(size=(2, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(block(x).numpy(),
                               tf.nn.relu(block.shortcut(x)).numpy(), atol=1e-6)


# ----------------------------------------------------------------------------- the model

def _np_max_pool_3x3_s2_same(x):
    # TF SAME for k=3, s=2 on an even size pads one pixel at the end only.
    xp = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=-np.inf)
    h = x.shape[1] // 2
    return np.max([xp[:, i:i + 2 * h:2, j:j + 2 * h:2] for i in range(3) for j in range(3)],
                  axis=0)


# Endpoint spatial sizes of ResNet-18: (initial_conv, initial_max_pool, groups 1..4).
SIZES = {(False, 32): (16, 8, 8, 4, 2, 1), (False, 64): (32, 16, 16, 8, 4, 2),
         (True, 32): (32, 32, 32, 16, 8, 4), (True, 64): (64, 64, 64, 32, 16, 8)}


@pytest.mark.parametrize("cifar_stem", [False, True])
def test_endpoints(cifar_stem):
    model = resnet.ResNet(18, cifar_stem=cifar_stem)
    for size in (32, 64):
        images = tf.random.normal((2, size, size, 3))
        features, endpoints = model(images, training=False)
        assert tuple(endpoints) == resnet.ENDPOINT_NAMES
        for name, side, channels in zip(resnet.ENDPOINT_NAMES, SIZES[(cifar_stem, size)],
                                        (64, 64, 64, 128, 256, 512)):
            assert tuple(endpoints[name].shape) == (2, side, side, channels), name
        # initial_conv is the last stem conv before its BN + ReLU (the original's endpoint).
        last_bn = model.stem.convs[-1].bn
        stem_out = tf.nn.relu(last_bn(endpoints[resnet.INITIAL_CONV], training=False)).numpy()
        pooled = stem_out if cifar_stem else _np_max_pool_3x3_s2_same(stem_out)
        np.testing.assert_allclose(endpoints[resnet.INITIAL_MAX_POOL].numpy(), pooled)
        last = endpoints[resnet.BLOCK_GROUP4].numpy()
        assert features.dtype == tf.float32 and features.shape == (2, 512)
        np.testing.assert_allclose(features.numpy(), last.mean(axis=(1, 2)), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_array_equal(endpoints[resnet.FINAL_AVG_POOL].numpy(), features)


@pytest.mark.parametrize("frozen_blocks", [-1, 0, 1, 2, 3, 4])
def test_frozen_blocks_get_no_gradient_and_keep_statistics(frozen_blocks):
    model = resnet.ResNet(18, cifar_stem=True, frozen_blocks=frozen_blocks)
    images = tf.random.normal((4, 8, 8, 3))
    model.build(images.shape)
    parts = [model.stem, *model.block_groups]
    frozen = {id(v) for part in parts[:frozen_blocks + 1] for v in part.weights}
    params = [v for v in model.weights if not v.name.startswith("moving_")]
    stats = [v for v in model.weights if v.name.startswith("moving_")]
    assert {id(v) for v in model.trainable_weights} == {
        id(v) for v in params if id(v) not in frozen}
    before = [v.numpy() for v in stats]
    with tf.GradientTape() as tape:
        tape.watch([v.value for v in params])  # watch frozen ones too: only the cut may stop it
        features, endpoints = model(images, training=True)
        loss = sum(tf.reduce_sum(tf.cast(e, tf.float32) ** 2) for e in endpoints.values())
    grads = tape.gradient(loss, [v.value for v in params])
    for v, g in zip(params, grads):
        assert (g is None) == (id(v) in frozen), v.path
    for v, old in zip(stats, before):
        changed = not np.array_equal(v.numpy(), old)
        assert changed == (id(v) not in frozen), v.path


def test_mixed_bfloat16_close_to_float32():
    images = tf.random.normal((2, 8, 8, 3))
    reference = resnet.ResNet(18, cifar_stem=True, sk_ratio=0.5, se_ratio=0.25)
    reference.build(images.shape)
    _randomize(reference, np.random.default_rng(2))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = resnet.ResNet(18, cifar_stem=True, sk_ratio=0.5, se_ratio=0.25)
        mixed.build(images.shape)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(reference.get_weights())
    expected, _ = reference(images, training=False)
    features, endpoints = mixed(images, training=False)
    assert features.dtype == tf.float32
    assert endpoints[resnet.BLOCK_GROUP4].dtype == tf.bfloat16
    # bfloat16 keeps 8 significant bits; the largest error measured was 0.5% of the scale.
    scale = np.abs(expected.numpy()).max()
    np.testing.assert_allclose(features.numpy(), expected.numpy(), atol=0.02 * scale)


def test_global_bn_two_replicas_equal_one_replica_on_the_global_batch(two_replicas):
    images = tf.random.normal((4, 8, 8, 3))
    with two_replicas.scope():
        synced = resnet.ResNet(18, cifar_stem=True, global_bn=True)
        synced.build(images.shape)
    single = resnet.ResNet(18, cifar_stem=True)
    single.build(images.shape)
    _randomize(single, np.random.default_rng(3))
    synced.set_weights(single.get_weights())
    halves = two_replicas.experimental_distribute_values_from_function(
        lambda ctx: images[2 * ctx.replica_id_in_sync_group:2 * ctx.replica_id_in_sync_group + 2])
    per_replica = two_replicas.run(lambda x: synced(x, training=True)[0], args=(halves,))
    features = tf.concat(two_replicas.experimental_local_results(per_replica), 0)  # (4, 512)
    expected, _ = single(images, training=True)
    np.testing.assert_allclose(features.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_checkpoint_round_trip_restores_every_variable(tmp_path):
    # tf.train.Checkpoint must see every variable (it ignores Keras-tracked lists of layers).
    images = tf.random.normal((2, 8, 8, 3))
    kwargs = dict(depth=18, cifar_stem=True, sk_ratio=0.5, se_ratio=0.25)
    model = resnet.ResNet(**kwargs)
    model.build(images.shape)
    _randomize(model, np.random.default_rng(4))
    path = tf.train.Checkpoint(encoder=model).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.startswith("encoder/")]
    assert len(saved) == len(model.weights)
    restored = resnet.ResNet(**kwargs)
    restored.build(images.shape)
    tf.train.Checkpoint(encoder=restored).read(path).expect_partial() \
        .assert_existing_objects_matched()
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(restored(images)[0].numpy(), model(images)[0].numpy())


def test_fractional_width_scales_every_group():
    """Thin networks for CPUs: channels are round(c * width); counts follow by hand."""
    model = resnet.ResNet(18, width_multiplier=0.25, cifar_stem=True)
    features, endpoints = model(tf.zeros((1, 32, 32, 3)))
    assert [endpoints[name].shape[-1] for name in resnet.ENDPOINT_NAMES[1:6]] == \
        [16, 16, 32, 64, 128]
    assert model.output_dim == features.shape[-1] == 128
    # Basic-block ResNet-18 at widths (16, 32, 64, 128), CIFAR stem, counted as in the 1x test:
    # stem 3*3*3*16 + BN 2*16; group g with c_in -> c: first block 9*c_in*c + 9*c*c + c_in*c
    # (projection) + 3 BN of 2c; second block 2*9*c*c + 2 BN of 2c.
    def group(c_in, c):
        return 9 * c_in * c + 9 * c * c + c_in * c + 6 * c + 18 * c * c + 4 * c
    expected = 3 * 3 * 3 * 16 + 32 + group(16, 16) + group(16, 32) + group(32, 64) + \
        group(64, 128)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == expected
