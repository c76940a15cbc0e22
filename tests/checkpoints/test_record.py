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
