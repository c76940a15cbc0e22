"""SavedModel export: reloaded outputs equal the in-process model's, through every loader.

One ResNet-18 (CIFAR stem, 32 px) with randomised batch-norm parameters and statistics is
exported once per module; the oracle is the in-process Keras model's output for the same images.
The atomicity and error-message tests use a one-layer stand-in model, which saves in a blink.
"""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from checkpoints import export
from tests import models
from tf2 import model as model_lib
from tf2.config import HeadConfig, ModelConfig

STEP = 7
ATOL = 1e-5
# Training mode: graph and eager batch norms sum the batch statistics in different orders, which
# moves block outputs of size ~1 by up to ~1.5e-5.
TRAIN_TOL = 1e-4
# Counted by hand: stem conv + BN (3), 8 basic blocks x 2 conv+BN (48), 4 projection shortcuts
# (12), projection head 3 + 3 + 2 (no BN centre on the last layer), supervised kernel + bias.
NUM_TRAINABLE = 3 + 48 + 12 + 8 + 2
NUM_VARIABLES = NUM_TRAINABLE + 2 * 24  # moving mean and variance of each of the 24 BNs


def _images(n, seed):
    return tf.constant(np.random.default_rng(seed).uniform(0, 1, (n, 32, 32, 3)), tf.float32)


def _assert_outputs_close(actual, expected, keys=None, tol=ATOL):
    keys = sorted(expected) if keys is None else keys
    for key in keys:
        np.testing.assert_allclose(np.asarray(actual[key]), np.asarray(expected[key]),
                                   rtol=tol, atol=tol, err_msg=key)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exports one model; returns its path, images and the in-process outputs (both modes)."""
    tf.random.set_seed(0)
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(ModelConfig.tiny(), HeadConfig.tiny(), image_size=32)
    models.randomise_batch_norms(model, seed=0)
    images = _images(4, seed=1)
    keys = sorted(set(model_lib.OUTPUT_NAMES))  # the exported outputs
    outputs = model(images, training=False)
    infer = {k: outputs[k].numpy() for k in keys}
    path = export.export_saved_model(model, str(tmp_path_factory.mktemp("export")), STEP)
    # Training mode moves the in-process moving averages, so it runs after the export.
    outputs = model(images, training=True)
    train = {k: outputs[k].numpy() for k in keys}
    return dict(path=path, images=images, infer=infer, train=train, keys=keys,
                paths=[v.path for v in model.variables])


def test_export_layout(exported):
    path = exported["path"]
    assert os.path.basename(path) == str(STEP)
    assert os.listdir(os.path.dirname(path)) == [str(STEP)]  # no temporary directory left
    assert export.is_saved_model_dir(path)
    assert not export.is_saved_model_dir(os.path.dirname(path))
    shapes = export.saved_variable_shapes(path)
    assert list(shapes) == exported["paths"]
    assert shapes["simclr/head_supervised/dense/kernel"] == (512, 10)
    assert shapes["simclr/projection_head/nl_2/dense/kernel"] == (512, 16)


def test_hub_load_call_matches_model_in_both_modes(exported):
    loaded = hub.load(exported["path"])
    assert (len(loaded.variables), len(loaded.trainable_variables)) == (NUM_VARIABLES,
                                                                        NUM_TRAINABLE)
    assert list(loaded.regularization_losses) == []
    images, infer, train = exported["images"], exported["infer"], exported["train"]
    for outputs in (loaded(images, trainable=False), loaded(images, training=False),
                    loaded.signatures["serving_default"](images=images)):
        assert sorted(outputs) == exported["keys"]
        _assert_outputs_close(outputs, infer)
    # Inference and training mode really differ here, so the comparison below means something.
    assert np.abs(infer[model_lib.LOGITS_SUP] - train[model_lib.LOGITS_SUP]).max() > 1e-3
    _assert_outputs_close(loaded(images, trainable=True), train, tol=TRAIN_TOL)
    _assert_outputs_close(loaded(images, training=True), train, tol=TRAIN_TOL)


def test_keras3_tfsm_layer_serve_and_train_endpoints(exported):
    layer = keras.layers.TFSMLayer(exported["path"], call_endpoint=export.SERVE,
                                   call_training_endpoint=export.TRAIN)
    assert len(layer.trainable_weights) == NUM_TRAINABLE
    images = exported["images"]
    _assert_outputs_close(layer(images), exported["infer"])
    _assert_outputs_close(layer(images, training=True), exported["train"], tol=TRAIN_TOL)


def _toy_brightness_set(n=8, size=16, seed=3):
    """Dark images are class 0, bright ones class 1 (16 px: a quarter of the compute of 32)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    low = np.where(labels == 1, 0.6, 0.0)[:, None, None, None]
    images = low + rng.uniform(0.0, 0.4, (n, size, size, 3))
    return tf.constant(images, tf.float32), tf.constant(labels, tf.int32)


def test_hub_keras_layer_fine_tunes(exported):
    layer = hub.KerasLayer(exported["path"], trainable=True, output_key=model_lib.LOGITS_SUP)
    classifier = tf_keras.Sequential(
        [tf_keras.layers.InputLayer(input_shape=(None, None, 3)), layer])
    assert len(classifier.trainable_variables) == NUM_TRAINABLE
    assert len(classifier.variables) == NUM_VARIABLES
    # Before any step, the layer in inference mode is the exported model.
    logits = exported["infer"][model_lib.LOGITS_SUP]
    np.testing.assert_allclose(classifier(exported["images"], training=False), logits, atol=ATOL)

    images, labels = _toy_brightness_set()
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = tf_keras.optimizers.SGD(learning_rate=0.01)
    by_path = dict(zip(exported["paths"], layer.resolved_object.variables))
    # The stem's kernel and its BN's moving mean (the first of each kind in the model).
    watched = [next(p for p in exported["paths"] if p.endswith(suffix))
               for suffix in ("/kernel", "/moving_mean")]
    before = [by_path[p].numpy() for p in watched]
    losses = []
    for _ in range(4):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, classifier(images, training=True))
        grads = tape.gradient(loss, classifier.trainable_variables)
        assert all(g is not None for g in grads)  # every exported trainable weight is reached
        optimizer.apply_gradients(zip(grads, classifier.trainable_variables))
        losses.append(float(loss))
    assert np.all(np.diff(losses) < 0) and losses[-1] < 0.25 * losses[0], losses
    for p, value in zip(watched, before):  # kernel trained; BN statistics moved (training mode)
        assert np.abs(by_path[p].numpy() - value).max() > 1e-6, p


def test_restore_into_fresh_model_gives_identical_outputs(exported):
    fresh = model_lib.build_model(ModelConfig.tiny(), HeadConfig.tiny(), image_size=32)
    logits = fresh(exported["images"], training=False)[model_lib.LOGITS_SUP].numpy()
    assert np.abs(logits - exported["infer"][model_lib.LOGITS_SUP]).max() > 1e-3
    assert export.restore_from_saved_model(fresh, exported["path"]) == NUM_VARIABLES
    outputs = fresh(exported["images"], training=False)
    for key in exported["keys"]:
        np.testing.assert_array_equal(outputs[key].numpy(), exported["infer"][key], err_msg=key)


def test_restore_without_supervised_head_is_strict_unless_partial(exported):
    headless = model_lib.build_model(ModelConfig.tiny(), HeadConfig.tiny(),
                                     with_supervised_head=False, image_size=32)
    with pytest.raises(ValueError, match="not in the model: simclr/head_supervised/dense/kernel"):
        export.restore_from_saved_model(headless, exported["path"])
    copied = export.restore_from_saved_model(headless, exported["path"], expect_partial=True)
    assert copied == NUM_VARIABLES - 2
    keys = [k for k in exported["keys"] if k != model_lib.LOGITS_SUP]
    _assert_outputs_close(headless(exported["images"], training=False), exported["infer"], keys)


class _StandIn(keras.Model):
    """Mean colour -> one dense layer: a SimCLRModel-shaped output dict, fast to save."""

    def __init__(self, units=4):
        super().__init__(name="simclr")
        self.dense = keras.layers.Dense(units, name="dense")

    def call(self, images, training=False):
        pooled = tf.reduce_mean(images, axis=[1, 2])  # (b, 3)
        return {model_lib.LOGITS_SUP: self.dense(pooled)}


def _stand_in(units=4, bias=0.0):
    model = _StandIn(units)
    model(tf.zeros((1, 8, 8, 3)))
    model.dense.bias.assign(np.full(units, bias, np.float32))
    return model


def test_keep_max_and_replacing_a_step(tmp_path):
    base = str(tmp_path)
    for step in (10, 20, 30):
        export.export_saved_model(_stand_in(), base, step, keep_max=2)
    assert sorted(os.listdir(base)) == ["20", "30"]
    assert export.exported_steps(base) == [20, 30]
    export.export_saved_model(_stand_in(bias=5.0), base, 40, keep_max=1)
    newer = _stand_in(bias=9.0)
    export.export_saved_model(newer, base, 40, keep_max=1)  # the same step again: replaced
    assert os.listdir(base) == ["40"]
    images = tf.ones((2, 8, 8, 3))
    reloaded = export.load_saved_model(os.path.join(base, "40"))(images)[model_lib.LOGITS_SUP]
    np.testing.assert_allclose(reloaded, newer(images)[model_lib.LOGITS_SUP], atol=ATOL)


def test_failed_export_leaves_no_step_directory(tmp_path, monkeypatch):
    base = str(tmp_path)
    export.export_saved_model(_stand_in(), base, 1)

    def half_write_then_fail(obj, export_dir, **kwargs):
        tf.io.gfile.makedirs(export_dir)
        with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
            f.write(b"truncated")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", half_write_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(_stand_in(), base, 2)
    assert os.listdir(base) == ["1"]  # the old export survives, no step 2, no temporary dir


def test_restore_shape_mismatch_names_the_variable(tmp_path):
    path = export.export_saved_model(_stand_in(units=4), str(tmp_path), 1)
    with pytest.raises(ValueError) as error:
        export.restore_from_saved_model(_stand_in(units=5), path)
    message = str(error.value)
    assert "shape of simclr/dense/kernel: model (3, 5), saved (3, 4)" in message
    assert "shape of simclr/dense/bias: model (5,), saved (4,)" in message
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        export.load_saved_model(str(tmp_path))


def test_export_under_mirrored_strategy(tmp_path, two_replicas):
    with two_replicas.scope():
        model = _stand_in(bias=1.0)
        path = export.export_saved_model(model, str(tmp_path), 3, weight_decay=1e-3)
    loaded = export.load_saved_model(path)  # kept: its functions need its variables
    (regularization,) = loaded.regularization_losses
    kernel = model.dense.kernel.numpy().astype(np.float64)
    assert float(regularization()) == pytest.approx(1e-3 * 0.5 * np.sum(kernel ** 2), rel=1e-6)
    images = tf.constant(np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 3)), tf.float32)
    reloaded = export.load_saved_model(path)(images)[model_lib.LOGITS_SUP]
    np.testing.assert_allclose(reloaded, model(images)[model_lib.LOGITS_SUP], atol=ATOL)
    fresh = _stand_in()
    assert export.restore_from_saved_model(fresh, path) == 2
    np.testing.assert_array_equal(fresh.dense.bias.numpy(), np.ones(4, np.float32))


def test_program_warm_start_accepts_our_saved_model(exported):
    """--checkpoint / --teacher = one of our SavedModels: every weight arrives (teacher), and a
    student with another number of classes still gets the encoder and projection head."""
    from checkpoints import warm_start
    teacher = model_lib.build_model(ModelConfig.tiny(), HeadConfig.tiny(), image_size=32)
    warm_start.warm_start(teacher, exported["path"], include_supervised_head=True)
    outputs = teacher(exported["images"], training=False)
    for key in exported["keys"]:
        np.testing.assert_array_equal(outputs[key].numpy(), exported["infer"][key], err_msg=key)
    student = model_lib.build_model(ModelConfig.tiny(), HeadConfig.tiny(), image_size=32,
                                    with_supervised_head=False)
    warm_start.warm_start(student, exported["path"])
    out = student(exported["images"], training=False)
    np.testing.assert_array_equal(out[model_lib.PROJ_HEAD_OUTPUT].numpy(),
                                  exported["infer"][model_lib.PROJ_HEAD_OUTPUT])


class _TwoKernels(keras.Model):
    """Mean colour -> a trainable dense layer -> a frozen one: two kernels, one decayed."""

    def __init__(self):
        super().__init__(name="simclr")
        self.dense = keras.layers.Dense(4, name="dense")
        self.frozen = keras.layers.Dense(3, name="frozen", trainable=False)

    def call(self, images, training=False):
        pooled = tf.reduce_mean(images, axis=[1, 2])  # (b, 3)
        return {model_lib.LOGITS_SUP: self.frozen(self.dense(pooled))}


def test_regularization_losses_are_the_runs_l2_term_for_tf_hub_fine_tuning(tmp_path):
    """hub.KerasLayer(trainable=True) adds weight_decay * ||trainable kernel||^2 / 2 (NumPy),
    which follows the variables as they train; outputs do not change (float32, identical)."""
    model = _TwoKernels()
    images = tf.constant(np.random.default_rng(4).uniform(0, 1, (2, 8, 8, 3)), tf.float32)
    model(images)
    decayed = export.export_saved_model(model, str(tmp_path / "wd"), 1, weight_decay=1e-3,
                                        class_names=("dark", "bright"), train_mode="finetune")
    plain = export.export_saved_model(model, str(tmp_path / "none"), 1)
    layer = hub.KerasLayer(decayed, trainable=True, output_key=model_lib.LOGITS_SUP)
    classifier = tf_keras.Sequential([tf_keras.layers.InputLayer(input_shape=(8, 8, 3)), layer])
    kernel = dict(zip([v.path for v in model.variables], layer.resolved_object.variables))[
        "simclr/dense/kernel"]
    for value in (None, np.full((3, 4), 0.5, np.float32)):  # as exported, then after a "step"
        if value is not None:
            kernel.assign(value)
        expected = 1e-3 * 0.5 * np.sum(kernel.numpy().astype(np.float64) ** 2)
        assert len(classifier.losses) == 1
        assert float(classifier.losses[0]) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1e-3 * 0.5 * 12 * 0.25)
    frozen = tf_keras.Sequential([tf_keras.layers.InputLayer(input_shape=(8, 8, 3)),
                                  hub.KerasLayer(decayed, trainable=False)])
    assert sum(float(loss) for loss in frozen.losses) == 0.0  # counted only when fine-tuning
    assert list(export.load_saved_model(plain).regularization_losses) == []
    ours = model(images)[model_lib.LOGITS_SUP].numpy()
    for path in (decayed, plain):
        out = export.load_saved_model(path)(images)[model_lib.LOGITS_SUP]
        assert out.dtype == tf.float32
        np.testing.assert_array_equal(out.numpy(), ours)


def test_class_names_and_stage_travel_with_the_saved_model(tmp_path):
    path = export.export_saved_model(_stand_in(), str(tmp_path), 1, train_mode="finetune",
                                     class_names=("T-shirt/top", "Trouser", "Ünïcode"))
    assert export.saved_record(path) == {"class_names": ("T-shirt/top", "Trouser", "Ünïcode"),
                                         "train_mode": "finetune"}
    with open(os.path.join(path, export.CLASS_NAMES_FILE), encoding="utf-8") as f:
        assert f.read() == "T-shirt/top\nTrouser\nÜnïcode\n"
    loaded = hub.load(path)
    assert [n.decode() for n in loaded.class_names.numpy()] == ["T-shirt/top", "Trouser",
                                                                 "Ünïcode"]
    unlabelled = export.export_saved_model(_stand_in(), str(tmp_path / "u"), 1)
    assert export.saved_record(unlabelled) == {"class_names": (), "train_mode": ""}
