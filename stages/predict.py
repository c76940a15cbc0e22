"""Step 4: use what you trained. Reads a model_dir or SavedModel and images; writes predictions.

Under `cfg.output_dir`:
  predictions.csv  one row per image, in the order read: `path` (files) or `index` (TFDS: the
                   example's position in its split); `label`, the true class name, when the
                   data have classes (empty for an unlabelled image); then `class_1,
                   probability_1, ..., class_k, probability_k`, the k most probable classes
                   (k = --top_k, at most the model's classes). A model without a supervised
                   head (pretraining without the linear head) has no classes: the CSV then
                   holds the first columns only.
  embeddings.npy   float32 (N, D): row i is the embedding of row i of predictions.csv, the
                   output of `cfg.embedding_layer`, L2-normalised when `cfg.normalize`.
  unreadable.txt   the files that could not be decoded, one a line (skipped, never counted as
                   predicted); empty when every file read.
  summary.json     the counts, top-1/top-5 when the data have labels, the layer and its width.

It streams: the images are read, prepared as evaluation prepares them, and predicted one
global batch at a time on every replica of the strategy; rows are appended to the CSV and the
embeddings written into a memory-mapped .npy, so neither the images nor the outputs of the
whole set are ever held in memory. Each file is written under a temporary name and renamed
when complete.

top-1 counts an image as correct exactly as evaluation does (`tf2.losses.top_k_hits` on the
logits: a tie counts for the lower class index only, as argmax), so on the same data and
checkpoint it equals `--mode=eval`'s.
"""
import csv
import dataclasses
import json
import math
import os
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from checkpoints import manager as ckpt_lib
from checkpoints import provenance
from checkpoints import trained as trained_lib
from data import pipeline
from data.config import HOLDOUT_SPLIT, DataConfig
from stages import startup_log, summaries
from tf2 import losses
from tf2 import model as model_lib
from tf2 import resnet

PREDICTIONS, EMBEDDINGS = "predictions.csv", "embeddings.npy"
UNREADABLE, SUMMARY = "unreadable.txt", "summary.json"
OUTPUT_FILES = (PREDICTIONS, EMBEDDINGS, UNREADABLE, SUMMARY)
_PART = ".part"


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """What to predict with, on what, and where to write.

    Attributes:
      model_path: a model_dir or a SavedModel directory (ours or official).
      output_dir: where the files of the module docstring go (created).
      data: the images; `data.eval_split` is the split read, `data.image_size` the side the
        images are prepared at (the model's own, see flags/configs.predict_config).
      batch_size: global batch (divisible by the replicas).
      top_k: classes per row of the CSV.
      embedding_layer: one of `tf2.model.embedding_layers(model)`.
      normalize: L2-normalise the embeddings.
      overwrite: replace output files that exist (else refuse).
      progress_bar: live bar (None: when stdout is a terminal).
      precision: the Keras policy the network computes in ('float32', 'mixed_bfloat16',
        'mixed_float16'; run.py sets it before building), precision_reason: why (banner).
    """
    model_path: str
    output_dir: str
    data: DataConfig
    batch_size: int = 256
    top_k: int = 5
    embedding_layer: str = resnet.FINAL_AVG_POOL
    normalize: bool = False
    overwrite: bool = False
    progress_bar: Optional[bool] = None
    precision: str = "float32"
    precision_reason: str = ""


def existing_outputs(output_dir: str) -> List[str]:
    """The output files already in output_dir (refused unless overwriting)."""
    return [os.path.join(output_dir, n) for n in OUTPUT_FILES
            if os.path.exists(os.path.join(output_dir, n))]


def make_step_fn(model, embedding_layer: str, top_k: int, normalize: bool):
    """One replica's step: batch -> index, label, embedding (and top-k, hits with a head)."""
    def step_fn(batch):
        outputs = model(batch["image"], training=False)
        embedding = model_lib.embedding(model, outputs, embedding_layer)  # (b, D)
        if normalize:
            embedding = tf.math.l2_normalize(embedding, axis=-1)
        rows = {"index": batch["index"], "label": batch["label"], "embedding": embedding}
        if model_lib.LOGITS_SUP not in outputs:
            return rows
        logits = outputs[model_lib.LOGITS_SUP]  # (b, C)
        classes = logits.shape[-1]
        top = tf.math.top_k(tf.nn.softmax(logits, axis=-1), min(top_k, classes))
        labelled = batch["label"] >= 0
        target = tf.maximum(batch["label"], 0)  # in range; unlabelled rows are masked below
        rows.update(top_classes=top.indices, top_probabilities=top.values,
                    hit1=losses.top_k_hits(target, logits, 1) & labelled,
                    hit5=losses.top_k_hits(target, logits, min(5, classes)) & labelled)
        return rows
    return step_fn


class EmbeddingWriter:
    """A float32 (rows, dim) .npy written in chunks through a memory map.

    The file is made at its full size first (`rows` expected); `close` renames it into place,
    shrinking it when fewer rows came (files that stopped decoding during the run).
    """

    def __init__(self, path: str, rows: int, dim: int):
        self.path, self.count = path, 0
        self._array = np.lib.format.open_memmap(path + _PART, mode="w+", dtype=np.float32,
                                                shape=(rows, dim))

    def write(self, chunk: np.ndarray):
        self._array[self.count:self.count + len(chunk)] = chunk
        self.count += len(chunk)

    def close(self, chunk_rows: int = 4096) -> str:
        self._array.flush()
        rows, dim = self._array.shape
        del self._array
        if self.count != rows:  # copy the rows written into a file of the right size
            full = np.load(self.path + _PART, mmap_mode="r")
            out = np.lib.format.open_memmap(self.path + ".shrink", mode="w+",
                                            dtype=np.float32, shape=(self.count, dim))
            for start in range(0, self.count, chunk_rows):
                end = min(start + chunk_rows, self.count)
                out[start:end] = full[start:end]
            out.flush()
            del out, full
            os.replace(self.path + ".shrink", self.path + _PART)
        os.replace(self.path + _PART, self.path)
        return self.path


class RowWriter:
    """predictions.csv, a row per image (see the module docstring)."""

    def __init__(self, path: str, key: str, data_classes, model_classes, top_k: int):
        self.path, self._data_classes, self._model_classes = path, data_classes, model_classes
        self._file = open(path + _PART, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        header = [key] + (["label"] if data_classes else [])
        for j in range(1, top_k + 1):
            header += [f"class_{j}", f"probability_{j}"]
        self._csv.writerow(header)

    def write(self, keys, rows: Dict[str, np.ndarray]):
        for i, key in enumerate(keys):
            row = [key]
            if self._data_classes:
                label = int(rows["label"][i])
                row.append(self._data_classes[label] if label >= 0 else "")
            if "top_classes" in rows:
                for k, p in zip(rows["top_classes"][i], rows["top_probabilities"][i]):
                    row += [self._model_classes[int(k)], f"{float(p):.6g}"]
            self._csv.writerow(row)

    def close(self) -> str:
        self._file.close()
        os.replace(self.path + _PART, self.path)
        return self.path


def _local_rows(strategy, per_replica) -> Dict[str, np.ndarray]:
    """This host's rows of one global batch, replica by replica (the order they were read)."""
    return {name: np.concatenate([t.numpy() for t in
                                  strategy.experimental_local_results(value)])
            for name, value in per_replica.items()}


def build(description: trained_lib.Description, embedding_layer: str) -> trained_lib.Trained:
    """The restored network (call inside strategy.scope()), its embedding layer checked.

    Raises:
      LayerError: the layer is not one the network has, naming those it has.
    """
    trained = trained_lib.load(description)
    if embedding_layer not in model_lib.embedding_layers(trained.model):
        raise LayerError(f"--embedding_layer={embedding_layer}: this model has "
                         f"{', '.join(model_lib.embedding_layers(trained.model))}.")
    return trained


class LayerError(ValueError):
    """The embedding layer asked for is not one the model has."""


def class_names(trained: trained_lib.Trained) -> List[str]:
    """A name per output of the supervised head: the recorded ones, else the numbers."""
    head = trained.model.supervised_head
    count = head.dense.units if head is not None else 0
    names = list(trained.description.class_names)
    return names if len(names) == count else [str(k) for k in range(count)]


def _labels_comparable(source, model_names) -> Optional[str]:
    """None when the data's labels mean the model's classes, else why top-1 is not counted."""
    if not source.num_classes:
        return "the data have no labels"
    if not model_names:
        return "the model has no supervised head"
    return provenance.difference(model_names, source.class_names, "model", "data")


def run(cfg: PredictConfig, strategy, source, trained: trained_lib.Trained) -> dict:
    """Predicts every image of cfg.data.eval_split; writes the files; returns the summary.

    Args:
      strategy: the tf.distribute strategy `trained` was built under.
      source: the data.Source of cfg.data.
      trained: from `build`, in strategy.scope().
    """
    split = cfg.data.eval_split
    expected = pipeline.num_eval_examples(source, cfg.data, split)
    model_names = class_names(trained)
    step_fn = make_step_fn(trained.model, cfg.embedding_layer, cfg.top_k, cfg.normalize)
    dist_step = tf.function(lambda batch: strategy.run(step_fn, args=(batch,)))
    with startup_log.determinism_notice_dropped():
        dataset = strategy.distribute_datasets_from_function(
            pipeline.eval_input_fn(source, cfg.data, cfg.batch_size, split))
    os.makedirs(cfg.output_dir, exist_ok=True)
    paths = source.paths(split) if hasattr(source, "paths") else None
    dim = _embedding_width(trained.model, cfg)
    embeddings = EmbeddingWriter(os.path.join(cfg.output_dir, EMBEDDINGS), expected, dim)
    rows = RowWriter(os.path.join(cfg.output_dir, PREDICTIONS),
                     "index" if paths is None else "path", source.class_names, model_names,
                     min(cfg.top_k, len(model_names)))
    totals = _stream(cfg, dataset, dist_step, strategy, paths, rows, embeddings, expected)
    files = {"predictions": rows.close(), "embeddings": embeddings.close()}
    unreadable = _unreadable(source, split, paths, totals.pop("seen"))
    files["unreadable"] = _write_lines(os.path.join(cfg.output_dir, UNREADABLE), unreadable)
    summary = _summary(cfg, trained, source, totals, unreadable, dim, files)
    ckpt_lib.write_json_atomic(os.path.join(cfg.output_dir, SUMMARY), summary)
    return summary


def _embedding_width(model, cfg: PredictConfig) -> int:
    side = cfg.data.image_size
    outputs = model(tf.zeros((1, side, side, 3)), training=False)
    return int(model_lib.embedding(model, outputs, cfg.embedding_layer).shape[-1])


def _stream(cfg, dataset, dist_step, strategy, paths, rows, embeddings, expected) -> dict:
    """The host loop: a global batch at a time, rows appended, progress shown."""
    steps = max(1, math.ceil(expected / cfg.batch_size))
    progress = summaries.Progress(steps, use_bar=cfg.progress_bar)
    totals = {"predicted": 0, "labelled": 0, "hit1": 0, "hit5": 0, "seen": []}
    tic = time.perf_counter()
    for step, batch in enumerate(dataset, 1):
        local = _local_rows(strategy, dist_step(batch))
        keys = local["index"] if paths is None else paths[local["index"]]
        rows.write(keys, local)
        embeddings.write(local["embedding"])
        totals["seen"].append(local["index"])
        totals["predicted"] += len(local["index"])
        totals["labelled"] += int((local["label"] >= 0).sum())
        for hit in ("hit1", "hit5"):
            totals[hit] += int(local[hit].sum()) if hit in local else 0
        progress.update(min(step, steps), {}, totals["predicted"] /
                        max(time.perf_counter() - tic, 1e-9))
    progress.close()
    return totals


def _unreadable(source, split, paths, seen) -> List[str]:
    """Files skipped when the data were scanned, and those that stopped decoding since."""
    if paths is None or not hasattr(source, "unreadable"):
        return []
    skipped = source.unreadable(split)
    if split == HOLDOUT_SPLIT:
        return skipped
    read = np.concatenate(seen) if seen else np.zeros([0], np.int64)
    missing = np.setdiff1d(source.indices(split), read)
    return skipped + [str(paths[i]) for i in missing]


def _write_lines(path: str, lines: List[str]) -> str:
    with open(path + _PART, "w", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lines))
    os.replace(path + _PART, path)
    return path


def _summary(cfg, trained, source, totals, unreadable, dim, files) -> dict:
    model_names = class_names(trained)
    why_not = _labels_comparable(source, model_names)
    counted = why_not is None and totals["labelled"] > 0
    d = trained.description
    return {
        "model": cfg.model_path, "kind": d.kind, "train_mode": d.train_mode,
        "read": trained.read, "dataset": cfg.data.dataset, "split": cfg.data.eval_split,
        "image_size": cfg.data.image_size, "images": totals["predicted"] + len(unreadable),
        "predicted": totals["predicted"], "unreadable": len(unreadable),
        "classes": len(model_names), "top_k": min(cfg.top_k, len(model_names)),
        "labelled": totals["labelled"],
        "top1": totals["hit1"] / totals["labelled"] if counted else None,
        "top5": totals["hit5"] / totals["labelled"] if counted else None,
        "accuracy_note": why_not, "embedding_layer": cfg.embedding_layer,
        "embedding_dim": dim, "normalized": cfg.normalize, "files": files}


def _line(name: str, value: str) -> str:
    return f"{name + ':':<13}{value}"  # padded like run.py's report


def banner_lines(cfg: PredictConfig, description: trained_lib.Description,
                 source) -> List[str]:
    """What runs, before the data are read and the network traced."""
    d = description
    stage = f"{d.kind}, stage {d.train_mode}" if d.train_mode else d.kind
    count = pipeline.num_eval_examples(source, cfg.data, cfg.data.eval_split)
    skipped = (len(source.unreadable(cfg.data.eval_split))
               if hasattr(source, "unreadable") and cfg.data.eval_split != HOLDOUT_SPLIT else 0)
    norm = ", L2-normalised" if cfg.normalize else ""
    return [_line("predict", f"{cfg.model_path} ({stage})"),
            _line("data", f"{cfg.data.dataset}, split {cfg.data.eval_split}: {count:,} images"
                  + (f" ({skipped} unreadable, skipped)" if skipped else "")
                  + f", prepared at {cfg.data.image_size} px"),
            _line("embeddings", f"{cfg.embedding_layer}{norm}"),
            _line("precision", f"{cfg.precision} ({cfg.precision_reason})"
                  if cfg.precision_reason else cfg.precision),
            _line("output_dir", cfg.output_dir)]


def report_lines(summary: dict) -> List[str]:
    """The summary printed at the end (counts, accuracy, files); the caller adds how to load."""
    s, files = summary, summary["files"]
    lines = [_line("images", f"{s['images']:,}: {s['predicted']:,} predicted, "
                             f"{s['unreadable']:,} unreadable (skipped, listed in "
                             f"{files['unreadable']})")]
    if s["classes"]:
        lines.append(_line("predictions", f"{files['predictions']} (top-{s['top_k']} "
                                          f"of {s['classes']} classes per image)"))
    else:
        lines.append(_line("predictions", f"{files['predictions']}: paths only, no classes: "
                                          "the model has no supervised head (pretraining "
                                          "without the linear head), so it gives embeddings "
                                          "only"))
    if s["top1"] is not None:
        lines.append(_line("accuracy", f"top-1 {s['top1']:.4f}  top-5 {s['top5']:.4f} on "
                                       f"{s['labelled']:,} labelled images"))
    elif s["classes"] and s["accuracy_note"]:
        lines.append(_line("accuracy", f"not counted: {s['accuracy_note']}"))
    norm = ", L2-normalised" if s["normalized"] else ""
    lines.append(_line("embeddings", f"{files['embeddings']} (float32, {s['predicted']:,} x "
                                     f"{s['embedding_dim']}, {s['embedding_layer']}{norm})"))
    return lines
