"""model_dir locks and debris: a live holder refuses a second writer, a dead one blocks nobody."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from checkpoints import model_dir

REPO = Path(__file__).resolve().parents[2]
HOLDER = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from checkpoints import model_dir; claim = model_dir.Claim(sys.argv[2], sys.argv[3:]); "
          "print('held', flush=True); sys.stdin.read()")


def start_holder(directory, *roles):
    """A process that holds `roles` on `directory` until killed (or its stdin closes: no time
    limit a slow machine could reach); returns it once it holds."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(REPO), str(directory), *roles],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def make_debris(directory):
    """What a killed save and a killed export leave, plus files that are not debris."""
    (directory / "ckpt-4_temp").mkdir(parents=True)
    (directory / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    (directory / "saved_model" / ".tmp-export-4-0123abcd").mkdir(parents=True)
    (directory / "saved_model" / ".tmp-export-4-0123abcd" / "saved_model.pb").write_bytes(b"x")
    (directory / "saved_model" / "2").mkdir()
    (directory / "ckpt-2.index").write_bytes(b"kept")


def kept(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if not p.name.endswith(".lock"))


def test_live_holder_refuses_same_role_and_names_its_pid(tmp_path):
    holder = start_holder(tmp_path, model_dir.TRAIN)
    try:
        with pytest.raises(model_dir.ModelDirBusyError,
                           match=rf"process {holder.pid} on host .*, a train run writing"):
            model_dir.Claim(str(tmp_path), [model_dir.TRAIN])
        # All or nothing: the eval lock taken before the refusal is released again.
        with pytest.raises(model_dir.ModelDirBusyError):
            model_dir.Claim(str(tmp_path), [model_dir.EVAL, model_dir.TRAIN])
        model_dir.Claim(str(tmp_path), [model_dir.EVAL]).release()  # eval may watch training
        # A reader (prediction) learns who writes, and its probe takes nothing away.
        assert model_dir.training_writer(str(tmp_path)).startswith(f"process {holder.pid} ")
        assert model_dir.training_writer(str(tmp_path)).startswith(f"process {holder.pid} ")
    finally:
        holder.kill()
        holder.wait()
    assert model_dir.training_writer(str(tmp_path)) is None  # died: nobody writes
    assert model_dir.training_writer(str(tmp_path / "absent")) is None


def test_an_evaluator_holding_the_eval_lock_is_named_an_eval_run(tmp_path):
    holder = start_holder(tmp_path, model_dir.EVAL)
    try:
        with pytest.raises(model_dir.ModelDirBusyError, match=r", an eval run writing into it"):
            model_dir.Claim(str(tmp_path), [model_dir.EVAL])
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_process_is_free(tmp_path):
    holder = start_holder(tmp_path, model_dir.TRAIN, model_dir.EVAL)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / ".train.lock").exists()  # the file stays, the lock does not
    claim = model_dir.Claim(str(tmp_path), [model_dir.TRAIN, model_dir.EVAL])
    assert (tmp_path / ".train.lock").read_text().split()[0] == str(os.getpid())
    # A second claim in the same process is refused too (flock is per open file).
    with pytest.raises(model_dir.ModelDirBusyError):
        model_dir.Claim(str(tmp_path), [model_dir.TRAIN])
    claim.release()
    model_dir.Claim(str(tmp_path), [model_dir.TRAIN]).release()


def test_training_claim_removes_debris_of_dead_writers_only(tmp_path):
    make_debris(tmp_path)
    claim = model_dir.Claim(str(tmp_path), [model_dir.TRAIN])
    removed = claim.clean_debris()
    assert sorted(os.path.relpath(p, tmp_path) for p in removed) == [
        "ckpt-4_temp", os.path.join("saved_model", ".tmp-export-4-0123abcd")]
    assert kept(tmp_path) == ["ckpt-2.index", "saved_model", os.path.join("saved_model", "2")]
    claim.release()


def test_exports_in_progress_of_a_live_evaluator_are_left_alone(tmp_path):
    make_debris(tmp_path)
    evaluator = start_holder(tmp_path, model_dir.EVAL)
    try:
        claim = model_dir.Claim(str(tmp_path), [model_dir.TRAIN])
        assert [os.path.basename(p) for p in claim.clean_debris()] == ["ckpt-4_temp"]
        assert (tmp_path / "saved_model" / ".tmp-export-4-0123abcd").is_dir()
        claim.release()
    finally:
        evaluator.kill()
        evaluator.wait()
    # An evaluator never touches checkpoint debris (only training writes checkpoints).
    make_debris(tmp_path / "again")
    claim = model_dir.Claim(str(tmp_path / "again"), [model_dir.EVAL])
    assert [os.path.basename(p) for p in claim.clean_debris()] == [".tmp-export-4-0123abcd"]
    assert (tmp_path / "again" / "ckpt-4_temp").is_dir()


def test_probing_for_another_writer_creates_no_lock_file(tmp_path):
    """A training claim checks for a live evaluator before removing export debris; that check
    must not leave an .eval.lock in a run that was never evaluated (nor the reverse)."""
    make_debris(tmp_path / "train")
    claim = model_dir.Claim(str(tmp_path / "train"), [model_dir.TRAIN])
    assert len(claim.clean_debris()) == 2
    claim.release()
    make_debris(tmp_path / "eval")
    claim = model_dir.Claim(str(tmp_path / "eval"), [model_dir.EVAL])
    assert len(claim.clean_debris()) == 1
    claim.release()
    assert sorted(p.name for p in (tmp_path / "train").glob(".*.lock")) == [".train.lock"]
    assert sorted(p.name for p in (tmp_path / "eval").glob(".*.lock")) == [".eval.lock"]


def test_check_writable_creates_the_directory_and_refuses_a_file(tmp_path):
    model_dir.check_writable(str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(model_dir.NotWritableError, match="is a file, not a directory"):
        model_dir.check_writable(str(tmp_path / "file"))
    with pytest.raises(model_dir.NotWritableError, match="not writable"):
        model_dir.check_writable(str(tmp_path / "file" / "sub"))
