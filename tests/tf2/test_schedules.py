"""Learning-rate scaling and warm-up + cosine schedule, as tables of hand-computed numbers."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf2 import schedules

# (step, lr) with warm-up 10 of 100 steps. Peak p; cosine part p/2 * (1 + cos(pi * (s-10)/90)):
#   s=55 -> half-way, cos(pi/2) = 0 -> p/2;  s=32.5 -> cos(pi/4) -> p * 0.853553;
#   s=77.5 -> cos(3pi/4) -> p * 0.146447;  s>=100 -> 0.
PAPER_PRETRAIN = [  # 0.1 * sqrt(4096) = 6.4 (paper Sec. 3.1)
    (0, 0.0), (5, 3.2), (9, 5.76), (10, 6.4), (32.5, 5.462742), (55, 3.2), (77.5, 0.937258),
    (100, 0.0), (150, 0.0)]
SIMCLR_V1_LINEAR = [  # 0.3 * 256 / 256 = 0.3
    (0, 0.0), (5, 0.15), (10, 0.3), (55, 0.15), (100, 0.0), (150, 0.0)]


@pytest.mark.parametrize("base, batch, scaling, table", [
    (0.1, 4096, "sqrt", PAPER_PRETRAIN), (0.3, 256, "linear", SIMCLR_V1_LINEAR)])
def test_warmup_cosine_table(base, batch, scaling, table):
    sched = schedules.WarmUpAndCosineDecay(base, batch, warmup_steps=10, total_steps=100,
                                           scaling=scaling)
    for step, want in table:
        assert float(sched(step)) == pytest.approx(want, rel=1e-5, abs=1e-6), step


def test_finetune_no_warmup():
    # Paper fine-tuning: 0.005 * sqrt(1024) = 0.16, no warm-up, cosine to 0.
    sched = schedules.WarmUpAndCosineDecay(0.005, 1024, warmup_steps=0, total_steps=100)
    for step, want in [(0, 0.16), (50, 0.08), (100, 0.0), (120, 0.0)]:
        assert float(sched(step)) == pytest.approx(want, rel=1e-5, abs=1e-7), step


def test_all_warmup_reaches_zero_at_the_end():
    sched = schedules.WarmUpAndCosineDecay(0.3, 256, warmup_steps=4, total_steps=4,
                                           scaling="linear")
    got = [float(sched(s)) for s in range(6)]
    np.testing.assert_allclose(got, [0.0, 0.075, 0.15, 0.225, 0.0, 0.0], atol=1e-7)


def test_scaled_learning_rate_paper_values():
    assert schedules.scaled_learning_rate(0.1, 4096, "sqrt") == pytest.approx(6.4)
    assert schedules.scaled_learning_rate(0.005, 1024, "sqrt") == pytest.approx(0.16)
    assert schedules.scaled_learning_rate(0.002, 1024, "sqrt") == pytest.approx(0.064)
    assert schedules.scaled_learning_rate(0.3, 4096, "linear") == pytest.approx(4.8)
    with pytest.raises(ValueError, match="cubic"):
        schedules.scaled_learning_rate(0.1, 256, "cubic")
    with pytest.raises(ValueError, match="warmup_steps=11"):
        schedules.WarmUpAndCosineDecay(0.1, 256, warmup_steps=11, total_steps=10)


def test_in_tf_function_with_int64_step_and_config_round_trip():
    sched = schedules.WarmUpAndCosineDecay(0.1, 4096, warmup_steps=10, total_steps=100)
    lr = tf.function(lambda s: sched(s))(tf.constant(55, tf.int64))
    assert lr.dtype == tf.float32 and float(lr) == pytest.approx(3.2, rel=1e-6)
    clone = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(sched))
    assert isinstance(clone, schedules.WarmUpAndCosineDecay)
    assert clone.get_config() == sched.get_config()
    assert float(clone(5)) == pytest.approx(3.2, rel=1e-6)


def test_optimizer_reads_the_schedule_at_its_iteration():
    sched = schedules.WarmUpAndCosineDecay(0.3, 256, warmup_steps=10, total_steps=100,
                                           scaling="linear")
    opt = keras.optimizers.SGD(sched)
    w = keras.Variable(np.zeros((2,), np.float32))
    opt.build([w])
    for _ in range(5):
        opt.apply([tf.ones((2,))], [w])
    assert int(opt.iterations) == 5
    assert float(opt.learning_rate) == pytest.approx(0.15, rel=1e-6)
    # Plain SGD: w = -sum of lr over steps 0..4 = -0.03 * (0 + 1 + 2 + 3 + 4) = -0.3
    np.testing.assert_allclose(w.numpy(), [-0.3, -0.3], rtol=1e-6)
