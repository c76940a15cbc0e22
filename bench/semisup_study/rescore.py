"""The study's finals counted by argmax, re-evaluated from their checkpoints.

Until commit 6c4f75a run.py's evaluation counted an image as a top-1 hit when its label's
logit tied the largest one (`tf.math.in_top_k`). In mixed_bfloat16 the logits are bfloat16
numbers and tie on a few images in a thousand, so a final recorded then may be a little high,
by an amount that depends on the network (a student at tau 0.1 ties more often than a network
trained on labels alone): enough to matter for differences of a few tenths of a point.

`--part=rescore` evaluates the final checkpoint of every final in the part files again on the
split its final read (test), as run.py does (the run's config.json, input pipeline, precision
and batch size, the forward pass in a tf.function), and keeps both counts: `top1` by argmax
(a tie counts for the lower class index only: run.py's count since 6c4f75a and the class that
serving predicts) and `top1_ties_as_hits` (the old count). The recorded final must equal one
of them (which one depends on the commit that made it): that is the check that the
re-evaluation sees the network and the images the run saw. The report then uses `top1`.
Nothing is chosen from these numbers; the test split is read again for the same
configurations, once each.
"""
import os
import time
from typing import Dict, List, Tuple

import numpy as np

from bench import harness

FILE = "rescore.json"
SPLIT = "test"


def counts(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Both top-1 counts of (n, C) logits against (n,) labels, and how many rows tie."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    top = logits.max(axis=1)
    own = logits[np.arange(len(labels)), labels]
    return {"top1": float(np.mean(logits.argmax(axis=1) == labels)),
            "top1_ties_as_hits": float(np.mean(own >= top)),
            "rows_tied_at_the_top": int(np.sum((logits == top[:, None]).sum(axis=1) > 1)),
            "examples": int(len(labels))}


def finals(merged: dict) -> List[Tuple[str, float]]:
    """(run name, recorded test top-1) of every final of every arm in the merged parts."""
    out = []
    for per_budget in merged["arms"].values():
        for r in per_budget.values():
            for seed, value in sorted(r["finals"].items()):
                if value is not None:
                    out.append((r["runs"][seed], value))
    return out


def reproduces(recorded: float, rec: dict) -> bool:
    """Whether the recorded final is one of the two counts (to the image)."""
    half = 0.5 / rec["examples"]
    return any(abs(recorded - rec[k]) < half for k in ("top1", "top1_ties_as_hits"))


def apply(merged: dict, rescored: Dict[str, dict]) -> dict:
    """Each arm's finals replaced by their argmax counts where rescored (the recorded values
    kept under finals_recorded); returns {'rescored', 'finals', 'not_reproduced': [runs],
    'missing': [runs]}."""
    done, total, bad, missing = 0, 0, [], []
    for per_budget in merged["arms"].values():
        for r in per_budget.values():
            r["finals_recorded"] = dict(r["finals"])
            for seed, value in r["finals"].items():
                if value is None:
                    continue
                total += 1
                rec = rescored.get(r["runs"][seed])
                if rec is None:
                    missing.append(r["runs"][seed])
                    continue
                if not reproduces(value, rec):
                    bad.append(r["runs"][seed])
                r["finals"][seed] = rec["top1"]
                done += 1
    return {"rescored": done, "finals": total, "not_reproduced": bad, "missing": missing}


def read(directory: str) -> Dict[str, dict]:
    return (harness.read_json(os.path.join(directory, FILE)) or {}).get("runs", {})


def _logits(model_dir: str, split: str):
    """(logits (n, C) float32, labels (n,)) of the run's last checkpoint on `split`."""
    import tensorflow as tf

    from bench.semisup_study import curves
    from tf2 import model as model_lib
    tf.keras.backend.clear_session()  # one process re-evaluates many networks
    cfg = curves.run_config(model_dir, split)
    source, images, labels = curves.eval_images(cfg)
    model = curves.restored(cfg, source.num_classes, tf.train.latest_checkpoint(model_dir))
    # run.py's evaluation runs the network in a tf.function, whose bfloat16 roundings differ
    # from eager ones on a few images: the same here, so that the old count reproduces.
    forward = tf.function(lambda x: model(x, training=False)[model_lib.LOGITS_SUP])
    return np.concatenate([forward(x).numpy() for x in images]), labels


def rescore(merged: dict, runs_dir: str, directory: str, cpu: dict,
            log=print) -> Dict[str, dict]:
    """Re-evaluates every final not yet in `directory`/rescore.json; writes the file after
    each run (a stopped rescore resumes); returns {run: record}."""
    path = os.path.join(directory, FILE)
    done = read(directory)
    todo = [(run, v) for run, v in finals(merged) if run not in done]
    for run, recorded in todo:
        tic = time.perf_counter()
        rec = counts(*_logits(os.path.join(runs_dir, run), SPLIT))
        rec.update(split=SPLIT, recorded=recorded, reproduces=reproduces(recorded, rec),
                   wall_seconds=round(time.perf_counter() - tic, 1))
        done[run] = rec
        harness.write_json(path, {"what": __doc__.split("\n")[0], "commit": harness.commit(),
                                  "cpu": cpu, "runs": done})
        log(f"  {run}: top-1 {100 * rec['top1']:.2f}% (ties as hits "
            f"{100 * rec['top1_ties_as_hits']:.2f}%, recorded {100 * recorded:.2f}%"
            f"{'' if rec['reproduces'] else ', NOT REPRODUCED'})  {rec['wall_seconds']:.0f} s")
    return done


def summary_lines(merged: dict, rescored: Dict[str, dict], outcome: dict) -> List[str]:
    """The report's account of the rescoring: how many finals, whether each reproduced its
    recorded value, and the change per arm and budget (points, mean over its seeds)."""
    lines = ["", "## Top-1 by argmax (the finals re-evaluated: `--part=rescore`)", ""]
    if not outcome["rescored"]:
        return lines + ["Not run: the table counts a tie at the top as a hit where the part's "
                        "commit did (before 6c4f75a).", ""]
    lines.append(f"{outcome['rescored']} of {outcome['finals']} finals re-evaluated from their "
                 f"checkpoints; the table uses their argmax counts. Recorded values not "
                 f"reproduced: {', '.join(outcome['not_reproduced']) or 'none'}; not re-evaluated "
                 f"(the table keeps the recorded value): "
                 f"{', '.join(outcome['missing']) or 'none'}.")
    lines += ["", "| arm | budget | recorded (mean) | argmax (mean) | change | rows tied, "
                  "per seed |", "|---|---|---|---|---|---|"]
    for arm, per_budget in merged["arms"].items():
        for budget, r in per_budget.items():
            pairs = [(r["finals_recorded"][s], rescored[r["runs"][s]]) for s in r["finals"]
                     if r["finals_recorded"][s] is not None and r["runs"][s] in rescored]
            if not pairs:
                continue
            before = float(np.mean([v for v, _ in pairs]))
            after = float(np.mean([rec["top1"] for _, rec in pairs]))
            tied = ", ".join(str(rec["rows_tied_at_the_top"]) for _, rec in pairs)
            lines.append(f"| {arm} | {budget} | {100 * before:.2f} | {100 * after:.2f} | "
                         f"{100 * (after - before):+.2f} | {tied} |")
    return lines + [""]
