"""The paper's semi-supervised result in miniature on the embedded Fashion-MNIST; JSON/MD/PNG out.

    python bench/semisup.py --scale=smoke      # every stage for a few steps (functional check)
    python bench/semisup.py --scale=full       # the experiment (budget: 90 min, 2-core CPU)
    python bench/semisup.py --scale=full --dry_run    # the run.py commands, nothing run

It drives `run.py` as a user would, one subprocess per stage (`--mode=train_then_eval`, so
each model_dir gets a result.json with test top-1/top-5), seed 0, class-balanced label
fractions (data.subsets), 32 px with the CIFAR stem, crop + flip for every supervised,
fine-tuning and distillation run. The runs (paper Sec. 3, Figure 2):

  supervised_{1,10}pct       small ResNet from scratch on the labelled fraction only
                             (--from_scratch, standard linear classifier on the encoder)
  pretrain_small / _big      SimCLRv2 on all 60k training images, labels unused
  finetune_small_/big_{..}   from the first projection-head layer (--ft_proj_selector=1)
  selfdistill_{..}           Eq. 2, tau 1.0 (see SELF_DISTILL_TAU), all training images,
                             student = small ResNet
  big_to_small_{..}          Eq. 2, tau 1.0, teacher = fine-tuned big ResNet, student = small
  linear_eval_small_100pct   frozen pretrained encoder (--fine_tune_after_block=4), linear
                             head on the encoder output with all labels

Students have the teacher's ResNet without the MLP head (--ft_proj_selector=0; paper Fig. 6)
and start from the small pretrained encoder: the paper trains them for 400 epochs, this budget
allows a few, and a warm start uses only unlabelled data. The baseline gets the usual recipe
for ResNets trained from scratch (SGD momentum 0.9, lr 0.1 at batch 128, weight decay 5e-4,
cosine), which beats the fine-tuning recipe (LARS, 0.005 sqrt(B), no decay) from scratch.

Full scale (FULL below), chosen from speeds measured on this 2-core CPU with short runs
(images/s of the training loop, float32; see SPEED_NOTE and the report in results.json):
ResNet-18 x0.25 (channels 16/32/64/128) as the small network, ResNet-34 x0.25 as the big
teacher. Pretraining dominates the cost, so it gets most of the budget; fine-tuning and the
baseline get as many epochs as the paper's 60 (1%) and 30 (10%) allow; students are distilled
for half the small network's pretraining epochs, as the paper's 400 of 800 (Sec. 3.1).

A stage whose model_dir already holds result.json (from the same command) is reused, so an
interrupted run continues where it stopped; an unfinished stage resumes from its checkpoint.
"""
import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from typing import Dict, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TRAIN, NUM_CLASSES = 60000, 10
CHANCE = 1.0 / NUM_CLASSES
FRACTIONS = (0.01, 0.1)
MOST = 0.9  # "most of the teacher's accuracy": >= 90% of its top-1 gain over chance
# Speed of each kind of run on this 2-core CPU: (training images/s after the first loop, other
# seconds per run: start-up, tracing, the first batch, SavedModel export, evaluation of the 10k
# test images). Measured 2026-11-25 with 30-step runs of the FULL networks and batches through
# run.py, 1-min load average 1.7-3.3 including the run itself (the quietest this shared machine
# got); the first batch of a fine-tuning run waits ~30 s because the labelled-subset filter
# reads all 60k images before the cache is full. Under a load of 5-7 the same runs took 2-4x
# longer. selfdistill re-measured 2026-11-26 from a 469-step run (391 s in all: 368 images/s);
# 30-step runs undercounted it. Used only to project the time (--dry_run, results.json).
MEASURED = {"supervised": (380, 70), "finetune_small": (280, 85), "pretrain_small": (210, 45),
            "selfdistill": (340, 65), "linear_eval": (570, 60), "pretrain_big": (88, 100),
            "finetune_big": (219, 80), "big_to_small": (268, 60)}


@dataclasses.dataclass(frozen=True)
class Arch:
    depth: int
    width: float

    @property
    def label(self) -> str:
        return f"ResNet-{self.depth} x{self.width:g}"

    def flags(self) -> Dict[str, object]:
        return {"resnet_depth": self.depth, "width_multiplier": self.width}


@dataclasses.dataclass(frozen=True)
class Scale:
    """Sizes of one scale; epochs per run kind, batches per stage."""
    small: Arch
    big: Arch
    epochs: Dict[str, float]          # pretrain_small, pretrain_big, distill, linear_eval
    sup_epochs: Dict[float, float]    # label fraction -> epochs of the supervised baseline
    ft_epochs: Dict[float, float]     # label fraction -> epochs of fine-tuning
    batch: Dict[str, int]             # pretrain, finetune, distill, linear_eval
    train_steps: int = 0              # > 0: every run this many steps (smoke)
    eval_steps: int = 0               # 0: the whole 10k test split
    eval_batch_size: int = 256
    steps_per_loop: int = 10
    checkpoint_steps: int = 100       # resume point of an interrupted run, at little cost


FULL = Scale(small=Arch(18, 0.25), big=Arch(34, 0.25),
             epochs=dict(pretrain_small=3, pretrain_big=1.25, distill=1.5, linear_eval=1),
             sup_epochs={0.01: 100, 0.1: 20}, ft_epochs={0.01: 50, 0.1: 10},
             batch=dict(pretrain=256, finetune=128, distill=256, linear_eval=256))
# The full scale's networks and flags, a few small batches each: every stage and hand-over.
SMOKE = dataclasses.replace(FULL, batch=dict(pretrain=32, finetune=32, distill=32,
                                             linear_eval=32),
                            train_steps=2, eval_steps=1, eval_batch_size=64, steps_per_loop=2)
SCALES = {"smoke": SMOKE, "full": FULL}


@dataclasses.dataclass(frozen=True)
class Run:
    """One run.py invocation. `needs` maps a flag (checkpoint, teacher) to another run;
    `kind` keys MEASURED (its speed)."""
    name: str
    kind: str
    method: str
    stage: str
    arch: Arch
    label_fraction: float
    epochs: float
    batch: int
    flags: Tuple[Tuple[str, object], ...]
    needs: Tuple[Tuple[str, str], ...] = ()


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}pct"


# Supervised from scratch: the standard CIFAR ResNet recipe (lr 0.1 at batch 128, i.e. 0.2 per
# 256 with linear scaling, weight decay 5e-4), not the low fine-tuning rate.
SUPERVISED = dict(optimizer="momentum", learning_rate=0.2, learning_rate_scaling="linear",
                  weight_decay=5e-4, warmup_epochs=0, ft_proj_selector=0, from_scratch=True)
# Linear evaluation as in the original code's CIFAR example: SGD momentum, no decay.
LINEAR = dict(optimizer="momentum", learning_rate=0.1, learning_rate_scaling="linear",
              weight_decay=0.0, warmup_epochs=0, ft_proj_selector=0, fine_tune_after_block=4,
              zero_init_logits_layer=True)

# Paper: tau 0.1 for self-distillation, 1.0 big-to-small, "the effect of temperatures between
# 0.1 and 1 is very small" (Sec. 3.1, Fig. F.1). Measured at commit f2f06b4 (the run in
# docs/semisup/), 40 steps from the same teacher: tau 0.1 -> 10.0% top-1, tau 1.0 -> 29.2%;
# the student's supervised head was then outside LARS' trust ratio (as in the original code),
# so its plain momentum step at lr 0.1 sqrt(B) = 1.6 was lr / tau = 16 and diverged. Since
# then the distillation head is under LARS (tf2/optimizers.py); README "The paper's result in
# miniature" gives the same 40-step check on the current code, and a 2-epoch self-distillation
# from the 10% teacher (80.2%) both ways: head under LARS 80.4%, outside 80.1%. Both
# distillations use tau 1.0.
SELF_DISTILL_TAU = 1.0
BIG_TO_SMALL_TAU = 1.0


def plan(s: Scale):
    """Every run of scale `s`, each after the runs it needs (the important ones first)."""
    runs = [Run(f"supervised_{_pct(f)}", "supervised", "Supervised (labelled fraction only)",
                "finetune",
                s.small, f, s.sup_epochs[f], s.batch["finetune"],
                tuple(SUPERVISED.items())) for f in FRACTIONS]
    for size, arch in (("small", s.small), ("big", s.big)):
        runs.append(Run(f"pretrain_{size}", f"pretrain_{size}", f"SimCLRv2 pretrain ({size})",
                        "pretrain", arch, 0.0, s.epochs[f"pretrain_{size}"], s.batch["pretrain"], ()))
        runs += [Run(f"finetune_{size}_{_pct(f)}", f"finetune_{size}",
                     f"SimCLRv2 fine-tuned ({size})", "finetune", arch, f, s.ft_epochs[f], s.batch["finetune"], (("ft_proj_selector", 1),),
                     (("checkpoint", f"pretrain_{size}"),)) for f in FRACTIONS]
        if size == "small":
            runs += [_student(s, f"selfdistill_{_pct(f)}", "SimCLRv2 self-distilled", f,
                              f"finetune_small_{_pct(f)}", SELF_DISTILL_TAU) for f in FRACTIONS]
            runs.append(Run("linear_eval_small_100pct", "linear_eval",
                            "Linear eval (frozen encoder)", "finetune", s.small, 1.0, s.epochs["linear_eval"],
                            s.batch["linear_eval"], tuple(LINEAR.items()),
                            (("checkpoint", "pretrain_small"),)))
    runs += [_student(s, f"big_to_small_{_pct(f)}", "SimCLRv2 big-to-small distilled", f,
                      f"finetune_big_{_pct(f)}", BIG_TO_SMALL_TAU) for f in FRACTIONS]
    return runs


def _student(s: Scale, name, method, fraction, teacher, tau):
    return Run(name, name.rsplit("_", 1)[0], method, "distill", s.small, fraction, s.epochs["distill"],
               s.batch["distill"], (("temperature", tau), ("ft_proj_selector", 0)),
               (("teacher", teacher), ("checkpoint", "pretrain_small")))


def run_steps(run: Run, s: Scale) -> int:
    """Training steps of `run` (as run.py computes them from epochs)."""
    if s.train_steps:
        return s.train_steps
    examples = NUM_TRAIN * run.label_fraction if run.stage == "finetune" else NUM_TRAIN
    return int(round(run.epochs * round(examples) / run.batch))


def projected_seconds(run: Run, s: Scale) -> float:
    """Wall seconds MEASURED predicts for `run` on a quiet machine."""
    images_per_second, other_seconds = MEASURED[run.kind]
    return run_steps(run, s) * run.batch / images_per_second + other_seconds


def command(run: Run, s: Scale, runs_dir: str):
    """The run.py argv of `run`."""
    flags = dict(mode="train_then_eval", train_mode=run.stage, dataset="fashion_mnist",
                 image_size=32, seed=0, **run.arch.flags(), train_batch_size=run.batch,
                 train_epochs=run.epochs, eval_batch_size=s.eval_batch_size,
                 eval_steps=s.eval_steps, steps_per_loop=s.steps_per_loop,
                 checkpoint_steps=s.checkpoint_steps, progress_bar=False,
                 model_dir=os.path.join(runs_dir, run.name))
    if run.stage != "pretrain":
        flags["label_fraction"] = run.label_fraction
    if s.train_steps:
        flags["train_steps"] = s.train_steps
    flags.update(run.flags)
    flags.update({k: os.path.join(runs_dir, dep) for k, dep in run.needs})
    argv = [sys.executable, os.path.join(ROOT, "run.py")]
    for k, v in flags.items():
        argv.append(f"--{k}" if v is True else f"--no{k}" if v is False else f"--{k}={v}")
    return argv


def execute(run: Run, s: Scale, runs_dir: str, logs_dir: str) -> dict:
    """Runs `run` (or reuses its finished result); returns its row for results.json."""
    argv = command(run, s, runs_dir)
    model_dir = os.path.join(runs_dir, run.name)
    done_path = os.path.join(model_dir, "bench_run.json")
    done = _read_json(done_path)
    if done and os.path.exists(os.path.join(model_dir, "result.json")):
        if done["argv"][1:] != argv[1:]:
            raise SystemExit(f"{model_dir} was made by another command ({done['argv']}); "
                             "use another --out or delete it.")
        return _row(run, s, model_dir, done, reused=True)
    os.makedirs(logs_dir, exist_ok=True)
    cpu0, tic = _children_cpu(), time.perf_counter()
    with open(os.path.join(logs_dir, f"{run.name}.log"), "w") as log:
        rc = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    done = {"argv": argv, "wall_seconds": time.perf_counter() - tic,
            "cpu_seconds": _children_cpu() - cpu0, "load_average_after": os.getloadavg()}
    if rc != 0:
        with open(os.path.join(logs_dir, f"{run.name}.log")) as f:
            tail = "".join(f.readlines()[-15:])
        raise SystemExit(f"{run.name} failed (exit {rc}):\n  {' '.join(argv)}\n{tail}")
    _write_json(done_path, done)
    return _row(run, s, model_dir, done, reused=False)


def _row(run: Run, s: Scale, model_dir: str, done: dict, reused: bool) -> dict:
    result = _read_json(os.path.join(model_dir, "result.json"))
    return {"name": run.name, "method": run.method, "stage": run.stage,
            "label_fraction": run.label_fraction, "architecture": run.arch.label,
            "resnet_depth": run.arch.depth, "width_multiplier": run.arch.width,
            "epochs": None if s.train_steps else run.epochs, "batch": run.batch,
            "steps": result["global_step"], "wall_seconds": round(done["wall_seconds"], 1),
            "projected_seconds": round(projected_seconds(run, s)),
            "cpu_seconds": round(done["cpu_seconds"], 1), "reused": reused,
            "load_average_after": done.get("load_average_after"),
            "top1": result["top1"], "top5": result["top5"],
            "eval_examples": result["num_examples"], "command": " ".join(done["argv"][1:])}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)  # a half-written file never looks finished


def top1(rows, name) -> Optional[float]:
    row = next((r for r in rows if r["name"] == name), None)
    return row["top1"] if row else None


def two_standard_errors(p1: float, p2: float, n: int) -> float:
    """2 x the standard error of p1 - p2 for two accuracies on n test images each, treated as
    independent (conservative: two models' errors on the same images are correlated)."""
    return 2.0 * ((p1 * (1 - p1) + p2 * (1 - p2)) / n) ** 0.5


def _claim(text, paper, holds_fn, numbers, pair=None, n=None):
    """One claim; `pair` names the two numbers compared head to head, whose difference is
    then reported beside two standard errors on `n` test images (below them: within noise)."""
    known = all(v is not None for v in numbers.values())
    out = {"claim": text, "paper": paper,
           "holds": bool(holds_fn(**numbers)) if known else None, "numbers": numbers}
    if pair and known and n:
        a, b = numbers[pair[0]], numbers[pair[1]]
        out["difference"] = a - b
        out["two_standard_errors"] = two_standard_errors(a, b, n)
        out["within_noise"] = abs(a - b) < out["two_standard_errors"]
    return out


# The paper's ImageNet evidence for each claim (Tables 1 and 3, Sec. 3.4).
PAPER = {
    "beats": "R50 1x: supervised 25.4 / 56.4, SimCLRv2 fine-tuned 57.9 / 68.4 (1% / 10%)",
    "self": "R152 3x+SK fine-tuned 74.9 / 80.1, self-distilled 76.6 / 80.9 (1% / 10%)",
    "big": "R50 1x fine-tuned 57.9 / 68.4, R152 3x+SK 74.9 / 80.1 (1% / 10%)",
    "small": "teacher R152 3x+SK 76.6 / 80.9 (self-distilled), student R50 73.9 / 77.5",
}


def claims(rows):
    """The paper's claims, each decided from this run's top-1 numbers (None: not measured)."""
    g = {r["name"]: r["top1"] for r in rows}.get
    n = min((r["eval_examples"] for r in rows), default=0)  # test images behind each top-1
    out = [_claim(f"{_pct(f)}: pretrain + fine-tune beats supervised on the same labels",
                  PAPER["beats"], lambda ft, sup: ft > sup,
                  {"ft": g(f"finetune_small_{_pct(f)}"), "sup": g(f"supervised_{_pct(f)}")},
                  pair=("ft", "sup"), n=n)
           for f in FRACTIONS]
    out.append(_claim("the gain over supervised is larger at 1% than at 10%", PAPER["beats"],
                      lambda ft1, sup1, ft10, sup10: ft1 - sup1 > ft10 - sup10,
                      {"ft1": g("finetune_small_1pct"), "sup1": g("supervised_1pct"),
                       "ft10": g("finetune_small_10pct"), "sup10": g("supervised_10pct")}))
    for f in FRACTIONS:
        p = _pct(f)
        out.append(_claim(f"{p}: self-distillation improves on its fine-tuned teacher",
                          PAPER["self"], lambda student, teacher: student > teacher,
                          {"student": g(f"selfdistill_{p}"),
                           "teacher": g(f"finetune_small_{p}")}, pair=("student", "teacher"),
                          n=n))
        out.append(_claim(f"{p}: the bigger pretrained network fine-tunes better",
                          PAPER["big"], lambda big, small: big > small,
                          {"big": g(f"finetune_big_{p}"), "small": g(f"finetune_small_{p}")},
                          pair=("big", "small"), n=n))
        out.append(_claim(
            f"{p}: the small student keeps most (>= {MOST:.0%} of the gain over chance) of "
            "the big teacher's accuracy", PAPER["small"],
            lambda student, teacher: student - CHANCE >= MOST * (teacher - CHANCE),
            {"student": g(f"big_to_small_{p}"), "teacher": g(f"finetune_big_{p}")}))
    return out


FIGURE_LINES = (("supervised_{}", "Supervised (small)", "k", "o"),
                ("finetune_small_{}", "SimCLRv2 fine-tuned (small)", "tab:blue", "s"),
                ("selfdistill_{}", "SimCLRv2 self-distilled (small)", "tab:green", "^"),
                ("big_to_small_{}", "SimCLRv2 big-to-small distilled", "tab:red", "D"),
                ("finetune_big_{}", "teacher: SimCLRv2 fine-tuned (big)", "tab:purple", "x"))


def figure(rows, s: Scale, path):
    """Figure 2 of the paper in miniature: top-1 against the label fraction."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.2))
    xs = [f * 100 for f in FRACTIONS]
    for pattern, label, colour, marker in FIGURE_LINES:
        ys = [top1(rows, pattern.format(_pct(f))) for f in FRACTIONS]
        if all(y is not None for y in ys):
            ax.plot(xs, [100 * y for y in ys], marker=marker, color=colour, label=label,
                    linestyle=":" if pattern.startswith("finetune_big") else "-")
    linear = top1(rows, "linear_eval_small_100pct")
    if linear is not None:
        ax.axhline(100 * linear, color="gray", linestyle="--",
                   label=f"Linear eval, 100% labels ({100 * linear:.1f}%)")
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{x:g}%" for x in xs])
    ax.set_xlabel("Label fraction (Fashion-MNIST train, class-balanced)")
    ax.set_ylabel("Fashion-MNIST test top-1 (%)")
    ax.set_title(f"SimCLRv2 in miniature (Fashion-MNIST): small {s.small.label}, "
                 f"big {s.big.label}", fontsize=9)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


REFERENCE = {  # DESIGN.md, measured on this machine: what a well-trained baseline reaches
    "supervised half-width ResNet-18, crop + flip, SGD (DESIGN.md)": {0.01: 0.792, 0.1: 0.908},
    "kNN on raw pixels (DESIGN.md)": {0.01: 0.700, 0.1: 0.788, 1.0: 0.846},
}
TABLE_ROWS = (("Supervised, from scratch", "supervised_{}", "small"),
              ("SimCLRv2 fine-tuned", "finetune_small_{}", "small"),
              ("SimCLRv2 self-distilled", "selfdistill_{}", "small"),
              ("SimCLRv2 fine-tuned (teacher)", "finetune_big_{}", "big"),
              ("SimCLRv2 big-to-small distilled", "big_to_small_{}", "small"))


def _cell(value):
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(rows, s: Scale, claim_list, scale_name) -> str:
    """results.md: the paper-style table, the claims, and every run."""
    lines = [f"# SimCLRv2 in miniature on Fashion-MNIST ({scale_name} scale)", "",
             "Test top-1 (%) on the 10,000 test images; labels: class-balanced fraction of "
             "the 60,000 training images.", ""]
    if s.train_steps:
        lines += [f"**Smoke scale: {s.train_steps} steps per run, {s.eval_steps} eval "
                  "batch(es); the numbers only show that every stage runs.**", ""]
    lines += _table(rows, s) + ["", "## The paper's claims at this scale", ""]
    for c in claim_list:
        verdict = {True: "holds", False: "does not hold", None: "not measured"}[c["holds"]]
        nums = ", ".join(f"{k} {_cell(v)}" for k, v in c["numbers"].items())
        if "difference" in c:
            nums += (f"; difference {100 * c['difference']:+.2f} points, "
                     f"{'within' if c['within_noise'] else 'beyond'} two standard errors "
                     f"({100 * c['two_standard_errors']:.2f})")
        lines.append(f"- **{verdict}**: {c['claim']} ({nums}; paper, ImageNet: {c['paper']})")
    lines += ["", "## Runs", "", "| run | architecture | epochs | steps | wall s | top-1 | "
              "top-5 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['architecture']} | {r['epochs'] or '-'} | "
                     f"{r['steps']} | {r['wall_seconds']:.0f} | {_cell(r['top1'])} | "
                     f"{_cell(r['top5'])} |")
    return "\n".join(lines) + "\n"


def _table(rows, s: Scale):
    """Rows = methods, columns = label fractions (the paper's Table 3 layout)."""
    arch = {"small": s.small.label, "big": s.big.label}
    lines = ["| Method | Architecture | 1% labels | 10% labels | 100% (linear eval) |",
             "|---|---|---|---|---|"]
    for method, pattern, size in TABLE_ROWS:
        cells = [_cell(top1(rows, pattern.format(_pct(f)))) for f in FRACTIONS]
        lines.append(f"| {method} | {arch[size]} | {' | '.join(cells)} | - |")
    lines.append(f"| SimCLRv2 linear eval (frozen encoder) | {arch['small']} | - | - | "
                 f"{_cell(top1(rows, 'linear_eval_small_100pct'))} |")
    for method, values in REFERENCE.items():
        cells = [_cell(values.get(f)) for f in (*FRACTIONS, 1.0)]
        lines.append(f"| *reference: {method}* | | {' | '.join(cells)} |")
    return lines


def write_outputs(out, rows, s: Scale, scale_name, started, load_start):
    claim_list = claims(rows)
    _write_json(os.path.join(out, "results.json"), {
        "scale": scale_name, "settings": _settings(s), "chance": CHANCE,
        "most_definition": f"student top-1 - chance >= {MOST} x (teacher top-1 - chance)",
        "cpu_count": os.cpu_count(), "load_average_start": load_start,
        "load_average_now": os.getloadavg(),
        "total_wall_seconds": round(time.perf_counter() - started, 1),  # this invocation
        # every run's own wall time, reused ones too: the end-to-end cost of the experiment
        "sum_of_run_wall_seconds": round(sum(r["wall_seconds"] for r in rows), 1),
        "runs": rows, "claims": claim_list,
        "reference": {k: {str(f): v for f, v in d.items()} for k, d in REFERENCE.items()}})
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(rows, s, claim_list, scale_name))
    figure(rows, s, os.path.join(out, "semisup.png"))
    return claim_list


def _settings(s: Scale) -> dict:
    d = dataclasses.asdict(s)
    d["sup_epochs"] = {_pct(k): v for k, v in s.sup_epochs.items()}
    d["ft_epochs"] = {_pct(k): v for k, v in s.ft_epochs.items()}
    d.update(supervised_recipe=SUPERVISED, linear_eval_recipe=LINEAR,
             self_distill_tau=SELF_DISTILL_TAU, big_to_small_tau=BIG_TO_SMALL_TAU,
             measured_speed={k: {"images_per_second": v[0], "other_seconds": v[1]}
                             for k, v in MEASURED.items()},
             projected_total_minutes=round(sum(projected_seconds(r, s) for r in plan(s)) / 60, 1))
    return d


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    parser.add_argument("--out", default=os.path.join("bench", "out", "semisup"))
    parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    s = SCALES[args.scale]
    out = os.path.abspath(args.out)
    runs_dir, logs_dir = os.path.join(out, "runs"), os.path.join(out, "logs")
    runs = plan(s)
    if args.dry_run:
        for run in runs:
            print(f"# {run.name}: {run_steps(run, s)} steps, ~{projected_seconds(run, s):.0f} s"
                  f"\n{' '.join(command(run, s, runs_dir))}")
        total = sum(projected_seconds(run, s) for run in runs)
        print(f"# projected total on a quiet machine: {total / 60:.0f} min")
        return
    os.makedirs(out, exist_ok=True)
    started, load_start, rows = time.perf_counter(), os.getloadavg(), []
    for i, run in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {run.name}: {run.arch.label}, {run_steps(run, s)} steps ...",
              flush=True)
        row = execute(run, s, runs_dir, logs_dir)
        rows.append(row)
        print(f"      top-1 {100 * row['top1']:.2f}%  {row['wall_seconds']:.0f} s"
              f"{' (reused)' if row['reused'] else ''}", flush=True)
        write_outputs(out, rows, s, args.scale, started, load_start)
    for c in write_outputs(out, rows, s, args.scale, started, load_start):
        verdict = {True: "HOLDS", False: "DOES NOT HOLD", None: "not measured"}[c["holds"]]
        print(f"{verdict:>13}: {c['claim']}")
    print(f"total {time.perf_counter() - started:.0f} s; wrote {out}/results.json, results.md, "
          "semisup.png")


if __name__ == "__main__":
    main()
