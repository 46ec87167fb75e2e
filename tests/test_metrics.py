"""Metrics against scikit-learn and brute-force definitions, on random data with ties,
images without positives and classes without positives."""

from __future__ import annotations

import numpy as np
import pytest

from mlimages.core.metrics import (
    NpySource,
    average_precision,
    class_metrics,
    instance_metrics_at_k,
    mean_average_precision,
    multilabel_metrics,
    top_k_accuracy,
    top_k_hits,
)
from mlimages.core.npy import NpyWriter


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
    monkeypatch.setattr("mlimages.core.metrics.CHUNK_ROWS", 7)
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


# --- against scikit-learn and brute force, on random data with ties ----------------------


def _random_multilabel(seed: int, n: int = 240, c: int = 23) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued scores (many ties, negatives and both zeros), soft labels; 20 images
    and 3 classes without positives."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(-3, 4, size=(n, c)).astype(np.float32)
    scores[scores == 0] = np.float32(-0.0) * rng.integers(0, 2, size=(scores == 0).sum())
    labels = rng.choice([0.0, 0.3, 0.8, 0.9, 1.0], size=(n, c), p=[0.7, 0.1, 0.1, 0.05, 0.05])
    labels[:20] = 0.0
    labels[:, [0, 7, c - 1]] = 0.0
    labels[20:, 5] = 1.0  # a class positive everywhere
    return scores, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn(seed: int) -> None:
    from sklearn.metrics import average_precision_score

    scores, labels = _random_multilabel(seed)
    positive = labels >= 0.5
    ap = average_precision(scores, labels)
    for j in range(scores.shape[1]):
        if positive[:, j].any():
            assert ap[j] == pytest.approx(average_precision_score(positive[:, j], scores[:, j]))
        else:
            assert np.isnan(ap[j])  # classes without positives have no AP and leave mAP alone
    has = positive.any(axis=0)
    expected = average_precision_score(positive[:, has], scores[:, has], average="macro")
    assert mean_average_precision(scores, labels) == pytest.approx(expected)


@pytest.mark.parametrize("score_threshold", [-0.5, 0.0, 1.0, 2.5])
def test_class_metrics_match_sklearn(score_threshold: float) -> None:
    from sklearn.metrics import precision_recall_fscore_support

    scores, labels = _random_multilabel(3)
    positive, predicted = labels >= 0.5, scores >= score_threshold
    has = np.flatnonzero(positive.any(axis=0))
    macro = precision_recall_fscore_support(
        positive, predicted, labels=has, average="macro", zero_division=0
    )
    micro = precision_recall_fscore_support(positive, predicted, average="micro", zero_division=0)
    ours = class_metrics(scores, labels, score_threshold)
    assert [ours["macro_precision"], ours["macro_recall"], ours["macro_f1"]] == pytest.approx(
        macro[:3]
    )
    assert [ours["micro_precision"], ours["micro_recall"], ours["micro_f1"]] == pytest.approx(
        micro[:3]
    )


def test_top_k_accuracy_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(4)
    scores = rng.integers(0, 3, size=(400, 12)).astype(np.float32)
    targets = rng.integers(0, 12, size=400)
    for k in (1, 2, 5, 11):
        # scikit-learn breaks ties towards the higher class index, ours towards the lower:
        # mirrored classes make the two conventions the same.
        expected = top_k_accuracy_score(11 - targets, scores[:, ::-1], k=k, labels=np.arange(12))
        assert top_k_accuracy(scores, targets, k) == pytest.approx(expected)
    hits = top_k_hits(scores, targets, (1, 5))
    assert hits[5] == round(400 * top_k_accuracy(scores, targets, 5))


def test_every_k_and_groups_match_brute_force() -> None:
    scores, labels = _random_multilabel(5)
    groups = {"a": np.array([1, 2, 3, 5, 8, 9, 13]), "b": np.array([0, 7]), "c": np.array([4])}
    result = multilabel_metrics((scores, labels), ks=range(1, 11), groups=groups)
    for k in range(1, 11):
        assert result.instance[k] == pytest.approx(_brute(scores, labels, k, 0.5))
    k_a = result.groups["a"]
    for k in range(1, 8):
        cols = groups["a"]
        assert k_a[k] == pytest.approx(_brute(scores[:, cols], labels[:, cols], k, 0.5))
    assert 8 not in k_a  # k above the group's classes is not defined
    assert np.isnan(result.groups["b"][1]["precision"])  # no positives there: undefined
    assert result.group_images["b"] == 0
    rows = {r["group"]: r for r in result.group_table(groups)}
    assert np.isnan(rows["b"]["map"]) and rows["b"]["classes_with_positives"] == 0
    assert rows["a"]["map"] == pytest.approx(np.nanmean(result.average_precision[groups["a"]]))
    summary = result.summary()
    assert summary["f1_at_10"] == result.instance[10]["f1"]
    assert summary["map"] == pytest.approx(mean_average_precision(scores, labels))
    assert summary["images_with_positives"] == (labels >= 0.5).any(axis=1).sum()


def test_precision_recall_curve_matches_direct_counts() -> None:
    scores, labels = _random_multilabel(6)
    thresholds = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 3.0, 9.0])
    curve = multilabel_metrics((scores, labels), curve_thresholds=thresholds).curve
    positive = labels >= 0.5
    for j, t in enumerate(thresholds):
        predicted = scores >= t
        tp = (predicted & positive).sum()
        assert curve["precision"][j] == pytest.approx(
            tp / predicted.sum() if predicted.any() else 0
        )
        assert curve["recall"][j] == pytest.approx(tp / positive.sum())


def test_npy_files_are_streamed_like_arrays(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    scores, labels = _random_multilabel(7)
    whole = multilabel_metrics((scores, labels))
    writer = NpyWriter(tmp_path / "scores.npy", scores.shape, np.float32)
    for start in range(0, len(scores), 50):
        writer.write(scores[start : start + 50])
    writer.close()
    np.save(tmp_path / "labels.npy", (labels >= 0.5).astype(np.uint8))
    assert np.array_equal(np.load(tmp_path / "scores.npy"), scores)
    monkeypatch.setattr("mlimages.core.metrics.CHUNK_ROWS", 7)  # many blocks, one partial
    streamed = multilabel_metrics(NpySource(tmp_path / "scores.npy", tmp_path / "labels.npy"))
    assert streamed.summary() == pytest.approx(whole.summary(), nan_ok=True)
    assert np.allclose(streamed.average_precision, whole.average_precision, equal_nan=True)


def test_npy_errors_name_the_file(tmp_path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="b.npy: shape"):
        NpySource(tmp_path / "a.npy", tmp_path / "b.npy")
    (tmp_path / "c.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:-8])
    with pytest.raises(ValueError, match="c.npy: file ends before row 4"):
        list(NpySource(tmp_path / "c.npy", tmp_path / "a.npy").blocks(2))
    (tmp_path / "d.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="d.npy: not a readable .npy file"):
        NpySource(tmp_path / "d.npy", tmp_path / "a.npy")
    writer = NpyWriter(tmp_path / "e.npy", (3, 2), np.float32)
    writer.write(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2 rows written; declared 3"):
        writer.close()
    assert not list(tmp_path.glob("*e.npy*")), "nothing half-written is left"


def test_nan_scores_are_refused_with_the_row() -> None:
    scores, labels = np.zeros((5, 3), np.float32), np.ones((5, 3))
    scores[3, 1] = np.nan
    with pytest.raises(ValueError, match="scores row 3 holds NaN"):
        multilabel_metrics((scores, labels), ks=(1, 2))
