"""Import of official SimCLRv2 SavedModels, checked on fakes laid out exactly as the real ones.

The fakes follow the layout manifests in shared/data/official_savedmodel_layout (names, shapes,
dtypes, trainable flags, order and object paths of every variable), filled with seeded random
values. Every value must land where the importer says, a few must land where the names say,
and a forward pass with the imported weights must equal an independent NumPy/tf.nn forward
pass written from the original architecture, reading the official variables by name.
"""
import collections
import dataclasses
import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from checkpoints import convert, official, official_weights
from checkpoints import warm_start as warm_start_lib
from data import augment
from tf2 import config as config_lib
from tf2 import model as model_lib

LAYOUT_DIR = os.environ.get("OFFICIAL_LAYOUT_DIR",
                            str(pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "official_savedmodel_layout"))
CONFIGS = ("r50_1x_sk0", "r50_1x_sk1")
EPSILON = 1e-5  # the original's BATCH_NORM_EPSILON


def _manifest(name, variant="pretrained"):
    with open(os.path.join(LAYOUT_DIR, f"{name}.{variant}.json")) as f:
        return json.load(f)


def _bare(name):
    return name[:-2] if name.endswith(":0") else name


def _random_value(name, shape, rng):
    """Seeded values of a plausible scale, so that a 50-layer forward pass stays finite."""
    weight = _bare(name).rsplit("/", 1)[1]
    if weight == "kernel":
        return rng.standard_normal(shape) * np.sqrt(1.0 / np.prod(shape[:-1]))
    if weight in ("gamma", "moving_variance"):
        return rng.uniform(0.5, 1.5, shape)
    return rng.normal(0.0, 0.1, shape)  # beta, moving_mean, bias


class _Holder(tf.Module):
    # tf.Module's `variables` is a read-only property; this attribute shadows it so that the
    # list is tracked and saved under "variables", as in the official exports.
    variables = None


def _official_values(manifest, seed):
    rng = np.random.default_rng(seed)
    return {_bare(name): _random_value(name, shape, rng).astype(dtype)
            for name, shape, dtype, _, _ in manifest["variables"]}


def _official_tree(manifest, values):
    """{holder: [tf.Variable]} named, shaped, flagged and ordered as the manifest says."""
    tree = collections.defaultdict(list)
    for name, _, dtype, trainable, object_path in manifest["variables"]:
        holder = object_path.split("/")[1]  # model/<holder>/variables/<i>
        tree[holder].append(tf.Variable(values[_bare(name)], name=_bare(name),
                                        trainable=trainable, dtype=dtype))
    return dict(tree)


def _save_fake_official(manifest, values, directory):
    root = tf.Module()
    root.model = tf.Module()
    for holder, variables in _official_tree(manifest, values).items():
        module = _Holder()
        module.variables = variables
        setattr(root.model, holder, module)
    tf.saved_model.save(root, directory)
    # The fake really has the official checkpoint keys and shapes.
    shapes = tf.train.load_checkpoint(os.path.join(directory, "variables", "variables")) \
        .get_variable_to_shape_map()
    for _, shape, _, _, object_path in manifest["variables"]:
        assert shapes[object_path + "/.ATTRIBUTES/VARIABLE_VALUE"] == shape


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    """name -> (manifest, {official name: value}, SavedModel dir); each made once."""
    made = {}

    def get(name):
        if name not in made:
            manifest = _manifest(name)
            values = _official_values(manifest, seed=CONFIGS.index(name))
            directory = str(tmp_path_factory.mktemp(name) / "saved_model")
            _save_fake_official(manifest, values, directory)
            made[name] = manifest, values, directory
        return made[name]

    return get


@pytest.fixture(scope="module")
def imports(fakes):
    """name -> (model, report) imported from the fake, checking the manifest's flags."""
    made = {}

    def get(name):
        if name not in made:
            manifest, _, directory = fakes(name)
            config = manifest["config"]
            made[name] = official_weights.import_official(
                directory, resnet_depth=config["resnet_depth"],
                width_multiplier=config["width_multiplier"], sk_ratio=config["sk_ratio"])
        return made[name]

    return get


@pytest.mark.parametrize("name", CONFIGS)
def test_every_official_value_lands_in_its_mapped_variable(name, fakes, imports):
    values = fakes(name)[1]
    model, report = imports(name)
    ours = {v.path: v for v in model.variables}
    official_names = [name for name, _ in report.pairs]
    our_paths = [path for _, path in report.pairs]
    assert sorted(official_names) == sorted(values)  # each official variable exactly once
    assert sorted(our_paths) == sorted(ours)  # each of ours exactly once
    for name, path in report.pairs:
        np.testing.assert_array_equal(ours[path].numpy(), values[name], err_msg=name)
    assert report.architecture["resnet_depth"] == 50 and not report.notes


# Official names (from the manifests) of a few variables, and where they must land in ours.
LANDMARKS = {
    "r50_1x_sk0": {
        "resnet/conv2d_fixed_padding/conv2d/kernel": lambda m: m.encoder.stem.convs[0].conv.kernel,
        "resnet/block_group2/bottleneck_block_3/conv2d_fixed_padding_11/conv2d_11/kernel":
            lambda m: m.encoder.block_groups[1].blocks[0].shortcut.proj.conv.kernel,
        "resnet/block_group2/bottleneck_block_3/conv2d_fixed_padding_13/conv2d_13/kernel":
            lambda m: m.encoder.block_groups[1].blocks[0].main_path[1].conv.kernel,
        "resnet/block_group4/bottleneck_block_15/batch_norm_relu_52/sync_batch_normalization_52"
        "/moving_variance": lambda m: m.encoder.block_groups[3].blocks[-1].last_bn.moving_variance,
        "projection_head/nl_1/batch_norm_relu_54/sync_batch_normalization_54/gamma":
            lambda m: m.projection_head.head_layers[1].bn.gamma,
    },
    "r50_1x_sk1": {
        "resnet/conv2d_fixed_padding/conv2d/kernel": lambda m: m.encoder.stem.convs[0].conv.kernel,
        "resnet/conv2d_fixed_padding_2/conv2d_2/kernel":
            lambda m: m.encoder.stem.convs[2].conv.kernel,
        "resnet/block_group2/bottleneck_block_3/conv2d_fixed_padding_13/conv2d_19/kernel":
            lambda m: m.encoder.block_groups[1].blocks[0].shortcut.proj.conv.kernel,
        "resnet/block_group2/bottleneck_block_3/sk__conv2d_3/conv2d_23/kernel":
            lambda m: m.encoder.block_groups[1].blocks[0].main_path[1].attend.kernel,
        "resnet/block_group4/bottleneck_block_15/batch_norm_relu_70/sync_batch_normalization_70"
        "/moving_variance": lambda m: m.encoder.block_groups[3].blocks[-1].last_bn.moving_variance,
        "projection_head/nl_1/batch_norm_relu_72/sync_batch_normalization_72/gamma":
            lambda m: m.projection_head.head_layers[1].bn.gamma,
    },
}
SUPERVISED_LANDMARKS = {
    "head_supervised/linear_layer/dense_3/kernel": lambda m: m.supervised_head.dense.kernel,
    "head_supervised/linear_layer/dense_3/bias": lambda m: m.supervised_head.dense.bias,
    "projection_head/nl_2/dense_2/kernel": lambda m: m.projection_head.head_layers[2].dense.kernel,
}


@pytest.mark.parametrize("name", CONFIGS)
def test_landmark_variables_land_where_their_names_say(name, fakes, imports):
    values = fakes(name)[1]
    model = imports(name)[0]
    for official_name, ours in {**LANDMARKS[name], **SUPERVISED_LANDMARKS}.items():
        np.testing.assert_array_equal(ours(model).numpy(), values[official_name],
                                      err_msg=official_name)


# --- an independent forward pass of the original architecture ---------------------------

class _OfficialWeights:
    """Official weights fetched by the names tf-keras gave them.

    tf-keras names layers `<base>`, `<base>_1`, ... in creation order, and the original code
    creates its layers in the order it calls them, so counting each base as the forward pass
    goes names every layer. The last two name parts (`conv2d_5/kernel`) are unique.
    """

    def __init__(self, values):
        self._by_leaf = {"/".join(n.split("/")[-2:]): v for n, v in values.items()}
        self._count = collections.Counter()
        self.unread = set(self._by_leaf)

    def _get(self, leaf):
        self.unread.discard(leaf)
        return self._by_leaf.get(leaf)

    def _next(self, base):
        k = self._count[base]
        self._count[base] += 1
        return base if k == 0 else f"{base}_{k}"

    def conv(self):
        return self._get(self._next("conv2d") + "/kernel")

    def dense(self):
        scope = self._next("dense")
        return self._get(scope + "/kernel"), self._get(scope + "/bias")

    def bn(self, x, relu=True):
        scope = self._next("sync_batch_normalization")
        gamma, beta, mean, variance = (self._get(f"{scope}/{w}") for w in official.BN_WEIGHTS)
        y = (x - mean) / np.sqrt(variance + EPSILON) * gamma + (0.0 if beta is None else beta)
        return np.maximum(y, 0.0) if relu else y


def _conv(x, kernel, stride):
    """Conv2dFixedPadding: pad k - 1 (odd pixel at the end) and VALID when strided, else SAME."""
    if stride > 1:
        beg, end = (kernel.shape[0] - 1) // 2, kernel.shape[0] // 2
        x = np.pad(x, [(0, 0), (beg, end), (beg, end), (0, 0)])  # (b, h+k-1, w+k-1, c)
        return tf.nn.conv2d(x, kernel, stride, "VALID").numpy()
    return tf.nn.conv2d(x, kernel, 1, "SAME").numpy()


def _avg_pool_2x2(x, stride):
    """ResNet-D shortcut pool: stride 2 = FixedPadding(2) + VALID; stride 1 = SAME (the mean
    of the pixels inside the image)."""
    padded = np.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)])
    inside = np.pad(np.ones_like(x[..., :1]), [(0, 0), (0, 1), (0, 1), (0, 0)])
    h, w = x.shape[1:3]

    def window_sum(a):
        return a[:, :h, :w] + a[:, 1:h + 1, :w] + a[:, :h, 1:w + 1] + a[:, 1:h + 1, 1:w + 1]

    if stride == 1:
        return window_sum(padded) / window_sum(inside)
    return window_sum(padded)[:, ::2, ::2] / 4.0  # VALID counts the padded zero too


def _sk_conv(x, weights, stride):
    branches = weights.bn(_conv(x, weights.conv(), stride))
    a, b = np.split(branches, 2, axis=-1)
    pooled = (a + b).mean(axis=(1, 2), keepdims=True)
    mid = weights.bn(_conv(pooled, weights.conv(), 1))
    logits = _conv(mid, weights.conv(), 1)
    la, lb = np.split(logits, 2, axis=-1)
    wa = 1.0 / (1.0 + np.exp(lb - la))  # softmax over the two branches
    return a * wa + b * (1.0 - wa)


def _bottleneck(x, weights, filters, stride, projection, sk):
    shortcut = x
    if projection:
        if sk:  # ResNet-D: average pool, then a stride-1 1x1 convolution
            shortcut = _conv(_avg_pool_2x2(x, stride), weights.conv(), 1)
        else:
            shortcut = _conv(x, weights.conv(), stride)
        shortcut = weights.bn(shortcut, relu=False)
    y = weights.bn(_conv(x, weights.conv(), 1))
    y = _sk_conv(y, weights, stride) if sk else weights.bn(_conv(y, weights.conv(), stride))
    y = weights.bn(_conv(y, weights.conv(), 1), relu=False)
    assert y.shape[-1] == 4 * filters
    return np.maximum(y + shortcut, 0.0)


def _oracle_forward(values, images, sk, blocks=(3, 4, 6, 3), selector=0):
    weights = _OfficialWeights(values)
    out = {}
    x = images
    if sk:
        x = weights.bn(_conv(x, weights.conv(), 2))
        x = weights.bn(_conv(x, weights.conv(), 1))
        x = weights.bn(_conv(x, weights.conv(), 1))
    else:
        x = weights.bn(_conv(x, weights.conv(), 2))
    x = out["initial_max_pool"] = tf.nn.max_pool2d(x, 3, 2, "SAME").numpy()
    for g, n in enumerate(blocks):
        for i in range(n):
            x = _bottleneck(x, weights, 64 * 2 ** g, (1 if g == 0 else 2) if i == 0 else 1,
                            projection=i == 0, sk=sk)
        out[f"block_group{g + 1}"] = x
    hiddens = [x.mean(axis=(1, 2))]
    out["final_avg_pool"] = hiddens[0]
    for j in range(3):
        kernel, _ = weights.dense()
        hiddens.append(weights.bn(hiddens[-1] @ kernel, relu=j < 2))
    out["proj_head_output"] = hiddens[-1]
    kernel, bias = weights.dense()
    out["logits_sup"] = hiddens[selector] @ kernel + bias
    assert not weights.unread  # the walk above used every official variable
    return out


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("selector", [0, 1])
def test_forward_matches_an_independent_forward_of_the_original(name, selector, fakes, imports):
    values = fakes(name)[1]
    model = imports(name)[0]
    # 40 px: blocks see odd sizes (5x5, 3x3) too, where padding conventions show.
    images = np.random.default_rng(7).uniform(size=(2, 40, 40, 3)).astype(np.float32)
    expected = _oracle_forward(values, images, sk=name.endswith("sk1"), selector=selector)
    model.ft_proj_selector = selector
    try:
        got = model(images, training=False)
    finally:
        model.ft_proj_selector = 0
    # initial_conv is left out: the original's endpoint is the stem conv before its BN.
    for key, want in expected.items():
        scale = np.abs(want).max()
        assert 1e-3 < scale < 1e4, (key, scale)  # the random weights keep values sensible
        np.testing.assert_allclose(got[key].numpy(), want, rtol=1e-4, atol=1e-4 * scale,
                                   err_msg=key)


# --- the command line and the checkpoint it writes ----------------------------------------

def test_cli_writes_a_checkpoint_that_warm_starts_a_fresh_model(fakes, tmp_path, capsys):
    _, values, src = fakes("r50_1x_sk0")
    dst = str(tmp_path / "converted")
    assert convert.main([src, dst, "--resnet_depth=50", "--width_multiplier=1",
                         "--sk_ratio=0", "--num_classes=1000"]) == 0
    assert "copied 281 variables" in capsys.readouterr().out
    assert tf.train.latest_checkpoint(dst) == os.path.join(dst, "ckpt-0")
    cfg = config_lib.load_run_config(os.path.join(dst, "config.json"), data=None)
    assert (cfg.model.resnet_depth, cfg.model.width_multiplier, cfg.model.sk_ratio) == (50, 1, 0)
    assert (cfg.head.num_proj_layers, cfg.head.proj_out_dim, cfg.head.num_classes,
            cfg.head.ft_proj_selector) == (3, 128, 1000, 0)
    fresh = model_lib.build_model(cfg.model, cfg.head, image_size=32)
    warm_start_lib.warm_start(fresh, dst, include_supervised_head=True)
    with open(os.path.join(dst, "import_report.json")) as f:
        pairs = json.load(f)["pairs"]
    ours = {v.path: v for v in fresh.variables}
    assert len(pairs) == len(values) == len(ours)
    for official_name, path in pairs:
        np.testing.assert_array_equal(ours[path].numpy(), values[official_name])


# --- architecture read from the layout alone -------------------------------------------------

def _specs(manifest, rename=lambda name: name):
    """{holder: [VariableSpec]} of a manifest, without building anything."""
    specs = collections.defaultdict(list)
    for name, shape, _, trainable, object_path in manifest["variables"]:
        specs[object_path.split("/")[1]].append(
            official.VariableSpec(rename(name), tuple(shape), trainable))
    return dict(specs)


@pytest.mark.parametrize("name", ["r50_1x_sk0", "r50_1x_sk1", "r152_3x_sk1"])
@pytest.mark.parametrize("variant", ["pretrained", "finetuned"])
def test_architecture_inferred_from_every_manifest(name, variant):
    manifest = _manifest(name, variant)
    config = manifest["config"]
    arch = official.infer_architecture(_specs(manifest))
    blocks = {50: [3, 4, 6, 3], 152: [3, 8, 36, 3]}[config["resnet_depth"]]
    assert arch == dict(
        resnet_depth=config["resnet_depth"], width_multiplier=config["width_multiplier"],
        sk=bool(config["sk"]), sk_ratio=config["sk_ratio"], blocks_per_group=blocks,
        encoder_width=2048 * config["width_multiplier"], proj_head_mode="nonlinear",
        num_proj_layers=3, proj_out_dim=128, num_classes=config["num_classes"])


def test_layer_order_survives_other_uniquifying_suffixes():
    """2020 exports may number layers differently; only the order of the numbers counts."""
    manifest = _manifest("r50_1x_sk1")

    def renumber(name):  # conv2d -> conv2d_100, conv2d_7 -> conv2d_107, ... in the last scope
        *scopes, layer, weight = name.split("/")
        base, _, number = layer.rpartition("_")
        layer = f"{base}_{int(number) + 100}" if number.isdigit() else f"{layer}_100"
        return "/".join(scopes + [layer, weight])

    original = _specs(manifest)
    renamed = _specs(manifest, renumber)
    for holder in original:
        # Shuffled too: the order of the variables in the list must not matter either.
        order = np.random.default_rng(0).permutation(len(renamed[holder]))
        shuffled = [renamed[holder][i] for i in order]
        for kind, layers in official.official_layers(original[holder]).items():
            again = official.official_layers(shuffled)[kind]
            assert [renumber(layer.scope + "/x").rsplit("/", 1)[0] for layer in layers] == \
                [layer.scope for layer in again]
    assert official.infer_architecture(renamed) == official.infer_architecture(original)


def test_architecture_check_names_the_differing_flags():
    specs = _specs(_manifest("r50_1x_sk1"))
    with pytest.raises(official.ArchitectureMismatchError) as error:
        official.infer_architecture(specs, resnet_depth=101, width_multiplier=1, sk_ratio=0.0,
                                   num_classes=10)
    message = str(error.value)
    assert "resnet_depth: the SavedModel has 50, the flags say 101" in message
    assert "sk_ratio: the SavedModel has 0.0625, the flags say 0.0" in message
    assert "num_classes: the SavedModel has 1000, the flags say 10" in message
    assert "width_multiplier" not in message
    # At 1x every SK attention is 32 wide for any ratio up to 1/16: the same network.
    assert official.infer_architecture(specs, sk_ratio=0.05)["sk_ratio"] == 0.0625
    with pytest.raises(official.ArchitectureMismatchError, match="sk_ratio"):
        official.infer_architecture(specs, sk_ratio=0.125)  # 64-wide attention in group 4


def test_cli_reports_a_flag_mismatch(fakes, tmp_path, capsys):
    src = fakes("r50_1x_sk0")[2]
    dst = str(tmp_path / "never")
    assert convert.main([src, dst, "--resnet_depth=152", "--sk_ratio=0.0625"]) == 2
    err = capsys.readouterr().err
    assert "resnet_depth: the SavedModel has 50, the flags say 152" in err
    assert "sk_ratio: the SavedModel has 0.0, the flags say 0.0625" in err
    assert not os.path.exists(dst)


# --- mismatches: a clear error, and nothing assigned ------------------------------------------

def _variables_with(manifest, values, changes):
    """{holder: tf.Variables} of a manifest, with `changes` {name: new shape or None (drop)}."""
    tree = collections.defaultdict(list)
    for name, shape, _, trainable, object_path in manifest["variables"]:
        name = _bare(name)
        shape = changes.get(name, shape)
        if shape is None:
            continue
        value = values[name] if list(shape) == list(values[name].shape) else np.zeros(shape)
        tree[object_path.split("/")[1]].append(
            tf.Variable(value, name=name, trainable=trainable, dtype=tf.float32))
    return dict(tree)


def _assert_unchanged(model, values, report):
    ours = {v.path: v for v in model.variables}
    for official_name, path in report.pairs:
        np.testing.assert_array_equal(ours[path].numpy(), values[official_name])


def test_shape_mismatch_names_both_variables_and_assigns_nothing(fakes, imports):
    manifest, values, _ = fakes("r50_1x_sk0")
    model, report = imports("r50_1x_sk0")
    altered = "resnet/block_group2/bottleneck_block_3/conv2d_fixed_padding_13/conv2d_13/kernel"
    # Everything else zero: a partial load would show in the model's values.
    zeros = {k: np.zeros_like(v) for k, v in values.items()}
    source = _variables_with(manifest, zeros, {altered: [3, 3, 128, 64]})
    with pytest.raises(official.ImportMismatchError) as error:
        official_weights.assign_official(model, source)
    message = str(error.value)
    ours = model.encoder.block_groups[1].blocks[0].main_path[1].conv.kernel  # by attribute
    assert f"official {altered} (3, 3, 128, 64) vs ours {ours.path} (3, 3, 128, 128)" in message
    assert "1 problem(s)" in message and "nothing was assigned" in message
    _assert_unchanged(model, values, report)


def test_missing_layer_is_counted_and_assigns_nothing(fakes, imports):
    manifest, values, _ = fakes("r50_1x_sk0")
    model, report = imports("r50_1x_sk0")
    zeros = {k: np.zeros_like(v) for k, v in values.items()}
    last_head = [_bare(n) for n, *_ in manifest["variables"] if "/nl_2/" in n]
    source = _variables_with(manifest, zeros, dict.fromkeys(last_head))
    with pytest.raises(official.ImportMismatchError) as error:
        official_weights.assign_official(model, source)
    message = str(error.value)
    assert "_projection_head: the SavedModel has 2 dense layers, the model 3" in message
    assert "_projection_head: the SavedModel has 2 bn layers, the model 3" in message
    _assert_unchanged(model, values, report)


# --- recognising an official SavedModel --------------------------------------------------------

def test_is_official_saved_model(fakes, tmp_path):
    assert official.is_official_saved_model(fakes("r50_1x_sk0")[2])

    def save(root, name):
        tf.saved_model.save(root, str(tmp_path / name))
        return str(tmp_path / name)

    ours = tf.Module()  # our exports carry variable_paths beside a model
    ours.model = tf.Module()
    ours.model.resnet_model = tf.Module()
    ours.model.resnet_model.w = tf.Variable(1.0)
    ours.variable_paths = tf.Variable(["a"])
    other = tf.Module()
    other.model = tf.Module()
    other.model.w = tf.Variable(1.0)
    assert not official.is_official_saved_model(save(ours, "ours"))
    assert not official.is_official_saved_model(save(other, "other"))
    assert not official.is_official_saved_model(str(tmp_path))
    with pytest.raises(ValueError, match="not an official SimCLRv2 SavedModel"):
        official.load_official(str(tmp_path / "other"))


def test_warm_start_reads_an_official_saved_model_and_checks_the_flags(tmp_path):
    """--checkpoint=<official SavedModel> goes through the importer, architecture checked."""
    layout = _manifest("r50_1x_sk0")
    values = _official_values(layout, seed=7)
    src = tmp_path / "official"
    _save_fake_official(layout, values, str(src))
    arch = official.infer_architecture(official.load_official(str(src)))
    model_cfg, head_cfg = official.configs_for(arch, ft_proj_selector=1)
    model = model_lib.build_model(model_cfg, head_cfg, image_size=32)
    warm_start_lib.warm_start(model, str(src), include_supervised_head=True)
    np.testing.assert_array_equal(model.encoder.stem.convs[0].conv.kernel.numpy(),
                                  values["resnet/conv2d_fixed_padding/conv2d/kernel"])
    np.testing.assert_array_equal(model.supervised_head.dense.bias.numpy(),
                                  values["head_supervised/linear_layer/dense_3/bias"])
    wrong = model_lib.build_model(
        config_lib.ModelConfig(resnet_depth=101, cifar_stem=False), head_cfg, image_size=32)
    with pytest.raises(official.ArchitectureMismatchError, match="resnet_depth"):
        warm_start_lib.warm_start(wrong, str(src))


def test_official_teacher_of_another_class_count_is_refused_before_training(fakes):
    """The official exports record no class names; their head's width is read from the index."""
    from checkpoints import provenance
    from flags import checks
    manifest, _, directory = fakes("r50_1x_sk0")
    (width,) = {shape[-1] for name, shape, *_ in manifest["variables"]
                if "head_supervised" in name and len(shape) == 2}
    assert provenance.record(directory)["num_classes"] == width == 1000
    checks.check_teacher(directory, [f"c{i}" for i in range(width)])  # fits: no error
    with pytest.raises(ValueError, match="the teacher has 1000 classes, the data 10"):
        checks.check_teacher(directory, [f"c{i}" for i in range(10)])


def test_prediction_reads_an_official_saved_model(fakes, imports, tmp_path):
    """--mode=predict's loader: the official layout is described without loading (224 px, the
    ImageNet stem), rebuilt with every variable, its 1000 classes named by WordNet id; a
    prediction over two images equals the imported model's top-5 and final_avg_pool."""
    import csv
    from checkpoints import trained
    from data import datasets
    from data.config import DataConfig
    from stages import predict
    _, _, directory = fakes("r50_1x_sk0")
    described = trained.describe(directory)
    assert (described.kind, described.image_size, described.cifar_stem) == (
        trained.OFFICIAL, 224, False)
    rng = np.random.default_rng(0)
    for i in range(2):
        tf.io.write_file(str(tmp_path / "img" / f"{i}.png"), tf.io.encode_png(
            rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)))
    source = datasets.load(DataConfig(dataset=f"folder:{tmp_path / 'img'}"))
    data = DataConfig(dataset="x", eval_split="train", image_size=40, cache=False)
    cfg = predict.PredictConfig(directory, str(tmp_path / "out"), data, batch_size=2)
    loaded = predict.build(dataclasses.replace(described, image_size=40), cfg.embedding_layer)
    assert loaded.description.class_names[:2] == ("n01440764", "n01443537")
    summary = predict.run(cfg, tf.distribute.get_strategy(), source, loaded)
    assert (summary["predicted"], summary["classes"], summary["train_mode"]) == (2, 1000,
                                                                                 "official")
    model, _ = imports("r50_1x_sk0")
    images = np.stack([augment.preprocess_for_eval(tf.io.decode_png(tf.io.read_file(p)), 40)
                       for p in source.paths("train")])
    out = model(images, training=False)
    with open(tmp_path / "out" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    top5 = np.argsort(-out["logits_sup"].numpy(), axis=-1)[:, :5]
    names = trained.imagenet_class_names()
    assert [[r[f"class_{j}"] for j in range(1, 6)] for r in rows] == [
        [names[k] for k in row] for row in top5]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "embeddings.npy"),
                               out["final_avg_pool"].numpy(), rtol=1e-4, atol=1e-4)
