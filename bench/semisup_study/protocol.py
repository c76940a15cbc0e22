"""The fair protocol of bench/semisup.py: scales, budgets, arms, the search, and the runs.

Every arm (supervised from scratch, SimCLRv2 fine-tuning of the small and the big network,
self- and big-to-small distillation, linear evaluation) tries the same TRIALS (momentum SGD;
learning rate, weight decay and a fraction of the arm's epoch budget) on the class-balanced
holdout (--holdout_fraction=1/12: 500 images per class, never trained on), keeps the trial
with the best holdout top-1, and only that configuration reads the test split, once.
"""
import dataclasses
from typing import Dict, Optional, Tuple

HOLDOUT_FRACTION = 1 / 12  # 5,000 of the 60,000 training images, 500 per class
NUM_CLASSES, NUM_TRAIN = 10, 60000
TRAIN_POOL = NUM_TRAIN - 5000  # images outside the holdout: every stage trains on these
CHANCE = 1.0 / NUM_CLASSES


@dataclasses.dataclass(frozen=True)
class Budget:
    """A label budget: `flag` is the run.py flag choosing the class-balanced subset."""
    name: str
    flag: Tuple[str, object]
    labels: int  # labelled images (drawn from the 55,000 outside the holdout)


BUDGETS = (Budget("13pc", ("labels_per_class", 13), 130),
           Budget("128pc", ("labels_per_class", 128), 1280),
           Budget("1pct", ("label_fraction", 0.01), 550),
           Budget("10pct", ("label_fraction", 0.1), 5500))
BUDGET = {b.name: b for b in BUDGETS}
ALL_LABELS = Budget("100pct", ("label_fraction", 1.0), TRAIN_POOL)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One point of the search: lr at batch 128 (linear scaling), weight decay, epochs factor."""
    learning_rate: float
    weight_decay: float
    epochs_factor: float

    def label(self) -> str:
        return f"lr{self.learning_rate:g}_wd{self.weight_decay:g}_e{self.epochs_factor:g}"


# The same three trials for every arm. SGD at 0.03-0.1 per 128 images moves every layer by
# ~1e-3..1e-2 of its norm per step, far more than LARS at 0.005 sqrt(B) (issue 13, item 1).
TRIALS = (Trial(0.1, 5e-4, 1.0), Trial(0.03, 5e-4, 1.0), Trial(0.1, 5e-5, 0.5))
AUGMENT_OPTIONS = (("rgb", "0.08,1.0"), ("gray", "0.08,1.0"), ("gray", "0.25,1.0"))


@dataclasses.dataclass(frozen=True)
class Arch:
    depth: int
    width: float

    @property
    def label(self) -> str:
        return f"ResNet-{self.depth} x{self.width:g}"


@dataclasses.dataclass(frozen=True)
class Scale:
    """Sizes of one scale. Epoch budgets are the arms' maxima (a trial takes a factor)."""
    small: Arch
    big: Arch
    pretrain_epochs: Dict[str, float]   # phase0, small, big
    arm_epochs: Dict[str, float]        # budget name (or 'distill', 'linear') -> epochs
    budgets: Tuple[str, ...]            # of the supervised and fine-tuned small arms
    big_budgets: Tuple[str, ...]        # of the big fine-tuned arm (claim 4)
    distill_budgets: Tuple[str, ...]
    seeds: Tuple[int, ...]              # subset seeds; the first one is the search's
    trials: Tuple[Trial, ...] = TRIALS
    augment_options: Tuple[Tuple[str, str], ...] = AUGMENT_OPTIONS
    batch: Dict[str, int] = dataclasses.field(default_factory=lambda: dict(
        pretrain=256, finetune=128, distill=256, linear=256))
    temperature: float = 0.5            # NT-Xent (the probe)
    train_steps: int = 0                # > 0: every run this many steps (smoke)
    eval_steps: int = 0
    eval_batch_size: int = 500
    knn_eval_examples: int = 0          # 0: the whole holdout
    steps_per_loop: int = 10
    checkpoint_steps: int = 100


# Sized for <= 120 min on a 2-core CPU (about 105 on Zen 4 in bf16, 2026-12-02): the small
# network 7 epochs (13 min), the big one (x0.5, 2.2x slower per image there) 2 epochs (9 min).
# The arms' epoch budgets are the maxima a trial's epochs_factor scales; they are set so that
# training from scratch gets at least ~200 steps of 128 (at 60 epochs of 130 images, 61 steps,
# it stopped at 33% top-1 with the search choosing the longest trial: a budget that short
# tunes the baseline down).
FULL = Scale(small=Arch(18, 0.25), big=Arch(18, 0.5),
             pretrain_epochs=dict(phase0=0.5, small=7, big=2),
             arm_epochs={"13pc": 200, "128pc": 40, "1pct": 60, "10pct": 15, "distill": 1,
                         "linear": 2},
             budgets=("13pc", "128pc", "1pct", "10pct"), big_budgets=("13pc", "1pct"),
             distill_budgets=("1pct",), seeds=(0, 1, 2))
SMOKE = dataclasses.replace(
    FULL, budgets=("13pc", "1pct"), big_budgets=("1pct",), seeds=(0, 1),
    trials=TRIALS[:2], augment_options=AUGMENT_OPTIONS[:2],
    batch=dict(pretrain=32, finetune=32, distill=32, linear=32), train_steps=2, eval_steps=1,
    eval_batch_size=64, knn_eval_examples=256, steps_per_loop=2, checkpoint_steps=2)
SCALES = {"full": FULL, "smoke": SMOKE}


@dataclasses.dataclass(frozen=True)
class Run:
    """One run.py training invocation. `needs`: flag -> name of the run it reads."""
    name: str
    kind: str            # speed-table key
    stage: str
    arch: Arch
    budget: Budget
    epochs: float
    batch: int
    seed: int = 0
    eval_split: Optional[str] = "holdout"   # None: train only
    flags: Tuple[Tuple[str, object], ...] = ()
    needs: Tuple[Tuple[str, str], ...] = ()

    def examples(self) -> int:
        return self.budget.labels if self.stage == "finetune" else TRAIN_POOL

    def steps(self, s: Scale) -> int:
        if s.train_steps:
            return s.train_steps
        return int(round(self.epochs * self.examples() / self.batch))


def augment_flags(option) -> Tuple[Tuple[str, object], ...]:
    return (("color_distortion", option[0]), ("crop_area_range", option[1]))


def pretrain_run(s: Scale, name, arch, epochs, option, kind) -> Run:
    """A pretraining run with the kNN monitor every epoch (1% bank against the holdout)."""
    every = max(1, int(round(TRAIN_POOL / s.batch["pretrain"])))
    if s.train_steps:
        every = 1
    return Run(name, kind, "pretrain", arch, BUDGET["1pct"], epochs, s.batch["pretrain"],
               eval_split=None, flags=(BUDGET["1pct"].flag, ("temperature", s.temperature),
                                       ("knn_every_steps", every),
                                       ("knn_eval_examples", s.knn_eval_examples),
                                       *augment_flags(option)))


def phase0(s: Scale):
    return [pretrain_run(s, f"phase0_{c}_{r.replace(',', '-')}", s.small,
                         s.pretrain_epochs["phase0"], (c, r), "pretrain_small")
            for c, r in s.augment_options]


def pretrains(s: Scale, option):
    return [pretrain_run(s, "pretrain_small", s.small, s.pretrain_epochs["small"], option,
                         "pretrain_small"),
            pretrain_run(s, "pretrain_big", s.big, s.pretrain_epochs["big"], option,
                         "pretrain_big")]


# arm -> (kind, stage, network size, flags, needs, batch key, epochs key or None = budget)
ARMS = {
    "supervised": ("finetune_small", "finetune", "small",
                   (("from_scratch", True), ("ft_proj_selector", 0)), (), "finetune", None),
    "finetune_small": ("finetune_small", "finetune", "small", (("ft_proj_selector", 1),),
                       (("checkpoint", "pretrain_small"),), "finetune", None),
    "finetune_big": ("finetune_big", "finetune", "big", (("ft_proj_selector", 1),),
                     (("checkpoint", "pretrain_big"),), "finetune", None),
    "selfdistill": ("distill", "distill", "small", (("ft_proj_selector", 0),
                                                    ("temperature", 1.0)),
                    (("checkpoint", "pretrain_small"), ("teacher", "finetune_small")),
                    "distill", "distill"),
    "big_to_small": ("distill", "distill", "small", (("ft_proj_selector", 0),
                                                     ("temperature", 1.0)),
                     (("checkpoint", "pretrain_small"), ("teacher", "finetune_big")),
                     "distill", "distill"),
    "linear": ("linear", "finetune", "small", (("ft_proj_selector", 0),
                                               ("fine_tune_after_block", 4),
                                               ("zero_init_logits_layer", True)),
               (("checkpoint", "pretrain_small"),), "linear", "linear"),
}


def arm_run(s: Scale, arm: str, budget: Budget, trial: Trial, seed: int, name: str,
            eval_split: str, teacher: Optional[str] = None) -> Run:
    """The run of `arm` at `budget` with `trial`'s settings and subset seed `seed`."""
    kind, stage, size, flags, needs, batch_key, epochs_key = ARMS[arm]
    batch = s.batch[batch_key]
    epochs = s.arm_epochs[epochs_key or budget.name] * trial.epochs_factor
    flags = (*flags, ("optimizer", "momentum"), ("learning_rate_scaling", "linear"),
             ("learning_rate", trial.learning_rate * 256 / 128),  # lr at 128, scaled to 256
             ("weight_decay", trial.weight_decay), ("warmup_epochs", 0), budget.flag)
    if teacher:
        needs = tuple((k, teacher if k == "teacher" else v) for k, v in needs)
    return Run(name, kind, stage, getattr(s, size), budget, epochs, batch, seed, eval_split,
               flags, needs)


def arm_budgets(s: Scale, arm: str):
    if arm in ("supervised", "finetune_small"):
        return [BUDGET[b] for b in s.budgets]
    if arm == "finetune_big":
        return [BUDGET[b] for b in s.big_budgets]
    if arm == "linear":
        return [ALL_LABELS]
    return [BUDGET[b] for b in s.distill_budgets]


def arm_seeds(s: Scale, arm: str):
    """Subset seeds of the final runs: all for the small arms, the search's only otherwise."""
    return s.seeds if arm in ("supervised", "finetune_small") else s.seeds[:1]


def trial_name(arm, budget, trial_index):
    return f"{arm}_{budget.name}_t{trial_index}"


def final_name(arm, budget, seed):
    return f"{arm}_{budget.name}_s{seed}"
