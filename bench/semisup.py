"""The paper's semi-supervised result in miniature on Fashion-MNIST, by a fair protocol.

    python -m bench.semisup --scale=full --out=DIR     # the study (sized for <= 120 min)
    python -m bench.semisup --scale=full --dry_run     # its commands and projected minutes
    python -m bench.semisup --scale=smoke --out=DIR    # every hand-over, a few steps per run

It drives run.py as a user would, one subprocess per run. The protocol (bench/semisup_study/
protocol.py), written into results.json and results.md:

  holdout    --holdout_fraction=1/12: 500 images per class of the 60,000 training images,
             the same for every run (a fixed draw, not --seed); no run trains on them, every
             labelled subset is drawn from the other 55,000.
  phase 0    augmentation: a short pretraining (the same steps) per colour-distortion / crop
             option; the one with the best kNN top-1 (1% bank, holdout) is used from then on.
  pretrain   SimCLRv2 on the 55,000 images, small and big network, the kNN monitor every
             epoch (a kNN-vs-epochs plot, with raw pixels on the same bank as a line).
  search     every arm (supervised from scratch, fine-tuning of the small / big network,
             self- and big-to-small distillation, linear eval) tries the same trials of
             learning rate, weight decay and epochs (momentum SGD) with subset seed 0, scored
             on the holdout; the best is kept. Recorded in results.json as it goes.
  finals     the chosen configuration reads the test split once: the search's own run (seed
             0) evaluated on test, plus subset seeds 1 and 2 trained with it (supervised and
             small fine-tuned arms; the big, distilled and linear arms: seed 0 only).
  budgets    13 and 128 labels per class (ImageNet's 1% and 10% per class), 1% and 10%;
             the big network at 13/class and 1%, distillation at 1% only.

Resumable: a finished run's record (bench_*.json in its model_dir) is reused, an unfinished
one resumes from its checkpoint. Speeds follow this machine: an estimate from the CPU's
bfloat16 flags until the phase-0 pretraining has measured it.
"""
import argparse
import os
import time

from bench import harness
from bench.semisup_study import protocol as P
from bench.semisup_study import report
from bench.semisup_study import runner

SEARCH_ARMS = ("supervised", "finetune_small", "finetune_big", "selfdistill", "big_to_small",
               "linear")


class Study:
    """One study: its runs, their records, and what it has decided so far."""

    def __init__(self, s: P.Scale, scale_name: str, out: str, cpu: dict):
        self.s, self.scale_name, self.out, self.cpu = s, scale_name, out, cpu
        self.precision = runner.precision_for(cpu)
        self.speeds = runner.Speeds(cpu)
        self.runs_dir, self.logs_dir = os.path.join(out, "runs"), os.path.join(out, "logs")
        self.state = {"phase0": {}, "search": {}, "finals": {}, "runs": {}, "knn_curves": {}}
        self.started = time.perf_counter()

    # --- running ---------------------------------------------------------------------------
    def _train(self, run: P.Run) -> dict:
        argv = runner.command(run, self.s, self.runs_dir, self.precision)
        rec = runner.execute(argv, os.path.join(self.runs_dir, run.name), self.logs_dir,
                             "train")
        self.speeds.record(run.kind, rec.get("images_per_second"))
        self._note(run.name, rec, self.speeds.seconds(run, self.s))
        return rec

    def _test(self, run: P.Run) -> float:
        argv = runner.test_command(run, self.s, self.runs_dir, self.precision)
        rec = runner.execute(argv, os.path.join(self.runs_dir, run.name), self.logs_dir,
                             "test")
        self._note(run.name + ":test", rec, runner.OVERHEAD_SECONDS["eval"])
        return rec["result"]["top1"]

    def _note(self, name, rec, projected):
        self.state["runs"][name] = {k: rec.get(k) for k in (
            "wall_seconds", "cpu_seconds", "images_per_second", "reused",
            "load_average_after")}
        self.state["runs"][name].update(projected_seconds=round(projected),
                                        command=" ".join(rec["argv"][1:]))
        flag = " (reused)" if rec.get("reused") else ""
        top1 = (rec.get("result") or {}).get("top1")
        shown = f"top-1 {100 * top1:.2f}%  " if top1 is not None else ""
        print(f"  {name}: {shown}{rec['wall_seconds']:.0f} s{flag}", flush=True)
        self.write()

    def phase0(self):
        """Each augmentation option pretrained the same steps; the best final kNN wins."""
        for run in P.phase0(self.s):
            self._train(run)
            curve = runner.knn_curve(os.path.join(self.runs_dir, run.name))
            self.state["phase0"][run.name] = curve[-1][1] if curve else 0.0
            self.state["knn_curves"][run.name] = curve
        scores = [self.state["phase0"][r.name] for r in P.phase0(self.s)]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # first on ties
        self.option = self.s.augment_options[best]
        self.state["augmentation"] = {"color_distortion": self.option[0],
                                      "crop_area_range": self.option[1]}
        print(f"phase 0 chose {self.option}; projection now {self.projected_minutes():.0f} min "
              f"({self.speeds.source})", flush=True)

    def pretrain(self):
        for run in P.pretrains(self.s, self.option):
            self._train(run)
            self.state["knn_curves"][run.name] = runner.knn_curve(
                os.path.join(self.runs_dir, run.name))

    def search(self, arm: str, budget: P.Budget, teacher=None) -> int:
        """The arm's trials on the holdout (seed 0); returns the chosen trial's index."""
        records = self.state["search"].setdefault(arm, {}).setdefault(budget.name, [])
        records.clear()
        for i, trial in enumerate(self.s.trials):
            run = self._arm_run(arm, budget, trial, self.s.seeds[0], P.trial_name(arm, budget, i),
                                "holdout", teacher)
            rec = self._train(run)
            records.append({"trial": vars(trial), "run": run.name, "epochs": run.epochs,
                            "holdout_top1": rec["result"]["top1"]})
            self.write()  # the search is recorded as it goes
        best = max(range(len(records)), key=lambda i: (records[i]["holdout_top1"], -i))
        self.state["search"][arm][budget.name + ":chosen"] = best
        return best

    def _arm_run(self, arm, budget, trial, seed, name, split, teacher):
        return P.arm_run(self.s, arm, budget, trial, seed, name, split, teacher)

    def finals(self, arm: str, budget: P.Budget, best: int, teacher=None):
        """Test top-1 of the chosen configuration: its seed-0 run, then the other seeds."""
        trial = self.s.trials[best]
        chosen = self._arm_run(arm, budget, trial, self.s.seeds[0],
                               P.trial_name(arm, budget, best), "holdout", teacher)
        values = [self._test(chosen)]
        for seed in P.arm_seeds(self.s, arm)[1:]:
            run = self._arm_run(arm, budget, trial, seed, P.final_name(arm, budget, seed),
                                "test", teacher)
            values.append(self._train(run)["result"]["top1"])
        self.state["finals"].setdefault(arm, {})[budget.name] = values
        self.write()

    def arm(self, arm: str, teacher_arm=None):
        for budget in P.arm_budgets(self.s, arm):
            teacher = None
            if teacher_arm:
                chosen = self.state["search"][teacher_arm][budget.name + ":chosen"]
                teacher = P.trial_name(teacher_arm, budget, chosen)
            self.finals(arm, budget, self.search(arm, budget, teacher), teacher)

    def run(self):
        os.makedirs(self.out, exist_ok=True)
        self.state["raw_pixel_knn"] = raw_pixel_knn()
        self.phase0()
        self.pretrain()
        for arm in ("supervised", "finetune_small", "finetune_big"):
            self.arm(arm)
        self.arm("selfdistill", teacher_arm="finetune_small")
        self.arm("big_to_small", teacher_arm="finetune_big")
        self.arm("linear")
        self.write(final=True)

    # --- reporting -------------------------------------------------------------------------
    def projected_minutes(self, option=None) -> float:
        return sum(seconds for _, seconds, _ in plan(self, option)) / 60

    def write(self, final=False):
        t = report.table(self.state["finals"])
        claim_list = report.claims(t)
        info = {"scale": self.scale_name, "commit": harness.commit(), "cpu": self.cpu,
                "precision": self.precision, "protocol": __doc__, "scale_settings": repr(self.s),
                "total_minutes": sum(r["wall_seconds"] or 0 for r in self.state["runs"].values())
                / 60, "wall_minutes_this_invocation": (time.perf_counter() - self.started) / 60,
                "speeds": {"source": self.speeds.source, "pretrain_small": self.speeds.base,
                           "measured": self.speeds.measured},
                "table": t, "claims": claim_list, **self.state}
        harness.write_json(os.path.join(self.out, "results.json"), info)
        if final or t:
            with open(os.path.join(self.out, "results.md"), "w") as f:
                f.write(report.markdown(t, claim_list, info, self.s))
            report.figure(t, self.s, os.path.join(self.out, "semisup.png"))
        raw = self.state.get("raw_pixel_knn", {}).get("1pct")
        report.knn_figure(self.state["knn_curves"], raw, self.s.batch["pretrain"],
                          os.path.join(self.out, "knn_epochs.png"))


def raw_pixel_knn() -> dict:
    """kNN top-1 (k 20, T 0.07, as the monitor) of raw pixels: each budget's seed-0 bank
    against the holdout; the line the pretrained encoder must beat."""
    import numpy as np
    from data import datasets, fashion_mnist, pipeline
    from data.config import DataConfig
    from tf2 import knn
    images, labels = fashion_mnist.read_split(fashion_mnist.DEFAULT_SOURCE_DIR, "train")
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0
    source = datasets.load(DataConfig())
    out = {}
    for budget in P.BUDGETS:
        cfg = DataConfig(holdout_fraction=P.HOLDOUT_FRACTION, subset_seed=0,
                         **{budget.flag[0]: budget.flag[1]})
        bank = pipeline.labelled_mask(source, cfg)
        held = pipeline.holdout_mask(source, cfg)
        out[budget.name] = knn.accuracy(pixels[bank], labels[bank], pixels[held], labels[held],
                                        P.NUM_CLASSES)
    return out


def plan(study: Study, option=None):
    """[(name, projected seconds, argv)] of every run, choices not yet made taken as the
    first option / trial (the dry run's picture of the study)."""
    s, option = study.s, option or s_option(study)
    runs = [(r, "train") for r in P.phase0(s) + P.pretrains(s, option)]
    for arm in SEARCH_ARMS:
        teacher_arm = {"selfdistill": "finetune_small", "big_to_small": "finetune_big"}.get(arm)
        for budget in P.arm_budgets(s, arm):
            teacher = P.trial_name(teacher_arm, budget, 0) if teacher_arm else None
            for i, trial in enumerate(s.trials):
                runs.append((P.arm_run(s, arm, budget, trial, s.seeds[0],
                                       P.trial_name(arm, budget, i), "holdout", teacher), "train"))
            runs.append((runs[-len(s.trials)][0], "test"))
            for seed in P.arm_seeds(s, arm)[1:]:
                runs.append((P.arm_run(s, arm, budget, s.trials[0], seed,
                                       P.final_name(arm, budget, seed), "test", teacher), "train"))
    out = []
    for run, what in runs:
        if what == "test":
            out.append((run.name + ":test", runner.OVERHEAD_SECONDS["eval"],
                        runner.test_command(run, s, study.runs_dir, study.precision)))
        else:
            out.append((run.name, study.speeds.seconds(run, s),
                        runner.command(run, s, study.runs_dir, study.precision)))
    return out


def s_option(study):
    return getattr(study, "option", study.s.augment_options[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(P.SCALES), default="smoke")
    parser.add_argument("--out", default=os.path.join("bench", "out", "semisup"))
    parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    study = Study(P.SCALES[args.scale], args.scale, os.path.abspath(args.out),
                  harness.machine())
    if args.dry_run:
        for name, seconds, argv in plan(study):
            print(f"# {name}: ~{seconds:.0f} s\n{' '.join(argv)}")
        print(f"# CPU {study.cpu['model']}, precision {study.precision}; speeds: "
              f"{study.speeds.source} ({study.speeds.base:.0f} images/s pretraining the small "
              f"network). Choices not yet made are shown as the first option / trial.")
        print(f"# projected total: {study.projected_minutes():.0f} min")
        return
    study.run()
    for c in report.claims(report.table(study.state["finals"])):
        print(f"{c['verdict'].upper():>29}: {c['claim']}")
    print(f"total {(time.perf_counter() - study.started) / 60:.1f} min; wrote {study.out}/"
          "results.json, results.md, semisup.png, knn_epochs.png")


if __name__ == "__main__":
    main()
