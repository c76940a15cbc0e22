"""Copies the variables of an official SimCLRv2 SavedModel (checkpoints/official.py reads it)
into our SimCLRModel: layers paired by kind and creation order, each pairing checked by shape;
everything fits and is copied, or nothing is.
"""
import dataclasses
import re
from typing import Dict, List, Optional

import keras
import tensorflow as tf

from checkpoints.official import (BN, BN_WEIGHTS, CONV, DENSE, ENCODER, PROJECTION_HEAD,
                                  SUPERVISED_HEAD, ImportMismatchError, OfficialLayer,
                                  configs_for, infer_architecture, load_official,
                                  official_layers, official_variables)

_MAX_LISTED = 12  # problems spelled out in an error; the rest are counted


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
