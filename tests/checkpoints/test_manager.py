"""Checkpoint manager: exact round trips, fallback past damaged checkpoints, save ordering."""
import json
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management

from checkpoints import manager as ckpt_lib


def _state(value):
    """A kernel (2, 3) filled with `value` and an int64 step."""
    return {"w": tf.Variable(tf.fill([2, 3], float(value))),
            "step": tf.Variable(int(value), dtype=tf.int64)}


def _saved_run(directory, steps=(10, 20), max_to_keep=5):
    """Saves one checkpoint per step; the variables hold the step's number at each save."""
    objs = _state(0)
    manager = ckpt_lib.CheckpointManager(str(directory), max_to_keep, **objs)
    for step in steps:
        objs["w"].assign(tf.fill([2, 3], float(step)))
        objs["step"].assign(step)
        manager.save(step)
    return manager, objs


def _data_file(prefix):
    return prefix + ".data-00000-of-00001"


def test_restore_latest_returns_newest_step_and_exact_values(tmp_path):
    _, objs = _saved_run(tmp_path)
    objs["w"].assign(tf.fill([2, 3], -1.0))
    objs["step"].assign(-1)
    fresh = _state(7)
    manager = ckpt_lib.CheckpointManager(str(tmp_path), **fresh)
    assert manager.restore_latest() == 20
    np.testing.assert_array_equal(fresh["w"].numpy(), np.full((2, 3), 20.0, np.float32))
    assert int(fresh["step"].numpy()) == 20
    assert manager.latest_checkpoint == str(tmp_path / "ckpt-20")


def test_restore_latest_without_checkpoints_returns_none(tmp_path):
    objs = _state(3)
    assert ckpt_lib.CheckpointManager(str(tmp_path / "empty"), **objs).restore_latest() is None
    assert objs["w"].numpy()[0, 0] == 3.0


@pytest.mark.parametrize("damage", ["truncate_data_tail", "truncate_data_head",
                                    "delete_index", "delete_data", "truncate_index"])
def test_damaged_newest_falls_back_to_previous_with_warning(tmp_path, caplog, damage):
    _saved_run(tmp_path)
    newest = str(tmp_path / "ckpt-20")
    if damage.startswith("truncate_data"):
        size = os.path.getsize(_data_file(newest))
        with open(_data_file(newest), "r+b") as f:
            # tail: TF's read fails; head: shorter than the tensors' bytes, caught before it.
            f.truncate(size - 8 if damage.endswith("tail") else 16)
    elif damage == "truncate_index":
        with open(newest + ".index", "r+b") as f:
            f.truncate(10)
    else:
        os.remove(newest + ".index" if damage == "delete_index" else _data_file(newest))
    fresh = _state(-5)
    caplog.set_level(logging.WARNING)
    assert ckpt_lib.CheckpointManager(str(tmp_path), **fresh).restore_latest() == 10
    np.testing.assert_array_equal(fresh["w"].numpy(), np.full((2, 3), 10.0, np.float32))
    assert int(fresh["step"].numpy()) == 10
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(newest in w for w in warnings), warnings


def test_all_damaged_raises_naming_each(tmp_path):
    _saved_run(tmp_path)
    for step in (10, 20):
        os.remove(_data_file(str(tmp_path / f"ckpt-{step}")))
    manager = ckpt_lib.CheckpointManager(str(tmp_path), **_state(0))
    with pytest.raises(ckpt_lib.UnreadableCheckpointError) as err:
        manager.restore_latest()
    message = str(err.value)
    assert str(tmp_path / "ckpt-10") in message and str(tmp_path / "ckpt-20") in message
    assert "missing" in message


def test_max_to_keep_prunes_oldest(tmp_path):
    manager, _ = _saved_run(tmp_path, steps=(10, 20, 30), max_to_keep=2)
    names = sorted(os.listdir(tmp_path))
    assert names == ["checkpoint", "ckpt-20.data-00000-of-00001", "ckpt-20.index",
                     "ckpt-30.data-00000-of-00001", "ckpt-30.index"]
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-20",
                                                                                "ckpt-30"]


def test_state_file_is_updated_only_after_data_is_complete(tmp_path, monkeypatch):
    """TF writes <prefix>.index/.data first and the `checkpoint` state file last, so a save
    killed before the state update leaves the state naming the previous checkpoint."""
    _, objs = _saved_run(tmp_path, steps=(10,))
    seen = {}
    original = checkpoint_management.update_checkpoint_state_internal

    def crash_on_state_update(save_dir, model_checkpoint_path, *args, **kwargs):
        prefix = os.path.join(save_dir, model_checkpoint_path)
        seen["files"] = sorted(os.listdir(save_dir))
        seen["w"] = tf.train.load_checkpoint(prefix).get_tensor("w/.ATTRIBUTES/VARIABLE_VALUE")
        raise KeyboardInterrupt("simulated kill between data and state update")

    monkeypatch.setattr(checkpoint_management, "update_checkpoint_state_internal",
                        crash_on_state_update)
    manager = ckpt_lib.CheckpointManager(str(tmp_path), **objs)
    objs["w"].assign(tf.fill([2, 3], 20.0))
    with pytest.raises(KeyboardInterrupt):
        manager.save(20)
    monkeypatch.setattr(checkpoint_management, "update_checkpoint_state_internal", original)
    # At the state update the new data and index were final, and no *_temp dir was left.
    assert seen["files"] == ["checkpoint", "ckpt-10.data-00000-of-00001", "ckpt-10.index",
                             "ckpt-20.data-00000-of-00001", "ckpt-20.index"]
    np.testing.assert_array_equal(seen["w"], np.full((2, 3), 20.0, np.float32))
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "ckpt-10")
    # The complete ckpt-20 is on disk, so resuming takes it even though the state missed it.
    fresh = _state(0)
    assert ckpt_lib.CheckpointManager(str(tmp_path), **fresh).restore_latest() == 20
    assert fresh["w"].numpy()[0, 0] == 20.0


@pytest.mark.parametrize("state", ["garbled", "missed the newest"])
def test_checkpoints_the_state_file_forgot_are_pruned_too(tmp_path, caplog, state):
    """--keep_checkpoint_max=5 keeps 5 even after the state file lost track of checkpoints:
    garbled (a warning names it) or not updated by a save that was killed after its files."""
    _saved_run(tmp_path, steps=(1, 2, 3, 4), max_to_keep=5)
    path = tmp_path / "checkpoint"
    before_five = path.read_text()
    _saved_run(tmp_path, steps=(5,), max_to_keep=5)
    path.write_text("\x00garbage {{ not a CheckpointState" if state == "garbled" else before_five)
    caplog.set_level(logging.WARNING)
    objs = _state(0)
    manager = ckpt_lib.CheckpointManager(str(tmp_path), 5, **objs)
    assert manager.restore_latest() == 5 and objs["w"].numpy()[0, 0] == 5.0
    manager.save(6)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.index")) == [
        f"ckpt-{step}.index" for step in (2, 3, 4, 5, 6)]
    listed = tf.train.get_checkpoint_state(str(tmp_path)).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in listed] == [f"ckpt-{step}" for step in (2, 3, 4, 5, 6)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and r.name == "absl"]
    named = [w for w in warnings if f"state file {path} is unreadable" in w]
    assert len(named) == (1 if state == "garbled" else 0), warnings


def test_unfinished_temp_directory_is_ignored(tmp_path):
    _saved_run(tmp_path)
    temp = tmp_path / "ckpt-30_temp"  # what a save killed while writing shards leaves
    temp.mkdir()
    (temp / "part-00000-of-00001.index").write_bytes(b"partial")
    fresh = _state(0)
    assert ckpt_lib.CheckpointManager(str(tmp_path), **fresh).restore_latest() == 20


def test_non_chief_writes_outside_directory_and_cleans_up(tmp_path):
    chief_dir = tmp_path / "model_dir"
    _saved_run(chief_dir, steps=(10,))
    before = sorted(os.listdir(chief_dir))
    objs = _state(0)
    worker = ckpt_lib.CheckpointManager(str(chief_dir), is_chief=False, **objs)
    assert worker.restore_latest() == 10  # workers resume from the chief's checkpoint
    assert objs["w"].numpy()[0, 0] == 10.0
    objs["w"].assign(tf.fill([2, 3], 11.0))
    path = worker.save(11)
    assert not path.startswith(str(tmp_path)) and os.path.exists(path + ".index")
    assert sorted(os.listdir(chief_dir)) == before
    temp_dir = os.path.dirname(path)
    worker.cleanup()
    assert not os.path.exists(temp_dir)


def test_optimizer_slots_and_step_round_trip_exactly(tmp_path):
    lr, grads = 0.1, [np.array([[1.0, -2.0], [0.5, 4.0]], np.float32),
                      np.array([3.0, -1.0], np.float32)]

    def build():
        variables = [tf.Variable(np.ones((2, 2), np.float32)), tf.Variable(np.zeros(2, np.float32))]
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
        opt.build(variables)
        return variables, opt, tf.Variable(0, dtype=tf.int64)

    variables, opt, step = build()
    opt.apply_gradients(zip([tf.constant(g) for g in grads], variables))
    step.assign(1)
    ckpt_lib.CheckpointManager(str(tmp_path), vars=variables, optimizer=opt,
                               step=step).save(1)
    new_vars, new_opt, new_step = build()
    manager = ckpt_lib.CheckpointManager(str(tmp_path), vars=new_vars, optimizer=new_opt,
                                         step=new_step)
    assert manager.restore_latest() == 1
    assert int(new_step.numpy()) == 1 and int(new_opt.iterations.numpy()) == 1
    for old, new in zip(opt.variables, new_opt.variables):
        np.testing.assert_array_equal(new.numpy(), old.numpy())
    # Oracle: first step of momentum SGD, m = -lr * g and v = v0 + m.
    for slot, grad in zip(new_opt.momentums, grads):
        np.testing.assert_array_equal(slot.numpy(), -lr * grad)
    np.testing.assert_array_equal(new_vars[0].numpy(), 1.0 - lr * grads[0])


class _Tiny(keras.Model):
    """encoder + head, like SimCLRModel, to warm-start the encoder alone."""

    def __init__(self, head_units=3):
        super().__init__()
        self.encoder = keras.layers.Dense(4)
        self.head = keras.layers.Dense(head_units)

    def call(self, x):
        return self.head(self.encoder(x))


def _saved_tiny(tmp_path):
    model = _Tiny()
    model(tf.ones([1, 5]))
    opt = keras.optimizers.SGD(0.1, momentum=0.9)
    opt.build(model.trainable_variables)
    return model, ckpt_lib.CheckpointManager(str(tmp_path), model=model, optimizer=opt).save(7)


def test_restore_objects_partial_by_object(tmp_path):
    model, prefix = _saved_tiny(tmp_path)
    new = _Tiny(head_units=9)  # another head: only the encoder is taken
    new(tf.ones([1, 5]))
    assert ckpt_lib.restore_objects(str(tmp_path),
                                    model=tf.train.Checkpoint(encoder=new.encoder)) == prefix
    for old, got in zip(model.encoder.weights, new.encoder.weights):
        np.testing.assert_array_equal(got.numpy(), old.numpy())


def test_restore_objects_mismatch_names_checkpoint_and_object(tmp_path):
    _, prefix = _saved_tiny(tmp_path)
    other = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    with pytest.raises(ValueError) as err:
        ckpt_lib.restore_objects(prefix, model=other)
    message = str(err.value)
    assert prefix in message and "model" in message
    with pytest.raises(ValueError) as err:
        ckpt_lib.restore_objects(prefix, optimizer=keras.optimizers.SGD(0.1),
                                 ema=tf.Variable(1.0))  # 'ema' is not in the checkpoint
    assert prefix in str(err.value) and "ema" in str(err.value)
    assert "optimizer" in str(err.value).split("checkpoint holds:")[1]


def test_resolve_checkpoint(tmp_path):
    _saved_run(tmp_path)
    latest = str(tmp_path / "ckpt-20")
    assert ckpt_lib.resolve_checkpoint(str(tmp_path)) == latest
    assert ckpt_lib.resolve_checkpoint(str(tmp_path / "ckpt-10")) == str(tmp_path / "ckpt-10")
    assert ckpt_lib.resolve_checkpoint(latest + ".index") == latest
    assert ckpt_lib.is_checkpoint_prefix(latest)
    assert not ckpt_lib.is_checkpoint_prefix(str(tmp_path))
    missing = str(tmp_path / "nope" / "ckpt-3")
    with pytest.raises(FileNotFoundError, match="nope/ckpt-3"):
        ckpt_lib.resolve_checkpoint(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No readable checkpoint in directory"):
        ckpt_lib.resolve_checkpoint(str(tmp_path / "empty"))


def test_write_json_atomic_round_trip(tmp_path):
    path = tmp_path / "sub" / "result.json"
    obj = {"top1": 0.8125, "steps": [1, 2, 3], "name": "r50", "ok": True, "none": None}
    ckpt_lib.write_json_atomic(str(path), obj)
    ckpt_lib.write_json_atomic(str(path), {**obj, "top1": 0.875})  # replaces
    assert json.loads(path.read_text()) == {**obj, "top1": 0.875}
    assert os.listdir(path.parent) == ["result.json"]  # no temporary file left
    with pytest.raises(TypeError):
        ckpt_lib.write_json_atomic(str(path), {"bad": object()})
    assert json.loads(path.read_text())["top1"] == 0.875 and os.listdir(path.parent) == [
        "result.json"]


def _failing_save(error):
    def save(self, checkpoint_number=None, **kwargs):
        # A save that ran out of space half-way: its shard directory exists, nothing else.
        os.makedirs(os.path.join(self.directory, f"ckpt-{checkpoint_number}_temp"))
        raise error
    return save


@pytest.mark.parametrize("error", [
    tf.errors.ResourceExhaustedError(None, None, "ckpt-30_temp/part-00000: No space left on "
                                                 "device"),
    OSError(28, "No space left on device"),
])
def test_disk_full_during_save_names_the_fix_and_keeps_earlier_checkpoints(
        tmp_path, monkeypatch, error):
    manager, objs = _saved_run(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    monkeypatch.setattr(tf.train.CheckpointManager, "save", _failing_save(error))
    with pytest.raises(ckpt_lib.DiskFullError) as raised:
        manager.save(30)
    message = str(raised.value)
    assert "\n" not in message and str(tmp_path) in message and "step 30" in message
    assert message.endswith("free space and run the same command to resume.")
    assert not (tmp_path / "ckpt-30_temp").exists()  # its space is given back
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    fresh = _state(0)
    assert ckpt_lib.CheckpointManager(str(tmp_path), **fresh).restore_latest() == 20


def test_other_resource_errors_during_save_are_not_called_disk_full(tmp_path, monkeypatch):
    manager, _ = _saved_run(tmp_path, steps=(10,))
    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    monkeypatch.setattr(tf.train.CheckpointManager, "save", _failing_save(oom))
    with pytest.raises(tf.errors.ResourceExhaustedError, match="OOM"):
        manager.save(20)
