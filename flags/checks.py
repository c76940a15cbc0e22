"""The checks that need what was loaded: the data set, the checkpoints and SavedModels named by
--checkpoint and --teacher, and the runs a run continues (evaluated, resumed or teacher runs).

Every check before the first step that reads more than the flag values lives here (the flag
values alone: flags/validate.py); each takes the parsed flags `f` and what was loaded. run.py
calls them once the strategy is made and before anything is built or written. A problem raises
validate.FlagError (one line naming the flag, exit 2); what is only suspicious comes back from
`check` as warnings.

A label is only a position: class 3 of a run trained on one folder and class 3 of another
folder are the same output only if both folders call it by the same name. config.json and our
SavedModels record the class names (label k = class_names[k]; checkpoints/provenance.py reads
them); evaluation, resuming and distillation compare them with the data's names and refuse a
difference with a message that names it. Fine-tuning from a pretraining run copies only the
encoder and projection head, so a different label set is legitimate there.
"""
import os
from typing import List, Optional, Sequence

from flags import configs, validate

def named(f, flag_name: str, fn):
    """fn, whose ValueError / FileNotFoundError becomes a FlagError naming --flag_name."""
    def call(*args):
        try:
            return fn(*args)
        except (ValueError, FileNotFoundError) as e:
            raise validate.FlagError(f"--{flag_name}={f[flag_name].value}: {e}") from e
    return call


def checkpoint_stem(f) -> None:
    """--checkpoint must have the stem that --image_size builds (exit 2, not a shape error)."""
    if not f.checkpoint or f.mode == "eval":
        return
    from checkpoints import warm_start
    try:
        warm_start.check_stem(f.checkpoint, f.width_multiplier, f.sk_ratio,
                              cifar_stem=configs.cifar_stem(f))
    except (ValueError, FileNotFoundError) as e:
        raise validate.FlagError(
            f"--checkpoint={f.checkpoint} at --image_size={f.image_size}: {e}") from e


def sources(f) -> None:
    """--checkpoint and --teacher SavedModels must read whole (FlagError naming the file)."""
    from checkpoints import export as export_lib
    from checkpoints import integrity
    for name in ("checkpoint", "teacher"):
        path = f[name].value
        if path and f.mode != "eval" and export_lib.is_saved_model_dir(path):
            named(f, name, integrity.check_saved_model)(path)


def train_split(f, source) -> None:
    """--train_split (or its slice) must exist in the loaded data set."""
    named(f, "train_split", source.num_examples)(f.train_split)


def eval_split(f, source) -> Optional[str]:
    """--eval_split, or the split the data set has (test, validation, holdout) when not given.

    Checked now when this run evaluates or monitors kNN (not after hours of training); a
    training-only run on data without an evaluation split gets None.
    """
    from data import datasets
    split = f.eval_split
    needed = f.mode != "train" or f.knn_every_steps > 0
    if split is None:
        try:
            split = datasets.default_eval_split(source)
        except ValueError as e:
            if f.holdout_fraction > 0:
                split = "holdout"
            elif not needed:
                return None
            else:
                raise validate.FlagError(f"--eval_split is not given and {e}") from e
    if needed and split != "holdout":  # the holdout is a part of train_split, checked there
        named(f, "eval_split", source.num_examples)(split)
    return split


def check(f, cfg, source) -> List[str]:
    """The run's config against its data: raises FlagError for the first problem; returns the
    warnings (one line each).

    Args:
      f: the parsed flags.
      cfg: the RunConfig of the run (mode=eval: with the trained run's parts).
      source: the loaded data.Source.
    """
    try:
        _check_classes(f, cfg, source)
        _check_continued_runs(f, cfg, source)
    except ValueError as e:
        raise validate.FlagError(str(e)) from e
    _check_batch(f, cfg)
    return _label_warnings(f, cfg, source)


def _uses_labels(f) -> bool:
    return f.train_mode != "pretrain" or f.lineareval_while_pretraining or f.mode != "train"


def _check_classes(f, cfg, source):
    """A single class gives loss 0 and 100% accuracy: nothing is learnt or measured."""
    if source.num_classes == 1 and _uses_labels(f):
        raise validate.FlagError(
            f"--dataset={f.dataset}: a single class ({source.class_names[0]!r}); fine-tuning, "
            f"distillation and evaluation need at least 2. To pretrain on these images, pass "
            f"--nolineareval_while_pretraining or put them directly in the folder (unlabelled).")
    if f.train_mode == "finetune" and f.mode != "eval" and source.num_classes > 1:
        from data import pipeline
        labels = source.labels(cfg.data.train_split)[pipeline.labelled_mask(source, cfg.data)]
        present = sorted({int(label) for label in labels})
        if len(present) < 2:
            raise validate.FlagError(
                f"--train_split={f.train_split}: its labelled examples are all of one class "
                f"({source.class_names[present[0]]!r} of {source.num_classes}); a folder's "
                f"examples are in class order, so use a fraction (--label_fraction) instead "
                f"of a slice of the first examples." if present else
                f"--train_split={f.train_split}: no labelled example to fine-tune on.")


def _check_continued_runs(f, cfg, source):
    """Evaluation, resume and distillation read runs that must mean the same classes."""
    from checkpoints import provenance
    names = tuple(source.class_names)
    model_dir = configs.model_dir(f)
    try:
        if f.mode == "eval":
            check_same_classes(cfg.class_names, names, f"the run in {model_dir}")
        elif os.path.isdir(model_dir):  # a resume continues the run's supervised head
            check_same_classes(provenance.recorded_class_names(model_dir), names,
                               f"the run in {model_dir} that this run would resume")
    except ValueError as e:
        raise validate.FlagError(f"--dataset={f.dataset}: {e}") from e
    if f.train_mode == "distill" and f.mode != "eval" and f.teacher:
        try:
            check_teacher(f.teacher, names)
        except ValueError as e:
            raise validate.FlagError(f"--teacher={f.teacher}: {e}") from e


def _check_batch(f, cfg):
    """A batch larger than the epoch never fills (drop_remainder): the run would hang."""
    examples, batch = cfg.train.num_train_examples, cfg.train.train_batch_size
    if f.mode != "eval" and batch > examples:
        what = "labelled examples" if f.train_mode == "finetune" else "examples"
        raise validate.FlagError(
            f"--train_batch_size={batch} is larger than the {examples} {what} of "
            f"--train_split={f.train_split}; use at most {examples}.")


def _label_warnings(f, cfg, source) -> List[str]:
    if f.mode == "eval" or not source.num_classes or not cfg.data.uses_label_subset:
        return []
    if f.train_mode == "pretrain" or (f.train_mode == "distill" and f.distill_alpha >= 1.0):
        return []  # labels unused
    from data import subsets
    warnings = []
    if configs.is_official_subset(f.dataset):
        warnings.append(f"--dataset={f.dataset} is already the official labelled subset; "
                        f"--label_fraction / --labels_per_class subsample its list further.")
    message = subsets.shortfall(
        source.labels(cfg.data.train_split),
        fraction=None if cfg.data.labels_per_class else cfg.data.label_fraction,
        per_class=cfg.data.labels_per_class, class_names=source.class_names)
    return warnings + ([message] if message else [])


def check_teacher(path: str, class_names: Sequence[str]) -> None:
    """Raises ValueError unless `path` is a fine-tuned model of the data's classes.

    A pretraining run is refused even with its linear-evaluation head: that head was trained on
    stop-gradient features with every label of the pretraining data, so distilling it is
    neither the paper's method nor semi-supervised.
    """
    from checkpoints import provenance
    rec = provenance.record(path)
    if rec["train_mode"] == "pretrain":
        raise ValueError(
            f"{path} is a pretraining run: its logits come from the linear-evaluation head "
            f"(stop-gradient features, every label), not a fine-tuned network. Fine-tune it "
            f"first (--train_mode=finetune --checkpoint={path}) and distil that run.")
    if rec["num_classes"] == 0:
        raise ValueError(f"{path} has no supervised head (logits_sup) to distil; give a "
                         f"fine-tuned run.")
    if rec["class_names"]:
        problem = provenance.difference(rec["class_names"], class_names, "teacher",
                                        "data")
        if problem:
            raise ValueError(f"{path} does not fit the data: {problem}.")
    elif rec["num_classes"] is not None and rec["num_classes"] != len(class_names):
        raise ValueError(f"{path} does not fit the data: the teacher has {rec['num_classes']} "
                         f"classes, the data {len(class_names)}.")


def check_same_classes(recorded: Sequence[str], class_names: Sequence[str], what: str) -> None:
    """Raises ValueError when a run's recorded class names differ from the data's.

    Args:
      recorded: the names in the run's config.json (empty: not recorded, nothing to check).
      class_names: the names of the data given now.
      what: the run, for the message (e.g. "the run in runs/finetune").
    """
    if not recorded or not class_names:
        return
    from checkpoints import provenance
    problem = provenance.difference(recorded, class_names, "run", "data")
    if problem:
        raise ValueError(f"the data do not match {what}: {problem}; give the data set the run "
                         f"was trained on.")
