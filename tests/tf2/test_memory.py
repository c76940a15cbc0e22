"""tf2/memory.py: FIFO queue by hand, its use as NT-Xent negatives, 2-replica equivalence,
and the EMA shadow by hand (default context and two replicas)."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf2 import losses
from tf2.memory import EmaShadow, MemoryQueue



def _rows(*values):
    """Keys whose two coordinates are (v, -v): easy to follow through the queue."""
    return tf.constant([[v, -v] for v in values], tf.float32)


# ----------------------------------------------------------------------------- queue
def test_fifo_rotation_wraps_around_and_count_saturates():
    memory = MemoryQueue(size=5, dim=2)
    enqueue = tf.function(memory.enqueue)

    def state():
        return (memory.queue.numpy()[:, 0].tolist(), int(memory.pointer.numpy()),
                int(memory.count.numpy()))

    assert state() == ([0, 0, 0, 0, 0], 0, 0)
    enqueue(_rows(1, 2))
    assert state() == ([1, 2, 0, 0, 0], 2, 2)
    enqueue(_rows(3, 4))
    assert state() == ([1, 2, 3, 4, 0], 4, 4)
    enqueue(_rows(5, 6))  # 5 fills the last slot, 6 wraps to slot 0
    assert state() == ([6, 2, 3, 4, 5], 1, 5)
    enqueue(_rows(7))
    assert state() == ([6, 7, 3, 4, 5], 2, 5)
    # 7 keys > K = 5: written one by one from slot 2 they land at 2,3,4,0,1,2,3, so the
    # survivors are the newest five (12..16) and the pointer moves by 7 mod 5.
    enqueue(_rows(10, 11, 12, 13, 14, 15, 16))
    assert state() == ([13, 14, 15, 16, 12], 4, 5)
    np.testing.assert_array_equal(memory.queue.numpy()[:, 1], [-13, -14, -15, -16, -12])


def test_negatives_mask_marks_filled_rows():
    memory = MemoryQueue(size=4, dim=2)
    queue, valid = memory.negatives()
    assert valid.numpy().tolist() == [False] * 4
    memory.enqueue(_rows(1, 2, 3))
    queue, valid = memory.negatives()
    assert valid.numpy().tolist() == [True, True, True, False]
    np.testing.assert_array_equal(queue.numpy()[:, 0], [1, 2, 3, 0])
    memory.enqueue(_rows(4, 5))
    assert memory.negatives()[1].numpy().tolist() == [True] * 4


def test_queue_negatives_in_nt_xent_match_oracle():
    rs = np.random.RandomState(3)
    memory = MemoryQueue(size=6, dim=3)
    keys = rs.normal(size=(4, 3))
    keys = (keys / np.linalg.norm(keys, axis=1, keepdims=True)).astype(np.float32)
    memory.enqueue(tf.constant(keys))  # 4 of 6 slots filled; the 2 zero rows must not count
    hidden = rs.normal(size=(4, 3)).astype(np.float32)  # n = 2
    tau = 0.5
    queue, valid = memory.negatives()
    loss, _, _ = losses.nt_xent(tf.constant(hidden), tau, negatives=queue,
                                negatives_mask=valid)
    z = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
    expected = 0.0
    for i in range(4):  # Eq. 1 by loops, memory keys added to every denominator
        numerator = math.exp(z[i] @ z[(i + 2) % 4] / tau)
        denominator = sum(math.exp(z[i] @ z[k] / tau) for k in range(4) if k != i)
        denominator += sum(math.exp(z[i] @ q / tau) for q in keys)
        expected += -math.log(numerator / denominator) / 2
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_queue_under_two_replicas_equals_single_device(two_replicas):
    rs = np.random.RandomState(5)
    batches = [rs.normal(size=(2 * m, 3)).astype(np.float32) for m in (2, 1, 3, 2)]
    single = MemoryQueue(size=7, dim=3)
    for batch in batches:  # global batch = replica 0's rows then replica 1's rows
        single.enqueue(tf.constant(batch))

    with two_replicas.scope():
        mirrored = MemoryQueue(size=7, dim=3)

    @tf.function
    def step(keys):
        return two_replicas.run(mirrored.enqueue, args=(keys,))

    for batch in batches:
        m = batch.shape[0] // 2
        keys = two_replicas.experimental_distribute_values_from_function(
            lambda ctx, b=batch, m=m: tf.constant(
                b[ctx.replica_id_in_sync_group * m:(ctx.replica_id_in_sync_group + 1) * m]))
        step(keys)
    for variable, expected in ((mirrored.queue, single.queue), (mirrored.pointer, single.pointer),
                               (mirrored.count, single.count)):
        copies = two_replicas.experimental_local_results(variable)
        assert len(copies) == 2
        for copy in copies:
            np.testing.assert_array_equal(copy.numpy(), expected.numpy())
    # Read in replica context, as a training step does.
    queues, valid = tf.function(lambda: two_replicas.run(mirrored.negatives))()
    for queue, mask in zip(two_replicas.experimental_local_results(queues),
                           two_replicas.experimental_local_results(valid)):
        np.testing.assert_array_equal(queue.numpy(), single.queue.numpy())
        assert mask.numpy().all()
    assert int(single.pointer.numpy()) == (4 + 2 + 6 + 4) % 7
    assert int(single.count.numpy()) == 7


# ----------------------------------------------------------------------------- EMA
# decay 0.9, online trainable w goes 1 -> 2 -> 3 -> 4 (and -2 -> 0 -> 1 -> -1):
# shadow 1.0 -> 0.9*1.0 + 0.1*2 = 1.1 -> 0.9*1.1 + 0.1*3 = 1.29 -> 0.9*1.29 + 0.1*4 = 1.561
# shadow -2 -> 0.9*-2 + 0.1*0 = -1.8 -> 0.9*-1.8 + 0.1*1 = -1.52 -> 0.9*-1.52 + 0.1*-1 = -1.468
ONLINE_W = [[1.0, -2.0], [2.0, 0.0], [3.0, 1.0], [4.0, -1.0]]
SHADOW_W = [[1.0, -2.0], [1.1, -1.8], [1.29, -1.52], [1.561, -1.468]]
ONLINE_STAT = [[10.0], [20.0], [30.0], [40.0]]  # non-trainable: copied, never averaged


def test_ema_by_hand_three_steps():
    w = tf.Variable(ONLINE_W[0])
    stat = tf.Variable(ONLINE_STAT[0], trainable=False)
    shadow_w, shadow_stat = tf.Variable([5.0, 5.0]), tf.Variable([5.0], trainable=False)
    ema = EmaShadow([w, stat], [shadow_w, shadow_stat], decay=0.9)
    ema.initialize()
    np.testing.assert_array_equal(shadow_w.numpy(), ONLINE_W[0])
    update = tf.function(ema.update)
    for step in (1, 2, 3):
        w.assign(ONLINE_W[step])
        stat.assign(ONLINE_STAT[step])
        update()
        np.testing.assert_allclose(shadow_w.numpy(), SHADOW_W[step], rtol=1e-6)
        np.testing.assert_array_equal(shadow_stat.numpy(), ONLINE_STAT[step])


def test_ema_mismatch_raises_clear_error():
    with pytest.raises(ValueError, match="2 online variables but 1 shadow"):
        EmaShadow([tf.Variable(1.0), tf.Variable(2.0)], [tf.Variable(1.0)], 0.9)
    with pytest.raises(ValueError, match=r"variable 1 differs.*\(3,\).*\(2,\)"):
        EmaShadow([tf.Variable(1.0), tf.Variable([1.0, 2.0, 3.0])],
                  [tf.Variable(1.0), tf.Variable([1.0, 2.0])], 0.9)


def _dense_bn():
    model = keras.Sequential([keras.layers.Dense(2), keras.layers.BatchNormalization()])
    model.build((None, 2))
    return model


def test_ema_of_keras_models_under_two_replicas(two_replicas):
    with two_replicas.scope():
        online, shadow = _dense_bn(), _dense_bn()
        online.layers[0].bias.assign(ONLINE_W[0])
        ema = EmaShadow(online.variables, shadow.variables, decay=0.9)
        ema.initialize()
    bias = online.layers[0].bias
    moving_mean = online.layers[1].moving_mean
    assert bias.trainable and not moving_mean.trainable
    kernel0 = online.layers[0].kernel.numpy()
    for sv, ov in zip(shadow.variables, online.variables):
        np.testing.assert_array_equal(sv.numpy(), ov.numpy())

    @tf.function
    def update():
        two_replicas.run(ema.update)

    for step in (1, 2, 3):
        bias.assign(ONLINE_W[step])
        moving_mean.assign([ONLINE_STAT[step][0]] * 2)  # (2,)
        update()
    for copy in two_replicas.experimental_local_results(shadow.layers[0].bias.value):
        np.testing.assert_allclose(copy.numpy(), SHADOW_W[3], rtol=1e-6)
    for copy in two_replicas.experimental_local_results(shadow.layers[1].moving_mean.value):
        np.testing.assert_array_equal(copy.numpy(), [40.0, 40.0])
    # The kernel never changed online, so its average stays put.
    for copy in two_replicas.experimental_local_results(shadow.layers[0].kernel.value):
        np.testing.assert_allclose(copy.numpy(), kernel0, rtol=1e-6)
