"""The run record: starts.jsonl grows by one line per start, config/flags.json at the first save."""
import json

from checkpoints import record


def test_starts_are_appended_and_config_written_once_before_the_first_save(tmp_path):
    (tmp_path / "config.json").write_text('{"old": 1}\n')
    first = record.RunRecord(str(tmp_path), {"model": {"depth": 18}}, {"learning_rate": 0.1},
                             ["run.py", "--a"])
    first.started(None)
    assert json.loads((tmp_path / "config.json").read_text()) == {"old": 1}  # not yet
    assert not (tmp_path / "flags.json").exists()
    first.saving()
    (tmp_path / "flags.json").write_text('{"edited": true}\n')
    first.saving()  # once per start: a later save does not write again
    assert json.loads((tmp_path / "config.json").read_text()) == {"model": {"depth": 18}}
    assert json.loads((tmp_path / "flags.json").read_text()) == {"edited": True}
    second = record.RunRecord(str(tmp_path), {"model": {"depth": 34}}, {"learning_rate": 9.0},
                              ["run.py", "--b"])
    second.started(8)
    starts = record.read_starts(str(tmp_path))
    assert [(s["resumed_from_step"], s["command"], s["flags"]) for s in starts] == [
        (None, ["run.py", "--a"], {"learning_rate": 0.1}),
        (8, ["run.py", "--b"], {"learning_rate": 9.0})]
    assert json.loads((tmp_path / "config.json").read_text()) == {"model": {"depth": 18}}


def _start(directory, step):
    record.RunRecord(str(directory), {}, {"step": step}, ["run.py"]).started(step)


def test_a_start_on_a_full_disk_leaves_no_fragment(tmp_path, monkeypatch):
    """Issue 23.1: ENOSPC during the append left a partial line that the next start continued,
    and starts.jsonl stopped parsing. The failed append is cut back off."""
    import errno
    import os
    _start(tmp_path, 1)
    before = (tmp_path / record.STARTS).read_bytes()
    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full_disk)
    try:
        _start(tmp_path, 2)
        raise AssertionError("the append should have failed")
    except OSError as e:
        assert e.errno == errno.ENOSPC
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert (tmp_path / record.STARTS).read_bytes() == before
    _start(tmp_path, 3)
    lines = (tmp_path / record.STARTS).read_text().splitlines()
    assert [json.loads(line)["resumed_from_step"] for line in lines] == [1, 3]


def test_a_fragment_left_by_a_killed_append_is_dropped(tmp_path):
    _start(tmp_path, 1)
    with open(tmp_path / record.STARTS, "a") as f:
        f.write('{"time": "2026-12-04T00:00:00", "pid": 1, "resu')  # killed mid-write
    assert [s["resumed_from_step"] for s in record.read_starts(str(tmp_path))] == [1]
    _start(tmp_path, 5)
    lines = (tmp_path / record.STARTS).read_text().splitlines()
    assert [json.loads(line)["resumed_from_step"] for line in lines] == [1, 5]
