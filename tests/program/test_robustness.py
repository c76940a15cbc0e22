"""run.py against what goes wrong around a run: a busy, read-only or wrong model_dir, debris,
damaged SavedModels, a full disk, a refused resume, an evaluation with nothing to evaluate.

Every failure must be one `error:` line without a traceback: exit 2 for bad input (found before
any training), exit 1 for a failure during the run; and nothing a run wrote before may change.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import FASHION, PRETRAIN  # noqa: E402
from tests import hang_guard  # noqa: E402

runs = pytest.mark.runs
# Holds the lock until the test kills it or closes its stdin (no time limit).
HOLDER = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from checkpoints import model_dir; claim = model_dir.Claim(sys.argv[2], ['train']); "
          "print('held', flush=True); sys.stdin.read()")
# run.py with TensorFlow's CheckpointManager.save failing from step FULL_AT_STEP on the way a
# full disk makes it fail (a half-written shard directory, then ResourceExhaustedError), or
# with FULL_AT_STEP=export, the SavedModel export failing as Python's file calls do (OSError).
DISK_FULL_DRIVER = '''
import errno, os, runpy, sys
import tensorflow as tf
real_save = tf.train.CheckpointManager.save
full_at = os.environ["FULL_AT_STEP"]

def save(self, checkpoint_number=None, **kwargs):
    if full_at != "export" and checkpoint_number >= int(full_at):
        temp = os.path.join(self.directory, f"ckpt-{checkpoint_number}_temp")
        os.makedirs(temp)
        raise tf.errors.ResourceExhaustedError(
            None, None, temp + "/part-00000-of-00001.data-00000-of-00001.tempstate1; No space "
            "left on device")
    return real_save(self, checkpoint_number=checkpoint_number, **kwargs)

def saved_model_save(obj, export_dir, *args, **kwargs):
    os.makedirs(os.path.join(export_dir, "variables"))
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), export_dir)

tf.train.CheckpointManager.save = save
if full_at == "export":
    tf.saved_model.save = saved_model_save
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
'''


# run.py with a fault at a chosen moment: FAULT=start-up sends this process SIGTERM while
# TensorFlow lists its devices (start-up, descriptor 2 held by stages/startup_log.py),
# FAULT=export as a SavedModel starts to be written (after the last checkpoint, or in a start
# that finds the run trained and its export missing), FAULT=oom makes the first training loop
# fail as TensorFlow does when an allocation fails (ResourceExhaustedError "OOM when
# allocating tensor").
FAULT_DRIVER = '''
import os, runpy, signal, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))  # the repository: run.py's modules
import tensorflow as tf
fault = os.environ["FAULT"]

def sigterm_first(fn):
    def call(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return fn(*args, **kwargs)
    return call

if fault == "start-up":
    tf.config.list_physical_devices = sigterm_first(tf.config.list_physical_devices)
elif fault == "export":
    tf.saved_model.save = sigterm_first(tf.saved_model.save)
elif fault == "oom":
    from stages import loop
    def make_multi_step(strategy, step_fn, jit_compile=False):
        def multi_step(iterator, num_steps):
            raise tf.errors.ResourceExhaustedError(
                None, None, "OOM when allocating tensor with shape[16,4096,4096,6] and type "
                "float on /job:localhost/replica:0/task:0/device:CPU:0 by allocator cpu")
        return multi_step
    loop.make_multi_step = make_multi_step
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def _run(args, cwd=REPO, prefix=(), env=None):
    return hang_guard.run([*prefix, sys.executable, str(REPO / "run.py"), *args], cwd=cwd,
                          capture_output=True, text=True, env=env)


def _one_error(proc, status):
    assert proc.returncode == status, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def _fashion(runs):
    return [f"--data_dir={runs.data_dir}", *FASHION]


def _digests(directory):
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).rglob("*")) if p.is_file()
            and not p.name.endswith(".lock")}


# --- model_dir: busy, a file, read-only; debris ------------------------------------------------

def test_busy_model_dir_is_refused_naming_the_holder_then_debris_cleaned(runs, tmp_path):
    model_dir = tmp_path / "run"
    (model_dir / "ckpt-4_temp").mkdir(parents=True)  # a save and an export killed half-way
    (model_dir / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    (model_dir / "saved_model" / ".tmp-export-4-5f3e").mkdir(parents=True)
    args = [*PRETRAIN, *_fashion(runs), "--train_steps=2", "--lineareval_while_pretraining=false",
            f"--model_dir={model_dir}"]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(REPO), str(model_dir)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        error = _one_error(_run(args), 2)
        assert f"--model_dir={model_dir}" in error and f"process {holder.pid} " in error
        assert "Wait for it to end or choose another --model_dir" in error
        # The refused run wrote nothing and removed nothing: the holder may still need it.
        assert sorted(p.name for p in model_dir.iterdir()) == [
            ".train.lock", "ckpt-4_temp", "saved_model"]
        assert (model_dir / "saved_model" / ".tmp-export-4-5f3e").is_dir()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    result = _run(args)  # the holder died: its lock went with it
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (model_dir / "ckpt-4_temp").exists()
    assert os.listdir(model_dir / "saved_model") == ["2"]
    assert (model_dir / "ckpt-2.index").exists()


def test_model_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a directory")
    error = _one_error(_run([f"--model_dir={tmp_path / 'notes.txt'}"], cwd=tmp_path), 2)
    assert f"--model_dir={tmp_path / 'notes.txt'}: is a file, not a directory" in error
    error = _one_error(_run([f"--model_dir={tmp_path / 'notes.txt' / 'run'}"], cwd=tmp_path), 2)
    assert "is a file, so the directory cannot be created" in error


def _read_only_prefix(directory: Path):
    """A command prefix under which `directory` is read-only (for root too: a private mount)."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return ()
    probe = subprocess.run(["unshare", "--mount", "sh", "-c",
                            f"mount --bind {directory} {directory} && mount -o remount,bind,ro "
                            f"{directory} {directory} && ! touch {directory}/probe"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only directory as root here: {probe.stderr!r}")
    return ("unshare", "--mount", "sh", "-c",
            f'mount --bind {directory} {directory} && mount -o remount,bind,ro {directory} '
            f'{directory} && exec "$@"', "sh")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_read_only_model_dir_is_refused_before_any_work(tmp_path, mode):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    prefix = _read_only_prefix(read_only)
    for model_dir in ([read_only / "run", read_only] if mode == "train" else [read_only]):
        proc = _run([f"--mode={mode}", f"--model_dir={model_dir}"], cwd=tmp_path, prefix=prefix)
        error = _one_error(proc, 2)
        assert f"--model_dir={model_dir}: {read_only} is not writable" in error
        assert proc.stdout == ""
    read_only.chmod(0o755)
    assert os.listdir(read_only) == []


# --- damaged SavedModels as --checkpoint / --teacher --------------------------------------------

@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """One of our SavedModels (a tiny network; its content is never read by these runs)."""
    from checkpoints import export
    from tf2 import model as model_lib
    from tf2.config import HeadConfig, ModelConfig
    model = model_lib.build_model(ModelConfig.tiny(), HeadConfig.tiny(), image_size=16,
                                  num_classes=10)
    return export.export_saved_model(model, str(tmp_path_factory.mktemp("export")), 3)


def _damage(path: Path, kind: str) -> str:
    """Damages a SavedModel copy; returns the file the error must name."""
    variables = path / "variables"
    data = next(variables.glob("variables.data-*"))
    if kind == "truncated saved_model.pb":
        raw = (path / "saved_model.pb").read_bytes()
        (path / "saved_model.pb").write_bytes(raw[:len(raw) // 2])
        return str(path / "saved_model.pb")
    if kind == "garbled variables":
        raw = bytearray(data.read_bytes())
        for i in range(0, len(raw), 97):  # same size: only the checksums can tell
            raw[i] ^= 0xA5
        data.write_bytes(bytes(raw))
        return str(variables / "variables")
    if kind == "truncated variables":
        data.write_bytes(data.read_bytes()[:data.stat().st_size // 3])
        return str(data)
    (variables / "variables.index").unlink()
    return str(variables / "variables.index")


@pytest.mark.parametrize("kind, flag", [
    ("truncated saved_model.pb", "checkpoint"), ("garbled variables", "teacher"),
    ("truncated variables", "checkpoint"), ("missing variables.index", "teacher"),
])
def test_damaged_saved_model_is_one_line_naming_the_file(runs, saved_model, tmp_path, kind,
                                                         flag):
    from checkpoints import integrity
    integrity.check_saved_model(saved_model)  # the intact export passes the same check
    damaged = tmp_path / "saved_model"
    shutil.copytree(saved_model, damaged)
    named = _damage(damaged, kind)
    stage = {"checkpoint": "finetune", "teacher": "distill"}[flag]
    model_dir = tmp_path / "run"
    error = _one_error(_run([f"--train_mode={stage}", f"--{flag}={damaged}", "--train_steps=2",
                             *_fashion(runs), f"--model_dir={model_dir}"]), 2)
    assert error.startswith(f"error: --{flag}={damaged}: the SavedModel {damaged} is damaged")
    assert named in error and "Copy or export it again" in error
    assert not model_dir.exists()


# --- a full disk -------------------------------------------------------------------------------

@pytest.mark.parametrize("full_at", ["4", "export"])
def test_disk_full_stops_with_one_line_and_keeps_the_checkpoints(runs, tmp_path, full_at):
    (tmp_path / "driver.py").write_text(DISK_FULL_DRIVER)
    model_dir = tmp_path / "run"
    args = [*PRETRAIN, *_fashion(runs), "--train_steps=4" if full_at == "4" else
            "--train_steps=2", "--checkpoint_steps=2", "--lineareval_while_pretraining=false",
            f"--model_dir={model_dir}"]
    proc = hang_guard.run([sys.executable, str(tmp_path / "driver.py"), str(REPO / "run.py"),
                           *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, FULL_AT_STEP=full_at))
    error = _one_error(proc, 1)
    assert f"the disk of {model_dir} is full" in error and "No space left on device" in error
    assert error.endswith("free space and run the same command to resume.")
    assert 'model_checkpoint_path: "ckpt-2"' in (model_dir / "checkpoint").read_text()
    assert (model_dir / "ckpt-2.index").exists()
    if full_at == "4":  # the half-written checkpoint is gone
        assert "step 4" in error and not (model_dir / "ckpt-4_temp").exists()
    else:  # the half-written export too (export.py removes its temporary directory)
        assert os.listdir(model_dir / "saved_model") == []


# --- mode=eval with nothing to evaluate ---------------------------------------------------------

def test_eval_on_an_empty_model_dir_says_it_waits_then_stops(runs, tmp_path):
    model_dir = tmp_path / "empty"
    model_dir.mkdir()
    proc = _run(["--mode=eval", "--eval_timeout=2", *_fashion(runs), f"--model_dir={model_dir}"])
    assert f"Waiting up to 2 s for a checkpoint in {model_dir} (set the wait with " \
           "--eval_timeout)" in proc.stdout
    error = _one_error(proc, 1)
    assert f"no checkpoint appeared in {model_dir} within 2 s (--eval_timeout=2)" in error


def test_negative_eval_timeout_is_refused(tmp_path):
    error = _one_error(_run(["--mode=eval", "--eval_timeout=-1"], cwd=tmp_path), 2)
    assert "--eval_timeout=-1: must be >= 0" in error


# --- the run's record ----------------------------------------------------------------------------

def _json(path):
    return json.loads(Path(path).read_text())


@runs("pretrain")
def test_flags_json_records_the_values_the_run_used(runs):
    model_dir = Path(runs.result("pretrain").check().model_dir)
    used, config = _json(model_dir / "flags.json"), _json(model_dir / "config.json")
    # Pretraining's stage defaults (flags/configs.STAGE_DEFAULTS), not the raw flag defaults
    # (0.3, 1e-6, 0.1, linear): the same numbers as config.json.
    assert (used["learning_rate"], used["weight_decay"], used["temperature"],
            used["learning_rate_scaling"]) == (0.1, 1e-4, 0.2, "sqrt")
    assert config["optimizer"]["learning_rate"] == used["learning_rate"]
    assert config["optimizer"]["weight_decay"] == used["weight_decay"]
    assert config["loss"]["temperature"] == used["temperature"]
    (start,) = _json_lines(model_dir / "starts.jsonl")
    assert start["resumed_from_step"] is None and start["flags"] == used


def _json_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@runs("pretrain")
def test_refused_resume_leaves_the_record_and_eval_still_works(runs, tmp_path):
    pretrain = runs.result("pretrain").check()
    model_dir = tmp_path / "copy"
    shutil.copytree(pretrain.model_dir, model_dir)
    before = _digests(model_dir)
    error = _one_error(_run([*PRETRAIN, *_fashion(runs), "--resnet_depth=34",
                             f"--model_dir={model_dir}"]), 1)
    assert "does not match" in error
    assert _digests(model_dir) == before  # config.json, flags.json, starts.jsonl included
    result = _run(["--mode=eval", *_fashion(runs), f"--model_dir={model_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert _json(model_dir / "result.json")["global_step"] == 8


@runs("nan", "pretrain")
def test_nan_stop_leaves_config_and_flags_and_adds_its_start(runs):
    (result, _), pretrain = runs.result("nan"), runs.result("pretrain")
    assert result.returncode == 1
    for name in ("config.json", "flags.json"):
        assert _json(Path(result.model_dir) / name) == _json(Path(pretrain.model_dir) / name)
    first, second = _json_lines(Path(result.model_dir) / "starts.jsonl")
    assert first == _json_lines(Path(pretrain.model_dir) / "starts.jsonl")[0]
    assert (first["flags"]["learning_rate"], second["flags"]["learning_rate"]) == (0.1, 1e30)
    assert second["resumed_from_step"] == 8 and "--learning_rate=1e30" in second["command"]


# --- SIGTERM outside the training steps, out of memory ------------------------------------------

def _faulty_run(tmp_path, fault, args):
    (tmp_path / "driver.py").write_text(FAULT_DRIVER)
    return hang_guard.run([sys.executable, str(tmp_path / "driver.py"), str(REPO / "run.py"),
                           *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, FAULT=fault))


def _toy_run(runs, model_dir):
    return [f"--dataset=folder:{runs.toy_dir}", "--width_multiplier=0.25", "--image_size=16",
            "--proj_out_dim=16", "--train_batch_size=8", "--precision=float32",
            "--train_steps=2", "--steps_per_loop=2", f"--model_dir={model_dir}"]


def _stopped(tmp_path, runs, fault, message):
    """Runs the toy run with `fault`; checks the one line SIGTERM left: `message`, then the
    command that goes on, as typed. Returns (the run's arguments, its model_dir)."""
    model_dir = tmp_path / "run"
    args = _toy_run(runs, model_dir)
    proc = _faulty_run(tmp_path, fault, args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [l for l in proc.stderr.splitlines() if l.startswith("Stopped by SIGTERM")]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr[-3000:]
    assert lines[0].split(" The command: ", 1)[1].split()[-len(args):] == args
    return args, model_dir


def test_sigterm_during_start_up_says_nothing_was_lost(runs, tmp_path):
    _, model_dir = _stopped(tmp_path, runs, "start-up",
                            "Stopped by SIGTERM during start-up, before any training step: "
                            "nothing was lost (model_dir is as it was). Run the same command "
                            "again.")
    assert not model_dir.exists()


def test_sigterm_during_the_export_keeps_the_checkpoint_and_the_command_exports_it(runs,
                                                                                  tmp_path):
    args, model_dir = _stopped(tmp_path, runs, "export",
                               "Stopped by SIGTERM while exporting the SavedModel of step 2; the "
                               "checkpoint of step 2 is saved, nothing was lost. Run the same "
                               "command again to export it.")
    assert (model_dir / "ckpt-2.index").exists() and not os.listdir(model_dir / "saved_model")
    # The same command finds the run trained; its export is stopped the same way ...
    _stopped(tmp_path, runs, "export", "Stopped by SIGTERM while exporting the SavedModel of "
             "step 2; the checkpoint of step 2 is saved, nothing was lost.")
    assert (model_dir / "ckpt-2.index").exists() and not os.listdir(model_dir / "saved_model")
    again = _run(args)  # ... and, without the fault, exports it
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Already trained" in again.stdout and "Exporting the SavedModel of step 2" in \
        again.stdout
    assert os.listdir(model_dir / "saved_model") == ["2"]
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == ["ckpt-2.index"]


def test_out_of_memory_is_one_line_naming_the_size_and_batch(runs, tmp_path):
    model_dir = tmp_path / "run"
    error = _one_error(_faulty_run(tmp_path, "oom", _toy_run(runs, model_dir)), 1)
    assert error == (
        "error: out of memory (OOM when allocating tensor with shape[16,4096,4096,6] and type "
        "float on /job:localhost/replica:0/task:0/device:CPU:0 by allocator cpu) at "
        f"--image_size=16 with --train_batch_size=8; the checkpoints in {model_dir} are intact: "
        "use a smaller --image_size or batch size (or a machine with more memory).")
