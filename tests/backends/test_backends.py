"""The model, the paper's loss and the momentum rule on Keras 3's JAX and PyTorch backends.

These backends exist only in `.venv-backends` (no TensorFlow there), so the main `pytest` run
does not collect this folder: `make test-backends` runs it once per backend, with
KERAS_BACKEND set, after converting the authors' checkpoint fixture with the main
environment's `mlimages model convert-tf1` (its file: `MLIMAGES_CONVERTED`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from mlimages.paper import portable
from mlimages.paper.model import build_resnet, feature_model, find_layer, tf1_variables

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "data" / "backends"
BENCHMARK = ROOT / "benchmarks" / "train_step.py"
BACKEND = keras.config.backend()


def _relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(np.asarray(out) - ref).max() / np.abs(ref).max())


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def test_this_environment_runs_another_backend_without_tensorflow() -> None:
    assert BACKEND in ("jax", "torch"), "run with KERAS_BACKEND=jax or torch (make test-backends)"
    assert importlib.util.find_spec("tensorflow") is None


def test_the_model_builds_and_predicts() -> None:
    model = build_resnet(7, blocks=(1, 1, 1, 1), width=4, image_size=32)
    logits = _numpy(model(np.zeros((2, 32, 32, 3), "float32"), training=False))
    assert logits.shape == (2, 7) and logits.dtype == np.float32
    assert len(tf1_variables(model)) == len(model.weights)
    assert find_layer(model, "init.init_conv").filters == 4


def test_a_file_saved_by_tensorflow_predicts_its_logits() -> None:
    model = keras.models.load_model(TINY / "tiny-tf.keras")
    logits = model(np.load(TINY / "inputs.npy"), training=False)
    assert _relative_error(_numpy(logits), np.load(TINY / "logits.npy")) < 1e-5


@pytest.fixture(scope="module")
def converted(authors_checkpoint: Path) -> Path:
    path = Path(os.environ.get("MLIMAGES_CONVERTED", ROOT / "runs/backends/resnet50.keras"))
    if not path.is_file():
        pytest.skip(
            f"no converted checkpoint at {path}: `make test-backends` writes it with the main "
            "environment's `mlimages model convert-tf1` (set MLIMAGES_CONVERTED to another)"
        )
    return path


def test_the_converted_authors_checkpoint_predicts_their_logits(
    converted: Path, authors_checkpoint: Path
) -> None:
    model = keras.models.load_model(converted)
    logits, feat = feature_model(model)(np.load(authors_checkpoint / "inputs.npy"))
    assert _relative_error(_numpy(logits), np.load(authors_checkpoint / "logits.npy")) < 1e-4
    assert _relative_error(_numpy(feat), np.load(authors_checkpoint / "feat.npy")) < 1e-4


@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch only")
def test_under_torch_the_model_is_a_torch_module() -> None:
    import torch

    model = keras.models.load_model(TINY / "tiny-tf.keras")
    assert isinstance(model, torch.nn.Module)
    assert len(list(model.parameters())) == len(model.weights)


# --- the paper's loss against numpy ------------------------------------------------------


def _numpy_loss(logits, targets, t, n, positive, selected, batch, pos_weight=12.0):
    """The authors' coefficients and weighted cross-entropy, written out in float64."""
    pos, sel = positive.astype(float), selected.astype(float)
    new_t = np.where(pos > 0, t + 1, 0.0)
    new_n = np.where(pos > 0, 0.0, n + sel)
    pos_coef = np.maximum(-np.log10((0.01 + new_t) / 10), 0.01) * pos
    neg_raw = -np.log10((8 + new_n) / 10)
    neg_coef = np.where(neg_raw > 0.01, neg_raw, 0.001) * (1 - pos) * sel
    coef = pos_coef + neg_coef
    p = 1 / (1 + np.exp(-logits.astype(float)))
    ce = -(pos_weight * targets * np.log(p) + (1 - targets) * np.log(1 - p))
    ce = ce * (targets != -1)
    return float(np.sum(ce.sum(axis=0) / batch * coef)), coef, new_t, new_n


def test_the_adaptive_loss_equals_a_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (6, 20)).astype("float32")
    targets = rng.choice([0.0, 0.3, 0.8, 1.0, -1.0], size=(6, 20)).astype("float32")
    t = rng.integers(0, 5, 20).astype("float32")
    n = rng.integers(0, 5, 20).astype("float32")
    selected = portable.negative_selection(3, 1234, 20, 0.5)
    positive = _numpy(portable.positive_mask(targets))
    np.testing.assert_array_equal(positive, (targets >= 0.7).any(axis=0))
    coef, new_t, new_n = portable.class_coefficients(t, n, positive, selected)
    loss = portable.weighted_sigmoid_loss(logits, targets, coef, 8)
    expected, ref_coef, ref_t, ref_n = _numpy_loss(logits, targets, t, n, positive, selected, 8)
    np.testing.assert_allclose(_numpy(coef), ref_coef, rtol=1e-6)
    np.testing.assert_array_equal(_numpy(new_t), ref_t)
    np.testing.assert_array_equal(_numpy(new_n), ref_n)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_the_negative_draw_is_a_function_of_seed_and_step() -> None:
    first = portable.negative_selection(7, 1234, 1000)
    assert np.array_equal(first, portable.negative_selection(7, 1234, 1000))
    assert not np.array_equal(first, portable.negative_selection(8, 1234, 1000))
    assert 0.05 < first.mean() < 0.15


def test_the_momentum_rule_under_a_changing_learning_rate() -> None:
    rng = np.random.default_rng(1)
    start = rng.normal(size=(4,)).astype("float32")
    variable = keras.Variable(start)
    optimizer = portable.TF1Momentum(learning_rate=0.1, momentum=0.9)
    weights, accum = start.copy(), np.zeros_like(start)
    for lr in (0.1, 0.02):
        grad = rng.normal(size=4).astype("float32")
        optimizer.learning_rate = lr
        optimizer.apply([keras.ops.convert_to_tensor(grad)], [variable])
        accum = 0.9 * accum + grad
        weights = weights - np.float32(lr) * accum
    np.testing.assert_allclose(_numpy(variable), weights, rtol=1e-6)


def test_a_training_step_updates_weights_and_batch_norm_statistics() -> None:
    keras.utils.set_random_seed(0)
    model = build_resnet(6, blocks=(1, 1, 1, 1), width=4, image_size=24)
    rng = np.random.default_rng(2)
    images = rng.uniform(-1, 1, (4, 24, 24, 3)).astype("float32")
    targets = (rng.random((4, 6)) > 0.6).astype("float32")
    zeros = np.zeros(6, "float32")
    selected = portable.negative_selection(0, 1234, 6, 0.5)
    coef, _, _ = portable.class_coefficients(
        zeros, zeros, portable.positive_mask(targets), selected
    )
    before = [_numpy(v).copy() for v in model.weights]
    optimizer = portable.TF1Momentum(0.05)
    rates = portable.decay_rates(model, 1e-4)
    losses = [portable.train_step(model, optimizer, images, targets, coef, rates) for _ in range(3)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    after = [_numpy(v) for v in model.weights]
    assert all(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))


def test_the_train_step_benchmark_runs_on_this_backend(tmp_path: Path) -> None:
    out = tmp_path / "train_step.json"
    tiny = ["--batch", "2", "--image-size", "32", "--steps", "1", "--warmup", "1"]
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--backend", BACKEND, *tiny, "--out-json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["backend"], result["mode"], result["goal_met"]) == (BACKEND, "cpu", None)
    ours = result["models"]["ours_resnet101"]
    assert ours["params"] == 44_545_192  # ResNet-101, 1,000 classes
    assert ours["images_per_s"] > 0 and result["images_per_s_ratio"] > 0
