"""The paper's loss: streaks and coefficients, the weighted sigmoid loss, weight decay, and the
same loss and gradients on one replica or two."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from mlimages.paper import facts
from mlimages.paper import loss as L
from mlimages.paper.model import build_resnet


def _pos_coef(t: int) -> float:
    return max(-math.log10((0.01 + t) / 10), 0.01)


def _neg_coef(n: int) -> float:
    return max(-math.log10((8 + n) / 10), 0.001)


def test_coefficients_by_streak_length_match_the_formulas() -> None:
    """Class 0 always positive, 1 negative and always selected, 2 negative and never selected,
    3 positive every third step, 4 negative and selected every other step."""
    counters = L.StreakCounters(5)
    steps = 14
    t = n = 0
    for step in range(1, steps + 1):
        positive = np.array([True, False, False, step % 3 == 0, False])
        selected = np.array([False, True, False, True, step % 2 == 0])
        coef = L.class_coefficients(counters, positive, selected).numpy()
        assert coef[0] == pytest.approx(_pos_coef(step), rel=1e-5)  # streak counts this step
        assert coef[1] == pytest.approx(_neg_coef(step), rel=1e-5)
        assert coef[2] == 0.0
        if step % 3 == 0:
            t, n = t + 1, 0
            assert coef[3] == pytest.approx(_pos_coef(t), rel=1e-5)
        else:
            t, n = 0, n + 1
            assert coef[3] == pytest.approx(_neg_coef(n), rel=1e-5)
        expected_4 = _neg_coef(step // 2) if step % 2 == 0 else 0.0
        assert coef[4] == pytest.approx(expected_4, rel=1e-5)
    np.testing.assert_array_equal(counters.positive_streak.numpy(), [steps, 0, 0, 0, 0])
    np.testing.assert_array_equal(counters.negative_streak.numpy(), [0, steps, 0, 2, steps // 2])


def test_coefficient_values_at_the_start_of_a_streak() -> None:
    counters = L.StreakCounters(2)
    first = L.class_coefficients(counters, [True, False], [False, True]).numpy()
    # t = 1: -log10(1.01/10); n = 1: -log10(0.9). Ten positive batches in a row reach the floor.
    np.testing.assert_allclose(first, [0.9956786, 0.0457575], rtol=1e-5)
    for _ in range(9):
        last = L.class_coefficients(counters, [True, False], [False, True]).numpy()
    np.testing.assert_allclose(last, [0.01, 0.001], rtol=1e-6)
    peek = L.class_coefficients(counters, [False, True], [True, False], update=False).numpy()
    np.testing.assert_allclose(peek, [_neg_coef(1), _pos_coef(1)], rtol=1e-5)
    assert counters.positive_streak.numpy()[0] == 10  # update=False left the streaks alone


def test_negative_selection_is_stateless_in_seed_and_step() -> None:
    a = L.negative_selection(7, seed=1234, num_classes=20_000, neg_select=0.1).numpy()
    b = L.negative_selection(tf.constant(7), seed=1234, num_classes=20_000, neg_select=0.1)
    c = L.negative_selection(8, seed=1234, num_classes=20_000, neg_select=0.1).numpy()
    np.testing.assert_array_equal(a, b.numpy())
    assert (a != c).any()
    assert a.mean() == pytest.approx(0.1, abs=0.01)


def test_positive_mask_uses_the_threshold() -> None:
    targets = np.array([[0.7, 0.69, 0.0, -1.0], [0.0, 0.5, 1.0, -1.0]], np.float32)
    np.testing.assert_array_equal(L.positive_mask(targets, 0.7), [True, False, True, False])
    np.testing.assert_array_equal(L.global_positive_mask(targets, 0.7), [True, False, True, False])


def test_weighted_sigmoid_loss_is_a_per_class_batch_mean_times_the_coefficient() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    targets = rng.choice([0.0, 0.8, 0.9, 1.0, -1.0], size=(6, 4)).astype(np.float32)
    coef = np.array([0.5, 0.0, 0.001, 1.0], np.float32)
    sig = 1 / (1 + np.exp(-logits.astype(np.float64)))
    ce = -(12 * targets * np.log(sig) + (1 - targets) * np.log(1 - sig))
    ce[targets == -1] = 0
    expected = (ce.sum(0) / 8 * coef).sum()  # a local batch of 6 out of a global batch of 8
    got = L.weighted_sigmoid_loss(logits, targets, coef, global_batch_size=8).numpy()
    assert got == pytest.approx(expected, rel=1e-5)


def test_weight_decay_skips_batch_norm_and_keeps_the_dense_bias() -> None:
    model = build_resnet(3, blocks=(1, 1, 1, 1), width=2)
    model.get_layer("logits").bias.assign([1.0, 2.0, 3.0])
    plain = sum(
        float(np.sum(w.numpy() ** 2)) / 2
        for w in model.trainable_weights
        if not any(tag in w.path for tag in ("_bn/", "bn/"))
    )
    bn = sum(float(np.sum(w.numpy() ** 2)) / 2 for w in model.trainable_weights if "bn/" in w.path)
    assert L.weight_decay_loss(model).numpy() == pytest.approx(1e-4 * plain, rel=1e-5)
    finetune = L.weight_decay_loss(model, 1e-4, bn_rate=1e-5).numpy()
    assert finetune == pytest.approx(1e-4 * plain + 1e-5 * bn, rel=1e-5)
    assert bn > 0 and plain > 7  # gamma counted only in the fine-tuning variant; bias counted


# The two-replica check needs two logical CPUs, which must be set before TensorFlow
# initialises its devices: a fresh interpreter does it.
TWO_REPLICAS = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from mlimages.paper import loss as L
    from mlimages.paper.model import build_resnet

    C, B, STEP = 12, 8, 5
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (B, 16, 16, 3)).astype(np.float32)
    targets = (rng.uniform(size=(B, C)) < 0.3) * rng.choice([0.8, 0.9, 1.0], (B, C))
    targets[:, :4] = 0.0
    targets[0, 0] = 1.0  # class 0 positive only in the first half, class 1 only in the second
    targets[B - 1, 1] = 0.9
    targets = targets.astype(np.float32)

    def step_loss(model, counters, x, y, use_global=True):
        with tf.GradientTape() as tape:
            logits = model(x, training=False)
            mask = L.global_positive_mask(y) if use_global else L.positive_mask(y)
            chosen = L.negative_selection(STEP, 1234, C, 0.5)
            coef = L.class_coefficients(counters, mask, chosen)
            data = L.weighted_sigmoid_loss(logits, y, coef, B)
            decay = tf.nn.scale_regularization_loss(L.weight_decay_loss(model))
            total = data + decay
        return total, tape.gradient(total, model.trainable_variables)

    def fresh():
        keras.utils.set_random_seed(0)
        model = build_resnet(C, blocks=(1, 1, 1, 1), width=4)
        counters = L.StreakCounters(C)
        counters.positive_streak.assign(np.arange(C) % 3)
        counters.negative_streak.assign(np.arange(C) % 4)
        return model, counters

    model, counters = fresh()
    single, single_grads = step_loss(model, counters, images, targets)
    single_streaks = [counters.positive_streak.numpy(), counters.negative_streak.numpy()]

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {"replicas": strategy.num_replicas_in_sync}
    for use_global in (True, False):
        with strategy.scope():
            model, counters = fresh()
        dataset = tf.data.Dataset.from_tensor_slices((images, targets)).batch(B)
        x, y = next(iter(strategy.experimental_distribute_dataset(dataset)))
        per_replica = strategy.run(
            tf.function(lambda x, y: step_loss(model, counters, x, y, use_global)), args=(x, y)
        )
        total = strategy.reduce("SUM", per_replica[0], axis=None).numpy()
        grads = [strategy.reduce("SUM", g, axis=None).numpy() for g in per_replica[1]]
        key = "global" if use_global else "local"
        report[key + "_loss_error"] = abs(float(total) - float(single)) / abs(float(single))
        report[key + "_grad_error"] = max(
            float(np.abs(g - s.numpy()).max() / (np.abs(s.numpy()).max() + 1e-12))
            for g, s in zip(grads, single_grads)
        )
        copies = [
            [v.numpy() for v in variable.values]
            for variable in (counters.positive_streak, counters.negative_streak)
        ]
        report[key + "_streaks_equal"] = all(
            np.array_equal(copy, ref) for per, ref in zip(copies, single_streaks) for copy in per
        )
    print(json.dumps(report))
    """
)


def test_one_replica_on_the_batch_equals_two_replicas_on_its_halves() -> None:
    """Loss (weight decay included), gradients and streaks agree; computing the positive mask
    per replica instead of over the global batch would not (the check has teeth)."""
    done = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["global_loss_error"] < 1e-5
    assert report["global_grad_error"] < 1e-4
    assert report["global_streaks_equal"]
    assert report["local_loss_error"] > 1e-3
    assert not report["local_streaks_equal"]


# The ablation's variants (LossParams.kind): values against numpy on soft targets with -1.
def _example(seed: int = 0, big: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=20.0 if big else 2.0, size=(6, 5)).astype(np.float32)
    targets = rng.choice([0.0, 0.0, 0.8, 0.9, 1.0, -1.0], size=(6, 5)).astype(np.float32)
    return logits, targets


def _numpy_loss(kind: str, logits: np.ndarray, targets: np.ndarray, batch: int, **o) -> float:
    x, y = logits.astype(np.float64), targets.astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    if kind == "sigmoid":
        per = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    elif kind == "weighted":
        per = -(12 * y * np.log(p) + (1 - y) * np.log(1 - p))
    else:
        gn, gp, clip = o.get("gamma_neg", 4.0), o.get("gamma_pos", 0.0), o.get("clip", 0.05)
        pm = np.maximum(p - clip, 0)
        per = -(y * (1 - p) ** gp * np.log(p) + (1 - y) * pm**gn * np.log(1 - pm))
    per[targets == facts.IGNORE_TARGET] = 0
    return float((per.sum(0) / batch).sum())


@pytest.mark.parametrize("kind", ["sigmoid", "weighted", "asl"])
def test_each_variant_matches_numpy_with_soft_targets_and_the_mask(kind: str) -> None:
    from mlimages.config.training import LossParams

    options = LossParams(kind=kind).model_dump()
    logits, targets = _example()
    assert (targets == -1).any() and ((targets > 0) & (targets < 1)).any()
    expected = _numpy_loss(kind, logits, targets, 8)  # a local 6 of a global batch of 8
    got = L.uniform_loss(kind, tf.constant(logits), targets, 8, options).numpy()
    assert got == pytest.approx(expected, rel=1e-5)
    masked = targets.copy()
    masked[0] = -1.0  # an image whose every target is -1 adds nothing
    without = _numpy_loss(kind, logits[1:], targets[1:], 8)
    assert L.uniform_loss(kind, tf.constant(logits), masked, 8, options).numpy() == pytest.approx(
        without, rel=1e-5
    )


@pytest.mark.parametrize(
    "options",
    [
        {"gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05},
        {"gamma_neg": 2.0, "gamma_pos": 1.0, "clip": 0.0},
        {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.2},
        {"gamma_neg": 0.5, "gamma_pos": 0.5, "clip": 0.1},
    ],
)
def test_asymmetric_loss_matches_numpy_for_its_parameters(options: dict) -> None:
    logits, targets = _example(1)
    expected = _numpy_loss("asl", logits, targets, 6, **options)
    assert L.asymmetric_loss(logits, targets, 6, **options).numpy() == pytest.approx(
        expected, rel=1e-5
    )


def test_asymmetric_loss_with_no_shift_and_no_focusing_is_the_sigmoid_loss() -> None:
    logits, targets = _example(2)
    plain = L.sigmoid_loss(logits, targets, 6).numpy()
    asl = L.asymmetric_loss(logits, targets, 6, gamma_neg=0.0, gamma_pos=0.0, clip=0.0).numpy()
    assert asl == pytest.approx(plain, rel=1e-6)


@pytest.mark.parametrize("kind", ["sigmoid", "weighted", "asl"])
@pytest.mark.parametrize("gammas", [(4.0, 0.0), (0.5, 0.5)])
def test_variants_give_finite_values_and_gradients_at_extreme_logits(kind, gammas) -> None:
    from mlimages.config.training import LossParams

    options = LossParams(kind=kind).model_dump() | {
        "asl_gamma_neg": gammas[0],
        "asl_gamma_pos": gammas[1],
    }
    logits, targets = _example(3, big=True)
    logits[0, :] = [-200.0, 200.0, -100.0, 100.0, 0.0]  # sigmoid saturates in float32
    targets[0, :] = [1.0, 0.0, 0.0, 0.9, 1.0]
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = L.uniform_loss(kind, x, targets, 6, options)
    grad = tape.gradient(value, x).numpy()
    assert np.isfinite(value.numpy()) and np.isfinite(grad).all()
    assert value.numpy() > 0


def test_weighted_kind_is_the_paper_term_with_every_coefficient_one() -> None:
    logits, targets = _example(4)
    weighted = L.uniform_loss("weighted", tf.constant(logits), targets, 6, {"pos_weight": 12.0})
    ones = L.weighted_sigmoid_loss(logits, targets, np.ones(5, np.float32), 6)
    assert weighted.numpy() == ones.numpy()
    with pytest.raises(ValueError, match="loss kind 'adaptive'"):
        L.uniform_loss("adaptive", tf.constant(logits), targets, 6, {})


def test_streak_counters_default_to_global_synchronisation() -> None:
    """The adaptive default keeps its variables as they were (checkpoints and values)."""
    counters = L.StreakCounters(3)
    assert not counters.per_replica
    assert counters.positive_streak.synchronization == tf.VariableSynchronization.ON_WRITE
    assert counters.positive_streak.aggregation == tf.VariableAggregation.ONLY_FIRST_REPLICA
    per_replica = L.StreakCounters(3, per_replica=True)
    assert per_replica.positive_streak.synchronization == tf.VariableSynchronization.ON_READ
    coef = L.class_coefficients(per_replica, [True, False, False], [False, True, False])
    np.testing.assert_allclose(coef.numpy(), [_pos_coef(1), _neg_coef(1), 0.0], rtol=1e-5)


PER_REPLICA_STREAKS = textwrap.dedent(
    """
    import json
    import tempfile
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mlimages.paper import loss as L

    C, B = 6, 8
    targets = np.zeros((B, C), np.float32)
    targets[0, 0] = 1.0  # class 0 positive only in the first half, class 1 only in the second
    targets[B - 1, 1] = 0.8
    targets[:, 2] = 0.9  # class 2 positive in both halves
    targets[2, 3] = -1.0
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dataset = tf.data.Dataset.from_tensor_slices(targets).batch(B).repeat()
    report = {}
    for counting in ("replica", "global"):
        with strategy.scope():
            counters = L.StreakCounters(C, per_replica=counting == "replica")
        batches = iter(strategy.experimental_distribute_dataset(dataset))

        @tf.function
        def step(y, s):
            def replica_fn(y):
                if counting == "replica":  # as mlimages.train.engine: the local mask, no all-reduce
                    mask = L.positive_mask(y)
                else:
                    mask = L.global_positive_mask(y)
                chosen = L.negative_selection(s, 1234, C, 1.0)  # every negative selected
                return L.class_coefficients(counters, mask, chosen)

            return strategy.run(replica_fn, args=(y,))

        for s in range(3):
            coef = step(next(batches), tf.constant(s, tf.int64))
        entry = {
            "t": [v.numpy().tolist() for v in counters.positive_streak.values],
            "n": [v.numpy().tolist() for v in counters.negative_streak.values],
            "coef": [c.numpy().tolist() for c in strategy.experimental_local_results(coef)],
            "read": counters.positive_streak.numpy().tolist(),  # cross-replica: no collective
        }
        checkpoint = tf.train.Checkpoint(counters=counters)
        path = checkpoint.save(tempfile.mkdtemp() + "/c")
        with strategy.scope():
            other = L.StreakCounters(C, per_replica=counting == "replica")
        tf.train.Checkpoint(counters=other).restore(path).assert_consumed()
        entry["restored"] = [v.numpy().tolist() for v in other.positive_streak.values]
        report[counting] = entry
    print(json.dumps(report))
    """
)


def test_replica_counters_differ_where_the_halves_differ_and_global_ones_agree() -> None:
    """`counters: replica` keeps each replica's streaks of its own half; `global` the same
    streaks everywhere. A cross-replica read gives the first replica's copy, and a checkpoint
    restores that copy to every replica."""
    done = subprocess.run(
        [sys.executable, "-c", PER_REPLICA_STREAKS], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    local, shared = report["replica"], report["global"]
    assert local["t"][0] == [3, 0, 3, 0, 0, 0] and local["t"][1] == [0, 3, 3, 0, 0, 0]
    assert local["n"][0] == [0, 3, 0, 3, 3, 3] and local["n"][1] == [3, 0, 0, 3, 3, 3]
    assert local["coef"][0] != local["coef"][1]
    assert local["read"] == local["t"][0]
    assert local["restored"] == [local["t"][0]] * 2
    assert shared["t"][0] == shared["t"][1] == [3, 3, 3, 0, 0, 0]
    assert shared["n"][0] == shared["n"][1] == [0, 0, 0, 3, 3, 3]
    assert shared["coef"][0] == shared["coef"][1]
    assert shared["restored"] == shared["t"]
