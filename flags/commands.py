"""The command lines the program prints: the next stage, the same run again, TensorBoard, and
how to use a model (predict with it, load predict's files, open an export).

Each runs as printed from the directory the program was started in: it calls the interpreter
that is running (e.g. `.venv/bin/python`, the README's set-up never activates the venv and
stock Debian has no `python`), and paths inside that directory are shown relative to it.
"""
import importlib.util
import json
import os
import shlex
import sys
from typing import List, Optional, Sequence

from stages import STAGES

# Flags the next stage must share with this one (the data and the network) or that say how to
# run; the printed next command repeats those the user set. Objective, optimisation and
# checkpoint flags are the next stage's own (see flags/configs.STAGE_DEFAULTS).
CARRIED_FLAGS = (
    "dataset", "data_dir", "manual_dir", "download", "train_split", "eval_split",
    "label_fraction", "labels_per_class", "holdout_fraction", "crop_area_range", "image_size",
    "cache_dataset", "resnet_depth", "width_multiplier", "sk_ratio", "se_ratio",
    "proj_head_mode", "num_proj_layers", "proj_out_dim", "global_bn", "batch_norm_decay",
    "eval_batch_size", "eval_steps", "seed", "deterministic", "precision", "jit_compile",
    "jit_compile_on_cpu", "distribution", "tpu", "tpu_name", "tpu_zone", "gcp_project",
    "use_tpu", "steps_per_loop", "progress_bar")
# Flags a prediction with the finished model repeats: the data this run evaluated, and how to
# compute (--mode=predict reads the network from the model, README 'Step 4').
PREDICT_FLAGS = ("dataset", "data_dir", "manual_dir", "download", "eval_split",
                 "holdout_fraction", "eval_batch_size", "precision", "progress_bar")
# Flags that describe the network: after --mode=eval they come from the evaluated run (its
# config.json), not from what was typed, or the next stage would build another network.
NETWORK_FLAGS = ("resnet_depth", "width_multiplier", "sk_ratio", "se_ratio", "proj_head_mode",
                 "num_proj_layers", "proj_out_dim", "global_bn", "batch_norm_decay")
# Placeholders of the data set the user must fill in: a labelled one for fine-tuning after
# pretraining without labels; one with a test split for evaluating runs of data without one.
LABELLED = "LABELLED"
WITH_TEST_SPLIT = "WITH_TEST_SPLIT"
_RUN_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run.py")


def shown_path(path: str, executable: bool = False) -> str:
    """`path` relative to the working directory when inside it, else absolute.

    An executable in the working directory itself gets `./`, or the shell would search PATH.
    """
    path, cwd = os.path.abspath(path), os.getcwd()
    if os.path.commonpath([cwd, path]) != cwd:
        return path
    rel = os.path.relpath(path, cwd)
    return os.path.join(".", rel) if executable and os.sep not in rel else rel


def program() -> str:
    """The shell words that start run.py again: this interpreter and run.py's path."""
    interpreter = shown_path(sys.executable or "python3", executable=True)
    return f"{shlex.quote(interpreter)} {shlex.quote(shown_path(_RUN_PY))}"


def this_command(argv: Sequence[str]) -> str:
    """The command that started this process (argv[0] being run.py), as it would run again."""
    return " ".join([program()] + [shlex.quote(a) for a in argv[1:]])


def tensorboard_command(logdir: str) -> str:
    """TensorBoard of this interpreter's environment (its script, or the module)."""
    script = os.path.join(os.path.dirname(sys.executable or ""), "tensorboard")
    if sys.executable and os.path.exists(script):
        start = shlex.quote(shown_path(script, executable=True))
    else:
        start = f"{shlex.quote(shown_path(sys.executable or 'python3', True))} -m tensorboard.main"
    return f"{start} --logdir {shlex.quote(logdir)}"


def _carried(flag_values, dataset: Optional[str], names: Sequence[str] = CARRIED_FLAGS,
             network: Optional[dict] = None):
    """The flags of `names` the user set, serialized; `dataset` replaces --dataset when given.

    `network` ({flag: value}) replaces the values of NETWORK_FLAGS, and carries those that
    differ from the flag's default even when the user did not set them.
    """
    args = []
    for name in names:
        flag = flag_values[name]
        if name == "dataset" and dataset is not None:
            args.append(f"--dataset={dataset}")
        elif network and name in network and network[name] != flag.value:
            value = network[name]
            args.append((f"--{name}" if value else f"--no{name}") if flag.boolean
                        else f"--{name}={value}")
        elif flag.present and flag.value is not None:
            args.append(flag.serialize())
    return args


def next_dataset(train_mode: str, dataset: str, labelled: bool,
                 evaluable: bool = True) -> Optional[str]:
    """The next stage's --dataset when it must differ from this one's, else None.

    Fine-tuning needs labels (after pretraining on a folder without classes: LABELLED, for the
    user to fill in); distillation learns from all unlabelled images, so after fine-tuning on
    an official ImageNet subset it reads the whole of imagenet2012, as the paper does. An
    evaluation needs a split to evaluate on (data without one: WITH_TEST_SPLIT, to fill in).
    """
    if train_mode == "pretrain" and not labelled:
        return LABELLED
    if train_mode == "finetune" and dataset.startswith("imagenet2012_subset"):
        return "imagenet2012"
    if not evaluable and "--mode=eval" in (STAGES[train_mode].next_args or ""):
        return WITH_TEST_SPLIT
    return None


def next_command(flag_values, model_dir: str, labelled: bool = True, evaluable: bool = True,
                 network: Optional[dict] = None) -> Optional[str]:
    """The next stage's command line, repeating the CARRIED_FLAGS the user set.

    None when nothing follows: a distilled model that was evaluated is the end of the stages.

    Args:
      flag_values: this run's parsed flags.
      model_dir: this run's model_dir.
      labelled: whether the data have classes.
      evaluable: whether the data (with the flags carried) have a split to evaluate on.
      network: {NETWORK_FLAGS name: value} of the network this run trained or evaluated
        (`configs.network_flags`); None: the flags as given.
    """
    train_mode, mode = flag_values.train_mode, flag_values.mode
    if train_mode == "distill" and mode != "train":
        return None
    stage = STAGES[train_mode].next_args.format(model_dir=shlex.quote(model_dir))
    dataset = next_dataset(train_mode, flag_values.dataset, labelled, evaluable)
    carried = _carried(flag_values, dataset, network=network)
    return " ".join([program(), stage] + [shlex.quote(a) for a in carried])


def use_command(flag_values, model_dir: str) -> str:
    """--mode=predict with the model in model_dir on the data this run evaluated, repeating the
    PREDICT_FLAGS the user set (it writes into runs/predict, see README 'Step 4')."""
    args = ["--mode=predict", f"--model_dir={model_dir}"]
    args += _carried(flag_values, None, PREDICT_FLAGS)
    return " ".join([program()] + [shlex.quote(a) for a in args])


def python_command(code: str) -> str:
    """`code` run by this interpreter (`python -c`), as a shell in the working directory runs
    it."""
    interpreter = shown_path(sys.executable or "python3", executable=True)
    return f"{shlex.quote(interpreter)} -c {shlex.quote(code)}"


def load_predictions_command(predictions: str, embeddings: str) -> str:
    """A command that reads predict's CSV and embeddings (and prints their sizes)."""
    return python_command(
        "import csv, numpy as np; "
        f"rows = list(csv.DictReader(open({json.dumps(shown_path(predictions))}))); "
        f"emb = np.load({json.dumps(shown_path(embeddings))}, mmap_mode=\"r\"); "
        "print(len(rows), emb.shape, emb.dtype); print(rows[:1])")


def load_export_command(path: str) -> str:
    """A command that opens an exported file with its runtime and lists its outputs."""
    if path.endswith(".onnx"):
        code = (f"import onnxruntime as rt; s = rt.InferenceSession({json.dumps(shown_path(path))}); "
                "print([(o.name, o.shape) for o in s.get_outputs()])")
    else:  # LiteRT's interpreter, or TensorFlow's own where ai-edge-litert is not installed
        module = ("ai_edge_litert.interpreter" if importlib.util.find_spec("ai_edge_litert")
                  else "tensorflow.lite")
        code = (f"from {module} import Interpreter; "
                f"print(Interpreter(model_path={json.dumps(shown_path(path))}).get_signature_list())")
    return python_command(code)


def notes(command: str, dataset: str) -> List[str]:
    """What the user must fill into `command` (its placeholders) before it runs, a line each."""
    lines = []
    if f"--dataset={LABELLED}" in command:
        lines.append(f"fine-tuning needs a labelled data set, and {dataset} has no classes: "
                     f"replace {LABELLED} with folder:/path (one sub-folder per class) or a TFDS "
                     "name.")
    if f"--dataset={WITH_TEST_SPLIT}" in command:
        lines.append(f"evaluation needs a test or validation split, and {dataset} has none (and "
                     f"no holdout was set aside from the first stage on): replace "
                     f"{WITH_TEST_SPLIT} with data of the same classes that has one (e.g. "
                     "folder:/path with train/ and test/ sub-folders, each with the class "
                     "sub-folders).")
    return lines
