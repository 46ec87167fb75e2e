"""Metrics against plain brute-force definitions, with ties and images without positives."""

from __future__ import annotations

import numpy as np
import pytest

from mlimages.metrics import instance_metrics_at_k, top_k_accuracy


def _brute(scores: np.ndarray, labels: np.ndarray, k: int, threshold: float) -> dict[str, float]:
    precision, recall, f1 = [], [], []
    for s, y in zip(scores, labels, strict=True):
        positives = {j for j, v in enumerate(y) if v >= threshold}
        if not positives:
            continue
        top = sorted(range(len(s)), key=lambda j: (-s[j], j))[:k]
        hits = len(positives.intersection(top))
        p, r = hits / k, hits / len(positives)
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    p, r = float(np.mean(precision)), float(np.mean(recall))
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r),
        "f1_per_image": float(np.mean(f1)),
    }


@pytest.mark.parametrize("k", [1, 2, 5, 10, 17])
def test_instance_metrics_match_brute_force_with_ties(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 4, size=(300, 17)).astype(np.float32)  # many ties
    labels = rng.choice([0.0, 0.4, 0.8, 1.0], size=(300, 17), p=[0.7, 0.1, 0.1, 0.1])
    labels[:20] = 0.0  # images without positives are left out
    labels[:, 3] = 0.0  # a class without positives changes nothing
    ours = instance_metrics_at_k(scores, labels, k)
    assert ours == pytest.approx(_brute(scores, labels, k, 0.5))


def test_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    scores, labels = rng.random((100, 9)), (rng.random((100, 9)) > 0.6).astype(float)
    whole = instance_metrics_at_k(scores, labels, 3)
    monkeypatch.setattr("mlimages.metrics.CHUNK_ROWS", 7)
    assert instance_metrics_at_k(scores, labels, 3) == pytest.approx(whole)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="expected equal"):
        instance_metrics_at_k(np.zeros((2, 3)), np.zeros((2, 4)), 1)
    with pytest.raises(ValueError, match="k = 5; expected 1..3"):
        instance_metrics_at_k(np.zeros((2, 3)), np.ones((2, 3)), 5)
    with pytest.raises(ValueError, match="no image has a label"):
        instance_metrics_at_k(np.zeros((2, 3)), np.zeros((2, 3)), 1)


def test_top_k_accuracy() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    targets = np.array([1, 1, 0])
    assert top_k_accuracy(scores, targets, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, targets, 2) == pytest.approx(1.0)
