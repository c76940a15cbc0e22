"""run.py --distribution=multi_worker: two worker processes on 127.0.0.1, a fault, a resume.

One scenario (a module fixture) serves every test here:
  1. Both workers pretrain for 4 steps, checkpointing every 2. Once both have saved step 2,
     worker 1 is SIGKILLed; worker 0 (the chief) must then stop with status 1 and a one-line
     error, not hang in a collective (FAULT_LIMIT tells a hang from a slow machine).
  2. Both are started again with the same command: they resume from the chief's checkpoint
     of step 2, finish at step 4 and exit 0.
The workers run run.py through a small driver that wraps CheckpointManager.save and
restore_latest to append, per call, the step, the path written and a sha256 of the model's
weights to a JSON-lines file: what each worker would save, compared without reading the
non-chief's temporary checkpoint (removed when it finishes). Every process gets a hang guard
(tests/hang_guard.py) and its process group is killed at the end.

A second, smaller scenario loads an image folder in two workers (no training): each decodes
only its share of the files at scan time and reads only its shard at training time, and both
count what one process counts (test_workers_share_the_folder_check_and_count_alike).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import hang_guard

REPO = Path(__file__).resolve().parents[2]
# Both limits only tell a hang from a slow machine (tests/hang_guard.py): a worker process that
# has not ended after HANG_GUARD s, and a chief still running FAULT_LIMIT s after its peer was
# killed (8-32 s seen), are taken for hung in a collective.
RUN_LIMIT = hang_guard.HANG_GUARD
FAULT_LIMIT = 600
FLAGS = ["--distribution=multi_worker", "--train_mode=pretrain", "--resnet_depth=18",
         "--width_multiplier=0.25", "--image_size=32", "--train_batch_size=16",
         "--proj_out_dim=16", "--lineareval_while_pretraining=false", "--train_steps=4",
         "--steps_per_loop=2", "--checkpoint_steps=2"]

DRIVER = '''
import hashlib, json, os, runpy, sys
repo = sys.argv[1]
sys.path.insert(0, repo)
from checkpoints import manager

def record(**entry):
    with open(os.environ["WEIGHTS_RECORD"], "a") as f:
        f.write(json.dumps(entry) + "\\n")

def digest(checkpoint):
    sha = hashlib.sha256()
    for variable in checkpoint.model.variables:
        sha.update(variable.numpy().tobytes())
    return sha.hexdigest()

save, restore = manager.CheckpointManager.save, manager.CheckpointManager.restore_latest

def recorded_save(self, step):
    path = save(self, step)
    record(event="save", step=int(step), path=path, weights=digest(self.checkpoint))
    return path

def recorded_restore(self):
    step = restore(self)
    record(event="restore", step=step)
    return step

manager.CheckpointManager.save = recorded_save
manager.CheckpointManager.restore_latest = recorded_restore
sys.argv = [os.path.join(repo, "run.py")] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Cluster:
    """Two run.py workers started together; records, logs and temp dirs under `base/name`."""

    def __init__(self, base: Path, name: str, args):
        self.dir = base / name
        self.dir.mkdir()
        (self.dir / "driver.py").write_text(DRIVER)
        ports = _free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        self.procs, self.started = [], time.monotonic()
        for index in range(2):
            (self.dir / f"tmp{index}").mkdir()
            env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                       TMPDIR=str(self.dir / f"tmp{index}"),
                       WEIGHTS_RECORD=str(self.dir / f"record{index}.jsonl"),
                       TF_CONFIG=json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": index}}))
            with open(self.dir / f"worker{index}.log", "w") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, str(self.dir / "driver.py"), str(REPO), *args], cwd=REPO,
                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def records(self, index):
        path = self.dir / f"record{index}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() \
            else []

    def saves(self, index):
        return {r["step"]: r for r in self.records(index) if r["event"] == "save"}

    def log(self, index):
        return (self.dir / f"worker{index}.log").read_text()

    def wait(self, index, limit):
        """Exit status of worker `index`, or None if it is still running after `limit` s."""
        try:
            return self.procs[index].wait(timeout=max(0.1, limit))
        except subprocess.TimeoutExpired:
            return None

    def wait_all(self):
        return [self.wait(i, RUN_LIMIT - (time.monotonic() - self.started)) for i in (0, 1)]

    def kill(self, index):
        if self.procs[index].poll() is None:
            os.killpg(self.procs[index].pid, signal.SIGKILL)  # the worker's whole group
        self.procs[index].wait()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Runs the two clusters of the module docstring; returns what the tests read."""
    from data import datasets
    from data.config import DataConfig
    tic = time.monotonic()
    data_dir = tmp_path_factory.getbasetemp() / "tfds"  # shared with tests/data and test_run
    datasets.load(DataConfig(dataset="fashion_mnist", data_dir=str(data_dir)))  # once, here
    base = tmp_path_factory.mktemp("multiworker")
    model_dir = base / "model"
    args = [*FLAGS, f"--data_dir={data_dir}", f"--model_dir={model_dir}"]
    clusters = []
    try:
        first = Cluster(base, "first", args)
        clusters.append(first)
        deadline = first.started + RUN_LIMIT
        while not (2 in first.saves(0) and 2 in first.saves(1)):
            running = all(p.poll() is None for p in first.procs)
            assert running, \
                f"no checkpoint of step 2:\n{first.log(0)[-3000:]}\n{first.log(1)[-3000:]}"
            assert time.monotonic() < deadline, hang_guard.message("the first cluster")
            time.sleep(0.05)
        first.kill(1)
        killed_at = time.monotonic()
        status = first.wait(0, FAULT_LIMIT)
        fault = {"status": status, "seconds": time.monotonic() - killed_at,
                 "log": first.log(0), "state": (model_dir / "checkpoint").read_text()}
        first.kill(0)
        second = Cluster(base, "second", args)
        clusters.append(second)
        statuses = second.wait_all()
        timings = {"data": first.started - tic, "first_to_step_2": killed_at - first.started,
                   "fault": fault["seconds"], "second": time.monotonic() - second.started}
        print("multi-worker scenario seconds:", timings)
        yield {"first": first, "fault": fault, "second": second, "statuses": statuses,
               "model_dir": model_dir}
    finally:
        for cluster in clusters:
            for index in (0, 1):
                cluster.kill(index)


def test_fresh_workers_hold_identical_weights(scenario):
    first = scenario["first"]
    assert first.records(0)[0] == first.records(1)[0] == {"event": "restore", "step": None}
    assert first.saves(0)[2]["weights"] == first.saves(1)[2]["weights"]


def test_killed_worker_stops_the_other_with_a_clear_error(scenario):
    fault = scenario["fault"]
    assert fault["status"] is not None, hang_guard.message(
        "worker 0, after its peer was killed,", FAULT_LIMIT) + f":\n{fault['log'][-3000:]}"
    assert fault["status"] == 1, fault["log"][-3000:]
    errors = [line for line in fault["log"].splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "lost a worker" in errors[0], fault["log"][-3000:]
    assert "Start every worker again" in errors[0]
    assert 'model_checkpoint_path: "ckpt-2"' in fault["state"]  # step 4 was never reached


def test_restart_resumes_from_the_last_checkpoint_and_finishes(scenario):
    second = scenario["second"]
    assert None not in scenario["statuses"], hang_guard.message("a worker of the second start")
    assert scenario["statuses"] == [0, 0], second.log(0)[-3000:] + second.log(1)[-3000:]
    for index in (0, 1):
        assert second.records(index)[0] == {"event": "restore", "step": 2}
        assert sorted(second.saves(index)) == [4]
    assert second.saves(0)[4]["weights"] == second.saves(1)[4]["weights"]
    assert "step 4/4" in second.log(0)


def test_only_the_chief_writes_into_model_dir(scenario):
    first, second, model_dir = scenario["first"], scenario["second"], scenario["model_dir"]
    for cluster in (first, second):
        for step, entry in cluster.saves(0).items():
            assert entry["path"] == str(model_dir / f"ckpt-{step}")
        for entry in cluster.saves(1).values():  # worker 1: a temporary directory of its own
            assert entry["path"].startswith(str(cluster.dir / "tmp1") + os.sep)
    assert os.listdir(second.dir / "tmp1") == []  # removed at the end of the run
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == ["ckpt-2.index",
                                                                      "ckpt-4.index"]
    assert sorted(os.listdir(model_dir / "saved_model")) == ["4"]
    # TensorBoard event files end in .<pid>.<n>.v2: every one is from a chief process.
    chiefs = {str(first.procs[0].pid), str(second.procs[0].pid)}
    events = list(model_dir.glob("events.out.tfevents.*"))
    assert events and {p.name.split(".")[-3] for p in events} <= chiefs


FOLDER_DRIVER = '''
import json, os, sys
repo, root, data_dir, out = sys.argv[1:5]
sys.path.insert(0, repo)
import tensorflow as tf
from data import datasets, folders, pipeline
from data.config import DataConfig
from tf2 import distribute
strategy = distribute.make_strategy("multi_worker")
share = folders.scan_share(strategy)
decoded, decodes = [], folders._decodes
folders._decodes = lambda paths: (decoded.extend(paths), decodes(paths))[1]
cfg = DataConfig(dataset=f"folder:{root}", data_dir=data_dir, holdout_fraction=0.2,
                 labels_per_class=2)
source = datasets.load(cfg, strategy)
context = tf.distribute.InputContext(2, share.index, 2)
read = [int(ex["index"]) for ex in source.as_dataset("train", input_context=context)]
with open(out, "w") as f:
    json.dump({"share": [share.index, share.count], "decoded": decoded, "read": read,
               "counts": FOLDER_COUNTS(source, cfg)}, f)
'''


def folder_counts(source, cfg):
    """What a run counts on a folder: epochs of each stage, the holdout, the labelled subset."""
    from data import pipeline
    return {"epochs": [pipeline.num_train_examples(source, cfg, mode)
                       for mode in ("pretrain", "finetune", "distill")],
            "holdout": pipeline.holdout_mask(source, cfg).tolist(),
            "labelled": pipeline.labelled_mask(source, cfg).tolist(),
            "test": source.num_examples("test")}


def test_workers_share_the_folder_check_and_count_alike(tmp_path):
    """Two workers (a data_dir each, as on two hosts) load one folder twice."""
    import inspect
    import numpy as np
    from PIL import Image
    from data import folders
    from data.config import DataConfig
    root = tmp_path / "images"
    for split, count in (("train", 11), ("test", 3)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(
                    root / split / c / f"{i:02d}.png")
    (root / "train" / "b" / "05.png").write_bytes(b"corrupt")
    driver = tmp_path / "driver.py"
    driver.write_text(inspect.getsource(folder_counts) + FOLDER_DRIVER.replace(
        "FOLDER_COUNTS", "folder_counts"))
    starts = []
    for start in ("first", "second"):
        ports = _free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        procs = []
        for index in (0, 1):
            env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                       TF_CONFIG=json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": index}}))
            procs.append(subprocess.Popen(
                [sys.executable, str(driver), str(REPO), str(root), str(tmp_path / f"d{index}"),
                 str(tmp_path / f"{start}{index}.json")], env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, start_new_session=True))
        try:
            logs = [p.communicate(timeout=RUN_LIMIT)[0] for p in procs]
        except subprocess.TimeoutExpired:
            pytest.fail(hang_guard.message(f"the {start} start of the folder workers"))
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
        assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)[-3000:]
        starts.append([json.loads((tmp_path / f"{start}{i}.json").read_text()) for i in (0, 1)])
    first, second = starts
    listed = sorted(str(p) for p in root.rglob("*.png"))  # 28 files, one corrupt
    assert [w["share"] for w in first] == [[0, 2], [1, 2]]
    assert len(first[0]["decoded"]) == len(first[1]["decoded"]) == 14
    assert sorted(first[0]["decoded"] + first[1]["decoded"]) == listed  # each its share
    assert second[0]["decoded"] == second[1]["decoded"] == []  # each data_dir has a manifest
    # Oracle: one process, no manifest, every file decoded (what a run counted before).
    cfg = DataConfig(dataset=f"folder:{root}", holdout_fraction=0.2, labels_per_class=2)
    alone = folder_counts(folders.FolderSource(str(root)), cfg)
    assert alone["epochs"] == [21 - 4, 4, 21 - 4] and alone["test"] == 6
    for worker in first + second:
        assert worker["counts"] == alone
    for start in starts:  # training time: disjoint shards that cover the split
        assert sorted(start[0]["read"] + start[1]["read"]) == list(range(21))
        assert start[0]["read"] == list(range(0, 21, 2))
