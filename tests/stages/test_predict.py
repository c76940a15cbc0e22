"""Prediction in process: the streamed files against an in-memory NumPy oracle (2 replicas; the
other tests run on the default strategy's one).

A tiny network (randomised batch norms, a head whose classes all win somewhere) is saved as a
model_dir (checkpoint + config.json, as a run writes them). The oracle runs the restored Keras
model once on all the images, prepared by data.augment.preprocess_for_eval; the CSV's top-k,
probabilities and labels and the memory-mapped embeddings must equal it, row by row.
"""
import csv
import os

import numpy as np
import pytest
import tensorflow as tf

from checkpoints import manager as ckpt_lib
from checkpoints import trained as trained_lib
from data import augment, datasets
from data.config import DataConfig
from stages import predict
from tests import models
from tf2 import config as cfg_lib

NAMES = ("ant", "bee", "cat")
SIZE = 16


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """(model_dir, the in-process model): a checkpoint and config.json like a finetune run's."""
    model, model_cfg, head_cfg = models.tiny_network(SIZE, len(NAMES), seed=2)
    path = str(tmp_path_factory.mktemp("run"))
    ckpt_lib.CheckpointManager(path, model=model).save(3)
    cfg = cfg_lib.RunConfig(model=model_cfg, head=head_cfg, loss=cfg_lib.LossConfig(),
                            memory=cfg_lib.MemoryConfig(), optimizer=cfg_lib.OptimizerConfig(),
                            train=cfg_lib.TrainConfig(), data=DataConfig(image_size=SIZE),
                            train_mode="finetune", model_dir=path, class_names=NAMES)
    ckpt_lib.write_json_atomic(os.path.join(path, "config.json"),
                               cfg_lib.run_config_to_dict(cfg))
    return path, model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """root/test/<class>/*.png, 11 images of several sizes; plus one unreadable file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(4)
    for i in range(11):
        name = NAMES[i % 3]
        shape = (SIZE + 3 * (i % 4), SIZE + 2 * (i % 3), 3)
        pixels = (rng.uniform(0, 1, (1, 1, 3)) * 180 + rng.integers(0, 75, shape))
        (root / "test" / name).mkdir(parents=True, exist_ok=True)
        tf.io.write_file(str(root / "test" / name / f"{i:02d}.png"),
                         tf.io.encode_png(pixels.astype(np.uint8)))
    (root / "test" / "bee" / "zz.png").write_bytes(b"not a png")
    return root


def _oracle(model, source, split="test"):
    """In memory: every image of the split prepared as evaluation, one forward pass."""
    paths = source.paths(split)
    images = np.stack([augment.preprocess_for_eval(tf.io.decode_png(tf.io.read_file(p),
                                                                    channels=3), SIZE,
                                                   center_crop=False) for p in paths])
    out = {k: v.numpy() for k, v in model(images, training=False).items()}
    return paths, source.labels(split), out.get("logits_sup"), out["final_avg_pool"]


def _predict(model_dir, source, out, strategy, split="test", batch=4, **overrides):
    description = trained_lib.describe(model_dir)
    data = DataConfig(dataset="x", eval_split=split, image_size=SIZE, cache=False)
    cfg = predict.PredictConfig(model_dir, str(out), data, batch_size=batch, top_k=2,
                                progress_bar=False, **overrides)
    with strategy.scope():
        trained = predict.build(description, cfg.embedding_layer)
    return predict.run(cfg, strategy, source, trained)


def _rows(out):
    with open(out / predict.PREDICTIONS, newline="") as f:
        return list(csv.DictReader(f))


def test_streamed_files_on_two_replicas_equal_the_in_memory_oracle(model_dir, folder, tmp_path,
                                                                    two_replicas):
    """Global batch 4 on 2 replicas: three chunks, the last one partial (3 images)."""
    path, model = model_dir
    source = datasets.load(DataConfig(dataset=f"folder:{folder}"))
    summary = _predict(path, source, tmp_path, two_replicas)
    paths, labels, logits, features = _oracle(model, source)
    rows = _rows(tmp_path)
    assert [r["path"] for r in rows] == list(paths)  # the order read, every image once
    assert [r["label"] for r in rows] == [NAMES[k] for k in labels]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    order = np.argsort(-probs, axis=-1)[:, :2]
    assert [[r["class_1"], r["class_2"]] for r in rows] == [[NAMES[k] for k in o] for o in order]
    np.testing.assert_allclose([[float(r["probability_1"]), float(r["probability_2"])]
                                for r in rows], np.take_along_axis(probs, order, -1), atol=1e-5)
    embeddings = np.load(tmp_path / predict.EMBEDDINGS, mmap_mode="r")
    assert embeddings.dtype == np.float32 and embeddings.shape == features.shape
    np.testing.assert_allclose(embeddings, features, atol=1e-5)
    top1 = np.mean(logits.argmax(-1) == labels)
    assert 0 < top1 < 1 and summary["top1"] == pytest.approx(top1)
    assert (summary["images"], summary["predicted"], summary["unreadable"]) == (12, 11, 1)
    assert (tmp_path / predict.UNREADABLE).read_text() == f"{folder}/test/bee/zz.png\n"


def test_tfds_rows_are_indices_and_layers_normalised(model_dir, tmp_path_factory, tmp_path):
    """A TFDS split: rows keyed by index; proj_head_output, L2-normalised."""
    path, model = model_dir
    data_dir = str(tmp_path_factory.getbasetemp() / "tfds")  # shared with tests/data
    source = datasets.load(DataConfig(dataset="fashion_mnist", data_dir=data_dir))
    summary = _predict(path, source, tmp_path, tf.distribute.get_strategy(), "test[:10]",
                       batch=8, embedding_layer="proj_head_output", normalize=True)
    rows = _rows(tmp_path)
    assert [int(r["index"]) for r in rows] == list(range(10))
    labels = source.labels("test")[:10]
    assert [r["label"] for r in rows] == [source.class_names[k] for k in labels]
    images = np.stack([augment.preprocess_for_eval(x["image"], SIZE, center_crop=False)
                       for x in source.as_dataset("test[:10]").as_numpy_iterator()])
    projected = model(images, training=False)["proj_head_output"].numpy()
    expected = projected / np.linalg.norm(projected, axis=-1, keepdims=True)
    np.testing.assert_allclose(np.load(tmp_path / predict.EMBEDDINGS), expected, atol=1e-5)
    # Fashion-MNIST's names are not the model's: no top-1 that would compare other classes.
    assert summary["top1"] is None and summary["accuracy_note"].startswith(
        "the model has 3 classes, the data 10")


def test_headless_model_writes_embeddings_only(tmp_path, folder):
    model, model_cfg, head_cfg = models.tiny_network(SIZE, 0, seed=3)
    ckpt_lib.CheckpointManager(str(tmp_path / "run"), model=model).save(1)
    cfg = cfg_lib.RunConfig(model=model_cfg, head=head_cfg, loss=cfg_lib.LossConfig(),
                            memory=cfg_lib.MemoryConfig(), optimizer=cfg_lib.OptimizerConfig(),
                            train=cfg_lib.TrainConfig(), data=DataConfig(image_size=SIZE),
                            model_dir=str(tmp_path / "run"))
    ckpt_lib.write_json_atomic(str(tmp_path / "run" / "config.json"),
                               cfg_lib.run_config_to_dict(cfg))
    source = datasets.load(DataConfig(dataset=f"folder:{folder}"))
    summary = _predict(str(tmp_path / "run"), source, tmp_path / "out",
                       tf.distribute.get_strategy())
    rows = _rows(tmp_path / "out")
    assert list(rows[0]) == ["path", "label"] and len(rows) == 11
    assert summary["classes"] == 0 and summary["top1"] is None
    assert "embeddings only" in "\n".join(predict.report_lines(summary))
    _, _, _, features = _oracle(model, source)
    np.testing.assert_allclose(np.load(tmp_path / "out" / predict.EMBEDDINGS), features,
                               atol=1e-5)


def test_embedding_writer_shrinks_to_the_rows_written(tmp_path):
    """Files that stop decoding mid-run leave fewer rows than expected: the .npy is cut to
    them, and the file appears under its name only when complete."""
    writer = predict.EmbeddingWriter(str(tmp_path / "e.npy"), rows=10, dim=3)
    chunks = [np.full((4, 3), i, np.float32) for i in range(2)]
    for chunk in chunks:
        writer.write(chunk)
    assert not (tmp_path / "e.npy").exists()
    writer.close(chunk_rows=3)
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), np.concatenate(chunks))
    assert sorted(os.listdir(tmp_path)) == ["e.npy"]
