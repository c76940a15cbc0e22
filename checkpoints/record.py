"""The record of a run in its model_dir: config.json, flags.json and starts.jsonl.

  * `starts.jsonl`: one JSON line per start that really began training, i.e. whose resume (or
    fresh start) succeeded: time, pid, host, the step it resumed from, the command line and the
    flag values it used. Lines are only ever appended, so earlier starts stay on record.
  * `config.json` (the RunConfig) and `flags.json` (the flag values used: stage defaults
    resolved) describe the settings that wrote the newest checkpoint. They are rewritten just
    before a start saves its first checkpoint, so a start that was refused (a resume with
    another architecture) or that stopped before saving anything (a NaN loss) leaves them as
    they were, and `--mode=eval`, warm starts and teachers keep reading the right network.
"""
import json
import os
import socket
import time
from typing import Optional, Sequence

from checkpoints import manager as ckpt_lib

STARTS = "starts.jsonl"


class RunRecord:
    """Writes a start's record into model_dir at the moments the module docstring names.

    Args:
      directory: the run's model_dir.
      config: the RunConfig as a JSON-ready dict (`tf2.config.run_config_to_dict`).
      flags: {flag name: value used}.
      command: the command line (sys.argv).
    """

    def __init__(self, directory: str, config: dict, flags: dict, command: Sequence[str]):
        self.directory, self.config, self.flags = directory, config, flags
        self.command = list(command)
        self._written = False

    def started(self, restored_step: Optional[int]) -> None:
        """Appends this start to starts.jsonl (call once the resume has succeeded)."""
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(),
                 "host": socket.gethostname(), "resumed_from_step": restored_step,
                 "command": self.command, "flags": self.flags}
        os.makedirs(self.directory, exist_ok=True)
        append_line(os.path.join(self.directory, STARTS), json.dumps(entry))

    def saving(self) -> None:
        """Writes config.json and flags.json before this start's first checkpoint (once)."""
        if self._written:
            return
        ckpt_lib.write_json_atomic(os.path.join(self.directory, "config.json"), self.config)
        ckpt_lib.write_json_atomic(os.path.join(self.directory, "flags.json"), self.flags)
        self._written = True


def append_line(path: str, line: str) -> None:
    """Appends `line` and a newline to `path`, whole or not at all.

    A write that fails (a full disk) is cut back off, so the file keeps only whole lines; a
    fragment that an earlier append could not cut off (the process was killed) is dropped
    before this line is written, so the next line never continues it.
    """
    data = (line + "\n").encode()
    with open(path, "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        whole = _whole_lines_size(f, size)
        if whole != size:
            f.truncate(whole)
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            f.truncate(whole)
            raise


def _whole_lines_size(f, size: int) -> int:
    """The length of the file's whole lines: up to and including its last newline."""
    if size == 0:
        return 0
    f.seek(0)
    content = f.read(size)
    return content.rfind(b"\n") + 1


def read_starts(directory: str) -> list:
    """The entries of starts.jsonl, oldest first ([] if there is none).

    A last line without its newline is an append that never finished: it is not an entry.
    """
    path = os.path.join(directory, STARTS)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().split("\n")[:-1]  # the part after the last newline is unfinished
    return [json.loads(line) for line in lines if line.strip()]
