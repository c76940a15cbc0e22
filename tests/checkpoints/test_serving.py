"""The encoded-image signature: what it prepares equals evaluation's input, and what it
answers equals the pixel signature on those images (TF Serving's loader path, `saved_model_cli
run`, against --mode=predict: tests/program/test_predict.py).

One tiny network (ImageNet stem, 40 px, so the centre crop is taken) is exported once per module.
Oracles: images decoded by PIL and cropped by NumPy index arithmetic, resized by TensorFlow's
bicubic op; softmax and argmax in NumPy; the pixel signature of the same SavedModel.
"""
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from checkpoints import export, serving
from data import datasets, pipeline
from data.config import DataConfig
from tests import models

SIZE = 40
NAMES = ("ant", "bee", "cat")
ATOL = 1e-5


def _encode(pixels, fmt):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder of four images of other sizes and kinds: (paths, their bytes)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    kinds = [((50, 70, 3), "PNG"), ((90, 45), "PNG"), ((41, 41, 4), "PNG"), ((64, 48, 3), "JPEG")]
    paths = []
    for i, (shape, fmt) in enumerate(kinds):
        path = root / "x" / f"{i}.{fmt.lower()}"
        path.parent.mkdir(exist_ok=True)
        tint = np.resize([[255, 40, 40, 255], [30, 30, 30, 255], [40, 255, 255, 0],
                          [220, 220, 40, 255]][i], shape[2:])  # tell the images apart
        pixels = rng.integers(0, 256, shape) * 0.3 + tint * 0.7
        path.write_bytes(_encode(pixels.astype(np.uint8), fmt))
        paths.append(str(path))
    return paths, [open(p, "rb").read() for p in paths]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, model_cfg, head_cfg = models.tiny_network(SIZE, len(NAMES))
    path = export.export_saved_model(model, str(tmp_path_factory.mktemp("export")), 1,
                                     class_names=NAMES, train_mode="finetune",
                                     architecture=export.architecture_of(model_cfg, head_cfg,
                                                                         SIZE))
    return path, tf.saved_model.load(path)


def _oracle_image(contents, size):
    """PIL decode to RGB, the central square of rint(0.875 * shorter side), TF's bicubic."""
    pixels = np.asarray(Image.open(io.BytesIO(contents)).convert("RGB"), np.float32) / 255.0
    h, w, _ = pixels.shape
    side = int(np.rint(0.875 * min(h, w)))
    top, left = (h - side + 1) // 2, (w - side + 1) // 2
    crop = pixels[top:top + side, left:left + side]
    resized = tf.image.resize(crop, [size, size], method="bicubic").numpy()
    return np.clip(resized, 0.0, 1.0)


def test_bytes_are_prepared_as_evaluation_prepares_them(files):
    paths, contents = files
    prepared = serving.preprocess_bytes(tf.constant(contents), SIZE).numpy()
    for image, raw in zip(prepared, contents[:3]):  # PNG: lossless, so PIL's pixels are TF's
        np.testing.assert_allclose(image, _oracle_image(raw, SIZE), atol=1e-6)
    # The evaluation pipeline over the folder of the same files, at 40 px and at 16 (no crop).
    for size in (SIZE, 16):
        root = os.path.dirname(os.path.dirname(paths[0]))
        source = datasets.load(DataConfig(dataset=f"folder:{root}"))
        cfg = DataConfig(dataset="x", eval_split="train", image_size=size, cache=False)
        batch = next(iter(pipeline.eval_input_fn(source, cfg, 8)(
            tf.distribute.InputContext())))
        order = [paths.index(p) for p in source.paths("train")[batch["index"].numpy()]]
        mine = serving.preprocess_bytes(tf.constant([contents[i] for i in order]), size)
        np.testing.assert_array_equal(mine.numpy(), batch["image"].numpy())


def test_bytes_signature_answers_as_the_pixel_signature(files, exported):
    _, contents = files
    _, loaded = exported
    out = {k: v.numpy() for k, v in loaded.signatures[serving.SERVE_BYTES](
        image_bytes=tf.constant(contents)).items()}
    assert sorted(out) == sorted([serving.EMBEDDING, serving.LOGITS, serving.PROBABILITIES,
                                  serving.CLASSES, serving.CLASS_NAMES])
    images = tf.constant(np.stack([_oracle_image(c, SIZE) for c in contents[:3]]))
    pixel = loaded.signatures["serving_default"](images=images)
    np.testing.assert_allclose(out["logits"][:3], pixel["logits_sup"], atol=ATOL)
    np.testing.assert_allclose(out["embedding"][:3], pixel["final_avg_pool"], atol=ATOL)
    logits = out["logits"].astype(np.float64)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(out["probabilities"], softmax / softmax.sum(-1, keepdims=True),
                               atol=1e-6)
    np.testing.assert_array_equal(out["classes"], logits.argmax(-1))
    assert [n.decode() for n in out["class_names"]] == [NAMES[k] for k in logits.argmax(-1)]
    assert len(set(out["classes"])) > 1  # the images are told apart: the test can fail


def test_without_head_or_names_or_size(files, tmp_path):
    """No head: the embedding only. No names: classes by number. No size: no signature."""
    _, contents = files
    model, model_cfg, head_cfg = models.tiny_network(SIZE, 0)
    arch = export.architecture_of(model_cfg, head_cfg, SIZE)
    path = export.export_saved_model(model, str(tmp_path / "a"), 1, architecture=arch)
    out = tf.saved_model.load(path).signatures[serving.SERVE_BYTES](
        image_bytes=tf.constant(contents[:2]))
    assert list(out) == [serving.EMBEDDING] and out[serving.EMBEDDING].shape == (2, 128)
    model, model_cfg, head_cfg = models.tiny_network(SIZE, 2)
    arch = export.architecture_of(model_cfg, head_cfg, SIZE)
    path = export.export_saved_model(model, str(tmp_path / "b"), 1, architecture=arch)
    out = tf.saved_model.load(path).signatures[serving.SERVE_BYTES](
        image_bytes=tf.constant(contents[:2]))
    assert [n.decode() for n in out["class_names"].numpy()] == [
        str(k) for k in out["classes"].numpy()]
    assert export.saved_architecture(path) == arch
    plain = export.export_saved_model(model, str(tmp_path / "c"), 1)
    assert serving.SERVE_BYTES not in tf.saved_model.load(plain).signatures
    assert export.saved_architecture(plain) is None
