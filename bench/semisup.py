"""The paper's semi-supervised result in miniature on Fashion-MNIST, by a fair protocol, in parts.

    python -m bench.semisup --part=all --scale=full --dry_run   # every command, minutes per part
    python -m bench.semisup --part=baselines --scale=full --out=DIR   # one part (<= 120 min)
    python -m bench.semisup --part=rescore --scale=full --out=DIR     # finals by argmax top-1
    python -m bench.semisup --part=report --scale=full                # merge the parts' files
    python -m bench.semisup --part=size --scale=smoke --out=DIR       # a part's hand-overs

It drives run.py as a user would, one subprocess per run (bench/semisup_study/: protocol,
search, runner, study, pixels, curves, claims, report, figures). The protocol:

  holdout    --holdout_fraction=1/12: 500 images per class of the 60,000 training images,
             the same for every run; no run trains on them; every labelled subset is drawn
             from the other 55,000.
  search     every arm (supervised from scratch, fine-tuning, linear evaluation, self- and
             big-to-small distillation, at every width) gets the same search (search.RULE):
             learning rate 0.01-0.3 per 128 images, weight decay 5e-5 / 5e-4, length the
             budget and twice it, each axis extended past an edge the chosen value sits on, up
             to a cap (length: 32x the budget); subset seed 0, scored on the holdout; every
             trial, extension and cap recorded.
  finals     the chosen configuration reads the test split once per subset seed (0, 1, 2).
  parts      baselines (raw-pixel references, x0.25 from scratch at 13/class and 1%),
             baselines_10pct (the same at 10%), reference (x0.25 from scratch on all 55,000
             labels), head (x0.25 pretrained; fine-tuning from head layer 1 vs 0, linear
             evaluation), size (x0.5 pretrained for the same epochs, fine-tuned at
             13/class and 1%), size_10pct (the same at 10%: the search and seed 0),
             size_10pct_seeds (seeds 1 and 2 at the configuration size_10pct recorded,
             from the same encoder, rebuilt and checked against its kNN monitor), distill
             (self-distillation tau 0.1, big-to-small tau 1, Eq. 3 with labels), long (x0.25
             pretrained 30 epochs, fine-tuned and self-distilled), scratch_big and
             scratch_big_1pct (x0.5 from scratch at 13/class, at 1%).
             A part builds the encoders and teachers it needs unless --out holds them (the
             same command finds its record); each writes part_<name>.json (commit, CPU,
             precision, every command with $OUT for --out, its wall time) and the report
             merges all part files present into results.json, results.md and the plots.
  rescore    every final's checkpoint evaluated again on test and counted by argmax
             (rescore.py: before commit 6c4f75a a tie at the top counted as a hit); the
             report uses these counts where present.

Resumable: a finished run's record (bench_*.json in its model_dir) is reused, an unfinished
one resumes from its checkpoint. --dry_run walks the same code without running anything: each
trial scores as search.typical_score says (every weight decay and length edge extended once),
and a worst case where every upward cap is reached; speeds are those the part files in
--results_dir measured on this CPU model, else estimates (bench/semisup_study/runner.py).
"""
import argparse
import os
import time

from bench import harness
from bench.semisup_study import protocol as P
from bench.semisup_study import report
from bench.semisup_study import rescore
from bench.semisup_study import runner
from bench.semisup_study import search
from bench.semisup_study.study import Study, measured_speeds

DOCS = os.path.join(harness.ROOT, "docs", "semisup")
CHOICES = (*P.PART_ORDER, "all", "rescore", "report")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=CHOICES, required=True,
                        help="which part to run; all: every part in order; rescore: "
                             "re-evaluate every final of the part files by argmax top-1 "
                             "(rescore.json); report: only merge the part files of "
                             "--results_dir")
    parser.add_argument("--scale", choices=sorted(P.SCALES), default="smoke")
    parser.add_argument("--out", default=os.path.join("bench", "out", "semisup"),
                        help="runs, logs (and, below full scale, the results files)")
    parser.add_argument("--results_dir", default=None,
                        help="where part_<name>.json and the report go (default: docs/semisup "
                             "at full scale, else --out)")
    parser.add_argument("--dry_run", action="store_true",
                        help="print every command and the projected minutes per part")
    args = parser.parse_args(argv)
    if args.results_dir is None:
        args.results_dir = DOCS if args.scale == "full" else args.out
    return args


def parts_of(choice):
    return P.PART_ORDER if choice == "all" else (choice,)


def project(args, cpu) -> dict:
    """{part: (typical minutes, worst-case minutes)} of the parts asked for, in order, on
    what --out holds now; prints every command of the typical projection."""
    out, measured = {}, measured_speeds(args.results_dir, cpu)
    for name, score in (("typical", search.typical_score(P.SCALES[args.scale].rule)),
                        ("worst", search.edge_score)):
        study = Study(P.SCALES[args.scale], args.scale, os.path.abspath(args.out),
                      args.results_dir, cpu, projection=score, measured=measured)
        for part in parts_of(args.part):
            before = set(study.records["runs"])
            study.run_part(part)
            new = {k: v for k, v in study.records["runs"].items() if k not in before}
            minutes = sum(r.get("wall_seconds") or 0 for r in new.values()) / 60
            out.setdefault(part, {})[name] = minutes
            if name == "typical":
                print(f"## part {part}: {len(new)} runs, ~{minutes:.0f} min")
                for run, rec in new.items():
                    if rec.get("command"):
                        print(f"# {run}: ~{rec['wall_seconds'] or 0:.0f} s\n{rec['command']}")
        if name == "typical":
            speeds = study.speeds
    print(f"# CPU {cpu['model']}, precision {runner.precision_for(cpu)}; speeds: {speeds.source} "
          f"({speeds.base:.0f} images/s pretraining ResNet-18 x0.25); $OUT = {args.out}")
    for part, m in out.items():
        print(f"# projected part {part}: {m['typical']:.0f} min (worst case, every upward cap "
              f"reached: {m['worst']:.0f} min)")
    return out


def main(argv=None):
    args = parse(argv)
    cpu = harness.machine()
    if args.dry_run:
        project(args, cpu)
        return
    if args.part == "rescore":
        tic = time.perf_counter()
        merged = report.merge(report.read_parts(args.results_dir))
        done = rescore.rescore(merged, os.path.join(os.path.abspath(args.out), "runs"),
                               args.results_dir, cpu, log=lambda line: print(line, flush=True))
        bad = [run for run, rec in done.items() if not rec["reproduces"]]
        print(f"rescore: {len(done)} finals, {(time.perf_counter() - tic) / 60:.1f} min; "
              f"recorded values not reproduced: {', '.join(bad) or 'none'}", flush=True)
    elif args.part != "report":
        for part in parts_of(args.part):
            tic = time.perf_counter()
            study = Study(P.SCALES[args.scale], args.scale, os.path.abspath(args.out),
                          args.results_dir, cpu)
            study.run_part(part)
            path = study.write(part)
            print(f"part {part}: {(time.perf_counter() - tic) / 60:.1f} min; wrote {path}",
                  flush=True)
    paths = report.write(args.results_dir, P.SCALES[args.scale])
    here = os.getcwd() + os.sep
    print("wrote " + ", ".join(p[len(here):] if p.startswith(here) else p for p in paths))


if __name__ == "__main__":
    main()
