"""The study's protocol: scales, label budgets, networks, arms, parts, and their runs.

Every arm (supervised from scratch, fine-tuning, linear evaluation, self- and big-to-small
distillation, at every width) gets the same search (search.RULE) on the class-balanced holdout
(--holdout_fraction=1/12: 500 images per class, never trained on) with subset seed 0; only the
chosen configuration reads the test split, once per seed. An arm's budget is a number of
training images (steps x batch); the search's length axis multiplies it.
"""
import dataclasses
from typing import Dict, Optional, Tuple

from bench.semisup_study import search

HOLDOUT_FRACTION = 1 / 12  # 5,000 of the 60,000 training images, 500 per class
NUM_CLASSES, NUM_TRAIN = 10, 60000
TRAIN_POOL = NUM_TRAIN - 5000  # images outside the holdout: every stage trains on these
AUGMENTATION = (("color_distortion", "gray"), ("crop_area_range", "0.25,1.0"))
CURVE_POINTS = 5  # checkpoints kept along a run whose holdout curve is drawn


@dataclasses.dataclass(frozen=True)
class Budget:
    """A label budget: `flag` is the run.py flag choosing the class-balanced subset."""
    name: str
    label: str
    flag: Tuple[str, object]
    labels: int  # labelled images (drawn from the 55,000 outside the holdout)


BUDGETS = (Budget("13pc", "13/class", ("labels_per_class", 13), 130),
           Budget("1pct", "1%", ("label_fraction", 0.01), 550),
           Budget("10pct", "10%", ("label_fraction", 0.1), 5500),
           Budget("100pct", "all 55,000", ("label_fraction", 1.0), TRAIN_POOL))
BUDGET = {b.name: b for b in BUDGETS}


@dataclasses.dataclass(frozen=True)
class Arch:
    depth: int
    width: float

    @property
    def label(self) -> str:
        return f"ResNet-{self.depth} x{self.width:g}"

    def parameters(self) -> int:
        """Trainable parameters of the CIFAR-stem ResNet-18 encoder (as tf2/resnet.py builds
        it): 3x3 stem conv + BN, four groups of two basic blocks, 1x1 projection shortcuts."""
        if self.depth != 18:
            raise ValueError(f"parameters() counts ResNet-18 only, not {self.label}")
        conv_bn = lambda k, cin, cout: k * k * cin * cout + 2 * cout  # noqa: E731
        width = [int(round(c * self.width)) for c in (64, 128, 256, 512)]
        total, cin = conv_bn(3, 3, width[0]), width[0]
        for filters in width:
            total += conv_bn(1, cin, filters)
            for _ in range(2):
                total += conv_bn(3, cin, filters) + conv_bn(3, filters, filters)
                cin = filters
        return total


@dataclasses.dataclass(frozen=True)
class Arm:
    """One row of the table.

    Attributes:
      net: the trained network ('small', 'big', 'long': Scale fields).
      pretrain: the encoder it starts from (a Scale.nets key), None = from scratch.
      teacher: the arm whose run of the same budget and seed teaches it (distillation).
      budgets: label budgets (Scale.budgets keeps those of a scale).
      seeds: how many of the scale's subset seeds its finals use (1: the search's run only).
      length: the key of Scale.images holding its length budget (None: the label budget's).
      curve: keep CURVE_POINTS checkpoints and draw the holdout curve of the longest run at
        the chosen learning rate and weight decay, which is run at `curve_length` (a length
        factor) when the search did not go that far (not a trial: it changes no choice).
    """
    name: str
    label: str
    net: str
    stage: str
    flags: Tuple[Tuple[str, object], ...]
    budgets: Tuple[str, ...]
    pretrain: Optional[str] = None
    teacher: Optional[str] = None
    seeds: int = 3
    length: Optional[str] = None
    curve: bool = False
    curve_length: float = 0.0


_SCRATCH = (("from_scratch", True), ("ft_proj_selector", 0))
_STUDENT = (("ft_proj_selector", 0),)
ARMS = {a.name: a for a in (
    Arm("supervised", "Supervised, from scratch", "small", "finetune", _SCRATCH,
        ("13pc", "1pct", "10pct", "100pct"), curve=True),
    Arm("supervised_big", "Supervised, from scratch", "big", "finetune", _SCRATCH,
        ("13pc", "1pct"), curve=True),  # 10% cut: up to 32x the budget at x0.5, ~4 h
    Arm("finetune", "SimCLRv2 fine-tuned (head layer 1)", "small", "finetune",
        (("ft_proj_selector", 1),), ("13pc", "1pct", "10pct"), pretrain="small"),
    Arm("finetune_big", "SimCLRv2 fine-tuned (head layer 1)", "big", "finetune",
        (("ft_proj_selector", 1),), ("13pc", "1pct", "10pct"), pretrain="big"),
    Arm("finetune_head0", "SimCLRv2 fine-tuned (encoder output)", "small", "finetune",
        (("ft_proj_selector", 0),), ("13pc", "1pct"), pretrain="small"),
    Arm("linear", "SimCLRv2 linear eval (frozen encoder)", "small", "finetune",
        (("ft_proj_selector", 0), ("fine_tune_after_block", 4),
         ("zero_init_logits_layer", True)), ("100pct",), pretrain="small", seeds=1),
    Arm("selfdistill", "SimCLRv2 self-distilled (tau 0.1)", "small", "distill",
        (*_STUDENT, ("temperature", 0.1)), ("1pct",), pretrain="small", teacher="finetune",
        length="distill", curve=True, curve_length=10.0),
    Arm("big_to_small", "SimCLRv2 big-to-small distilled (tau 1)", "small", "distill",
        (*_STUDENT, ("temperature", 1.0)), ("1pct",), pretrain="small",
        teacher="finetune_big", length="distill", curve=True, curve_length=10.0),
    Arm("distill_labels", "SimCLRv2 self-distilled with labels (Eq. 3)", "small", "distill",
        (*_STUDENT, ("temperature", 0.1), ("distill_alpha", 0.5)), ("1pct",),
        pretrain="small", teacher="finetune", length="distill", seeds=1, curve=True),
    Arm("finetune_long", "SimCLRv2 fine-tuned, long pretraining", "long", "finetune",
        (("ft_proj_selector", 1),), ("1pct",), pretrain="long"),
    Arm("selfdistill_long", "SimCLRv2 self-distilled, long pretraining", "long", "distill",
        (*_STUDENT, ("temperature", 0.1)), ("1pct",), pretrain="long",
        teacher="finetune_long", length="distill", seeds=1, curve=True, curve_length=10.0),
)}

# The distillation curve reaches 10 epochs of the 55,000 images (10 x its budget of 1).

PIXEL_ROWS = (("pixels_logreg", "Logistic regression on raw pixels"),
              ("pixels_knn", "kNN on raw pixels"))

# What each part runs: arm names, (arm, budgets) for an arm whose budgets are split over
# parts, or (arm, budgets, seeds) for one whose seeds are: the part holding the first seed
# searches and the other seeds' part trains them at the configuration that search chose,
# read from its part file (the pixel references are in-process, no run.py). A part builds
# the pretrained encoders and teachers it needs when --out does not hold them yet.
PARTS = {"baselines": ("pixels", ("supervised", ("13pc", "1pct"))),
         "baselines_10pct": (("supervised", ("10pct",)),),
         "reference": (("supervised", ("100pct",)),),
         "head": ("finetune", "finetune_head0", "linear"),
         "size": (("finetune_big", ("13pc", "1pct")),),
         # x0.5 at 10%: its search went to 16x the budget (112 min with the pretraining),
         # so seeds 1 and 2 (45 min, with the pretraining rebuilt 57) are a part of their own
         "size_10pct": (("finetune_big", ("10pct",), (0,)),),
         "size_10pct_seeds": (("finetune_big", ("10pct",), (1, 2)),),
         "distill": ("selfdistill", "big_to_small", "distill_labels"),
         "long": ("finetune_long", "selfdistill_long"),
         "scratch_big": (("supervised_big", ("13pc",)),),  # last: no claim's verdict
         "scratch_big_1pct": (("supervised_big", ("1pct",)),)}  # depends on them
PART_ORDER = tuple(PARTS)


def part_arms(part: str):
    """[(arm name, budget names or None: all of the arm's, subset seeds or None: all of
    the arm's)] of a part, pixels left out."""
    out = []
    for e in PARTS[part]:
        if e != "pixels":
            name, only, seeds = (e, None, None) if isinstance(e, str) else (*e, None)[:3]
            out.append((name, only, seeds))
    return out


def arm_names():
    """Every arm some part runs."""
    return {name for part in PARTS for name, _, _ in part_arms(part)}


def search_part(arm: str, budget: str, search_seed: int) -> str:
    """The part that runs the search of `arm` at `budget` (the one holding its first seed)."""
    for part in PART_ORDER:
        for name, only, seeds in part_arms(part):
            if name == arm and (only is None or budget in only) and (
                    seeds is None or search_seed in seeds):
                return part
    raise KeyError(f"no part searches {arm} at {budget}")


@dataclasses.dataclass(frozen=True)
class Scale:
    """Sizes of one scale.

    images: an arm's length budget in training images ('distill': of the 55,000 unlabelled
    images); a run of length factor f takes round(f * images / batch) steps.
    """
    nets: Dict[str, Arch]
    pretrain_epochs: Dict[str, float]
    pretrain_seeds: Tuple[int, ...]     # fine-tuning seed s starts from seed s % len(...)
    images: Dict[str, int]
    budgets: Tuple[str, ...]            # label budgets this scale runs
    seeds: Tuple[int, ...]              # subset seeds; the first one is the search's
    rule: search.Rule = search.RULE
    batch: Dict[str, int] = dataclasses.field(default_factory=lambda: dict(
        pretrain=256, finetune=128, distill=256))
    temperature: float = 0.5            # NT-Xent of every pretraining
    train_steps: int = 0                # > 0: every run this many steps (smoke)
    eval_steps: int = 0
    eval_batch_size: int = 500
    knn_eval_examples: int = 0          # 0: the whole holdout
    logreg_iterations: int = 300        # of the raw-pixel logistic regression
    steps_per_loop: int = 10
    checkpoint_steps: int = 200

    def arm_budgets(self, arm: Arm, only=None):
        """The arm's budgets this scale runs (`only`: of these names)."""
        return [BUDGET[b] for b in arm.budgets if b in self.budgets and (
            only is None or b in only)]

    def arm_seeds(self, arm: Arm, budget: Budget):
        """Subset seeds of the arm's finals; all labels have one subset: the search's seed."""
        return self.seeds[:1] if budget.name == "100pct" else self.seeds[:arm.seeds]


FULL = Scale(
    nets={"small": Arch(18, 0.25), "big": Arch(18, 0.5), "long": Arch(18, 0.25)},
    pretrain_epochs={"small": 4, "big": 4, "long": 30}, pretrain_seeds=(0,),
    images={"13pc": 200 * 128, "1pct": 250 * 128, "10pct": 400 * 128, "100pct": 800 * 128,
            "distill": TRAIN_POOL},
    budgets=("13pc", "1pct", "10pct", "100pct"), seeds=(0, 1, 2))

# Every hand-over in minutes: a search of one point (the rule itself is tested without runs),
# 2 seeds, 2 steps per run; 10% for the part that holds only some seeds (size_10pct_seeds).
SMOKE_RULE = search.Rule((
    search.Axis("learning_rate", (0.1,), down=(), up=(), start=0.1),
    search.Axis("weight_decay", (5e-4,), down=(), up=(), start=5e-4),
    search.Axis("length", (1.0,), down=None, up=(), start=1.0)))
SMOKE = dataclasses.replace(
    FULL, pretrain_epochs={"small": 0.01, "big": 0.01, "long": 0.02},
    budgets=("1pct", "10pct", "100pct"),
    seeds=(0, 1), rule=SMOKE_RULE, batch=dict(pretrain=32, finetune=32, distill=32),
    train_steps=2, eval_steps=1, eval_batch_size=64, knn_eval_examples=128, steps_per_loop=1,
    checkpoint_steps=1, logreg_iterations=3)
SCALES = {"full": FULL, "smoke": SMOKE}


def table_rows(s: Scale):
    """(key, method, network label) of the results table, in order."""
    out = [(a.name, a.label, s.nets[a.net].label) for a in ARMS.values()]
    return out + [(key, label, "-") for key, label in PIXEL_ROWS]


@dataclasses.dataclass(frozen=True)
class Run:
    """One run.py training invocation. `needs`: flag -> name of the run it reads."""
    name: str
    kind: str            # speed-table key
    stage: str
    arch: Arch
    steps: int
    batch: int
    seed: int = 0
    eval_split: Optional[str] = "holdout"   # None: train only
    flags: Tuple[Tuple[str, object], ...] = ()
    needs: Tuple[Tuple[str, str], ...] = ()
    curve: bool = False
    point: Tuple[Tuple[str, float], ...] = ()  # the search point that made it

    def images(self) -> int:
        return self.steps * self.batch


def _steps(s: Scale, images: float, batch: int) -> int:
    return s.train_steps or max(1, int(round(images / batch)))


def pretrain_run(s: Scale, net: str, seed: int) -> Run:
    """SimCLRv2 on the 55,000 images with the kNN monitor every epoch (1% bank, holdout)."""
    batch, epochs = s.batch["pretrain"], s.pretrain_epochs[net]
    every = 1 if s.train_steps else max(1, int(round(TRAIN_POOL / batch)))
    return Run(pretrain_name(s, net, seed), f"pretrain_x{s.nets[net].width:g}", "pretrain",
               s.nets[net],
               _steps(s, epochs * TRAIN_POOL, batch), batch, seed, eval_split=None,
               flags=(BUDGET["1pct"].flag, ("temperature", s.temperature),
                      ("knn_every_steps", every), ("knn_eval_examples", s.knn_eval_examples),
                      *AUGMENTATION))


def speed_key(s: Scale, arm: Arm) -> str:
    """The speed table's key of an arm's runs: what runs, at which width, taught by which."""
    kind = "linear" if dict(arm.flags).get("fine_tune_after_block") == 4 else arm.stage
    key = f"{kind}_x{s.nets[arm.net].width:g}"
    if arm.teacher:
        key += f"_from_x{s.nets[ARMS[arm.teacher].net].width:g}"
    return key


def pretrain_name(s: Scale, net: str, seed: int) -> str:
    arch = s.nets[net]
    return f"pretrain_r{arch.depth}x{arch.width:g}_e{s.pretrain_epochs[net]:g}_p{seed}"


def pretrain_seed(s: Scale, seed: int) -> int:
    return s.pretrain_seeds[seed % len(s.pretrain_seeds)]


def point_label(point) -> str:
    return (f"lr{point['learning_rate']:g}_wd{point['weight_decay']:g}_"
            f"x{point['length']:g}")


def run_name(arm: Arm, budget: Budget, point, seed: int) -> str:
    return f"{arm.name}_{budget.name}_{point_label(point)}_s{seed}"


def arm_run(s: Scale, arm: Arm, budget: Budget, point, seed: int, split: str,
            teacher: Optional[str] = None) -> Run:
    """The run of `arm` at `budget` with the search point's settings and subset seed `seed`;
    `teacher`: the run directory name of its teacher (distillation)."""
    batch = s.batch["distill" if arm.stage == "distill" else "finetune"]
    images = s.images[arm.length or budget.name] * point["length"]
    flags = (*arm.flags, ("optimizer", "momentum"), ("learning_rate_scaling", "linear"),
             ("learning_rate", point["learning_rate"] * 256 / 128),  # lr per 128, at 256
             ("weight_decay", point["weight_decay"]), ("warmup_epochs", 0), budget.flag)
    needs = []
    if arm.pretrain:
        needs.append(("checkpoint", pretrain_name(s, arm.pretrain, pretrain_seed(s, seed))))
    if arm.teacher:
        needs.append(("teacher", teacher))
    return Run(run_name(arm, budget, point, seed), speed_key(s, arm), arm.stage, s.nets[arm.net],
               _steps(s, images, batch), batch, seed, split, flags, tuple(needs), arm.curve,
               search.key(point))
