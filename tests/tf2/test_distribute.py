"""tf2/distribute.py and the stage steps under MirroredStrategy.

Each stage's own step function (pretrain with and without the memory queue, finetune, distill)
is run on the same global batches by one device and by two replicas on the two logical CPUs,
from identical weights. With global batch norm the two runs must agree on the loss, on the
gradient (one step of plain SGD with learning rate 1 moves every weight by minus its gradient),
on the batch-norm moving statistics, and on the weights after three steps of the stage's own
optimizer (LARS). A wrong loss scale, local batch statistics or replica-local negatives would
each make them differ.
"""
import numpy as np
import pytest
import tensorflow as tf

from data.config import DataConfig
from tf2 import distill, finetune, pretrain
from tf2.config import (HeadConfig, LossConfig, MemoryConfig, ModelConfig, OptimizerConfig,
                        RunConfig, TrainConfig)

GLOBAL_BATCH = 8
STEPS = 3
SIZE = 16
CLASSES = 10


def _config(train_mode, memory_size=0, distill_alpha=1.0):
    """Tiny settings whose updates are large enough for a wrong gradient to show.

    Linear scaling makes the LARS rate 32 * 8 / 256 = 1; a trust coefficient of 0.02 moves
    the kernels by ~2% per step (the paper's 0.001 would move them by too little to tell).
    """
    return RunConfig(
        model=ModelConfig.tiny(global_bn=True),
        head=HeadConfig.tiny(ft_proj_selector=1, num_classes=CLASSES),
        loss=LossConfig(temperature=0.5, distill_temperature=2.0, distill_alpha=distill_alpha),
        memory=MemoryConfig(size=memory_size, ema_decay=0.5),
        optimizer=OptimizerConfig(optimizer="lars", learning_rate=0.32,
                                  learning_rate_scaling="linear", warmup_epochs=0,
                                  weight_decay=1e-3, momentum=0.9, trust_coefficient=0.1),
        train=TrainConfig(train_batch_size=GLOBAL_BATCH, train_steps=100,
                          num_train_examples=64, steps_per_loop=1),
        data=DataConfig.tiny(image_size=SIZE), train_mode=train_mode)


def _batches(train_mode):
    """STEPS global batches, flattened: (STEPS * GLOBAL_BATCH, ...) per key."""
    rs = np.random.RandomState(7)
    n = STEPS * GLOBAL_BATCH
    channels = 6 if train_mode == "pretrain" else 3
    # Noise plus a colour per image: pixel noise alone would average out in the encoder's
    # global pooling, leaving features nearly equal across images.
    colour = rs.uniform(size=(n, 1, 1, channels))
    image = 0.5 * colour + 0.5 * rs.uniform(size=(n, SIZE, SIZE, channels))
    batch = {"image": image.astype(np.float32),
             "label": rs.randint(0, CLASSES, size=n).astype(np.int32)}
    if train_mode == "distill":
        batch["label_mask"] = (rs.uniform(size=n) < 0.5).astype(np.float32)
    return batch


class _Teacher:
    """A fixed random linear map images -> logits (a frozen teacher of known output)."""

    def __init__(self):
        rs = np.random.RandomState(11)
        self.kernel = tf.constant(rs.normal(size=(SIZE * SIZE * 3, CLASSES)), tf.float32)

    def __call__(self, images):
        flat = tf.reshape(images, (-1, SIZE * SIZE * 3))  # (b, h*w*3)
        return tf.matmul(flat, self.kernel) * 0.05


def _build(train_mode, cfg, strategy, weights):
    """The stage's model, step_fn and extra state, built in `strategy.scope()`.

    Args:
      weights: initial values for model.get_weights() (None keeps the random ones).

    Returns:
      (model, step_fn, {name: variables to compare besides the model's})
    """
    stage = {"pretrain": pretrain, "finetune": finetune, "distill": distill}[train_mode]
    with strategy.scope():
        model, optimizer = stage.build(cfg, CLASSES)
        if weights is not None:
            model.set_weights(weights)
        extra = {}
        if train_mode == "pretrain":
            # After set_weights: the EMA copy starts from the weights both runs share.
            ema, shadow, queue = pretrain._build_memory(cfg, model, CLASSES)
            step_fn = pretrain.make_step_fn(cfg, model, optimizer, CLASSES, ema, shadow, queue)
            if queue is not None:
                extra = {"ema": ema.variables,
                         "queue": [queue.queue, queue.pointer, queue.count]}
        elif train_mode == "finetune":
            step_fn = finetune.make_step_fn(cfg, model, optimizer, CLASSES)
        else:
            step_fn = distill.make_step_fn(cfg, model, optimizer, _Teacher(), CLASSES)
    return model, step_fn, extra


def _local_values(strategy, variables):
    """Every local copy of every variable: list (per variable) of lists (per replica)."""
    out = []
    for v in variables:
        v = getattr(v, "_value", v)  # the tf.Variable behind a Keras 3 variable
        out.append([np.array(c) for c in strategy.experimental_local_results(v)])
    return out


def _run(train_mode, cfg, strategy, weights, compiled):
    """Trains STEPS steps from `weights`.

    Args:
      compiled: run the step in a tf.function, as `tf2.loop` does; False runs it eagerly
        (the one-device reference: no tracing, and an execution path of its own).

    Returns:
      weights: the initial model.get_weights().
      metrics: per step, {name: mean over replicas}.
      states: {part: _local_values(...)} before step 1, after step 1 and after step STEPS.
    """
    model, step_fn, extra = _build(train_mode, cfg, strategy, weights)
    initial = model.get_weights()
    dataset = tf.data.Dataset.from_tensor_slices(_batches(train_mode)).batch(GLOBAL_BATCH)
    # A global batch of 8 reaches two replicas as rows 0-3 and rows 4-7.
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    def one_step(iterator):
        out = strategy.run(step_fn, args=(next(iterator),))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in out.items()}

    def state():
        return {"trainable": _local_values(strategy, model.trainable_variables),
                "non_trainable": _local_values(strategy, model.non_trainable_variables),
                **{k: _local_values(strategy, v) for k, v in extra.items()}}

    one_step = tf.function(one_step) if compiled else one_step
    metrics, states = [], [state()]
    for step in range(1, STEPS + 1):
        metrics.append({k: float(v) for k, v in one_step(iterator).items()})
        if step in (1, STEPS):
            states.append(state())
    return initial, metrics, states


@pytest.fixture
def no_graph_rewrites():
    """Grappler off during these tests: it costs seconds per function, and the eager
    reference runs without it anyway."""
    saved = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    yield
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": saved})


def _assert_same_moves(before, one, two, tag):
    """The 2-replica move of every variable equals the 1-device move, relative to its size."""
    for (start,), (ref,), copies in zip(before, one, two):
        move = ref - start
        scale = np.abs(move).max()
        for copy in copies:
            np.testing.assert_allclose(copy - start, move, rtol=1e-4, atol=1e-4 * scale,
                                       err_msg=tag)


def _assert_same(one, two, tag, rtol=1e-5, atol=1e-6):
    """Every replica copy in `two` equals the single copy in `one`."""
    assert len(one) == len(two) > 0, tag
    for (ref,), copies in zip(one, two):
        assert len(copies) == 2, tag
        for copy in copies:
            np.testing.assert_allclose(copy, ref, rtol=rtol, atol=atol, err_msg=tag)


CASES = {"pretrain": ("pretrain", {}), "pretrain_memory": ("pretrain", {"memory_size": 24}),
         "finetune": ("finetune", {}), "distill": ("distill", {"distill_alpha": 0.5})}


@pytest.mark.parametrize("case", list(CASES))
def test_two_replicas_equal_one_device(case, two_replicas, no_graph_rewrites):
    train_mode, options = CASES[case]
    cfg = _config(train_mode, **options)
    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    w0, metrics1, states1 = _run(train_mode, cfg, one_device, None, compiled=False)
    _, metrics2, states2 = _run(train_mode, cfg, two_replicas, w0, compiled=True)
    # The same initial weights on both sides, in every replica.
    _assert_same(states1[0]["trainable"], states2[0]["trainable"], "initial", 0, 0)
    for step1, step2 in zip(metrics1, metrics2):  # losses, accuracies, learning rate
        assert step2 == pytest.approx(step1, rel=1e-5, abs=1e-6)
    # Gradients. In step 1 the momentum is 0, so a weight moves by -lr * trust * g', with
    # g' = g (+ weight decay * w). Rank-1 variables and the supervised head have no trust
    # ratio or decay in LARS: their move is -lr * g exactly (lr = 1), so a gradient off by any
    # factor fails; for the others the direction of g' is compared.
    _assert_same_moves(states1[0]["trainable"], states1[1]["trainable"],
                       states2[1]["trainable"], "step 1 moves")
    exact = [i for i, v in enumerate(states1[0]["trainable"]) if v[0].ndim <= 1]
    assert len(exact) > 20
    for i in exact:  # non-vacuous: these gradients are not zero
        assert np.abs(states1[1]["trainable"][i][0] - states1[0]["trainable"][i][0]).max() > 0
    # After three LARS steps: weights, batch-norm moving statistics, EMA copy and queue.
    for part in states1[-1]:
        _assert_same(states1[-1][part], states2[-1][part], part, rtol=1e-5, atol=1e-5)
    moved = [np.abs(a[0] - b[0]).max() for a, b in zip(states1[-1]["non_trainable"],
                                                      states1[0]["non_trainable"])]
    assert min(moved) > 1e-4  # every moving mean/variance was updated from batch statistics
