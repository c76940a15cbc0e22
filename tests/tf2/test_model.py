"""SimCLRModel: view stacking, named outputs, and which variables each objective reaches."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from data.config import DataConfig
from tf2 import config as cfg_lib
from tf2 import losses
from stages import finetune, pretrain
from tf2 import model as model_lib


def _model(selector=0, stop_gradient=False, frozen=-1):
    return model_lib.build_model(
        cfg_lib.ModelConfig.tiny(width_multiplier=0.25, frozen_blocks=frozen),
        cfg_lib.HeadConfig.tiny(ft_proj_selector=selector),
        stop_gradient_supervised=stop_gradient, image_size=16)


def test_views_on_channels_equal_views_on_batch():
    model = _model()
    images = tf.random.uniform((3, 16, 16, 6), seed=1)
    stacked = model(images, training=False)
    on_batch = model(tf.concat([images[..., :3], images[..., 3:]], 0), training=False)
    assert set(stacked) == set(model_lib.OUTPUT_NAMES) | {model_lib.SUPERVISED_HEAD_INPUT}
    for key in model_lib.OUTPUT_NAMES:
        assert stacked[key].dtype == tf.float32
        np.testing.assert_allclose(stacked[key].numpy(), on_batch[key].numpy(), atol=1e-6)
    # Row v*B + b is view v of image b.
    single = model(images[1:2, ..., 3:], training=False)[model_lib.PROJ_HEAD_OUTPUT]
    np.testing.assert_allclose(stacked[model_lib.PROJ_HEAD_OUTPUT][4].numpy(),
                               single[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("selector,width", [(0, 128), (1, 128), (-1, 16)])
def test_supervised_head_reads_the_selected_head_layer(selector, width):
    model = _model(selector)
    out = model(tf.random.uniform((2, 16, 16, 3)), training=False)
    hiddens = model.projection_head(out[model_lib.PROJ_HEAD_INPUT], training=False)
    np.testing.assert_allclose(out[model_lib.SUPERVISED_HEAD_INPUT].numpy(),
                               hiddens[selector].numpy(), atol=1e-6)
    assert out[model_lib.SUPERVISED_HEAD_INPUT].shape[-1] == width


def _gradients(model, loss_fn, images):
    with tf.GradientTape() as tape:
        loss = loss_fn(model(images, training=True))
    return dict(zip([v.path for v in model.trainable_variables],
                    tape.gradient(loss, model.trainable_variables)))


def test_pretrain_loss_reaches_every_trainable_variable_and_labels_never_the_encoder():
    model = _model(stop_gradient=True)
    images = tf.random.uniform((4, 16, 16, 6), seed=2)
    labels = tf.one_hot([0, 1, 2, 3] * 2, 10)

    def total(out):
        con, _, _ = losses.nt_xent(out[model_lib.PROJ_HEAD_OUTPUT], 0.5)
        return con + losses.supervised_loss(labels, out[model_lib.LOGITS_SUP])

    grads = _gradients(model, total, images)
    missing = [p for p, g in grads.items() if g is None]
    assert not missing, missing
    sup_only = _gradients(model, lambda out: losses.supervised_loss(
        labels, out[model_lib.LOGITS_SUP]), images)
    for path, grad in sup_only.items():
        assert (grad is not None) == ("head_supervised" in path), path


def _tiny_run_config(**model_overrides):
    return cfg_lib.RunConfig.tiny(
        model=cfg_lib.ModelConfig.tiny(width_multiplier=0.25, **model_overrides),
        head=cfg_lib.HeadConfig.tiny(ft_proj_selector=1),
        optimizer=cfg_lib.OptimizerConfig(warmup_epochs=0),
        train=cfg_lib.TrainConfig(train_batch_size=4, train_steps=3),
        data=DataConfig(image_size=16), train_mode="finetune")


def test_finetune_trains_only_what_feeds_the_supervised_head():
    cfg = _tiny_run_config(frozen_blocks=2)
    model, _ = finetune.build(cfg, 10)
    trainable = {v.path for v in model.trainable_variables}
    # Frozen stem and block groups 1-2, and head layers above nl_0, are out of the optimizer.
    assert not any("stem" in p or "block_group1" in p or "block_group2" in p for p in trainable)
    assert any("block_group3" in p for p in trainable)
    assert any("nl_0" in p for p in trainable)
    assert not any("nl_1" in p or "nl_2" in p for p in trainable)
    labels = tf.one_hot([1, 2], 10)
    grads = _gradients(model, lambda out: losses.supervised_loss(
        labels, out[model_lib.LOGITS_SUP]), tf.random.uniform((2, 16, 16, 3)))
    assert all(g is not None for g in grads.values())


def test_pretrain_build_has_stop_gradient_linear_head():
    cfg = dataclasses.replace(_tiny_run_config(), train_mode="pretrain")
    model, optimizer = pretrain.build(cfg, 10)
    assert model.stop_gradient_supervised and model.supervised_head is not None
    assert len(optimizer.variables) > 1  # built on the model's variables, slots created
