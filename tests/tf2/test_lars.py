"""LARS against a NumPy oracle of its formulas, by hand, and on two replicas; build_optimizer."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf2 import config as config_lib
from tf2 import distribute
from tf2 import lars
from tf2 import optimizers
from tf2 import schedules

MOMENTUM, WD, ETA = 0.9, 1e-2, 0.05


def numpy_lars(weights, grads_per_step, lrs, decay, adapt, momentum=MOMENTUM, wd=WD, eta=ETA,
               nesterov=False):
    """Independent float64 oracle: the LARS update written out with NumPy, variable by variable.

    Args:
      weights: list of initial arrays.
      grads_per_step: list (steps) of lists (variables) of gradient arrays.
      lrs: learning rate of each step.
      decay, adapt: per-variable booleans (weight decay, trust ratio).

    Returns:
      The list of arrays after all steps.
    """
    w = [np.array(x, np.float64) for x in weights]
    v = [np.zeros_like(x) for x in w]
    for grads, lr in zip(grads_per_step, lrs):
        for i, g in enumerate(grads):
            g = np.array(g, np.float64)
            if decay[i]:
                g = g + wd * w[i]
            trust = 1.0
            w_norm, g_norm = np.sqrt(np.sum(w[i] ** 2)), np.sqrt(np.sum(g ** 2))
            if adapt[i] and w_norm > 0 and g_norm > 0:
                trust = eta * w_norm / g_norm
            v[i] = momentum * v[i] + lr * trust * g
            w[i] = w[i] - (momentum * v[i] + lr * trust * g if nesterov else v[i])
    return w


def _setup():
    """Variables of every kind, their gradients for 3 steps, and the expected flags.

    Returns:
      (initial arrays, [step][var] gradients, decay flags, adaptation flags, head index).
    """
    rng = np.random.default_rng(0)
    init = [
        rng.normal(size=(3, 2)),   # kernel: decayed + trust ratio
        rng.normal(size=(2,)),     # bias / gamma: rank 1, excluded from both
        rng.normal(size=(2, 2)),   # supervised-head kernel: excluded by identity
        np.zeros((2, 2)),          # zero-norm kernel: trust = 1 on step 1
        rng.normal(size=(4,)),     # rank-1 variable with a zero gradient: untouched
        rng.normal(size=(1, 3, 2)),  # kernel with a zero gradient: g = wd * w only
    ]
    grads = []
    for step in range(3):
        g = [rng.normal(size=x.shape) for x in init]
        g[3] = np.zeros((2, 2)) if step == 0 else g[3]  # both norms 0 on step 1: trust = 1
        g[4] = np.zeros(4)
        g[5] = np.zeros((1, 3, 2))
        grads.append(g)
    decay = [True, False, False, True, False, True]
    return init, grads, decay, decay, 2


def _run_tf(init, grads, lrs, nesterov, head_index, exclude_adapt=None):
    """Applies the gradients with LARS in a tf.function; returns the final arrays and flags."""
    variables = [keras.Variable(x.astype(np.float32)) for x in init]
    exclude = lars.exclude_variables([variables[head_index]])
    opt = lars.LARS(lrs if callable(lrs) else float(lrs[0]), momentum=MOMENTUM, weight_decay=WD,
                    trust_coefficient=ETA, nesterov=nesterov, exclude_from_weight_decay=exclude,
                    exclude_from_layer_adaptation=exclude_adapt)
    opt.build(variables)

    @tf.function
    def step(gs):
        opt.apply(gs, variables)

    for g in grads:
        step([tf.constant(x, tf.float32) for x in g])
    flags = ([opt.uses_weight_decay(v) for v in variables],
             [opt.uses_layer_adaptation(v) for v in variables])
    return [v.numpy() for v in variables], flags


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_lars_matches_numpy_oracle(steps, nesterov):
    init, grads, decay, adapt, head = _setup()
    got, (got_decay, got_adapt) = _run_tf(init, grads[:steps], [0.7] * steps, nesterov, head)
    assert got_decay == decay and got_adapt == adapt
    want = numpy_lars(init, grads[:steps], [0.7] * steps, decay, adapt, nesterov=nesterov)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[4], init[4].astype(np.float32))  # zero grad, no decay
    if steps == 1:
        np.testing.assert_array_equal(got[3], np.zeros((2, 2), np.float32))  # w = 0 and g = 0


def test_lars_with_schedule_and_separate_adaptation_exclusion():
    # The head is kept out of weight decay only; it still gets a trust ratio. The rate follows
    # a warm-up schedule read from the optimizer's iteration counter.
    init, grads, decay, _, head = _setup()
    adapt = [True, False, True, True, False, True]
    sched = schedules.WarmUpAndCosineDecay(0.05, 16, warmup_steps=2, total_steps=4,
                                           scaling="sqrt")  # peak 0.2
    got, (got_decay, got_adapt) = _run_tf(init, grads, sched, False, head,
                                          exclude_adapt=lars.default_exclusion)
    assert got_decay == decay and got_adapt == adapt
    lrs = [0.0, 0.1, 0.2]  # 0.2 * step / 2 for steps 0, 1; step 2 starts the cosine at the peak
    want = numpy_lars(init, grads, lrs, decay, adapt)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nesterov, expected", [
    (False, [[2.82, 3.76]]), (True, [[2.658, 3.544]])])
def test_lars_one_step_by_hand(nesterov, expected):
    # w = [3, 4], g = [0.6, 0.8], wd = 0.1, eta = 0.03, lr = 2, momentum = 0.9:
    #   g' = g + 0.1 w = [0.9, 1.2];  ||w|| = 5, ||g'|| = 1.5
    #   trust = 0.03 * 5 / 1.5 = 0.1;  scaled lr = 2 * 0.1 = 0.2
    #   v = 0.9 * 0 + 0.2 * [0.9, 1.2] = [0.18, 0.24]
    #   classic: w = [3, 4] - v = [2.82, 3.76]
    #   nesterov: w = [3, 4] - (0.9 v + 0.2 g') = [3, 4] - [0.342, 0.456] = [2.658, 3.544]
    w = keras.Variable(np.array([[3.0, 4.0]], np.float32))  # rank 2, so decayed and adapted
    opt = lars.LARS(2.0, momentum=0.9, weight_decay=0.1, trust_coefficient=0.03,
                    nesterov=nesterov)
    opt.build([w])
    opt.apply([tf.constant([[0.6, 0.8]])], [w])
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)
    # The slot holds +v in both paths (the fused kernel's accumulator has the same sign), so
    # checkpoints written before the update moved into the fused kernel resume unchanged.
    np.testing.assert_allclose(opt.momentums[0].numpy(), [[0.18, 0.24]], rtol=1e-6)


def test_loss_scaled_lars_step_is_the_plain_lars_step():
    # --precision=mixed_float16 wraps LARS in Keras' LossScaleOptimizer; `minimize` multiplies
    # the loss by the scale and the wrapper divides the gradient back: the update must be LARS'
    # on the true gradient (NumPy oracle), with no trace of the scale. The trust ratio would
    # almost cancel a forgotten scale, so the second kernel has none: there a scale left in
    # the gradient would make the step 1024x too long.
    rng = np.random.default_rng(3)
    w0, u0 = (rng.normal(size=(3, 2)).astype(np.float32) for _ in range(2))
    x = rng.normal(size=(4, 3)).astype(np.float32)
    w, u = keras.Variable(w0), keras.Variable(u0)
    opt = keras.optimizers.LossScaleOptimizer(
        lars.LARS(0.5, momentum=MOMENTUM, weight_decay=WD, trust_coefficient=ETA,
                  exclude_from_layer_adaptation=lars.exclude_variables([u])),
        initial_scale=2.0 ** 10)
    opt.build([w, u])

    def loss_fn():
        return tf.reduce_sum(tf.square(tf.matmul(x, w))) + tf.reduce_sum(tf.matmul(x, u)), {}

    optimizers.minimize(opt, [w, u], loss_fn)
    x64 = x.astype(np.float64)
    grads = [2.0 * x64.T @ x64 @ w0.astype(np.float64),  # d/dw sum((x w)^2)
             np.repeat(x64.sum(axis=0)[:, None], 2, axis=1)]  # d/du sum(x u)
    want = numpy_lars([w0, u0], [grads], [0.5], [True, True], [True, False])
    for got, expected in zip([w.numpy(), u.numpy()], want):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert float(opt.dynamic_scale.numpy()) == 2.0 ** 10  # finite step: the scale is kept


def test_exclusions_by_rank_and_identity_not_name():
    dense = keras.layers.Dense(3, name="head")
    twin = keras.layers.Dense(3, name="head")  # same variable paths, different variables
    bn = keras.layers.BatchNormalization()
    for layer in (dense, twin, bn):
        layer.build((None, 4))
    assert dense.kernel.path == twin.kernel.path
    assert not lars.default_exclusion(dense.kernel)
    assert lars.default_exclusion(dense.bias)
    assert lars.default_exclusion(bn.gamma) and lars.default_exclusion(bn.beta)
    exclude = lars.exclude_variables([dense.kernel])
    assert exclude(dense.kernel) and exclude(dense.kernel.value) and exclude(twin.bias)
    assert not exclude(twin.kernel)


def test_get_config_round_trip():
    sched = schedules.WarmUpAndCosineDecay(0.1, 4096, 10, 100)
    opt = lars.LARS(sched, momentum=0.8, weight_decay=3e-4, trust_coefficient=0.002,
                    nesterov=True)
    config = opt.get_config()
    assert (config["momentum"], config["weight_decay"], config["trust_coefficient"],
            config["nesterov"]) == (0.8, 3e-4, 0.002, True)
    clone = lars.LARS.from_config(config)
    assert (clone.momentum, clone.lars_weight_decay, clone.trust_coefficient, clone.nesterov) \
        == (0.8, 3e-4, 0.002, True)
    assert clone.weight_decay is None  # Keras' decoupled decay stays off
    assert float(clone.learning_rate) == pytest.approx(0.0)  # iteration 0 of the warm-up
    np.testing.assert_allclose(float(clone._learning_rate(55)), 3.2, rtol=1e-6)


def test_two_replicas_equal_single_device(two_replicas):
    """Per-replica gradients scaled by 1/2 and summed by the optimizer = the mean gradient."""
    init, _, decay, _, head = _setup()
    rng = np.random.default_rng(1)
    # (steps, replicas) gradients of every variable.
    per_replica = [[[rng.normal(size=x.shape) for x in init] for _ in range(2)] for _ in range(3)]
    mean = [[(a + b) / 2 for a, b in zip(*step)] for step in per_replica]
    single, _ = _run_tf(init, mean, [0.7] * 3, False, head)

    with two_replicas.scope():
        variables = [keras.Variable(x.astype(np.float32)) for x in init]
        opt = lars.LARS(0.7, momentum=MOMENTUM, weight_decay=WD, trust_coefficient=ETA,
                        exclude_from_weight_decay=lars.exclude_variables([variables[head]]))
        opt.build(variables)

    @tf.function
    def step(stacked):
        def replica_fn():
            rid = distribute.replica_id()
            grads = [tf.gather(s, rid) / 2.0 for s in stacked]  # this replica's share
            opt.apply(grads, variables)
        two_replicas.run(replica_fn)

    for grads in per_replica:
        stacked = [tf.constant(np.stack([grads[0][i], grads[1][i]]), tf.float32)  # (2, *shape)
                   for i in range(len(init))]
        step(stacked)
    assert [opt.uses_weight_decay(v) for v in variables] == decay
    for v, want in zip(variables, single):
        copies = v.value.values  # the MirroredVariable's per-device components
        assert len(copies) == 2
        for copy in copies:
            np.testing.assert_allclose(copy.numpy(), want, rtol=1e-6, atol=1e-6)
    oracle = numpy_lars(init, mean, [0.7] * 3, decay, decay)
    for v, want in zip(variables, oracle):
        np.testing.assert_allclose(v.numpy(), want, rtol=1e-5, atol=1e-6)


# build_optimizer and weight_decay_loss (tf2/optimizers.py) live here with their LARS case.

def _one_step(opt, w0, g):
    w = keras.Variable(np.array(w0, np.float32))
    opt.build([w])
    opt.apply([tf.constant(g, tf.float32)], [w])
    return w.numpy()


def test_build_optimizer_lars_reads_config():
    cfg = config_lib.OptimizerConfig(optimizer="lars", momentum=0.9, weight_decay=0.1,
                                     trust_coefficient=0.03)
    opt = optimizers.build_optimizer(cfg, 2)  # an int rate is accepted
    assert isinstance(opt, lars.LARS)
    np.testing.assert_allclose(_one_step(opt, [[3.0, 4.0]], [[0.6, 0.8]]), [[2.82, 3.76]],
                               rtol=1e-6)  # the hand-computed step above
    head = keras.Variable(np.ones((2, 2), np.float32))
    other = keras.Variable(np.ones((2, 2), np.float32))
    opt = optimizers.build_optimizer(cfg, 0.1, lars.exclude_variables([head]))
    opt.build([head, other])
    assert not opt.uses_weight_decay(head) and opt.uses_weight_decay(other)


def test_build_optimizer_momentum_and_adam_by_hand():
    # SGD momentum, first step: v = -lr g; w = w + v = [1, 1] - 0.5 * [0.2, -0.4].
    sgd = optimizers.build_optimizer(config_lib.OptimizerConfig(optimizer="momentum"), 0.5)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9 and not sgd.nesterov
    np.testing.assert_allclose(_one_step(sgd, [1.0, 1.0], [0.2, -0.4]), [0.9, 1.2], rtol=1e-6)
    # Adam, first step: m_hat / sqrt(v_hat) = g / |g| = sign(g), so w = w - lr * sign(g).
    adam = optimizers.build_optimizer(config_lib.OptimizerConfig(optimizer="adam"), 0.01)
    assert isinstance(adam, keras.optimizers.Adam)
    np.testing.assert_allclose(_one_step(adam, [1.0, 1.0], [0.2, -0.4]), [0.99, 1.01],
                               rtol=1e-5)


def test_build_optimizer_rejects_unknown_name():
    with pytest.raises(ValueError, match="'sgdw'"):
        optimizers.build_optimizer(config_lib.OptimizerConfig(optimizer="sgdw"), 0.1)


def test_weight_decay_loss_by_hand():
    kernel = keras.Variable(np.array([[1.0, 2.0], [3.0, 4.0]], np.float32))  # sum sq 30
    bias = keras.Variable(np.array([1.0, 1.0], np.float32))  # sum sq 2
    # 0.1 * (30 / 2 + 2 / 2) = 1.6; without the rank-1 bias: 0.1 * 15 = 1.5.
    assert float(optimizers.weight_decay_loss([kernel, bias], 0.1)) == pytest.approx(1.6)
    assert float(optimizers.weight_decay_loss([kernel, bias], 0.1, lars.default_exclusion)) \
        == pytest.approx(1.5)
    assert float(optimizers.weight_decay_loss([bias], 0.1, lars.default_exclusion)) == 0.0


@pytest.mark.parametrize("train_mode, head_after, head_l2", [
    # plain momentum step on the head: w - lr g = [3 - 0.6, 4 - 0.8]; L2 loss 0.1 * 25 / 2
    ("pretrain", [[2.4, 3.2]], 1.25),
    ("finetune", [[2.4, 3.2]], 1.25),
    # distillation: the head is a LARS layer. g + wd w = [0.9, 1.2], trust ratio
    # 0.001 * 5 / 1.5 = 1/300, step lr * [0.9, 1.2] / 300; no separate L2 loss
    ("distill", [[2.997, 3.996]], 0.0),
])
def test_stage_optimizer_puts_the_student_head_under_lars_only_in_distillation(
        train_mode, head_after, head_l2):
    import types
    head = keras.Variable(np.array([[3.0, 4.0]], np.float32))
    other = keras.Variable(np.array([[3.0, 4.0]], np.float32))
    model = types.SimpleNamespace(supervised_head=types.SimpleNamespace(trainable_variables=[head]),
                                  trainable_variables=[head, other])
    cfg = config_lib.RunConfig(
        optimizer=config_lib.OptimizerConfig(learning_rate=1.0, learning_rate_scaling="linear",
                                             warmup_epochs=0, weight_decay=0.1),
        train=config_lib.TrainConfig(train_batch_size=256, train_steps=10), data=None,
        train_mode=train_mode)
    assert float(optimizers.loss_weight_decay_fn(cfg, model)()) == pytest.approx(head_l2)
    opt = optimizers.build_stage_optimizer(cfg, model)
    grad = tf.constant([[0.6, 0.8]])
    opt.apply([grad, grad], [head, other])  # step 0: lr = 1.0 (no warm-up, cosine at 0)
    np.testing.assert_allclose(head.numpy(), head_after, rtol=1e-6)
    np.testing.assert_allclose(other.numpy(), [[2.997, 3.996]], rtol=1e-6)  # always LARS
