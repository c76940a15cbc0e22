"""Import of Google's official SimCLRv2 TF2 SavedModels into our SimCLRModel.

    python -m checkpoints.convert gs-copy/r50_1x_sk1/saved_model runs/r50_1x_sk1 \
        --resnet_depth=50 --width_multiplier=1 --sk_ratio=0.0625

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
import argparse
import dataclasses
import json
import os
import re
import sys
from collections import namedtuple
from typing import Dict, List, Optional, Sequence

import keras
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tf2 import config as config_lib
from tf2 import resnet

ENCODER, PROJECTION_HEAD, SUPERVISED_HEAD = "resnet_model", "_projection_head", "supervised_head"
HOLDERS = (ENCODER, PROJECTION_HEAD, SUPERVISED_HEAD)
CONV, BN, DENSE = "conv", "bn", "dense"
BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")
PAPER_SK_RATIO = 0.0625
_SK_MIN_DIM = 32  # the original floors the SK attention width at 32 channels
_MAX_LISTED = 12  # problems spelled out in an error; the rest are counted

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


@dataclasses.dataclass
class ImportReport:
    """What `assign_official` did.

    Attributes:
      architecture: `infer_architecture` of the source.
      pairs: (official variable name, our variable path), one per variable copied.
      counts: {'<holder>/<kind>': layers paired}.
      notes: things worth knowing that are not errors (e.g. a supervised head left out).
    """
    architecture: dict
    pairs: List[tuple]
    counts: Dict[str, int]
    notes: List[str]

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "variables_copied": len(self.pairs)}


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
    if all(mid == max(int(f * PAPER_SK_RATIO), _SK_MIN_DIM) for f, mid in sk_dims):
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
    expected = [f * multiplier for f in (64, 128, 256, 512)]
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
    widths = [f * arch["width_multiplier"] for f in (64, 128, 256, 512)]
    return [max(int(w * ratio), _SK_MIN_DIM)
            for w, n in zip(widths, arch["blocks_per_group"]) for _ in range(n)]


def _our_layers(root: keras.layers.Layer) -> List[keras.layers.Layer]:
    """Our layers that own weights, depth first, each parent's children in creation order.

    (Keras' own `_flatten_layers` reverses siblings, hence this walk.)
    """
    out = []
    for sub in root._layers:  # Keras 3 keeps sub-layers in the order they were assigned
        out.extend(_our_layers(sub) if sub._layers else [sub] if sub.weights else [])
    return out


def _kind_of_ours(layer) -> Optional[str]:
    for cls, kind in ((keras.layers.Conv2D, CONV), (keras.layers.BatchNormalization, BN),
                      (keras.layers.Dense, DENSE)):
        if isinstance(layer, cls):
            return kind
    return None


def _our_weights(layer, kind: str) -> Dict[str, object]:
    names = BN_WEIGHTS if kind == BN else ("kernel", "bias")
    return {w: getattr(layer, w, None) for w in names}


def _describe(var) -> str:
    if var is None:
        return "(none)"
    name = getattr(var, "path", None) or re.sub(r":\d+$", "", var.name)
    return f"{name} {tuple(int(d) for d in var.shape)}"


def _pair_part(holder: str, official: Dict[str, List[OfficialLayer]], root, problems, pairs):
    """Pairs the k-th official layer of each kind with our k-th one, weight by weight.

    Returns:
      {kind: layers paired}.
    """
    ours: Dict[str, list] = {CONV: [], BN: [], DENSE: []}
    for layer in _our_layers(root):
        kind = _kind_of_ours(layer)
        if kind is None:
            problems.append(f"{holder}: our layer {layer.path} ({type(layer).__name__}) has no "
                            "official counterpart")
        else:
            ours[kind].append(layer)
    counts = {}
    for kind in (CONV, BN, DENSE):
        theirs, mine = official[kind], ours[kind]
        if len(theirs) != len(mine):
            problems.append(f"{holder}: the SavedModel has {len(theirs)} {kind} layers, the "
                            f"model {len(mine)}")
        for i, (layer, our_layer) in enumerate(zip(theirs, mine)):
            our_weights = _our_weights(our_layer, kind)
            for weight in ("kernel", "bias") + BN_WEIGHTS:
                a, b = layer.weights.get(weight), our_weights.get(weight)
                if a is None and b is None:
                    continue
                if a is None or b is None or tuple(a.shape) != tuple(b.shape):
                    problems.append(f"{holder} {kind} #{i} {weight}: official {_describe(a)} "
                                    f"vs ours {_describe(b)}")
                else:
                    pairs.append((a, b))
        if theirs or mine:
            counts[f"{holder}/{kind}"] = min(len(theirs), len(mine))
    return counts


def _mismatch_error(problems: List[str], counts: Dict[str, int]) -> ImportMismatchError:
    shown = "\n  ".join(problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    return ImportMismatchError(
        f"official SavedModel does not fit the model ({len(problems)} problem(s); nothing was "
        f"assigned):\n  {shown}" + (f"\n  ... and {more} more" if more > 0 else "")
        + f"\nlayers paired so far: {counts}")


def assign_official(model, source, include_supervised_head: bool = True) -> ImportReport:
    """Copies every official variable into the matching variable of a built SimCLRModel.

    Encoder convs and BNs, projection-head dense kernels and BNs, and (when both sides have
    one and `include_supervised_head`) the supervised head's kernel and bias are paired by
    kind and creation order and checked by shape. Either everything fits and is copied, or
    nothing is.

    Args:
      model: a built `tf2.model.SimCLRModel` of the SavedModel's architecture.
      source: `load_official(path)`, or a {holder: tf.Variables} dict.
      include_supervised_head: also copy the supervised head.

    Returns:
      an ImportReport.

    Raises:
      ImportMismatchError: listing the first mismatches (official name and shape, our path
        and shape) and the counts of layers paired; no variable has been changed.
    """
    if not model.variables:
        raise ValueError("assign_official needs a built model: build it with image_size=...")
    holders = official_variables(source)
    parts = [(ENCODER, model.encoder), (PROJECTION_HEAD, model.projection_head)]
    notes = []
    has_sup = (bool(holders[SUPERVISED_HEAD]), model.supervised_head is not None)
    if include_supervised_head and all(has_sup):
        parts.append((SUPERVISED_HEAD, model.supervised_head))
    elif any(has_sup):
        notes.append("supervised head not copied: " + (
            "include_supervised_head=False" if not include_supervised_head else
            "only the " + ("SavedModel" if has_sup[0] else "model") + " has one"))
    problems, pairs, counts = [], [], {}
    for holder, root in parts:
        counts.update(_pair_part(holder, official_layers(holders[holder]), root, problems,
                                 pairs))
    if problems:
        raise _mismatch_error(problems, counts)
    for theirs, ours in pairs:
        ours.assign(tf.cast(tf.convert_to_tensor(theirs), ours.dtype))
    try:
        architecture = infer_architecture(holders)
    except ImportMismatchError as e:  # every weight fitted: the model is right, say so anyway
        architecture, notes = {}, notes + [f"architecture not inferred: {e}"]
    return ImportReport(architecture, [(re.sub(r":\d+$", "", a.name), b.path) for a, b in pairs],
                        counts, notes)


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


def import_official(path: str, ft_proj_selector: int = 0, **expected):
    """Loads an official SavedModel into a new SimCLRModel of its architecture.

    Args:
      path: official SavedModel directory.
      ft_proj_selector: the model's supervised-head input (see the module docstring).
      **expected: architecture flags to check (see `infer_architecture`).

    Returns:
      (model, ImportReport).
    """
    from tf2 import model as model_lib

    loaded = load_official(path)
    arch = infer_architecture(loaded, **expected)
    model_cfg, head_cfg = configs_for(arch, ft_proj_selector)
    # Variables do not depend on the image size: build on a small image to save time.
    model = model_lib.build_model(model_cfg, head_cfg, image_size=32)
    return model, assign_official(model, loaded)


def convert(src: str, dst: str, ft_proj_selector: int = 0, **expected) -> ImportReport:
    """Imports an official SavedModel and writes it as one of our checkpoints.

    Writes `dst/ckpt-0` (a `tf.train.Checkpoint(model=...)` as warm starts read it, found by
    `tf.train.latest_checkpoint(dst)`), `dst/config.json` (a RunConfig record whose model and
    head parts describe the architecture, the rest being defaults) and `dst/import_report.json`.

    Args:
      src: official SavedModel directory.
      dst: output directory.
      ft_proj_selector, **expected: as for `import_official`.
    """
    from checkpoints import manager as ckpt_lib

    model, report = import_official(src, ft_proj_selector, **expected)
    ckpt_lib.CheckpointManager(dst, max_to_keep=1, model=model).save(0)
    model_cfg, head_cfg = configs_for(report.architecture, ft_proj_selector)
    run_cfg = config_lib.RunConfig(model=model_cfg, head=head_cfg, data=None, model_dir=dst,
                                   checkpoint=src)
    ckpt_lib.write_json_atomic(os.path.join(dst, "config.json"),
                               config_lib.run_config_to_dict(run_cfg))
    ckpt_lib.write_json_atomic(os.path.join(dst, "import_report.json"),
                               {"source": src, **report.to_json()})
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m checkpoints.convert",
        description="Convert an official SimCLRv2 TF2 SavedModel into a checkpoint of ours.")
    parser.add_argument("src", help="official SavedModel directory")
    parser.add_argument("dst", help="output directory (ckpt-0, config.json, import_report.json)")
    for flag, kind in (("resnet_depth", int), ("width_multiplier", int), ("sk_ratio", float),
                       ("num_proj_layers", int), ("proj_out_dim", int), ("num_classes", int)):
        parser.add_argument(f"--{flag}", type=kind, default=None,
                            help="checked against the SavedModel (optional)")
    parser.add_argument("--ft_proj_selector", type=int, default=0,
                        help="recorded in config.json: 0 = official exports, 1 = paper 1%%/10%%")
    args = vars(parser.parse_args(argv))
    src, dst, selector = args.pop("src"), args.pop("dst"), args.pop("ft_proj_selector")
    try:
        report = convert(src, dst, ft_proj_selector=selector, **args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.architecture))
    print(f"copied {len(report.pairs)} variables into {dst}/ckpt-0")
    for note in report.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
