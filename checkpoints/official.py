"""Google's official SimCLRv2 TF2 SavedModels: recognised, loaded, read as layers, and their
architecture inferred. checkpoints/official_weights.py copies them into our SimCLRModel;
checkpoints/convert.py is the command line.

Layout read (shared/data/official_savedmodel_layout/README.md): every variable lives in
`loaded.model.{resnet_model,_projection_head,supervised_head}.variables`, each list being one
Keras layer tree's trainable weights followed by its non-trainable ones. The flat order is thus
not "gamma, beta, mean, variance" per batch norm. Variables are grouped into layers by name
(the scope before the last '/': a conv kernel; a BN's gamma/beta/moving statistics; a dense
kernel and bias), and layers are ordered by the uniquifying suffix of their last scope part
(`conv2d_7`, `sync_batch_normalization_12`, `dense_2`), which tf-keras hands out in creation
order. The original creates layers in the order its blocks call them, as our model does, so
the k-th official conv goes into our k-th conv, the k-th BN into our k-th BN, and so on, each
pairing checked by shape. Names of the 2020 files may differ in those suffixes: only their order
matters (if suffixes repeat, the variables' own order is used), and no official name is ever
matched against one of ours.

Batch norm: the official BN epsilon is 1e-5 and its momentum 0.9, as in our ModelConfig.

Which layer feeds the supervised head: the official fine-tuned exports compute `logits_sup`
from `final_avg_pool` (ft_proj_selector=0), while SimCLRv2 fine-tunes the 1%/10% models from
the first projection layer (ft_proj_selector=1). The variables cannot tell the two apart (the
first head layer keeps the encoder's width), so this importer only copies weights and the
caller picks the selector (HeadConfig.ft_proj_selector; 0 reproduces those exports' logits).

Also, the official `initial_conv` endpoint is the stem's last convolution before its batch
norm; the weights do not depend on that.
"""
import dataclasses
import os
import re
from collections import namedtuple
from typing import Dict, List, Sequence

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tf2 import config as config_lib
from tf2 import resnet

ENCODER, PROJECTION_HEAD, SUPERVISED_HEAD = "resnet_model", "_projection_head", "supervised_head"
HOLDERS = (ENCODER, PROJECTION_HEAD, SUPERVISED_HEAD)
CONV, BN, DENSE = "conv", "bn", "dense"
BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")
PAPER_SK_RATIO = 0.0625

# A variable described without its value, e.g. a line of a layout manifest.
VariableSpec = namedtuple("VariableSpec", ["name", "shape", "trainable"])


class ImportMismatchError(ValueError):
    """The official variables do not fit the model; nothing was assigned."""


class ArchitectureMismatchError(ValueError):
    """The SavedModel's architecture differs from the one the caller asked for."""


@dataclasses.dataclass
class OfficialLayer:
    """One Keras layer of the official model, rebuilt from its variables' names.

    Attributes:
      kind: CONV, BN or DENSE.
      scope: the variable names' common prefix, e.g. 'resnet/.../sync_batch_normalization_5'.
      weights: {'kernel' | 'bias' | 'gamma' | ...: variable (or VariableSpec)}.
      number: the uniquifying suffix of the scope's last part (0 when it has none).
      position: index of the layer's first variable in its holder's list.
    """
    kind: str
    scope: str
    weights: Dict[str, object]
    number: int
    position: int

    def shape(self, weight: str) -> tuple:
        return tuple(int(d) for d in self.weights[weight].shape)


def is_official_saved_model(path: str) -> bool:
    """True if `path` is a SavedModel laid out like the official SimCLRv2 exports.

    Reads only saved_model.pb's object graph: its root has a `model` child holding
    `resnet_model`, and none of the `variable_paths` that our own exports carry.
    """
    pb_path = os.path.join(path, "saved_model.pb")
    if not tf.io.gfile.exists(pb_path):
        return False
    saved = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(pb_path, "rb") as f:
        saved.ParseFromString(f.read())
    if not saved.meta_graphs:
        return False
    nodes = saved.meta_graphs[0].object_graph_def.nodes
    root = {c.local_name: c.node_id for c in nodes[0].children}
    if "model" not in root or "variable_paths" in root:
        return False
    return ENCODER in {c.local_name for c in nodes[root["model"]].children}


def load_official(path: str):
    """Loads an official SimCLRv2 SavedModel (`tf.saved_model.load`) after checking its layout.

    Raises:
      ValueError: `path` is not a SavedModel laid out as the official exports.
    """
    if not is_official_saved_model(path):
        raise ValueError(f"{path} is not an official SimCLRv2 SavedModel: expected "
                         f"saved_model.pb whose root has model/{ENCODER}")
    return tf.saved_model.load(path)


def official_variables(source) -> Dict[str, list]:
    """{holder: variables} of a loaded official SavedModel.

    Args:
      source: what `load_official` returns, or a dict {holder: sequence of objects with `name`
        and `shape` (tf.Variable or VariableSpec)} for holders among HOLDERS.
    """
    if isinstance(source, dict):
        unknown = set(source) - set(HOLDERS)
        if unknown:
            raise ValueError(f"unknown variable holders {sorted(unknown)}; expected {HOLDERS}")
        return {h: list(source.get(h) or []) for h in HOLDERS}
    model = getattr(source, "model", None)
    if model is None or not hasattr(model, ENCODER):
        raise ValueError(f"not an official SimCLRv2 SavedModel: no model.{ENCODER}")
    return {h: list(getattr(getattr(model, h, None), "variables", None) or []) for h in HOLDERS}


def _split_name(name: str):
    """'a/b/conv2d_3/kernel:0' -> ('a/b/conv2d_3', 'kernel', 3)."""
    name = re.sub(r":\d+$", "", name)
    scope, _, weight = name.rpartition("/")
    match = re.search(r"_(\d+)$", scope.rpartition("/")[2])
    return scope, weight, int(match.group(1)) if match else 0


def _kind(scope: str, weights: Dict[str, object]) -> str:
    names = set(weights)
    if names <= set(BN_WEIGHTS):
        return BN
    if names in ({"kernel"}, {"kernel", "bias"}):
        rank = len(weights["kernel"].shape)
        if rank in (2, 4):
            return CONV if rank == 4 else DENSE
    raise ImportMismatchError(f"unrecognised official layer {scope!r} with weights "
                              f"{sorted(names)}")


def official_layers(variables: Sequence) -> Dict[str, List[OfficialLayer]]:
    """Groups one holder's variables into layers; returns {kind: layers in creation order}."""
    by_scope: Dict[str, OfficialLayer] = {}
    for position, var in enumerate(variables):
        scope, weight, number = _split_name(var.name)
        layer = by_scope.setdefault(scope, OfficialLayer("", scope, {}, number, position))
        if weight in layer.weights:
            raise ImportMismatchError(f"two official variables named {scope}/{weight}")
        layer.weights[weight] = var
    out: Dict[str, List[OfficialLayer]] = {CONV: [], BN: [], DENSE: []}
    for layer in by_scope.values():
        layer.kind = _kind(layer.scope, layer.weights)
        out[layer.kind].append(layer)
    for kind, layers in out.items():
        numbers = [layer.number for layer in layers]
        # Suffixes give creation order even where the flat list puts frozen layers last; if
        # they repeat (names uniquified some other way), the list's own order is all there is.
        unique = len(set(numbers)) == len(numbers)
        layers.sort(key=lambda layer: layer.number if unique else layer.position)
    return out


def _parse_encoder(shapes: List[tuple]) -> dict:
    """Reads depth, width and SK from the encoder's conv kernel shapes (kh, kw, in, out).

    Stem: convolutions up to the first 1x1. Then bottleneck blocks: [projection 1x1 (in->4f),
    first block of each group only], reduce 1x1 (->f), 3x3 (f->f, or SK: 3x3 f->2f, 1x1 f->mid,
    1x1 mid->2f), expand 1x1 (f->4f).
    """
    def is_1x1(s):
        return s[:2] == (1, 1)

    i = next((k for k, s in enumerate(shapes) if is_1x1(s)), len(shapes))
    stem, groups, group_filters, sk_dims = shapes[:i], [], [], []
    while i < len(shapes):
        a, b = shapes[i], shapes[i + 1] if i + 1 < len(shapes) else None
        if b is not None and is_1x1(a) and is_1x1(b) and a[2] == b[2] and a[3] == 4 * b[3]:
            groups.append(0)
            group_filters.append(b[3])
            i += 1
        f = shapes[i][3]
        if not groups or i + 2 >= len(shapes) or shapes[i + 1][:2] != (3, 3):
            raise ImportMismatchError(f"encoder conv {i} {shapes[i]}: not a bottleneck block")
        if shapes[i + 1][3] == 2 * f:  # selective kernel: one 3x3 makes both branches
            sk_dims.append((f, shapes[i + 2][3]))
            i += 2
        i += 2
        if i >= len(shapes) or shapes[i][2:] != (f, 4 * f):
            raise ImportMismatchError(f"encoder conv {i}: expected a 1x1 {f}->{4 * f} expand")
        groups[-1] += 1
        i += 1
    if not stem or not groups:
        raise ImportMismatchError(f"encoder layout not recognised (stem {stem})")
    return dict(stem=stem, blocks=tuple(groups), group_filters=group_filters, sk_dims=sk_dims)


def _sk_ratio(sk_dims) -> float:
    if not sk_dims:
        return 0.0
    if all(mid == resnet.sk_mid_dim(f, PAPER_SK_RATIO) for f, mid in sk_dims):
        return PAPER_SK_RATIO
    return max(mid / f for f, mid in sk_dims)


def _encoder_architecture(parsed: dict) -> dict:
    depths = {resnet.LAYERS_PER_GROUP[d]: d for d in resnet.BOTTLENECK_DEPTHS}
    if parsed["blocks"] not in depths:
        raise ImportMismatchError(f"blocks per group {parsed['blocks']} match no ResNet depth")
    width = parsed["stem"][-1][3]
    sk = bool(parsed["sk_dims"])
    deep_stem = [s[:2] for s in parsed["stem"]] == [(3, 3)] * 3
    if width % 64 or deep_stem != sk or len(parsed["sk_dims"]) not in (0, sum(parsed["blocks"])):
        raise ImportMismatchError(
            f"unsupported encoder: stem {parsed['stem']}, {len(parsed['sk_dims'])} SK blocks "
            f"of {sum(parsed['blocks'])} (SK comes with the 3-conv ResNet-D stem)")
    multiplier = width // 64
    expected = [f * multiplier for f in resnet.GROUP_FILTERS]
    if parsed["group_filters"] != expected:
        raise ImportMismatchError(f"group widths {parsed['group_filters']}, expected {expected}")
    return dict(resnet_depth=depths[parsed["blocks"]], width_multiplier=multiplier, sk=sk,
                sk_ratio=_sk_ratio(parsed["sk_dims"]), blocks_per_group=list(parsed["blocks"]),
                encoder_width=4 * expected[-1])


def infer_architecture(source, **expected) -> dict:
    """Reads the architecture of an official SavedModel from its variables' shapes.

    Args:
      source: a loaded official SavedModel or a {holder: variables} dict (see
        `official_variables`).
      **expected: flags the caller believes in (resnet_depth, width_multiplier, sk_ratio,
        num_proj_layers, proj_out_dim, num_classes, ...); None values are not checked.

    Returns:
      dict(resnet_depth, width_multiplier, sk, sk_ratio, blocks_per_group, encoder_width,
      proj_head_mode, num_proj_layers, proj_out_dim, num_classes).

    Raises:
      ArchitectureMismatchError: naming every flag whose value differs from the file's.
      ImportMismatchError: the variables form no architecture this importer knows.
    """
    holders = official_variables(source)
    encoder = official_layers(holders[ENCODER])
    arch = _encoder_architecture(_parse_encoder([c.shape("kernel") for c in encoder[CONV]]))
    head = official_layers(holders[PROJECTION_HEAD])[DENSE]
    arch["proj_head_mode"] = "nonlinear" if head else "none"
    arch["num_proj_layers"] = len(head)
    arch["proj_out_dim"] = head[-1].shape("kernel")[1] if head else arch["encoder_width"]
    sup = official_layers(holders[SUPERVISED_HEAD])[DENSE]
    arch["num_classes"] = sup[0].shape("kernel")[1] if sup else 0
    check_architecture(arch, **expected)
    return arch


def check_architecture(arch: dict, **expected):
    """Raises ArchitectureMismatchError listing each flag in `expected` that `arch` contradicts."""
    differences = []
    for flag, value in sorted(expected.items()):
        if value is None:
            continue
        if flag not in arch:
            raise ValueError(f"unknown architecture flag {flag!r}; known: {sorted(arch)}")
        if flag == "sk_ratio":  # ratios that give the same SK widths build the same network
            agrees = (value > 0) == arch["sk"] and (
                not arch["sk"] or _sk_mids(arch, value) == _sk_mids(arch, arch["sk_ratio"]))
        else:
            agrees = value == arch[flag]
        if not agrees:
            differences.append(f"{flag}: the SavedModel has {arch[flag]!r}, the flags say "
                               f"{value!r}")
    if differences:
        raise ArchitectureMismatchError(
            "official SavedModel does not match the flags:\n  " + "\n  ".join(differences))


def _sk_mids(arch: dict, ratio: float) -> List[int]:
    """Attention widths of every SK block of `arch` for a given sk_ratio."""
    widths = [f * arch["width_multiplier"] for f in resnet.GROUP_FILTERS]
    return [resnet.sk_mid_dim(w, ratio)
            for w, n in zip(widths, arch["blocks_per_group"]) for _ in range(n)]


def configs_for(arch: dict, ft_proj_selector: int = 0):
    """(ModelConfig, HeadConfig) of the official architecture `arch`.

    `ft_proj_selector`: 0 gives the official exports' logits, 1 the paper's 1%/10% setting.
    """
    model_cfg = config_lib.ModelConfig(
        resnet_depth=arch["resnet_depth"], width_multiplier=arch["width_multiplier"],
        sk_ratio=arch["sk_ratio"], se_ratio=0.0, cifar_stem=False, batch_norm_decay=0.9,
        batch_norm_epsilon=1e-5, global_bn=True)
    head_cfg = config_lib.HeadConfig(
        proj_head_mode=arch["proj_head_mode"], num_proj_layers=max(arch["num_proj_layers"], 1),
        proj_out_dim=arch["proj_out_dim"], ft_proj_selector=ft_proj_selector,
        num_classes=arch["num_classes"])
    return model_cfg, head_cfg
