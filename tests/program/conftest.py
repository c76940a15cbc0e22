"""Fixtures of the program tests: run.py called as a user calls it, in subprocesses.

Every training run the tests read is a job of one `RunPool`. When the session starts, the jobs
the selected tests need (and the jobs those read from) start in the background, two at a time,
each after the runs it reads; the tests then mostly wait for runs already under way. Runs write
into the session's temporary folder; Fashion-MNIST is prepared once there (tests/data use the
same `<basetemp>/tfds`), and a learnable toy folder data set is drawn there.

Each job returns a `Result` (or a dict of them); a test asks for one with `runs.result(name)`.
"""
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np
import pytest

from tests import hang_guard

REPO = Path(__file__).resolve().parents[2]
WORKERS = 2  # runs at a time: this machine has two cores

# Runs pin --precision=float32 (the default, auto, depends on the CPU); the precision tests
# run their bfloat16 twins explicitly.
# Tiny Fashion-MNIST runs: ResNet-18 (CIFAR stem) at 16 px, batch 16, two steps per loop, on
# the first 2,000 training images (a shuffle buffer of the whole split fills 5x slower). The
# warm-up of 0.016 epochs is round(0.016 * 2000 / 16) = 2 steps, so the schedule has both a
# warm-up and a cosine part within 8 steps.
FASHION = ["--train_split=train[:2000]", "--resnet_depth=18", "--width_multiplier=1",
           "--image_size=16", "--train_batch_size=16", "--steps_per_loop=2", "--eval_steps=2",
           "--eval_batch_size=32", "--proj_out_dim=16", "--deterministic",
           "--precision=float32"]
PRETRAIN = ["--mode=train", "--train_mode=pretrain", "--train_steps=8", "--checkpoint_steps=4",
            "--warmup_epochs=0.016"]
TOY = ["--width_multiplier=1", "--image_size=16", "--train_batch_size=16", "--proj_out_dim=16",
       "--eval_batch_size=16", "--deterministic", "--precision=float32"]
TOY_TRAIN, TOY_TEST = 48, 16  # images per class and split


def interpreter_as_typed() -> str:
    """How a user in REPO types this interpreter: relative when inside REPO (.venv/bin/python)."""
    exe = Path(sys.executable).absolute()
    return str(exe.relative_to(REPO)) if REPO in exe.parents else str(exe)


@dataclasses.dataclass
class Result:
    """One finished run.py call."""
    args: List[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    model_dir: str = ""
    hung: bool = False  # killed by the hang guard

    def next_args(self) -> List[str]:
        """The arguments of the 'next:' command printed at the end (without the interpreter
        and run.py, which must be the ones running, as a shell in REPO finds them)."""
        lines = [l for l in self.stdout.splitlines() if l.startswith("next:")]
        assert len(lines) == 1, self.stdout
        words = shlex.split(lines[0][len("next:"):])
        assert words[:2] == [interpreter_as_typed(), "run.py"], lines[0]
        return words[2:]

    def lines_starting(self, name: str) -> List[str]:
        """The values of stdout's `name:` lines (the banner's and the report's)."""
        return [l[len(name) + 1:].strip() for l in self.stdout.splitlines()
                if l.startswith(name + ":")]

    def check(self):
        assert not self.hung, hang_guard.message(f"run.py {' '.join(self.args)}")
        assert self.returncode == 0, f"run.py {' '.join(self.args)} failed:\n{self.stderr[-3000:]}"
        return self


class RunPool:
    """Runs jobs in background threads, `workers` at a time, in submission order."""

    def __init__(self, base: Path, data_dir: str, toy_dir: str, workers: int = WORKERS):
        self.base, self.data_dir, self.toy_dir = base, data_dir, toy_dir
        self.toy_test_size = 2 * TOY_TEST  # two classes
        self.interpreter = interpreter_as_typed()
        self._executor = concurrent.futures.ThreadPoolExecutor(workers)
        self._futures: Dict[str, concurrent.futures.Future] = {}
        self._procs = set()
        self._lock = threading.Lock()
        self._closed = False
        self.timings: Dict[str, float] = {}  # run.py call -> seconds, for the summary

    def submit(self, name: str):
        """Starts job `name` after the jobs it reads from (submitted first, recursively)."""
        if name in self._futures:
            return
        deps, fn = JOBS[name]
        for dep in deps:
            self.submit(dep)
        self._futures[name] = self._executor.submit(fn, self)

    def result(self, name: str):
        """Waits for job `name` (submitting it if needed); re-raises its failure."""
        self.submit(name)
        return self._futures[name].result()  # every run.py call has its own hang guard

    def model_dir(self, name: str) -> str:
        return str(self.base / name)

    def popen(self, args: Sequence[str], out: Path, env=None) -> subprocess.Popen:
        """Starts run.py with stdout/stderr in files `out`.out / `out`.err (never a full pipe);
        `env`: variables added to this process's environment."""
        if self._closed:
            raise RuntimeError("the session is over")
        proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], cwd=REPO,
                                env={**os.environ, **(env or {})},
                                stdout=open(f"{out}.out", "w"), stderr=open(f"{out}.err", "w"))
        with self._lock:
            self._procs.add(proc)
        return proc

    def run_shell(self, line: str, name: str) -> Result:
        """`line` run by bash in REPO, PATH without this interpreter's folder (as a fresh
        shell that never activated the venv); logs go to base/name.*"""
        tic, out = time.monotonic(), self.base / f"{name}.log"
        path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                               if Path(p).absolute() != Path(sys.executable).absolute().parent)
        proc = subprocess.Popen(["bash", "-c", line], cwd=REPO, env={**os.environ, "PATH": path},
                                stdout=open(f"{out}.out", "w"), stderr=open(f"{out}.err", "w"))
        with self._lock:
            self._procs.add(proc)
        args = shlex.split(line)
        model_dir = next((a.split("=", 1)[1] for a in args if a.startswith("--model_dir=")), "")
        return self.finish(proc, args, out, tic, model_dir)

    def finish(self, proc, args, out: Path, tic: float, model_dir="") -> Result:
        hung = False
        try:
            proc.wait(timeout=max(1.0, hang_guard.HANG_GUARD - (time.monotonic() - tic)))
        except subprocess.TimeoutExpired:
            hung = True
            proc.kill()
            proc.wait()
        with self._lock:
            self._procs.discard(proc)
        seconds = time.monotonic() - tic
        self.timings[out.name[:-len(".log")]] = seconds
        return Result(list(args), proc.returncode, Path(f"{out}.out").read_text(),
                      Path(f"{out}.err").read_text(), seconds, model_dir, hung)

    def run(self, args: Sequence[str], name: str, env=None) -> Result:
        """run.py `args` to completion (or the hang guard); logs go to base/name.*"""
        tic = time.monotonic()
        out = self.base / f"{name}.log"
        model_dir = next((a.split("=", 1)[1] for a in args if a.startswith("--model_dir=")), "")
        return self.finish(self.popen(args, out, env), args, out, tic, model_dir)

    def close(self):
        self._closed = True
        for future in self._futures.values():
            future.cancel()
        with self._lock:
            for proc in list(self._procs):
                proc.kill()
        self._executor.shutdown(wait=True)


# --- the jobs --------------------------------------------------------------------------------

def _fashion(pool):
    return [f"--data_dir={pool.data_dir}", *FASHION]


def _toy(pool):
    return [f"--dataset=folder:{pool.toy_dir}", *TOY]


def job_pretrain(pool):
    args = [*PRETRAIN, *_fashion(pool), f"--model_dir={pool.model_dir('pretrain')}"]
    return pool.run(args, "pretrain")


def job_finetune(pool):
    """The printed next command, shortened; steps_per_loop=1 logs the first step alone."""
    args = pool.result("pretrain").check().next_args() + [
        "--mode=train_then_eval", "--train_steps=4", "--train_batch_size=16",
        "--steps_per_loop=1", "--zero_init_logits_layer", f"--model_dir={pool.model_dir('ft')}"]
    return pool.run(args, "finetune")


def job_distill(pool):
    """Self-distillation: the printed next command, with the teacher's SavedModel instead.

    Training only: its printed next command is the evaluation (job_evaluate).
    """
    finetune = pool.result("finetune").check()
    args = finetune.next_args() + [
        f"--teacher={finetune.model_dir}/saved_model/4", "--mode=train",
        "--train_steps=4", "--train_batch_size=16", f"--model_dir={pool.model_dir('distill')}"]
    return pool.run(args, "distill")


def job_evaluate(pool):
    """mode=eval exactly as printed by the distill run, pasted into a shell in REPO."""
    line = [l for l in pool.result("distill").check().stdout.splitlines()
            if l.startswith("next:")][0][len("next:"):]
    return pool.run_shell(line, "evaluate")


def job_holdout_eval(pool):
    """mode=eval of a copy of the finetune run on a 5% holdout of its 2,000 training images.

    The copy's config.json is made to record that holdout: run.py refuses to evaluate a run on
    a holdout it did not hold out (flags/checks.py), and training one more run that did would
    only cost time; what is tested is the counting and scoring of the held-out images.
    """
    finetune = pool.result("finetune").check()
    model_dir = Path(pool.model_dir("holdout_eval"))
    shutil.copytree(finetune.model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["data"]["holdout_fraction"] = 0.05
    (model_dir / "config.json").write_text(json.dumps(config))
    args = ["--mode=eval", "--train_mode=finetune", *_fashion(pool), "--holdout_fraction=0.05",
            "--eval_split=holdout", "--eval_steps=0", "--eval_timeout=0",
            f"--model_dir={model_dir}"]
    return pool.run(args, "holdout_eval")


def job_toy_finetune(pool):
    """Transfer: the Fashion-MNIST pretrain SavedModel fine-tuned on the 2-class toy folder.

    A zero head and one step per loop: the first logged loss is that of step 0 alone.
    """
    pretrain = pool.result("pretrain").check()
    args = ["--train_mode=finetune", f"--checkpoint={pretrain.model_dir}/saved_model/8",
            *_toy(pool), "--label_fraction=1", "--zero_init_logits_layer", "--train_steps=8",
            "--steps_per_loop=1", f"--model_dir={pool.model_dir('toy_finetune')}"]
    return pool.run(args, "toy_finetune")


def job_toy_distill(pool):
    """Big-to-small: the ResNet-18 teacher (rebuilt from its config.json) into a half-width one.

    Adam: LARS' trust ratio barely moves a random student in a few steps at this batch size.
    tau = 0.25: the briefly fine-tuned teacher is unsure (p ~ 0.7 at tau = 1), and the loss
    cannot fall below the entropy of its targets; sharper targets leave room to see learning.
    """
    args = pool.result("toy_finetune").check().next_args() + [
        "--width_multiplier=0.5", "--train_batch_size=16", "--mode=train_then_eval",
        "--eval_steps=0", "--train_steps=16", "--steps_per_loop=2", "--optimizer=adam",
        "--learning_rate=0.0005", "--temperature=0.25",
        f"--model_dir={pool.model_dir('toy_distill')}"]
    return pool.run(args, "toy_distill")


def job_flat_pretrain(pool):
    """Pretraining on a flat folder of the toy images (no classes): 96 images, 3 steps."""
    flat = pool.base / "flat_images"
    flat.mkdir()
    for image in Path(pool.toy_dir, "train").glob("*/*.png"):
        shutil.copy(image, flat / f"{image.parent.name}_{image.name}")
    args = ["--train_mode=pretrain", f"--dataset=folder:{flat}", *TOY, "--train_epochs=0.5",
            f"--model_dir={pool.model_dir('flat_pretrain')}"]
    return pool.run(args, "flat_pretrain")


def _wait_for(predicate: Callable[[], bool], proc, what: str):
    tic = time.monotonic()
    while not predicate():
        assert proc.poll() is None, f"run.py ended before {what}"
        assert time.monotonic() - tic < hang_guard.HANG_GUARD, \
            hang_guard.message(f"waiting for {what}")
        time.sleep(0.05)


def job_interrupted(pool):
    """The pretrain run, SIGKILLed after its first checkpoint, resumed and SIGTERMed, resumed.

    Returns {'killed', 'terminated', 'resumed'}: Results of the three calls.
    """
    model_dir = Path(pool.model_dir("interrupted"))
    args = [*PRETRAIN, *_fashion(pool), f"--model_dir={model_dir}"]
    state = model_dir / "checkpoint"  # rewritten only once a checkpoint is complete
    out, tic = pool.base / "interrupted_1.log", time.monotonic()
    proc = pool.popen(args, out)
    _wait_for(lambda: state.exists() and '"ckpt-4"' in state.read_text(), proc,
              "the checkpoint of step 4")
    proc.send_signal(signal.SIGKILL)
    killed = pool.finish(proc, args, out, tic, str(model_dir))
    out, tic = pool.base / "interrupted_2.log", time.monotonic()
    proc = pool.popen(args, out)
    _wait_for(lambda: "Resuming from the checkpoint of step 4" in Path(f"{out}.out").read_text(),
              proc, "the resume from step 4")
    proc.send_signal(signal.SIGTERM)  # long before the first loop's compilation is over
    terminated = pool.finish(proc, args, out, tic, str(model_dir))
    return {"killed": killed, "terminated": terminated,
            "resumed": pool.run(args, "interrupted_3")}


def job_knn(pool):
    """The pretrain run with the kNN monitor every 4 steps (100-image bank, 64 test images)."""
    args = [*PRETRAIN, *_fashion(pool), "--knn_every_steps=4", "--knn_bank_size=100",
            "--knn_eval_examples=64", f"--model_dir={pool.model_dir('knn')}"]
    return pool.run(args, "knn")


def job_nan(pool):
    """A copy of the pretrain run resumed with a learning rate of 1e30: NaN after step 8.

    Returns (Result, {file name: sha256} of the copy's checkpoint files before the run).
    """
    pretrain = pool.result("pretrain").check()
    model_dir = Path(pool.model_dir("nan"))
    shutil.copytree(pretrain.model_dir, model_dir)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.iterdir()
              if p.name.startswith("ckpt-") or p.name == "checkpoint"}
    args = [*PRETRAIN, *_fashion(pool), "--train_steps=12", "--learning_rate=1e30",
            f"--model_dir={model_dir}"]
    return pool.run(args, "nan"), before


BF16 = "--precision=mixed_bfloat16"  # given after FASHION / TOY's float32: the last one counts


def job_bfloat16(pool):
    """The pretrain run's first two steps in mixed bfloat16: same flags, same seeds."""
    args = [*PRETRAIN, *_fashion(pool), "--train_steps=2", BF16,
            f"--model_dir={pool.model_dir('bfloat16')}"]
    return pool.run(args, "bfloat16")


# Contrastive pretraining that learns within 24 steps: the toy folder, LARS at a rate the
# batch of 16 keeps stable, temperature 0.5 (the Fashion-MNIST pretrain job's 8 steps at lr 0.4
# mostly show the noise of its first steps). Half width: a step costs a quarter of the full
# width's and the network learns the toy set as well (test_precision.py).
TOY_PRETRAIN = ["--train_mode=pretrain", "--train_steps=24", "--steps_per_loop=4",
                "--learning_rate=0.05", "--warmup_epochs=0", "--temperature=0.5",
                "--width_multiplier=0.5"]


def job_toy_pretrain(pool):
    args = [*_toy(pool), *TOY_PRETRAIN, f"--model_dir={pool.model_dir('toy_pretrain')}"]
    return pool.run(args, "toy_pretrain")


def job_toy_pretrain_bf16(pool):
    args = [*_toy(pool), *TOY_PRETRAIN, BF16,
            f"--model_dir={pool.model_dir('toy_pretrain_bf16')}"]
    return pool.run(args, "toy_pretrain_bf16")


def job_toy_finetune_bf16(pool):
    """toy_finetune in mixed bfloat16 (the same float32 pretrain SavedModel as its start)."""
    args = [a for a in pool.result("toy_finetune").check().args
            if not a.startswith("--model_dir=")]
    return pool.run(args + [BF16, f"--model_dir={pool.model_dir('toy_finetune_bf16')}"],
                    "toy_finetune_bf16")


def job_toy_distill_bf16(pool):
    """toy_distill in mixed bfloat16, from the same float32 teacher."""
    args = [a for a in pool.result("toy_distill").check().args
            if not a.startswith("--model_dir=")]
    return pool.run(args + [BF16, f"--model_dir={pool.model_dir('toy_distill_bf16')}"],
                    "toy_distill_bf16")


def job_auto(pool):
    """The default --precision=auto, two steps; with SIMCLR_TF_LOG=1 (TensorFlow's whole log)."""
    args = [*PRETRAIN, *_fashion(pool), "--train_steps=2", "--precision=auto",
            f"--model_dir={pool.model_dir('auto')}"]
    return pool.run(args, "auto", env={"SIMCLR_TF_LOG": "1"})


def job_finished_again(pool):
    """The pretrain command run again on a copy of its finished model_dir.

    Returns (Result, {file: sha256} of the copy's checkpoints and SavedModel before the run).
    """
    pretrain = pool.result("pretrain").check()
    model_dir = Path(pool.model_dir("finished_again"))
    shutil.copytree(pretrain.model_dir, model_dir)
    before = {str(p.relative_to(model_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in model_dir.rglob("*") if p.is_file() and p.suffix != ".lock"}
    args = [*PRETRAIN, *_fashion(pool), f"--model_dir={model_dir}"]
    return pool.run(args, "finished_again"), before


def job_jit(pool):
    args = [*PRETRAIN, *_fashion(pool), "--train_steps=2", "--jit_compile",
            f"--model_dir={pool.model_dir('jit')}"]
    return pool.run(args, "jit")


def predict_args(pool, model_dir, dataset, name, *extra):
    """--mode=predict of `model_dir` on `dataset` into base/name, float32, batch 8."""
    return ["--mode=predict", f"--model_dir={model_dir}", f"--dataset={dataset}",
            "--precision=float32", "--eval_batch_size=8", f"--output_dir={pool.base / name}",
            *extra]


def job_predict_folder(pool):
    """The fine-tuned toy model on a copy of the toy test folder plus one broken file (4
    batches of 8)."""
    finetune = pool.result("toy_finetune").check()
    images = pool.base / "predict_images"
    shutil.copytree(Path(pool.toy_dir, "test"), images)
    (images / "dark" / "zz_broken.png").write_bytes(b"not an image")
    return pool.run(predict_args(pool, finetune.model_dir, f"folder:{images}",
                                 "predict_folder"), "predict_folder")


def job_predict_tfds(pool):
    """The 'use:' command that the evaluation of the distilled Fashion-MNIST model printed,
    pasted into a shell in REPO, on the 64 test images that evaluation scored and into base (not
    the default runs/predict)."""
    (line,) = pool.result("evaluate").check().lines_starting("use")
    return pool.run_shell(f"{line} --eval_split='test[:64]' "
                          f"--output_dir={shlex.quote(str(pool.base / 'predict_tfds'))}",
                          "predict_tfds")


def predict_list(pool) -> Path:
    """A list of image files: three toy test images, two larger ones, a missing one."""
    import tensorflow as tf
    folder, rng = pool.base / "predict_list", np.random.default_rng(7)
    folder.mkdir(exist_ok=True)
    tf.io.write_file(str(folder / "wide.png"), tf.io.encode_png(
        rng.integers(150, 256, (20, 28, 3), dtype=np.uint8)))
    tf.io.write_file(str(folder / "tall.jpg"), tf.io.encode_jpeg(
        rng.integers(0, 90, (30, 18, 3), dtype=np.uint8)))
    toy = sorted(Path(pool.toy_dir, "test").glob("*/00[0-1].png"))[:3]
    lines = [str(p) for p in toy] + ["wide.png", "missing.png", "tall.jpg"]
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder / "list.txt"


def job_predict_saved_model(pool):
    """The fine-tuned toy model's SavedModel on a list of files; the projection head's
    output, L2-normalised, as the embedding; the top class only."""
    finetune = pool.result("toy_finetune").check()
    return pool.run(predict_args(pool, f"{finetune.model_dir}/saved_model/8",
                                 f"files:{predict_list(pool)}", "predict_saved_model",
                                 "--embedding_layer=proj_head_output", "--normalize_embeddings",
                                 "--top_k=1"), "predict_saved_model")


def job_export(pool):
    """The fine-tuned toy model as ONNX and LiteRT files."""
    finetune = pool.result("toy_finetune").check()
    return pool.run(["--mode=export", "--export_format=onnx,litert",
                     f"--model_dir={finetune.model_dir}",
                     f"--output_dir={pool.base / 'export'}"], "export")


# name -> (jobs it reads from, function); the start order keeps both workers busy.
JOBS = {
    "pretrain": ((), job_pretrain),
    "interrupted": ((), job_interrupted),
    "finetune": (("pretrain",), job_finetune),
    "toy_finetune": (("pretrain",), job_toy_finetune),
    "distill": (("finetune",), job_distill),
    "holdout_eval": (("finetune",), job_holdout_eval),
    "toy_distill": (("toy_finetune",), job_toy_distill),
    "evaluate": (("distill",), job_evaluate),
    "nan": (("pretrain",), job_nan),
    "knn": ((), job_knn),
    "bfloat16": ((), job_bfloat16),
    "toy_pretrain": ((), job_toy_pretrain),
    "toy_pretrain_bf16": ((), job_toy_pretrain_bf16),
    "toy_finetune_bf16": (("toy_finetune",), job_toy_finetune_bf16),
    "toy_distill_bf16": (("toy_distill",), job_toy_distill_bf16),
    "auto": ((), job_auto),
    "finished_again": (("pretrain",), job_finished_again),
    "jit": ((), job_jit),
    "flat_pretrain": ((), job_flat_pretrain),
    "predict_folder": (("toy_finetune",), job_predict_folder),
    "predict_tfds": (("evaluate",), job_predict_tfds),
    "predict_saved_model": (("toy_finetune",), job_predict_saved_model),
    "export": (("toy_finetune",), job_export),
}


# --- data ------------------------------------------------------------------------------------

def make_toy_folder(root: Path, seed: int = 0):
    """root/{train,test}/{bright,dark}/NNN.png: 16x16 RGB noise, bright (155-255) or dark (0-100).

    Brightness survives every augmentation of fine-tuning and distillation, so a network
    learns the two classes within a few steps.
    """
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    for split, count in (("train", TOY_TRAIN), ("test", TOY_TEST)):
        for name, (low, high) in (("bright", (155, 256)), ("dark", (0, 101))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(low, high, size=(16, 16, 3), dtype=np.uint8)
                tf.io.write_file(str(folder / f"{i:03d}.png"), tf.io.encode_png(pixels))


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: only the selected tests' jobs
def pytest_collection_modifyitems(config, items):
    """Remembers which jobs the selected tests use (by the `runs` marker's arguments)."""
    needed = []
    for item in items:
        for mark in item.iter_markers("runs"):
            needed += [name for name in mark.args if name not in needed]
    config.stash[_NEEDED] = needed


def pytest_configure(config):
    config.addinivalue_line("markers", "runs(*names): run.py jobs (conftest.JOBS) the test reads")


_NEEDED = pytest.StashKey[list]()
_POOL = pytest.StashKey[RunPool]()


@pytest.fixture(scope="session")
def runs(tmp_path_factory, request):
    """The session's RunPool, with the jobs of the selected tests already started."""
    from data import datasets
    from data.config import DataConfig
    data_dir = str(tmp_path_factory.getbasetemp() / "tfds")  # shared with tests/data
    datasets.load(DataConfig(dataset="fashion_mnist", data_dir=data_dir))  # prepared once
    toy_dir = tmp_path_factory.mktemp("toy")
    make_toy_folder(toy_dir)
    pool = RunPool(tmp_path_factory.mktemp("runs"), data_dir, str(toy_dir))
    order = list(JOBS)
    for name in sorted(request.config.stash.get(_NEEDED, []), key=order.index):
        pool.submit(name)
    request.config.stash[_POOL] = pool
    yield pool
    pool.close()


def pytest_terminal_summary(terminalreporter, config):
    pool = config.stash.get(_POOL, None)
    if pool is not None and pool.timings:
        terminalreporter.write_line("run.py calls (s): " + ", ".join(
            f"{name} {seconds:.0f}" for name, seconds in pool.timings.items()))
