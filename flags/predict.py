"""The flags of --mode=predict and --mode=export: their checks and their configs.

`check` runs before TensorFlow is imported (the flags alone); `describe` reads the model the
flags name (its config or records, no network built) and checks the flags against it; the
config builders then take the data set's splits into account. Each problem is a FlagError:
one line naming the flag, the value and what to do (exit 2).
"""
import dataclasses
import os
import re

from flags import configs, validate

MODES = ("predict", "export")
FORMATS = ("onnx", "litert")
_LAYER_RE = re.compile(r"^(final_avg_pool|proj_head_input|proj_head_output|logits_sup|"
                       r"proj_head_layer_[1-9][0-9]*)$")
# Up to this side the program builds the CIFAR stem (flags/configs.run_config).
CIFAR_STEM_MAX_SIZE = 32


def output_dir(f) -> str:
    return f.output_dir or f"runs/{f.mode}"


def _require(ok, message):
    if not ok:
        raise validate.FlagError(message)


def output_files(f):
    """The files this run writes (relative to output_dir)."""
    from checkpoints import formats
    from stages import predict
    if f.mode == "predict":
        return list(predict.OUTPUT_FILES)
    return [formats.FILE_NAMES[fmt] for fmt in f.export_format or ()] + [
        formats.CLASS_NAMES_FILE]


def check(f) -> None:
    """The checks that need nothing but the flags (FlagError for the first problem)."""
    mode = f"--mode={f.mode}"
    _require(f["model_dir"].present and f.model_dir,
             f"{mode} needs --model_dir=<a model_dir or a SavedModel> (e.g. runs/distill, or "
             "runs/distill/saved_model/<step>, or an official SimCLRv2 SavedModel).")
    _require(os.path.exists(f.model_dir),
             f"--model_dir={f.model_dir}: no such model_dir or SavedModel; train first or fix "
             "the path.")
    _require(f.top_k >= 1, f"--top_k={f.top_k}: must be >= 1.")
    _require(f.eval_batch_size > 0, f"--eval_batch_size={f.eval_batch_size}: must be > 0.")
    _require(bool(_LAYER_RE.match(f.embedding_layer)),
             f"--embedding_layer={f.embedding_layer}: use final_avg_pool, proj_head_input, "
             "proj_head_layer_<j> (j >= 1), proj_head_output or logits_sup.")
    _require(f.distribution != "multi_worker",
             f"{mode} runs on one machine (on all of its replicas); drop "
             "--distribution=multi_worker.")
    if f.mode == "export":
        formats = f.export_format or []
        _require(formats and set(formats) <= set(FORMATS),
                 f"--export_format={','.join(formats)}: --mode=export needs onnx, litert or "
                 "onnx,litert.")
    if f.mode == "predict" and f.dataset.startswith("folder:"):
        path = f.dataset[len("folder:"):]
        _require(os.path.isdir(path), f"--dataset={f.dataset}: {path} is not a directory of "
                                      "images.")
    _check_output(f)


def _check_output(f):
    out = output_dir(f)
    existing = [n for n in output_files(f) if os.path.exists(os.path.join(out, n))]
    _require(f.overwrite or not existing,
             f"--output_dir={out}: {os.path.join(out, existing[0]) if existing else ''} exists; "
             "pass --overwrite to replace it, or choose another --output_dir.")
    _require(not os.path.exists(out) or os.path.isdir(out),
             f"--output_dir={out}: is a file, not a directory.")
    deepest = os.path.abspath(out)
    while not os.path.exists(deepest):
        deepest = os.path.dirname(deepest)
    _require(os.path.isdir(deepest) and os.access(deepest, os.W_OK | os.X_OK),
             f"--output_dir={out}: {deepest} is not a writable directory; choose another "
             "--output_dir.")


def describe(f):
    """The model --model_dir names (checkpoints.trained.Description), checked against the
    flags: not being written by a training run, and fit for --image_size."""
    from checkpoints import model_dir as model_dir_lib
    from checkpoints import trained
    writer = model_dir_lib.training_writer(f.model_dir)
    _require(writer is None,
             f"--model_dir={f.model_dir}: a training run is writing into it ({writer}); wait "
             "for it to end, or use one of its SavedModels (--model_dir="
             f"{os.path.join(f.model_dir, 'saved_model', '<step>')}).")
    try:
        description = trained.describe(f.model_dir)
    except trained.NoModelError as e:
        raise validate.FlagError(f"--model_dir={f.model_dir}: {e}.") from e
    return dataclasses.replace(description, image_size=image_size(f, description))


def image_size(f, description) -> int:
    """--image_size when given and the model can take it, else the size it was trained at.

    The network's stem follows the image size it was built for (the CIFAR stem up to 32 px),
    so a size on the other side of 32 px is refused; another size on the same side is taken.
    """
    trained_at = description.image_size
    if not f["image_size"].present:
        return trained_at or f.image_size
    size = f.image_size
    stem = "the CIFAR stem" if description.cifar_stem else "the ImageNet stem"
    fits = (size <= CIFAR_STEM_MAX_SIZE) == description.cifar_stem
    _require(size >= 8 and fits,
             f"--image_size={size}: the model in {f.model_dir} was trained at {trained_at} px "
             f"with {stem}, which the program builds for images "
             f"{'up to 32 px' if description.cifar_stem else 'above 32 px'}; omit "
             f"--image_size (the model's {trained_at} px is the default) or pass a size the "
             "model can take.")
    return size


def _split(f, source) -> str:
    """--eval_split, else the split the data set evaluates on, else its only split."""
    from data import datasets
    if f.eval_split:
        validate_split = source.check_split if f.eval_split != "holdout" else (lambda s: None)
        try:
            validate_split(f.eval_split)
        except ValueError as e:
            raise validate.FlagError(f"--eval_split={f.eval_split}: {e}") from e
        return f.eval_split
    try:
        return datasets.default_eval_split(source)
    except ValueError:
        _require(len(source.splits) == 1,
                 f"--dataset={f.dataset} has splits {', '.join(source.splits)}: choose one "
                 "with --eval_split.")
        return source.splits[0]


def predict_config(f, description, source, precision=None):
    """The PredictConfig of the flags, for the model `description` and the data `source`.

    `precision`: the `tf2.precision.Choice` of --precision on this hardware; default:
    --precision as given, without a reason.
    """
    from stages import predict
    data = dataclasses.replace(configs.data_config(f), image_size=description.image_size,
                               eval_split=_split(f, source), cache=False)
    return predict.PredictConfig(
        model_path=f.model_dir, output_dir=output_dir(f), data=data,
        batch_size=f.eval_batch_size, top_k=f.top_k, embedding_layer=f.embedding_layer,
        normalize=f.normalize_embeddings, overwrite=f.overwrite, progress_bar=f.progress_bar,
        precision=precision.policy if precision else f.precision,
        precision_reason=precision.reason if precision else "")


def export_config(f):
    """The ExportConfig of the flags."""
    from stages import export_formats
    return export_formats.ExportConfig(model_path=f.model_dir, output_dir=output_dir(f),
                                       formats=tuple(f.export_format),
                                       embedding_layer=f.embedding_layer)
