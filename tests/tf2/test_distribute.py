"""Stage steps under MirroredStrategy (two logical CPUs) against one device, and the factory.

Each stage's own step function (pretrain with and without the memory queue, finetune, distill)
runs on the same global batches on one device (eagerly, the reference) and on two replicas
(compiled, as stages/loop.py runs it), from identical weights, with global batch norm. For three
consecutive LARS steps they must agree on the metrics, on the move of every weight (in step 1
the momentum is zero, so rank-1 variables and the supervised head move by exactly -lr * g: the
gradient itself is compared), on the momentum slots, batch-norm moving statistics, EMA copy and
memory queue. A wrong loss scale, replica-local batch statistics or negatives, or a queue
filled in another order would each make them differ.

Each step starts from equal states: after the comparisons the reference's state is copied
into the 2-replica run, so every step is compared at the precision of one step (each weight's
move to 1e-4 of its size). Left to run freely, the two runs of this file stay within 7e-6 of
each other after three steps (seeds 1-4 and 1234); with the full-width ResNet-18, pretraining
drifted apart by up to 6e-4 by step 3 for some seeds while every single step agreed.

The ResNet is a quarter wide and grappler is off: the two-replica trace dominates the time.
"""
import numpy as np
import pytest
import tensorflow as tf

from data.config import DataConfig
from tf2 import distribute
from stages import distill, finetune, pretrain
from tf2.config import (HeadConfig, LossConfig, MemoryConfig, ModelConfig, OptimizerConfig,
                        RunConfig, TrainConfig)

GLOBAL_BATCH = 8
STEPS = 3
SIZE = 16
CLASSES = 10


def _config(train_mode, memory_size=0, distill_alpha=1.0):
    """Tiny settings whose updates are large enough to compare, small enough to stay tame.

    Linear scaling makes the LARS rate 0.32 * 8 / 256 = 0.01 (constant over 3 of 100 steps);
    a trust coefficient of 0.1 moves each kernel by 0.1% of its norm per step (the paper's
    0.001 would move kernels by about the float32 resolution of their values).
    """
    return RunConfig(
        model=ModelConfig.tiny(global_bn=True, width_multiplier=0.25),
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
    # Noise plus a colour per image, so that images still differ after the encoder's global
    # pooling (i.i.d. pixel noise mostly averages out there).
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


class _Run:
    """One stage on one strategy: its model, optimizer, extra state and a step function.

    Args:
      train_mode, cfg: the stage and its settings.
      strategy: where it runs.
      weights: initial values for model.get_weights() (None keeps the random ones).
      compiled: run the step in a tf.function, as stages/loop.py does; False runs it eagerly
        (the one-device reference: no tracing, and an execution path of its own).
    """

    def __init__(self, train_mode, cfg, strategy, weights=None, compiled=True):
        stage = {"pretrain": pretrain, "finetune": finetune, "distill": distill}[train_mode]
        self.strategy = strategy
        with strategy.scope():
            self.model, self.optimizer = stage.build(cfg, CLASSES)
            if weights is not None:
                self.model.set_weights(weights)
            self.parts = {"trainable": self.model.trainable_variables,
                          "non_trainable": self.model.non_trainable_variables,
                          "optimizer": self.optimizer.variables}
            if train_mode == "pretrain":
                # After set_weights: the EMA copy starts from the weights both runs share.
                ema, shadow, self.queue = pretrain._build_memory(cfg, self.model, CLASSES)
                step_fn = pretrain.make_step_fn(cfg, self.model, self.optimizer, CLASSES, ema,
                                                shadow, self.queue)
                if self.queue is not None:
                    self.parts["ema"] = ema.variables
                    self.parts["queue"] = [self.queue.queue, self.queue.pointer,
                                           self.queue.count]
            elif train_mode == "finetune":
                step_fn = finetune.make_step_fn(cfg, self.model, self.optimizer, CLASSES)
            else:
                step_fn = distill.make_step_fn(cfg, self.model, self.optimizer, _Teacher(),
                                               CLASSES)
        dataset = tf.data.Dataset.from_tensor_slices(_batches(train_mode)).batch(GLOBAL_BATCH)
        # A global batch of 8 reaches two replicas as rows 0-3 and rows 4-7.
        self._iterator = iter(strategy.experimental_distribute_dataset(dataset))

        def one_step(iterator):
            out = strategy.run(step_fn, args=(next(iterator),))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                    for k, v in out.items()}

        self._one_step = tf.function(one_step) if compiled else one_step

    def step(self):
        """One training step on the next global batch: {metric: mean over replicas}."""
        return {k: float(v) for k, v in self._one_step(self._iterator).items()}

    def state(self):
        """{part: [[value of each local copy] for each variable]}."""
        return {part: [[np.array(c) for c in self.strategy.experimental_local_results(
                    getattr(v, "_value", v))] for v in variables]  # Keras 3 wraps a tf.Variable
                for part, variables in self.parts.items()}

    def load(self, state):
        """Assigns a state of the same parts (the reference's single copies) to every copy."""
        with self.strategy.scope():
            for part, variables in self.parts.items():
                for variable, (value,) in zip(variables, state[part]):
                    variable.assign(value)


def _assert_close(before, one, two, part, step):
    """Every replica copy in `two` equals the single copy in `one`.

    A variable is compared relative to how far it moved in this step (plus a few ulps of its
    values): a weight that moves by 1e-4 must move by the same 1e-4 to within 1e-4 of that.
    """
    assert len(one) == len(two) > 0, part
    for (start,), (ref,), copies in zip(before, one, two):
        assert len(copies) == 2, part
        scale = np.abs(ref.astype(np.float64) - start).max()
        ulps = 4 * np.spacing(np.abs(ref).max().astype(ref.dtype)) if ref.dtype.kind == "f" else 0
        for copy in copies:
            np.testing.assert_allclose(copy, ref, rtol=0, atol=1e-4 * scale + ulps,
                                       err_msg=f"{part} after step {step}")


@pytest.fixture
def no_graph_rewrites():
    """Grappler off during these tests: it costs seconds per function, and the eager
    reference runs without it anyway."""
    saved = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    yield
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": saved})


CASES = {"pretrain": ("pretrain", {}), "pretrain_memory": ("pretrain", {"memory_size": 24}),
         "finetune": ("finetune", {}), "distill": ("distill", {"distill_alpha": 0.5})}


@pytest.mark.parametrize("case", list(CASES))
def test_two_replicas_equal_one_device(case, two_replicas, no_graph_rewrites):
    train_mode, options = CASES[case]
    cfg = _config(train_mode, **options)
    one = _Run(train_mode, cfg, tf.distribute.OneDeviceStrategy("/cpu:0"), compiled=False)
    two = _Run(train_mode, cfg, two_replicas, one.model.get_weights())
    before = one.state()
    assert all(np.array_equal(w, c) for (w,), copies in zip(
        before["trainable"], two.state()["trainable"]) for c in copies)  # same start
    for step in range(1, STEPS + 1):
        metrics1, metrics2 = one.step(), two.step()
        assert metrics2 == pytest.approx(metrics1, rel=1e-5, abs=1e-6), f"step {step}"
        after1, after2 = one.state(), two.state()
        for part in after1:
            _assert_close(before[part], after1[part], after2[part], part, step)
        if step == 1:
            _check_step_one_is_informative(before, after1)
        if "queue" in after1:  # 16 keys a step into 24 slots: pointer and count by hand
            pointer, count = (int(after1["queue"][i][0]) for i in (1, 2))
            assert (pointer, count) == [(16, 16), (8, 24), (0, 24)][step - 1]
        two.load(after1)  # the next step starts from equal states again
        before = after1


def _check_step_one_is_informative(before, after):
    """The comparisons of step 1 test something: rank-1 variables (moved by -lr * g) and the
    batch-norm moving statistics moved away from their initial values."""
    exact = [(b[0], a[0]) for b, a in zip(before["trainable"], after["trainable"])
             if b[0].ndim <= 1]
    # Not all: behind a zero-initialised last batch-norm scale a residual branch gets no
    # gradient in step 1.
    assert sum(np.abs(a - b).max() > 0 for b, a in exact) > 20
    moved = [np.abs(a[0] - b[0]).max() > 1e-4
             for b, a in zip(before["non_trainable"], after["non_trainable"])]
    assert sum(moved) >= 42  # at least the encoder's 21 batch norms (frozen head layers: not)


# ----------------------------------------------------------------------------- the factory
class _Recorder:
    """Stands in for a TensorFlow class or function: remembers how it was called."""

    def __init__(self, calls, name):
        self.calls, self.name = calls, name

    def __call__(self, *args, **kwargs):
        self.calls.append((self.name, args, kwargs))
        return (self.name, args, kwargs)


def test_default_strategy_is_one_device_without_gpus():
    strategy = distribute.make_strategy("default")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.extended.worker_devices == ("/job:localhost/replica:0/task:0/device:CPU:0",)
    assert distribute.is_chief(strategy)


@pytest.mark.parametrize("gpus,expected", [(0, ("one_device", ("/cpu:0",))),
                                           (1, ("one_device", ("/gpu:0",))),
                                           (4, ("mirrored", ()))])
def test_default_strategy_by_gpu_count(gpus, expected, monkeypatch):
    calls = []
    monkeypatch.setattr(distribute, "_local_gpus", lambda: ["GPU"] * gpus)
    monkeypatch.setattr(tf.distribute, "OneDeviceStrategy", _Recorder(calls, "one_device"))
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", _Recorder(calls, "mirrored"))
    distribute.make_strategy("default")
    assert [(name, args) for name, args, _ in calls] == [expected]


def test_tpu_strategy_from_run_py_flags(monkeypatch):
    """run.py's TPU flags reach TPUClusterResolver; then connect, initialise, TPUStrategy."""
    calls = []
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver",
                        _Recorder(calls, "resolver"))
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", _Recorder(calls, "connect"))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system",
                        _Recorder(calls, "initialize"))

    class Stop(Exception):
        pass

    def tpu_strategy(resolver):
        calls.append(("strategy", (resolver,), {}))
        raise Stop  # run.py would go on to read the data: the test ends here

    monkeypatch.setattr(tf.distribute, "TPUStrategy", tpu_strategy)
    import run
    try:
        run.FLAGS(["run.py", "--use_tpu", "--tpu_name=pod-1", "--tpu_zone=europe-west4-a",
                   "--gcp_project=my-project"])
        with pytest.raises(Stop):
            run.main(["run.py"])
    finally:
        run.FLAGS.unparse_flags()
    resolver = ("resolver", (), {"tpu": "pod-1", "zone": "europe-west4-a",
                                 "project": "my-project"})
    assert calls == [resolver, ("connect", (resolver,), {}), ("initialize", (resolver,), {}),
                     ("strategy", (resolver,), {})]


@pytest.mark.parametrize("tf_config,message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "is not one of the cluster's tasks"),
])
def test_multi_worker_needs_a_valid_tf_config(tf_config, message, monkeypatch):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=message):
        distribute.make_strategy("multi_worker")


def test_unknown_distribution():
    with pytest.raises(ValueError, match="one_device, mirrored, multi_worker, tpu"):
        distribute.make_strategy("parameter_server")


@pytest.mark.parametrize("cluster,task_type,task_id,chief", [
    ({}, None, None, True),  # a single process
    ({"worker": ["a:1", "b:1"]}, "worker", 0, True),  # no chief job: worker 0 writes
    ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, True),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, False),
    ({"worker": ["a:1"], "evaluator": ["e:1"]}, "evaluator", 0, False),
])
def test_is_chief_task(cluster, task_type, task_id, chief):
    assert distribute.is_chief_task(cluster, task_type, task_id) is chief


def test_cluster_error_message_says_what_to_do():
    error = tf.errors.UnavailableError(None, None, "Collective ops is aborted by: task 1 is down\n"
                                       "more detail\nthird\nfourth")
    message = distribute.cluster_error_message(error, "/runs/pretrain")
    assert "\n" not in message and "UnavailableError" in message and "fourth" not in message
    assert "task 1 is down" in message and "/runs/pretrain" in message
    assert "Start every worker again with the same command" in message
