"""Turns parsed flags into the library's frozen configuration dataclasses.

Flags the user did not pass take the defaults of the chosen stage (the paper uses a different
learning rate, weight decay and warm-up for each), scaled down for the embedded CPU default.
"""
import os

from absl import flags as absl_flags

from data.config import DataConfig
from tf2 import config as cfg_lib

# Paper Sec. 3.1: pretraining and distillation share lr 0.1*sqrt(B), weight decay 1e-4 and a
# 5% warm-up; fine-tuning uses 0.005*sqrt(B), no weight decay, no warm-up, from head layer 1.
STAGE_DEFAULTS = {
    "pretrain": dict(learning_rate=0.1, learning_rate_scaling="sqrt", weight_decay=1e-4,
                     warmup_epochs=0.05, train_epochs=0.5, temperature=0.2),
    "finetune": dict(learning_rate=0.005, learning_rate_scaling="sqrt", weight_decay=0.0,
                     warmup_epochs=0.0, train_epochs=5, label_fraction=0.1,
                     ft_proj_selector=1, train_batch_size=128),
    # Two epochs: the default student then matches or beats its teacher on each of 3 seeds
    # (half an epoch and one epoch leave it below on some; docs/speed/README.md).
    "distill": dict(learning_rate=0.1, learning_rate_scaling="sqrt", weight_decay=1e-4,
                    warmup_epochs=0.05, train_epochs=2, temperature=1.0,
                    ft_proj_selector=1),
}


FLAG = object()  # an argument left at this default takes the flag's value

# TFDS data sets whose train split is already the labelled subset (the official ImageNet 1% and
# 10% lists): fine-tuning uses all of it unless --label_fraction / --labels_per_class is given.
OFFICIAL_SUBSETS = ("imagenet2012_subset",)


def is_official_subset(dataset: str) -> bool:
    """True for 'imagenet2012_subset/1pct' and the like (any config or version)."""
    return dataset.split("/", 1)[0].split(":", 1)[0] in OFFICIAL_SUBSETS


def value(flag_values, name):
    """The flag's value, or the stage default when the user did not set it.

    The fine-tuning default label_fraction=0.1 stands for "the paper's 10%"; on an official
    subset, which is that labelled set already, it would keep a tenth of it, so there the
    default is 1 (all of the subset).
    """
    if not flag_values[name].present:
        stage = STAGE_DEFAULTS.get(flag_values.train_mode, {})
        if name == "label_fraction" and is_official_subset(flag_values.dataset):
            return 1.0
        if name in stage:
            return stage[name]
    return flag_values[name].value


def crop_area_range(text: str):
    """'0.08,1.0' -> (0.08, 1.0); ValueError when it is not two numbers."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"expected two numbers 'low,high', got {text!r}")
    return float(parts[0]), float(parts[1])


def use_blur(f) -> bool:
    """--use_blur, by default on above 32 px (the CIFAR-sized setting has no blur)."""
    return f.use_blur if f.use_blur is not None else f.image_size > 32


def cifar_stem(f) -> bool:
    """Up to 32 px the CIFAR stem (3x3/1, no max-pool) keeps enough resolution."""
    return f.image_size <= 32


def data_config(f, eval_split=FLAG) -> DataConfig:
    """The DataConfig of the flags; `eval_split` replaces --eval_split (see checks.eval_split)."""
    return DataConfig(
        holdout_fraction=f.holdout_fraction, crop_area_range=crop_area_range(f.crop_area_range),
        color_distortion=f.color_distortion,
        dataset=f.dataset, data_dir=f.data_dir, manual_dir=f.manual_dir, download=f.download,
        rescan_folder=f.rescan_folder, train_split=f.train_split, image_size=f.image_size,
        eval_split=f.eval_split if eval_split is FLAG else eval_split,
        label_fraction=value(f, "label_fraction"), labels_per_class=f.labels_per_class,
        color_jitter_strength=f.color_jitter_strength, use_blur=use_blur(f),
        cache=f.cache_dataset, seed=f.seed, subset_seed=f.seed)


def run_config(f: absl_flags.FlagValues, num_train_examples: int, class_names=(),
               eval_split=FLAG, precision=None) -> cfg_lib.RunConfig:
    """The final RunConfig of the parsed flags `f` (validated beforehand).

    With --mode=eval, the network, stage, length and teacher come from the config.json of the
    run in model_dir (when there is one): evaluation rebuilds that network and knows its last
    step whatever flags are given now.

    Args:
      f: the parsed flags.
      num_train_examples: examples in one epoch of the stage (see data.pipeline).
      class_names: the data set's class names (label k is class_names[k]); recorded in
        config.json and the SavedModels, and the supervised head gets one output per class.
      eval_split: the evaluation split resolved against the data (checks.eval_split);
        default: --eval_split as given.
      precision: the `tf2.precision.Choice` of --precision on this hardware; default:
        --precision as given, without a reason.
    """
    parts = {**_flag_parts(f, num_train_examples, class_names), "teacher": f.teacher}
    every = f.checkpoint_steps or parts["train"].epochs_to_steps(f.checkpoint_epochs)
    data = data_config(f, eval_split)
    if f.mode == "eval":
        parts.update(_trained_parts(model_dir(f), data))
    return cfg_lib.RunConfig(
        **parts, data=data, model_dir=model_dir(f), checkpoint=f.checkpoint,
        keep_checkpoint_max=f.keep_checkpoint_max,
        keep_hub_module_max=f.keep_hub_module_max, checkpoint_every_steps=every,
        eval_batch_size=f.eval_batch_size, eval_steps=f.eval_steps,
        precision=precision.policy if precision else f.precision,
        precision_reason=precision.reason if precision else "",
        jit_compile=f.jit_compile, progress_bar=f.progress_bar, knn=cfg_lib.KnnConfig(
            every_steps=f.knn_every_steps, k=f.knn_k, temperature=f.knn_temperature,
            bank_size=f.knn_bank_size, eval_examples=f.knn_eval_examples),
        mode=f.mode, eval_timeout=f.eval_timeout, deterministic=f.deterministic)


# What --mode=eval takes from the evaluated run's config.json (the teacher: to compare the
# distilled student with it).
_TRAINED_PARTS = ("model", "head", "train", "train_mode", "optimizer", "class_names",
                  "lineareval_while_pretraining", "teacher")


def _trained_parts(directory: str, data) -> dict:
    """{field: value} of `_TRAINED_PARTS` in directory/config.json ({} when there is none)."""
    path = os.path.join(directory, "config.json")
    if not os.path.exists(path):
        return {}
    saved = cfg_lib.load_run_config(path, data=data)
    return {name: getattr(saved, name) for name in _TRAINED_PARTS}


def _flag_parts(f, num_train_examples: int, class_names) -> dict:
    """The RunConfig fields that describe what is trained, from the flags."""
    v = lambda name: value(f, name)  # noqa: E731
    model = cfg_lib.ModelConfig(
        resnet_depth=f.resnet_depth, width_multiplier=f.width_multiplier, sk_ratio=f.sk_ratio,
        se_ratio=f.se_ratio, cifar_stem=cifar_stem(f),
        batch_norm_decay=f.batch_norm_decay, global_bn=f.global_bn,
        frozen_blocks=f.fine_tune_after_block)
    head = cfg_lib.HeadConfig(
        proj_head_mode=f.proj_head_mode, num_proj_layers=f.num_proj_layers,
        proj_out_dim=f.proj_out_dim, ft_proj_selector=v("ft_proj_selector"),
        zero_init_logits_layer=f.zero_init_logits_layer,
        num_classes=_head_classes(f, len(class_names)))
    tau = v("temperature")
    loss = cfg_lib.LossConfig(temperature=tau, hidden_norm=f.hidden_norm,
                              distill_temperature=tau, distill_alpha=f.distill_alpha)
    memory = cfg_lib.MemoryConfig(size=f.memory_size, ema_decay=f.memory_ema_decay)
    optimizer = cfg_lib.OptimizerConfig(
        optimizer=f.optimizer, learning_rate=v("learning_rate"),
        learning_rate_scaling=v("learning_rate_scaling"), warmup_epochs=v("warmup_epochs"),
        weight_decay=v("weight_decay"), momentum=f.momentum)
    train = cfg_lib.TrainConfig(
        train_batch_size=v("train_batch_size"), train_epochs=v("train_epochs"),
        train_steps=f.train_steps or None, num_train_examples=num_train_examples,
        steps_per_loop=f.steps_per_loop, seed=f.seed)
    return dict(model=model, head=head, loss=loss, memory=memory, optimizer=optimizer,
                train=train, train_mode=f.train_mode, class_names=tuple(class_names),
                lineareval_while_pretraining=f.lineareval_while_pretraining)


def network_flags(cfg: cfg_lib.RunConfig) -> dict:
    """{flag name: value} of the network `cfg` builds (for --mode=eval: the evaluated run's,
    from its config.json), the inverse of `_flag_parts` for flags/commands.NETWORK_FLAGS."""
    model, head = cfg.model, cfg.head
    return {"resnet_depth": model.resnet_depth, "width_multiplier": model.width_multiplier,
            "sk_ratio": model.sk_ratio, "se_ratio": model.se_ratio,
            "global_bn": model.global_bn, "batch_norm_decay": model.batch_norm_decay,
            "proj_head_mode": head.proj_head_mode, "num_proj_layers": head.num_proj_layers,
            "proj_out_dim": head.proj_out_dim}


def _head_classes(f, num_classes: int) -> int:
    """Outputs of the run's supervised head: 0 when pretraining without the linear head."""
    if f.train_mode == "pretrain" and not f.lineareval_while_pretraining:
        return 0
    return num_classes


def used_values(f, names) -> dict:
    """{flag name: the value the run uses} for `names`: stage defaults and derived defaults
    (model_dir, use_blur) resolved, as config.json has them (flags.json, starts.jsonl)."""
    used = {name: value(f, name) for name in names}
    if "model_dir" in used:
        used["model_dir"] = model_dir(f)
    if "use_blur" in used:
        used["use_blur"] = use_blur(f)
    return used


def model_dir(f) -> str:
    return f.model_dir or f"runs/{f.train_mode}"
