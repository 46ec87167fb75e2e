"""Evaluation metrics, defined precisely (the authors published none for multi-label data).

Instance level at k: for image i with positive set G_i (labels >= `threshold`; images
without positives are left out) and its k highest-scoring classes T_i,
P_i = |T_i ∩ G_i| / k and R_i = |T_i ∩ G_i| / |G_i|. `precision` and `recall` are their
means over images; `f1` is 2PR / (P + R) of those means, as the paper reports it, and
`f1_per_image` the mean of the per-image F1 as a second figure. Ties in the scores are
broken by class index (lower first) so results are deterministic.
"""

from __future__ import annotations

import numpy as np

CHUNK_ROWS = 8192  # bounds the [rows, classes] temporaries on 11,166 classes


def instance_metrics_at_k(
    scores: np.ndarray, labels: np.ndarray, k: int, threshold: float = 0.5
) -> dict[str, float]:
    """Instance-level precision, recall and F1 at k over dense [N, C] scores and labels."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape}; expected equal [N, C]")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k = {k}; expected 1..{scores.shape[1]} (the number of classes)")
    precision, recall, f1 = [], [], []
    for start in range(0, len(scores), CHUNK_ROWS):
        s = scores[start : start + CHUNK_ROWS]
        positive = labels[start : start + CHUNK_ROWS] >= threshold
        keep = positive.any(axis=1)
        s, positive = s[keep], positive[keep]
        if not len(s):
            continue
        top = _top_k(s, k)
        hits = np.take_along_axis(positive, top, axis=1).sum(axis=1)
        p, r = hits / k, hits / positive.sum(axis=1)
        precision.append(p)
        recall.append(r)
        f1.append(np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0))
    if not precision:
        raise ValueError(f"no image has a label >= {threshold}; expected at least one positive")
    p, r = float(np.concatenate(precision).mean()), float(np.concatenate(recall).mean())
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
        "f1_per_image": float(np.concatenate(f1).mean()),
    }


def top_k_accuracy(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Share of images whose single label is among their k highest scores."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    top = _top_k(scores, min(k, scores.shape[1]))
    return float((top == targets[:, None]).any(axis=1).mean())


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices (unordered) of the k largest scores per row; ties go to the lower class index."""
    if k >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
    above = scores > kth
    tied = scores == kth
    need = k - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
    return np.nonzero(chosen)[1].reshape(len(scores), k)
