"""The fused batch-norm path against Keras' own layer and a NumPy oracle."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf2.batch_norm import BatchNorm, use_global_bn


@pytest.mark.parametrize("center,scale", [(True, True), (False, True)])
def test_fused_training_step_equals_keras_and_numpy(center, scale):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(4, 5, 5, 3)).astype(np.float32)
    ours = BatchNorm(momentum=0.9, epsilon=1e-5, center=center, scale=scale)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, center=center,
                                          scale=scale)
    ours.build(x.shape), ref.build(x.shape)
    gamma = rng.uniform(0.5, 1.5, size=3).astype(np.float32)
    for layer in (ours, ref):
        layer.gamma.assign(gamma)
        if center:
            layer.beta.assign([0.1, -0.2, 0.3])
    y = ours(x, training=True).numpy()
    y_ref = ref(x, training=True).numpy()
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # biased, as Keras
    beta = np.array([0.1, -0.2, 0.3]) if center else 0.0
    expected = (x - mean) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-5)
    np.testing.assert_allclose(ours.moving_variance.numpy(), ref.moving_variance.numpy(),
                               rtol=1e-5)


def test_gradients_equal_keras():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 3, 3, 4)).astype(np.float32))
    ours, ref = BatchNorm(), keras.layers.BatchNormalization()
    ours.build(x.shape), ref.build(x.shape)
    grads = []
    for layer in (ours, ref):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) ** 3)
        grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_global_bn_only_with_several_replicas(two_replicas):
    assert not use_global_bn(True)
    assert not BatchNorm(global_bn=True).synchronized
    with two_replicas.scope():
        assert use_global_bn(True) and not use_global_bn(False)
        assert BatchNorm(global_bn=True).synchronized
