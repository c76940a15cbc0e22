"""Checks that need the loaded data: the flags against the data set, and the data against the
runs they continue (class names of the evaluated, resumed or teacher run).

Called by run.py once the data are loaded and before anything is built or written. A problem
raises validate.FlagError (one line, exit 2); what is only suspicious comes back as warnings.
"""
import os
from typing import List

from flags import configs, validate


def check(f, cfg, source) -> List[str]:
    """Raises FlagError for the first problem; returns the warnings (one line each).

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
            provenance.check_same_classes(cfg.class_names, names, f"the run in {model_dir}")
        elif os.path.isdir(model_dir):  # a resume continues the run's supervised head
            provenance.check_same_classes(provenance.recorded_class_names(model_dir), names,
                                          f"the run in {model_dir} that this run would resume")
    except ValueError as e:
        raise validate.FlagError(f"--dataset={f.dataset}: {e}") from e
    if f.train_mode == "distill" and f.mode != "eval" and f.teacher:
        try:
            provenance.check_teacher(f.teacher, names)
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
