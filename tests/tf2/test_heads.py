"""Projection and supervised heads against hand counts and a NumPy forward pass."""
import numpy as np
import pytest
import tensorflow as tf

from tf2.heads import ProjectionHead, SupervisedHead


def _count(layer):
    return sum(int(np.prod(v.shape)) for v in layer.trainable_variables)


def test_three_layer_head_parameter_count_on_2048_wide_input():
    head = ProjectionHead("nonlinear", num_layers=3, out_dim=128)
    head.build((None, 2048))
    # Two 2048x2048 kernels with BN gamma+beta, then 2048x128 with BN gamma only (no centre).
    expected = 2 * (2048 * 2048 + 2 * 2048) + (2048 * 128 + 128)
    assert expected == 8_659_072
    assert _count(head) == expected


def _bn_numpy(x, bn):
    gamma = bn.gamma.numpy() if bn.scale else 1.0
    beta = bn.beta.numpy() if bn.center else 0.0
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    return (x - mean) / np.sqrt(var + bn.epsilon) * gamma + beta


def _randomise_bn(layer, rng):
    for bn_layer in [l.bn for l in layer.head_layers]:
        bn_layer.moving_mean.assign(rng.normal(size=bn_layer.moving_mean.shape))
        bn_layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=bn_layer.moving_variance.shape))
        bn_layer.gamma.assign(rng.uniform(0.5, 1.5, size=bn_layer.gamma.shape))
        if bn_layer.center:
            bn_layer.beta.assign(rng.normal(size=bn_layer.beta.shape))


@pytest.mark.parametrize("mode,layers", [("nonlinear", 3), ("nonlinear", 2), ("linear", 1),
                                         ("none", 0)])
def test_head_outputs_match_numpy(mode, layers):
    rng = np.random.default_rng(0)
    head = ProjectionHead(mode, num_layers=3 if mode == "nonlinear" and layers == 3 else 2,
                          out_dim=5)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    head(x)
    _randomise_bn(head, rng)
    hiddens = head(x, training=False)
    assert len(hiddens) == layers + 1
    expected = x
    np.testing.assert_allclose(hiddens[0].numpy(), x)
    for j, layer in enumerate(head.head_layers):
        expected = _bn_numpy(expected @ layer.dense.kernel.numpy(), layer.bn)
        last = j == len(head.head_layers) - 1
        if mode == "nonlinear" and not last:
            expected = np.maximum(expected, 0.0)
        assert layer.bn.center == (mode == "nonlinear" and not last)
        np.testing.assert_allclose(hiddens[j + 1].numpy(), expected, rtol=1e-5, atol=1e-5)
    # Middle widths equal the input width; the last is out_dim.
    widths = [h.shape[-1] for h in hiddens]
    assert widths == [8] + [8] * max(layers - 1, 0) + ([5] if layers else [])


def test_freeze_after_selector_leaves_only_feeding_layers_trainable():
    head = ProjectionHead("nonlinear", num_layers=3, out_dim=4)
    head.build((None, 6))
    head.freeze_after(1)
    assert [l.trainable for l in head.head_layers] == [True, False, False]
    head.freeze_after(0)
    assert [l.trainable for l in head.head_layers] == [False, False, False]
    head.freeze_after(-1)
    assert [l.trainable for l in head.head_layers] == [True, True, True]


def test_bad_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="proj_head_mode"):
        ProjectionHead("mlp")


def test_supervised_head_zero_init_and_linear_map():
    head = SupervisedHead(3, zero_init=True)
    x = tf.constant([[1.0, 2.0]])
    np.testing.assert_array_equal(head(x).numpy(), np.zeros((1, 3)))
    head.dense.kernel.assign([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    head.dense.bias.assign([0.1, 0.2, 0.3])
    np.testing.assert_allclose(head(x).numpy(), [[2.1, 4.2, -0.7]], rtol=1e-6)


def test_checkpoint_saves_and_restores_every_head_variable(tmp_path):
    head = ProjectionHead("nonlinear", num_layers=3, out_dim=4)
    head.build((None, 6))
    for i, v in enumerate(head.variables):
        v.assign(np.full(v.shape, i + 1.0, np.float32))
    path = tf.train.Checkpoint(head=head).write(str(tmp_path / "ckpt"))
    saved = [n for n, _ in tf.train.list_variables(path) if "VARIABLE_VALUE" in n]
    # 3 kernels, 3 gammas, 2 betas (no centre on the last layer), 3 x 2 moving statistics.
    assert len(saved) == len(head.variables) == 3 + 3 + 2 + 6
    fresh = ProjectionHead("nonlinear", num_layers=3, out_dim=4)
    fresh.build((None, 6))
    tf.train.Checkpoint(head=fresh).read(path).assert_consumed()
    for a, b in zip(head.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
