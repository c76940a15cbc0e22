"""ONNX and LiteRT files run by their own runtimes answer as the SavedModel does.

One tiny network (CIFAR stem, 16 px, 3 classes) is exported once per module as a SavedModel and
converted from the same in-process model; the oracle is the reloaded SavedModel's `serve`
signature on the same batch. Tolerance (float32 files): logits and embeddings within 1e-4
absolute + 1e-4 relative (measured: ~1e-8 for ONNX, ~1e-7 for LiteRT with XNNPACK), top-1
identical on every image. The ONNX test skips only when tf2onnx or onnxruntime is not
installed (requirements-export.txt); LiteRT's converter is TensorFlow's own, and its runtime is
ai_edge_litert's interpreter, or TensorFlow's tf.lite one without it.
"""
import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

from checkpoints import export, formats, serving
from tests import models

SIZE, NAMES, TOL = 16, ("a", "b", "c"), 1e-4


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """(in-process model, reloaded SavedModel, images, its serve outputs)."""
    model, _, _ = models.tiny_network(SIZE, len(NAMES), seed=5)
    path = export.export_saved_model(model, str(tmp_path_factory.mktemp("sm")), 1)
    images = np.random.default_rng(1).uniform(0, 1, (12, SIZE, SIZE, 3)).astype(np.float32)
    images *= np.linspace(0.2, 1.0, 12, dtype=np.float32)[:, None, None, None]  # spread them
    loaded = tf.saved_model.load(path)
    expected = {k: v.numpy() for k, v in loaded.signatures["serve"](images=images).items()}
    assert len(set(expected["logits_sup"].argmax(-1))) > 1  # the top-1 check can fail
    return model, images, expected


def _check(outputs, expected):
    np.testing.assert_allclose(outputs[serving.LOGITS], expected["logits_sup"], rtol=TOL,
                               atol=TOL)
    np.testing.assert_allclose(outputs[serving.EMBEDDING], expected["final_avg_pool"],
                               rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(outputs[serving.CLASSES], expected["logits_sup"].argmax(-1))
    logits = expected["logits_sup"].astype(np.float64)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(outputs[serving.PROBABILITIES],
                               softmax / softmax.sum(-1, keepdims=True), atol=TOL)


@pytest.mark.skipif(not (importlib.util.find_spec("tf2onnx")
                         and importlib.util.find_spec("onnxruntime"))
                    and os.environ.get("SIMCLR_TESTS_REQUIRE_EXPORT") != "1",
                    reason="tf2onnx / onnxruntime not installed (requirements-export.txt); "
                           ".ci/run installs them and sets SIMCLR_TESTS_REQUIRE_EXPORT=1, so "
                           "there this test runs (and fails without them)")
def test_onnx_file_on_onnxruntime(network, tmp_path):
    import onnxruntime
    model, images, expected = network
    path = formats.write(formats.inference_function(model, SIZE), formats.ONNX, str(tmp_path),
                         NAMES)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [formats.INPUT]
    names = [o.name for o in session.get_outputs()]
    assert sorted(names) == sorted([serving.EMBEDDING, serving.LOGITS, serving.PROBABILITIES,
                                    serving.CLASSES])
    _check(dict(zip(names, session.run(names, {formats.INPUT: images}))), expected)
    assert (tmp_path / formats.CLASS_NAMES_FILE).read_text() == "a\nb\nc\n"


def test_litert_file_on_the_litert_interpreter(network, tmp_path):
    model, images, expected = network
    path = formats.write(formats.inference_function(model, SIZE), formats.LITERT, str(tmp_path),
                         NAMES)
    runner = formats.litert_interpreter(path).get_signature_runner()
    outputs = runner(**{formats.INPUT: images})
    assert sorted(outputs) == sorted([serving.EMBEDDING, serving.LOGITS, serving.PROBABILITIES,
                                      serving.CLASSES])
    _check(outputs, expected)
    # Another batch size on the same file (the batch dimension is free).
    _check(runner(**{formats.INPUT: images[:5]}), {k: v[:5] for k, v in expected.items()})


def test_other_embedding_layer_and_unknown_format(network, tmp_path):
    model, images, expected = network
    function = formats.inference_function(model, SIZE, "proj_head_output")
    path = formats.write(function, formats.LITERT, str(tmp_path))
    out = formats.litert_interpreter(path).get_signature_runner()(**{formats.INPUT: images})
    np.testing.assert_allclose(out[serving.EMBEDDING], expected["proj_head_output"], rtol=TOL,
                               atol=TOL)
    with pytest.raises(ValueError, match="unknown export format 'coreml'"):
        formats.write(function, "coreml", str(tmp_path))
