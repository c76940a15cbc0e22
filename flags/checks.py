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

from data.config import HOLDOUT_SPLIT
from flags import configs, validate

_NAMED = 5  # class names spelled out in a warning

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
    monitors = f.knn_every_steps > 0 and f.mode != "eval"
    if monitors and source.num_classes == 0:
        raise validate.FlagError(
            f"--knn_every_steps={f.knn_every_steps}: the kNN monitor scores labelled held-out "
            f"images against a bank of labelled training images, and --dataset={f.dataset} "
            "has no labels (no class sub-folders); use --knn_every_steps=0, or data with "
            "classes.")
    split = f.eval_split
    needed = f.mode != "train" or monitors
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
    if needed and split != HOLDOUT_SPLIT:  # the holdout is a part of train_split, checked there
        named(f, "eval_split", source.num_examples)(split)
    if f.mode != "train":
        _check_not_empty(f, source, split)
    if monitors:  # the monitor's held-out images: the holdout if any, else the eval split
        _check_not_empty(f, source, HOLDOUT_SPLIT if f.holdout_fraction else split)
    return split


def _check_not_empty(f, source, split: str) -> None:
    """An evaluation over no example would report top-1 0.0 as a result: refused."""
    from data import pipeline
    data = configs.data_config(f, split)
    if named(f, "eval_split", pipeline.num_eval_examples)(source, data, split):
        return
    if split != HOLDOUT_SPLIT:
        raise validate.FlagError(f"--eval_split={split}: it has no example to evaluate on; "
                                 "give a split that has some.")
    import numpy as np
    labels = source.labels(f.train_split)
    counts = np.bincount(labels[labels >= 0])
    smallest = int(counts[counts > 0].min()) if counts.any() else 0
    raise validate.FlagError(
        f"--holdout_fraction={f.holdout_fraction}: the holdout of --train_split={f.train_split} "
        f"is empty (round({f.holdout_fraction} x the images of a class) is 0 for every class), "
        "so there is nothing to evaluate on; use a larger --holdout_fraction"
        + (f", at least {1.0 / smallest:.3g} to hold out an image of every class." if smallest
           else "."))


def check(f, cfg, source) -> List[str]:
    """The run's config against its data: raises FlagError for the first problem; returns the
    warnings (one line each).

    Args:
      f: the parsed flags.
      cfg: the RunConfig of the run (mode=eval: with the trained run's parts).
      source: the loaded data.Source.
    """
    _check_batch(f, cfg)
    try:
        _check_classes(f, cfg, source)
        _check_continued_runs(f, cfg, source)
    except ValueError as e:
        raise validate.FlagError(str(e)) from e
    _check_holdouts(f, cfg)
    return (_label_warnings(f, cfg, source) + _knn_warnings(f, cfg, source)
            + _holdout_warnings(f, cfg, source))


def _uses_labels(f) -> bool:
    return f.train_mode != "pretrain" or f.lineareval_while_pretraining or f.mode != "train"


def _trains_on_labels(f) -> bool:
    """Whether this run's training steps read labels (its evaluation aside) from a part of
    its split, where one class may be all that is left.

    Fine-tuning always (it reads the labels anyway to draw its subset); pretraining's linear
    head and distillation's Eq. 3 only from a slice or outside a holdout: their whole split has
    the data set's classes, and reading every label of a large TFDS split would take long.
    """
    if f.mode == "eval":
        return False
    if f.train_mode == "finetune":
        return True
    part = "[" in f.train_split or f.holdout_fraction > 0
    return part and {"pretrain": f.lineareval_while_pretraining,
                     "distill": f.distill_alpha < 1.0}.get(f.train_mode, True)


def _check_classes(f, cfg, source):
    """A single class gives loss 0 and 100% accuracy: nothing is learnt or measured."""
    if source.num_classes == 1 and _uses_labels(f):
        raise validate.FlagError(
            f"--dataset={f.dataset}: a single class ({source.class_names[0]!r}); fine-tuning, "
            f"distillation and evaluation need at least 2. To pretrain on these images, pass "
            f"--nolineareval_while_pretraining or put them directly in the folder (unlabelled).")
    if source.num_classes < 2 or not _trains_on_labels(f):
        return
    present = _trained_classes(f, cfg, source)
    if not present:
        raise validate.FlagError(f"--train_split={f.train_split}: no labelled example to "
                                 f"train on.")
    if len(present) < 2:
        remedy = ("use a slice that holds several classes, or pretrain without the linear "
                  "head (--nolineareval_while_pretraining)" if f.train_mode == "pretrain" else
                  "use a fraction (--label_fraction) instead of a slice of the first examples")
        raise validate.FlagError(
            f"--train_split={f.train_split}: its labelled examples are all of one class "
            f"({source.class_names[present[0]]!r} of {source.num_classes}), so the supervised "
            f"head learns nothing (accuracy 1.0); a folder's examples are in class order, so "
            f"{remedy}.")


def _trained_classes(f, cfg, source) -> List[int]:
    """The classes whose labels the training steps read (outside the holdout), sorted."""
    from data import pipeline
    if f.train_mode == "pretrain":  # the linear head reads every label outside the holdout
        labels = _training_labels(source, cfg.data)
    else:
        labels = source.labels(cfg.data.train_split)[pipeline.labelled_mask(source, cfg.data)]
    return sorted({int(label) for label in labels if label >= 0})


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
    if f.mode == "eval":
        return
    what = "labelled examples" if f.train_mode == "finetune" else "examples"
    if examples == 0:
        raise validate.FlagError(
            f"--holdout_fraction={f.holdout_fraction} holds out every example of --train_split="
            f"{f.train_split}, so nothing is left to train on; use a smaller "
            f"--holdout_fraction." if f.holdout_fraction else
            f"--train_split={f.train_split} has no {what} to train on.")
    if batch > examples:
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
    message = subsets.shortfall(  # the subset is drawn outside the holdout: so is the count
        _training_labels(source, cfg.data),
        fraction=None if cfg.data.labels_per_class else cfg.data.label_fraction,
        per_class=cfg.data.labels_per_class, class_names=source.class_names)
    return warnings + ([message] if message else [])


def _knn_warnings(f, cfg, source) -> List[str]:
    """The kNN monitor's bank: refused when it cannot be what was asked, else a warning when
    its class-balanced draw keeps fewer images than --knn_bank_size."""
    if not cfg.knn.enabled or f.mode == "eval":
        return []
    from stages import monitor
    size, classes = cfg.knn.bank_size, source.num_classes
    if 0 < size < classes:
        raise validate.FlagError(
            f"--knn_bank_size={size}: the bank is drawn class-balanced, at least one labelled "
            f"image of each of the {classes} classes; use 0 (every labelled image) or at least "
            f"{classes}.")
    bank = int(monitor.bank_mask(source, cfg).sum())
    if cfg.knn.k > bank:
        raise validate.FlagError(
            f"--knn_k={cfg.knn.k} is larger than the kNN bank of {bank} labelled images, so "
            f"every image of the bank would vote for every query; use at most {bank}"
            + (" or a larger --knn_bank_size." if size else "."))
    if size and bank != size:
        return [f"--knn_bank_size={size}: the class-balanced bank holds {bank} images "
                f"({size // classes} per class of {classes}, fewer where a class has fewer)."]
    return []


def _training_labels(source, data):
    """(train examples,) int labels of data.train_split, -1 for the held-out ones."""
    import numpy as np
    from data import pipeline
    labels = source.labels(data.train_split)
    if data.holdout_fraction:
        labels = np.where(pipeline.holdout_mask(source, data), -1, labels)
    return labels


# --- the holdout belongs to its run -----------------------------------------------------------
# The held-out images are those of round(fraction x class count) drawn from train_split's
# labels: another fraction or another train_split holds out other images. A run that continues
# another (resume, fine-tuning from its checkpoint, distilling its teacher) on the same data, or
# evaluates it on the holdout, must use the holdout that run used, or a "held-out" image may
# have been trained on. config.json records it (its "data" part); runs whose config.json
# predates that record are not checked, as for the class names.

def _holdout_of(data: Optional[dict]):
    """(fraction, train_split or None) of a recorded data part; None when not recorded."""
    if not data or "holdout_fraction" not in data:
        return None
    fraction = float(data["holdout_fraction"] or 0.0)
    return fraction, (data.get("train_split") if fraction else None)


def _holdout_words(holdout) -> str:
    fraction, split = holdout
    return f"a holdout of {fraction} of {split}" if fraction else "no holdout"


def _holdout_flags(holdout) -> str:
    fraction, split = holdout
    return f"--holdout_fraction={fraction} --train_split={split}" if fraction else \
        "--holdout_fraction=0"


def _same_data(recorded: Optional[str], given: str) -> bool:
    from data import datasets
    ours, theirs = datasets.folder_path(given), datasets.folder_path(recorded or "")
    if ours is None or theirs is None:
        return recorded == given
    return os.path.realpath(ours) == os.path.realpath(theirs)


def _recorded_holdout(path: str, dataset: str, need_checkpoint=False, same_data=True):
    """The holdout recorded by the run that wrote `path`, or None (not recorded, or a run of
    other data when `same_data`)."""
    from checkpoints import provenance
    try:
        data = provenance.recorded_data(path, need_checkpoint)
    except (FileNotFoundError, ValueError):  # not a run of ours: nothing recorded
        return None
    if data is None or (same_data and not _same_data(data.get("dataset"), dataset)):
        return None
    return _holdout_of(data)


def _check_holdouts(f, cfg):
    """The holdout of this run against those of the runs it evaluates or continues."""
    ours = _holdout_of({"holdout_fraction": cfg.data.holdout_fraction,
                        "train_split": cfg.data.train_split})
    given = f"--holdout_fraction={f.holdout_fraction}"
    model_dir = configs.model_dir(f)
    if f.mode == "eval":
        theirs = _recorded_holdout(model_dir, f.dataset)
        if cfg.data.eval_split == HOLDOUT_SPLIT and theirs not in (None, ours):
            raise validate.FlagError(
                f"--eval_split=holdout: the run in {model_dir} held nothing out of its "
                f"training images, so it may have trained on every image of this holdout; "
                f"evaluate it on a split it never read (e.g. a test/ folder beside train/)."
                if not theirs[0] else
                f"--eval_split=holdout with {given}: the run in {model_dir} was trained with "
                f"{_holdout_words(theirs)}, and other images are no holdout to it; evaluate "
                f"with {_holdout_flags(theirs)} --eval_split=holdout.")
        return
    continued = [(model_dir, f"the run in {model_dir} that this run would resume", True)]
    for name, stage in (("checkpoint", "finetune"), ("teacher", "distill")):
        if f.train_mode == stage and f[name].value:
            continued.append((f[name].value, f"the --{name} {f[name].value}", False))
    for path, what, resume in continued:
        theirs = _recorded_holdout(path, f.dataset, need_checkpoint=resume, same_data=not resume)
        if theirs not in (None, ours):
            raise validate.FlagError(
                f"{given} --train_split={f.train_split}: {what} was trained on the same data "
                f"with {_holdout_words(theirs)}, this run would use {_holdout_words(ours)}; the "
                f"runs that continue one another must hold out the same images, or a held-out "
                f"image has been trained on. Pass {_holdout_flags(theirs)}, or start again "
                f"from pretraining (a new --model_dir) with the new holdout.")


def _holdout_warnings(f, cfg, source) -> List[str]:
    """A holdout that misses classes measures only the others (evaluation, kNN monitor)."""
    import numpy as np
    from data import pipeline
    evaluates = f.mode != "train" and cfg.data.eval_split == HOLDOUT_SPLIT
    monitors = cfg.knn.enabled and f.mode != "eval"
    if not cfg.data.holdout_fraction or not source.num_classes or not (evaluates or monitors):
        return []
    labels = source.labels(cfg.data.train_split)
    held = labels[pipeline.holdout_mask(source, cfg.data)]
    missing = sorted(set(labels[labels >= 0].tolist()) - set(held.tolist()))
    if not missing:
        return []
    names = ", ".join(repr(source.class_names[c]) for c in missing[:_NAMED])
    return [f"--holdout_fraction={cfg.data.holdout_fraction} holds out no image of "
            f"{len(missing)} of the {source.num_classes} classes ({names}"
            f"{', ...' if len(missing) > _NAMED else ''}): the holdout does not measure "
            "them; use a larger --holdout_fraction."]


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
