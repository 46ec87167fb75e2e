"""mlimages.paper.portable (the `keras.ops` loss and momentum rule) against the TF engine's own
(mlimages.paper.loss, mlimages.train.engine) on the same inputs, under the TensorFlow backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mlimages.paper import loss as tf_loss
from mlimages.paper import portable
from mlimages.paper.model import build_resnet

C = 12


@pytest.fixture
def batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    targets = rng.choice([0.0, 0.3, 0.8, 1.0, -1.0], size=(5, C)).astype(np.float32)
    return {
        "logits": rng.normal(0, 3, (5, C)).astype(np.float32),
        "targets": targets,
        "t": rng.integers(0, 6, C).astype(np.float32),
        "n": rng.integers(0, 6, C).astype(np.float32),
        "selected": rng.random(C) < 0.5,
    }


def test_the_constants_are_the_engines() -> None:
    for name in ("PAPER_POS_WEIGHT", "PAPER_MASK_THRES", "PAPER_NEG_SELECT", "IGNORE_TARGET"):
        assert getattr(portable, name) == getattr(tf_loss, name), name


def test_coefficients_and_streaks_agree(batch: dict) -> None:
    counters = tf_loss.StreakCounters(C)
    counters.positive_streak.assign(batch["t"])
    counters.negative_streak.assign(batch["n"])
    positive = tf_loss.positive_mask(batch["targets"])
    theirs = tf_loss.class_coefficients(counters, positive, batch["selected"])
    ours, new_t, new_n = portable.class_coefficients(
        batch["t"], batch["n"], portable.positive_mask(batch["targets"]), batch["selected"]
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    np.testing.assert_array_equal(new_t, counters.positive_streak.numpy())
    np.testing.assert_array_equal(new_n, counters.negative_streak.numpy())


def test_weighted_sigmoid_loss_agrees(batch: dict) -> None:
    coefficients = np.random.default_rng(4).random(C).astype(np.float32)
    args = (batch["logits"], batch["targets"], coefficients, 8, 12.0)
    theirs = float(tf_loss.weighted_sigmoid_loss(*args))
    assert float(portable.weighted_sigmoid_loss(*args)) == pytest.approx(theirs, rel=1e-6)


def test_weight_decay_agrees() -> None:
    model = build_resnet(4, blocks=(1, 1, 1, 1), width=4, image_size=16)
    rates = portable.decay_rates(model, 1e-4, 1e-5)
    ours = float(portable.weight_decay_loss(model.trainable_variables, rates))
    theirs = float(tf_loss.weight_decay_loss(model, 1e-4, 1e-5))
    assert ours == pytest.approx(theirs, rel=1e-5)


def test_momentum_is_the_engines_rule_under_a_changing_learning_rate() -> None:
    rng = np.random.default_rng(5)
    start = rng.normal(size=(3, 2)).astype(np.float32)
    variable = keras.Variable(start)
    optimizer = portable.TF1Momentum(learning_rate=0.1, momentum=0.9)
    weights, accum = start.copy(), np.zeros_like(start)
    for lr in (0.1, 0.05, 0.01):  # the engine: slot = m*slot + g; w -= lr*slot
        grad = rng.normal(size=start.shape).astype(np.float32)
        optimizer.learning_rate = lr
        optimizer.apply([tf.constant(grad)], [variable])
        accum = 0.9 * accum + grad
        weights = weights - np.float32(lr) * accum
    np.testing.assert_allclose(variable.numpy(), weights, rtol=1e-6)


def test_a_training_step_runs_on_tensorflow(batch: dict) -> None:
    keras.utils.set_random_seed(0)
    model = build_resnet(C, blocks=(1, 1, 1, 1), width=4, image_size=16)
    images = np.random.default_rng(6).uniform(-1, 1, (5, 16, 16, 3)).astype(np.float32)
    before = [v.numpy().copy() for v in model.trainable_variables]
    coefficients, _, _ = portable.class_coefficients(
        batch["t"], batch["n"], portable.positive_mask(batch["targets"]), batch["selected"]
    )
    optimizer = portable.TF1Momentum(0.1)
    rates = portable.decay_rates(model, 1e-4)
    loss = portable.train_step(model, optimizer, images, batch["targets"], coefficients, rates)
    assert np.isfinite(loss)
    after = [v.numpy() for v in model.trainable_variables]
    assert all(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))
