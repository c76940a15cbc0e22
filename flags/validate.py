"""Checks every flag value and combination before TensorFlow builds anything.

Each problem is one line that names the flag, the value and what to do; run.py prints it and
exits with status 2.
"""
import json
import os

from data.config import CROP_MIN_OBJECT_COVERED
from flags import configs

RESNET_DEPTHS = (18, 34, 50, 101, 152, 200)
MIN_WIDTH = 0.0235  # the smallest round number with round(64 x w) >= 2 (64 x 0.0235 = 1.504)


class FlagError(ValueError):
    """A bad flag value or combination; its message is meant for the user as is."""


def _require(ok, message):
    if not ok:
        raise FlagError(message)


def _check_model(f):
    _require(f.resnet_depth in RESNET_DEPTHS,
             f"--resnet_depth={f.resnet_depth}: use one of {', '.join(map(str, RESNET_DEPTHS))}.")
    _require(round(64 * f.width_multiplier) >= 2,
             f"--width_multiplier={f.width_multiplier}: too thin, the stem would get "
             f"round(64 x {f.width_multiplier}) = {round(64 * f.width_multiplier)} channels; "
             f"the rule is round(64 x w) >= 2, so use at least {MIN_WIDTH} (paper: 1, 2, 3).")
    _require(0.0 <= f.sk_ratio < 1.0,
             f"--sk_ratio={f.sk_ratio}: must be in [0, 1) (paper: 0.0625; 0 turns SK off).")
    _require(0.0 <= f.se_ratio < 1.0, f"--se_ratio={f.se_ratio}: must be in [0, 1).")
    # Up to 32 px the CIFAR stem (stride 1) is used; block groups 2-4 halve the side 3 times.
    _require(f.image_size >= 8,
             f"--image_size={f.image_size}: too small for the network; use at least 8 px.")
    _require(f.num_proj_layers >= 1, f"--num_proj_layers={f.num_proj_layers}: must be >= 1.")
    _require(f.proj_out_dim >= 1, f"--proj_out_dim={f.proj_out_dim}: must be >= 1.")
    layers = {"none": 0, "linear": 1, "nonlinear": f.num_proj_layers}[f.proj_head_mode]
    sel = configs.value(f, "ft_proj_selector")
    _require(-1 <= sel <= layers,
             f"--ft_proj_selector={sel}: must be in [-1, {layers}] for "
             f"--proj_head_mode={f.proj_head_mode} with {layers} head layer(s).")
    _require(-1 <= f.fine_tune_after_block <= 4,
             f"--fine_tune_after_block={f.fine_tune_after_block}: must be in [-1, 4].")
    _require(0.0 < f.batch_norm_decay < 1.0,
             f"--batch_norm_decay={f.batch_norm_decay}: must be in (0, 1).")


# Gaussian blur convolves each view with a 1-D kernel of image_size / 10 px; TensorFlow's oneDNN
# convolution aborts (SIGABRT, "Check failed: dtype() == expected_dtype") on it from 896 px
# (measured 2026-12 with data.augment.gaussian_blur in tf.data: 896, 960, 1024 px abort;
# 512, 768 (three times), 800 and 832 px run), so blur stops at 768 px.
MAX_BLUR_IMAGE_SIZE = 768


def _check_image_size(f):
    _require(not configs.use_blur(f) or f.image_size <= MAX_BLUR_IMAGE_SIZE,
             f"--image_size={f.image_size} with Gaussian blur (--use_blur, on above 32 px): "
             f"TensorFlow's oneDNN convolution aborts on its {f.image_size // 10} px kernel; "
             f"blur works up to {MAX_BLUR_IMAGE_SIZE} px: pass --use_blur=false or a smaller "
             "--image_size.")


def memory_bytes() -> int:
    """The memory this process may use: the physical memory, or a cgroup's limit if lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _hosts(f) -> int:
    """The hosts that share the global batch: TF_CONFIG's cluster for multi_worker, else 1."""
    if f.distribution != "multi_worker":
        return 1
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    except (ValueError, AttributeError):
        return 1
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def _check_memory(f):
    """A batch whose pixels alone exceed the memory would end in an out-of-memory traceback
    (or the kernel's OOM killer) after the data are read: refused up front.

    The estimate is a floor: the float32 pixels of one batch that this host's input pipeline
    assembles (two views per image in pretraining); the network's activations come on top.
    """
    if f.distribution == "tpu":  # the hosts of a TPU slice are not known here
        return
    side, hosts, available = f.image_size, _hosts(f), memory_bytes()
    batches = []
    if f.mode != "eval":
        batches.append(("train_batch_size", configs.value(f, "train_batch_size"),
                        2 if f.train_mode == "pretrain" else 1))
    if f.mode != "train":
        batches.append(("eval_batch_size", f.eval_batch_size, 1))
    for name, batch, views in batches:
        images = max(1, batch // hosts)
        need = images * views * side * side * 3 * 4
        _require(need <= available,
                 f"--image_size={side} with --{name}={batch}: one batch ({images} images"
                 f"{' x 2 views' if views == 2 else ''} on this host at {side} x {side} px) "
                 f"needs at least {need / 2**30:,.1f} GiB for its float32 pixels alone, more "
                 f"than the {available / 2**30:,.1f} GiB of memory here; use a smaller "
                 f"--image_size or --{name}.")


def _check_objective(f):
    tau = configs.value(f, "temperature")
    _require(tau > 0, f"--temperature={tau}: must be > 0 (paper: 0.1).")
    _require(f.memory_size >= 0, f"--memory_size={f.memory_size}: must be >= 0 (0 = off).")
    _require(0.0 <= f.memory_ema_decay < 1.0,
             f"--memory_ema_decay={f.memory_ema_decay}: must be in [0, 1) (paper: 0.999).")
    _require(0.0 <= f.distill_alpha <= 1.0,
             f"--distill_alpha={f.distill_alpha}: must be in [0, 1] (1 = Eq. 2, no labels).")
    batch = configs.value(f, "train_batch_size")
    _require(f.train_mode != "pretrain" or f.mode == "eval" or batch != 1 or f.memory_size,
             "--train_batch_size=1 in pretraining without a memory (--memory_size=0): the two "
             "views of the one image have no negative to be told apart from, so the "
             "contrastive loss is 0 and nothing is learnt; use a batch of at least 2 (paper: "
             "4096) or a memory of negatives (--memory_size).")


def _check_optimisation(f):
    for name in ("train_batch_size", "eval_batch_size", "steps_per_loop"):
        _require(configs.value(f, name) > 0, f"--{name}={configs.value(f, name)}: must be > 0.")
    _require(configs.value(f, "learning_rate") > 0,
             f"--learning_rate={configs.value(f, 'learning_rate')}: must be > 0.")
    _require(configs.value(f, "weight_decay") >= 0,
             f"--weight_decay={configs.value(f, 'weight_decay')}: must be >= 0.")
    _require(configs.value(f, "warmup_epochs") >= 0,
             f"--warmup_epochs={configs.value(f, 'warmup_epochs')}: must be >= 0.")
    _require(f.train_steps > 0 or configs.value(f, "train_epochs") > 0,
             "--train_epochs and --train_steps are both 0: set one of them.")
    _require(f.train_steps >= 0, f"--train_steps={f.train_steps}: must be >= 0.")
    _require(f.eval_steps >= 0, f"--eval_steps={f.eval_steps}: must be >= 0 (0 = whole split).")
    _require(f.eval_timeout >= 0,
             f"--eval_timeout={f.eval_timeout}: must be >= 0 seconds (0 = do not wait).")
    _require(f.checkpoint_steps >= 0 and f.checkpoint_epochs > 0,
             f"--checkpoint_steps={f.checkpoint_steps} / --checkpoint_epochs="
             f"{f.checkpoint_epochs}: steps must be >= 0 (0 = use epochs) and epochs > 0.")
    _require(f.keep_checkpoint_max >= 1,
             f"--keep_checkpoint_max={f.keep_checkpoint_max}: keep at least 1 to resume.")


def _check_data(f):
    frac = configs.value(f, "label_fraction")
    _require(0.0 < frac <= 1.0,
             f"--label_fraction={frac}: must be in (0, 1], e.g. 0.01 or 0.1.")
    _require(f.labels_per_class is None or f.labels_per_class > 0,
             f"--labels_per_class={f.labels_per_class}: must be > 0.")
    if f.dataset.startswith("folder:"):
        path = f.dataset[len("folder:"):]
        _require(os.path.isdir(path),
                 f"--dataset={f.dataset}: {path} is not a directory of images.")


def _check_holdout_and_augment(f):
    _require(0.0 <= f.holdout_fraction < 1.0,
             f"--holdout_fraction={f.holdout_fraction}: must be in [0, 1) (0 = no holdout; "
             "e.g. 0.0833 holds out 1/12 of each class).")
    _require(f.eval_split != "holdout" or f.holdout_fraction > 0,
             "--eval_split=holdout needs --holdout_fraction > 0 (the part of train_split "
             "held out).")
    try:
        low, high = configs.crop_area_range(f.crop_area_range)
    except ValueError:
        low = high = float("nan")
    _require(0.0 < low <= high <= 1.0,
             f"--crop_area_range={f.crop_area_range}: use 'low,high' with 0 < low <= high <= 1 "
             "(default 0.08,1.0).")
    # The crop op also needs the box to cover a tenth of the image (the original's
    # min_object_covered) and a range that pixel boxes can land in; otherwise every crop
    # silently falls back to the whole image (measured: 0.05,0.1 and 0.12,0.12 always do).
    _require(high > CROP_MIN_OBJECT_COVERED and (low < high or low == 1.0),
             f"--crop_area_range={f.crop_area_range}: no crop could be drawn (every view would "
             f"be the whole image): high must exceed {CROP_MIN_OBJECT_COVERED} (crops "
             "cover at least a tenth of the image, as in the original) and low < high, or "
             "use 1,1 for no crop.")


def _check_knn(f):
    for name in ("knn_every_steps", "knn_bank_size", "knn_eval_examples"):
        _require(f[name].value >= 0, f"--{name}={f[name].value}: must be >= 0 (0 = "
                 f"{'off' if name == 'knn_every_steps' else 'all'}).")
    _require(f.knn_k >= 1, f"--knn_k={f.knn_k}: must be >= 1 (e.g. 20).")
    _require(f.knn_temperature >= 0,
             f"--knn_temperature={f.knn_temperature}: must be >= 0 (0 = majority vote).")


def _check_stage(f):
    if f.train_mode == "finetune" and f.mode != "eval":
        _require(bool(f.checkpoint) != bool(f.from_scratch),
                 "--train_mode=finetune needs --checkpoint=<pretrain model_dir, checkpoint "
                 "prefix or SavedModel> (e.g. --checkpoint=runs/pretrain), or --from_scratch "
                 "for a supervised baseline (not both).")
    if f.train_mode == "distill" and f.mode != "eval":
        _require(bool(f.teacher),
                 "--train_mode=distill needs --teacher=<fine-tuned model_dir, checkpoint "
                 "prefix or SavedModel> (e.g. --teacher=runs/finetune).")
    for name in ("checkpoint", "teacher"):
        path = f[name].value
        if path:
            _require(os.path.exists(path) or os.path.exists(path + ".index"),
                     f"--{name}={path}: no such checkpoint, model_dir or SavedModel.")
    if f.mode == "eval":
        _require(os.path.isdir(configs.model_dir(f)),
                 f"--mode=eval: --model_dir={configs.model_dir(f)} does not exist; train first.")


def _check_model_dir(f):
    """model_dir must be (or become) a directory this process can write: checked up front."""
    path = configs.model_dir(f)
    _require(not os.path.exists(path) or os.path.isdir(path),
             f"--model_dir={path}: is a file, not a directory; choose a directory (it is "
             "created if missing).")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):  # the deepest part that exists gets the new folders
        existing = os.path.dirname(existing)
    _require(os.path.isdir(existing),
             f"--model_dir={path}: {existing} is a file, so the directory cannot be created.")
    _require(os.access(existing, os.W_OK | os.X_OK),
             f"--model_dir={path}: {existing} is not writable (read-only disk or no "
             "permission); choose a writable --model_dir (evaluation writes there too).")


def validate(f) -> None:
    """Raises FlagError with a one-line message for the first bad flag."""
    checks = (_check_model, _check_image_size, _check_memory, _check_objective,
              _check_optimisation, _check_data, _check_holdout_and_augment, _check_knn,
              _check_stage, _check_model_dir)
    if f.mode in ("predict", "export"):  # nothing is trained; model_dir is only read
        checks = (_check_model, _check_data, _check_holdout_and_augment)
    for check in checks:
        check(f)


def flagfile_origin(argv, problem: str) -> str:
    """Where a flagfile holds the argument `problem` (absl's message, or the argument itself)
    is about: " (flagfile PATH, line N: TEXT)"; "" when it is on the command line or in no
    flagfile."""
    given = [a for a in argv[1:] if not _is_flagfile(a)]
    if any(_is_about(a, problem) for a in given):
        return ""
    for path in _flagfiles(argv[1:]):
        try:
            with open(path) as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if text and not text.startswith(("#", "//")) and _is_about(text, problem):
                return f" (flagfile {path}, line {number}: {text})"
    return ""


def _is_flagfile(arg: str) -> bool:
    return arg.lstrip("-").split("=", 1)[0] == "flagfile" and arg.startswith("-")


def _is_about(arg: str, problem: str) -> bool:
    """Whether absl's message `problem` names the argument `arg` (or is `arg` itself)."""
    name = arg.lstrip("-").split("=", 1)[0]
    return arg in problem or (arg.startswith("-") and f"'{name}'" in problem)


def _flagfiles(args, seen=()) -> list:
    """The flagfiles that `args` name, nested ones after the file that names them."""
    found = []
    for i, arg in enumerate(args):
        if not _is_flagfile(arg):
            continue
        path = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
        path = os.path.expanduser(path)
        if not path or path in seen or path in found:
            continue
        found.append(path)
        try:
            with open(path) as fh:
                nested = [line.strip() for line in fh]
        except OSError:
            continue
        found += [p for p in _flagfiles(nested, (*seen, *found)) if p not in found]
    return found


def check_batch_divides(global_batch: int, replicas: int, name="train_batch_size"):
    _require(global_batch % replicas == 0,
             f"--{name}={global_batch} is not divisible by the {replicas} replicas; use a "
             f"multiple of {replicas}.")


def jit_warning(f, device_kind: str):
    """The warning for --jit_compile on a CPU (None elsewhere, or with --jit_compile_on_cpu)."""
    if not f.jit_compile or f.jit_compile_on_cpu or device_kind != "cpu":
        return None
    return ("--jit_compile on a CPU: XLA ran our steps about 4x slower than without it on the "
            "CPUs measured (README \"Speed options\"); drop --jit_compile, or add "
            "--jit_compile_on_cpu to compile anyway without this warning.")
