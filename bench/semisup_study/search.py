"""The one hyperparameter search every arm of the study gets, on the holdout.

A line search over the axes in order (learning rate, then weight decay, then length): each
axis tries its grid with the other axes at their current best, and while the best value lies
on an edge of what was tried, tries the next extension past that edge, up to the axis' cap.
The best point so far is always on the next line, so the final point is the best of all
trials. Every trial, every extension and every chosen value that sits on a cap is recorded.

The rule is data (`Rule`), the same for every arm; the runner supplies `score(point)`.
"""
import dataclasses
import math
from typing import Callable, Dict, List, Optional, Tuple

Point = Dict[str, float]
Score = Callable[[Point], Optional[float]]  # None: the trial failed (a non-finite loss)


@dataclasses.dataclass(frozen=True)
class Axis:
    """One searched hyperparameter.

    Attributes:
      name: the point's key.
      grid: the values always tried, ascending.
      down, up: extensions past the lowest / highest grid value, nearest first; their length
        is the cap in that direction (() = a cap of 0: an edge, never extended). None: not a
        direction of the search at all (length below the budget), so never "on a cap".
      start: the value the lines of earlier axes use.
    """
    name: str
    grid: Tuple[float, ...]
    down: Optional[Tuple[float, ...]]
    up: Optional[Tuple[float, ...]]
    start: float

    def describe(self) -> str:
        ext = []
        for word, values in (("down", self.down), ("up", self.up)):
            if values is not None:
                shown = ", ".join(f"{v:g}" for v in values) or "none"
                ext.append(f"{word} {shown} (cap {len(values)})")
        grid = ", ".join(f"{v:g}" for v in self.grid)
        return f"{self.name}: grid {grid}; extensions " + "; ".join(ext)


@dataclasses.dataclass(frozen=True)
class Rule:
    axes: Tuple[Axis, ...]  # searched in this order

    def describe(self) -> List[str]:
        return [a.describe() for a in self.axes]


# Learning rate of momentum SGD per 128 images (linear scaling), weight decay, and length in
# multiples of the arm's budget. The grid spans 30x in lr, 10x in wd, the budget and twice it.
# Length extends up to 32x: at the former cap of 8x, supervised training from scratch was still
# rising at 10% and all labels (+1.9 and +1.7 holdout points from 4x to 8x).
RULE = Rule((
    Axis("learning_rate", (0.01, 0.03, 0.1, 0.3), down=(0.003, 0.001), up=(1.0, 3.0),
         start=0.03),
    Axis("weight_decay", (5e-5, 5e-4), down=(5e-6,), up=(5e-3,), start=5e-4),
    Axis("length", (1.0, 2.0), down=None, up=(4.0, 8.0, 16.0, 32.0), start=1.0)))


def key(point: Point) -> Tuple[Tuple[str, float], ...]:
    return tuple(sorted(point.items()))


def _value(score: Optional[float]) -> float:
    return -math.inf if score is None else score


def search(rule: Rule, score: Score) -> dict:
    """Runs the rule with `score` (memoised: a point is scored once).

    Returns:
      {'trials': [{'point', 'score', 'axis', 'role': 'grid'|'extension'}] in the order run,
       'extensions': [{'axis', 'direction', 'value', 'from'}], 'chosen': point,
       'chosen_score': float or None, 'on_cap': [{'axis', 'direction'}]}
    """
    scores: Dict[tuple, Optional[float]] = {}
    out = {"trials": [], "extensions": []}
    point = {a.name: a.start for a in rule.axes}

    def evaluate(p: Point, axis: str, role: str) -> Optional[float]:
        k = key(p)
        if k not in scores:
            scores[k] = score(dict(p))
            out["trials"].append({"point": dict(p), "score": scores[k], "axis": axis,
                                  "role": role})
        return scores[k]

    for axis in rule.axes:
        point[axis.name] = _line(axis, point, evaluate, out["extensions"])
    out["chosen"] = dict(point)
    out["chosen_score"] = scores[key(point)]
    out["on_cap"] = on_cap(rule, point)
    return out


def _line(axis: Axis, point: Point, evaluate, extensions: list) -> float:
    """The best value of `axis` with the other axes at `point`, extending past edges."""
    at = lambda v: {**point, axis.name: v}  # noqa: E731
    incumbent = point[axis.name]
    tried = []
    for v in axis.grid:
        evaluate(at(v), axis.name, "grid")
        tried.append(v)
    pending = {"down": list(axis.down or ()), "up": list(axis.up or ())}
    while True:
        best = _best(tried, lambda v: evaluate(at(v), axis.name, "grid"), incumbent)
        direction = ("down" if best == min(tried) and pending["down"] else
                     "up" if best == max(tried) and pending["up"] else None)
        if direction is None:
            return best
        value = pending[direction].pop(0)
        extensions.append({"axis": axis.name, "direction": direction, "value": value,
                           "from": best})
        evaluate(at(value), axis.name, "extension")
        tried.append(value)


def _best(values, score_of, incumbent) -> float:
    """Highest score; ties go to the incumbent, then to the value tried first."""
    top = max(_value(score_of(v)) for v in values)
    tied = [v for v in values if _value(score_of(v)) == top]
    return incumbent if incumbent in tied else tied[0]


def on_cap(rule: Rule, point: Point) -> List[dict]:
    """The axes whose chosen value is the outermost allowed one in a searched direction."""
    out = []
    for axis in rule.axes:
        v = point[axis.name]
        if axis.down is not None and v == min((*axis.grid, *axis.down)):
            out.append({"axis": axis.name, "direction": "down"})
        if axis.up is not None and v == max((*axis.grid, *axis.up)):
            out.append({"axis": axis.name, "direction": "up"})
    return out


def typical_score(rule: Rule) -> Score:
    """A score for projections: best in the middle of every grid except at the upper edges
    of weight decay and length, so that each of those is extended once and loses (what the
    runs of the earlier protocol suggest: wd 5e-4 and the longest length were chosen)."""
    prefer = {}
    for axis in rule.axes:
        prefer[axis.name] = axis.grid[-1] if axis.name in ("weight_decay", "length") else (
            axis.grid[(len(axis.grid) - 1) // 2])

    def score(p: Point) -> float:
        return -sum(abs(math.log(p[k] / v)) for k, v in prefer.items())
    return score


def edge_score(p: Point) -> float:
    """A score that always prefers larger values: every upward cap is reached (the worst
    case of a projection)."""
    return sum(math.log(v) for v in p.values())
