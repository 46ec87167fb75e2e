"""Evaluation metrics, defined precisely (the authors published none for multi-label data).

Scores are compared as float32; labels are positive where `label >= threshold` (default
0.5; any numeric or boolean dtype). Ties in the scores are broken by class index (lower
first) wherever an order is needed, so results are deterministic.

Instance level at k: for image i with positive set G_i (images without positives are left
out) and its k highest-scoring classes T_i, P_i = |T_i ∩ G_i| / k and
R_i = |T_i ∩ G_i| / |G_i|. `precision` and `recall` are their means over images; `f1` is
2PR / (P + R) of those means, as the paper reports it, and `f1_per_image` the mean of the
per-image F1 (0 where P_i = R_i = 0) as a second figure.

Class level at a score threshold t: class j predicts image i where `score >= t`; per class
P_j = TP_j / predicted_j (0 when nothing is predicted), R_j = TP_j / positives_j,
F1_j = 2 P_j R_j / (P_j + R_j) (0 when both are 0). Macro figures are means over the classes
with at least one positive (recall is undefined elsewhere); micro figures pool TP, FP and FN
over all classes, so false alarms on classes without positives count.

Average precision of class j (non-interpolated, as scikit-learn's): the mean over its
positives i of the precision at i's score, |{positives with score >= s_i}| /
|{images with score >= s_i}|; tied scores form one threshold. mAP is the mean over the
classes with at least one positive.

Top-k accuracy (single-label data): the share of images whose label is among their k
highest scores.

Everything streams over blocks of rows (`ArraySource`, or `NpySource` for `.npy` files that
need not fit in memory): instance and class figures in one pass, average precision in a
second that counts, per class, the scores at or above each positive's, from the block's
columns sorted (no full argsort of anything).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from mlimages.core import npy
from mlimages.core.progress import quiet

CHUNK_ROWS = 8192  # most rows a block
CHUNK_ELEMENTS = 4_000_000  # fewer rows when classes are many: about 100 MB of temporaries
DEFAULT_KS = tuple(range(1, 11))


class Source(Protocol):
    """Scores and labels as equal [N, C] blocks of rows, readable more than once."""

    @property
    def shape(self) -> tuple[int, int]: ...

    def blocks(self, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...


@dataclass(frozen=True)
class ArraySource:
    """In-memory (or memory-mapped) dense [N, C] scores and labels."""

    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        s, y = np.asarray(self.scores), np.asarray(self.labels)
        if s.shape != y.shape or s.ndim != 2:
            raise ValueError(f"scores {s.shape} and labels {y.shape}; expected equal [N, C]")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(np.shape(self.scores))  # type: ignore[return-value]

    def blocks(self, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, self.shape[0], rows):
            yield self.scores[start : start + rows], self.labels[start : start + rows]


class NpySource:
    """Scores and labels in two `.npy` files, read a block at a time (never whole)."""

    def __init__(self, scores: str | os.PathLike, labels: str | os.PathLike) -> None:
        self.scores, self.labels = npy.read_header(scores), npy.read_header(labels)
        if self.scores.shape != self.labels.shape or len(self.scores.shape) != 2:
            raise ValueError(
                f"{scores}: shape {self.scores.shape}, {labels}: shape {self.labels.shape}; "
                "expected equal [images, classes]"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.scores.shape  # type: ignore[return-value]

    def blocks(self, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        yield from zip(
            npy.iter_rows(self.scores, rows), npy.iter_rows(self.labels, rows), strict=True
        )


@dataclass(frozen=True)
class MultilabelMetrics:
    """Every multi-label figure of one set of scores; fractions in [0, 1]."""

    ks: tuple[int, ...]
    threshold: float
    score_threshold: float
    images: int
    images_with_positives: int
    instance: dict[int, dict[str, float]]  # k -> precision, recall, f1, f1_per_image
    average_precision: np.ndarray  # [C] float64, NaN for classes without positives
    positives: np.ndarray  # [C] images where the class is positive
    true_positives: np.ndarray  # [C] at score_threshold
    predicted: np.ndarray  # [C] at score_threshold
    groups: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    group_images: dict[str, int] = field(default_factory=dict)
    curve: dict[str, np.ndarray] | None = None  # thresholds, precision, recall (micro)

    @property
    def num_classes(self) -> int:
        return len(self.positives)

    @property
    def map(self) -> float:
        return _nanmean(self.average_precision)

    def class_level(self, classes: np.ndarray | None = None) -> dict[str, float]:
        """Macro (classes with positives) and micro P/R/F1 at `score_threshold`."""
        idx = np.arange(self.num_classes) if classes is None else np.asarray(classes)
        tp = self.true_positives[idx].astype(np.float64)
        pred = self.predicted[idx].astype(np.float64)
        pos = self.positives[idx].astype(np.float64)
        has = pos > 0
        p = _ratio(tp[has], pred[has])
        r = tp[has] / pos[has]
        f1 = _ratio(2 * p * r, p + r)
        micro_p, micro_r = _ratio(tp.sum(), pred.sum()), _ratio(tp.sum(), pos.sum())
        return {
            "macro_precision": _nanmean(p),
            "macro_recall": _nanmean(r),
            "macro_f1": _nanmean(f1),
            "micro_precision": float(micro_p),
            "micro_recall": float(micro_r),
            "micro_f1": float(_ratio(2 * micro_p * micro_r, micro_p + micro_r)),
        }

    def summary(self) -> dict[str, float | int]:
        """Flat figures: `precision_at_k` … for every k, `map`, then the class-level ones."""
        out: dict[str, float | int] = {
            "images": self.images,
            "images_with_positives": self.images_with_positives,
            "classes": self.num_classes,
            "classes_with_positives": int((self.positives > 0).sum()),
        }
        for k in self.ks:
            for name, value in self.instance[k].items():
                out[f"{name}_at_{k}"] = value
        out["map"] = self.map
        out.update(self.class_level())
        return out

    def table(self) -> list[dict[str, float | int]]:
        """One row a k: k, precision_at_k, recall_at_k, f1_at_k, f1_per_image_at_k."""
        return [
            {"k": k, **{f"{name}_at_k": v for name, v in self.instance[k].items()}} for k in self.ks
        ]

    def group_table(self, groups: Mapping[str, np.ndarray]) -> list[dict[str, float | int]]:
        """One row a group (e.g. a depth of the hierarchy): its classes, mAP, class-level and
        instance figures (top-k within the group's classes; NaN where k > its classes)."""
        rows = []
        for name, classes in groups.items():
            classes = np.asarray(classes)
            row: dict[str, float | int | str] = {
                "group": name,
                "classes": len(classes),
                "classes_with_positives": int((self.positives[classes] > 0).sum()),
                "images_with_positives": self.group_images.get(name, 0),
                "map": _nanmean(self.average_precision[classes]),
            }
            row.update(self.class_level(classes))
            for k in self.ks:
                for metric, value in self.groups.get(name, {}).get(k, {}).items():
                    row[f"{metric}_at_{k}"] = value
            rows.append(row)
        return rows


def multilabel_metrics(
    source: Source | tuple[np.ndarray, np.ndarray],
    ks: Sequence[int] = DEFAULT_KS,
    threshold: float = 0.5,
    score_threshold: float = 0.5,
    groups: Mapping[str, np.ndarray] | None = None,
    curve_thresholds: np.ndarray | None = None,
    progress: bool | None = None,
) -> MultilabelMetrics:
    """All multi-label figures in two streamed passes over the scores.

    `groups` maps a name to class indices (e.g. the classes at one depth of the hierarchy):
    instance figures are also computed with top-k and positives restricted to each group.
    `curve_thresholds` (ascending) adds a micro-averaged precision-recall curve.
    """
    if isinstance(source, tuple):
        source = ArraySource(*source)
    n, num_classes = source.shape
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1 or ks[-1] > num_classes:
        raise ValueError(f"k = {list(ks)}; expected values in 1..{num_classes} (the classes)")
    rows = max(1, min(CHUNK_ROWS, CHUNK_ELEMENTS // max(num_classes, 1)))
    groups = {name: np.asarray(cols, dtype=np.int64) for name, cols in (groups or {}).items()}
    first = _FirstPass(num_classes, ks, threshold, score_threshold, groups, curve_thresholds)
    for start, (s, y) in enumerate(_progress(source.blocks(rows), n, rows, "metrics", progress)):
        first.update(_scores(s, start * rows), y)
    if not first.images_with_positives:
        raise ValueError(f"no image has a label >= {threshold}; expected at least one positive")
    ap = _average_precision(source, first, rows, progress)
    return MultilabelMetrics(
        ks=ks,
        threshold=threshold,
        score_threshold=score_threshold,
        images=n,
        images_with_positives=first.images_with_positives,
        instance=first.instance.result(),
        average_precision=ap,
        positives=first.positives,
        true_positives=first.true_positives,
        predicted=first.predicted,
        groups={name: acc.result() for name, acc in first.group_acc.items()},
        group_images={name: acc.images for name, acc in first.group_acc.items()},
        curve=first.curve(),
    )


# --- the classic single-figure functions -------------------------------------------------


def instance_metrics_at_k(
    scores: np.ndarray, labels: np.ndarray, k: int, threshold: float = 0.5
) -> dict[str, float]:
    """Instance-level precision, recall and F1 at k over dense [N, C] scores and labels."""
    source = ArraySource(np.asarray(scores), np.asarray(labels))
    if not 1 <= k <= source.shape[1]:
        raise ValueError(f"k = {k}; expected 1..{source.shape[1]} (the number of classes)")
    acc = _InstanceAccumulator((k,))
    rows = max(1, min(CHUNK_ROWS, CHUNK_ELEMENTS // max(source.shape[1], 1)))
    for start, (s, y) in enumerate(source.blocks(rows)):
        acc.update(_scores(s, start * rows), np.asarray(y) >= threshold)
    if not acc.images:
        raise ValueError(f"no image has a label >= {threshold}; expected at least one positive")
    return acc.result()[k]


def average_precision(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-class non-interpolated average precision [C]; NaN for classes without positives."""
    return multilabel_metrics(
        (np.asarray(scores), np.asarray(labels)), (1,), threshold
    ).average_precision


def mean_average_precision(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    """mAP over the classes with at least one positive."""
    return _nanmean(average_precision(scores, labels, threshold))


def class_metrics(
    scores: np.ndarray, labels: np.ndarray, score_threshold: float = 0.5, threshold: float = 0.5
) -> dict[str, float]:
    """Macro and micro precision, recall and F1 at a score threshold."""
    source = (np.asarray(scores), np.asarray(labels))
    return multilabel_metrics(source, (1,), threshold, score_threshold).class_level()


def top_k_accuracy(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Share of images whose single label is among their k highest scores."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    return top_k_hits(scores, targets, (k,))[k] / len(targets)


def top_k_hits(scores: np.ndarray, targets: np.ndarray, ks: Sequence[int]) -> dict[int, int]:
    """Images whose single label is among their k highest scores, for each k (one top-k)."""
    scores, targets = np.asarray(scores, dtype=np.float32), np.asarray(targets)
    if scores.ndim != 2 or targets.shape != (len(scores),):
        raise ValueError(f"scores {scores.shape}, targets {targets.shape}; expected [N, C], [N]")
    kmax = min(max(ks), scores.shape[1])
    top = _ranked_top_k(scores, kmax)
    found = np.cumsum(top == targets[:, None], axis=1) > 0
    return {k: int(found[:, min(k, kmax) - 1].sum()) for k in ks}


# --- the streamed passes -----------------------------------------------------------------


class _InstanceAccumulator:
    """Sums of per-image P, R and F1 at every k over images with positives."""

    def __init__(self, ks: tuple[int, ...]) -> None:
        self.ks = ks
        self.images = 0
        self.sums = np.zeros((3, len(ks)))  # precision, recall, per-image F1

    def update(self, s: np.ndarray, positive: np.ndarray) -> None:
        counts = positive.sum(axis=1)
        keep = counts > 0
        if not keep.any():
            return
        s, positive, counts = s[keep], positive[keep], counts[keep]
        top = _ranked_top_k(s, self.ks[-1])
        hits = np.cumsum(np.take_along_axis(positive, top, axis=1), axis=1)
        hits = hits[:, [k - 1 for k in self.ks]].astype(np.float64)
        p = hits / np.asarray(self.ks, dtype=np.float64)
        r = hits / counts[:, None]
        f1 = _ratio(2 * p * r, p + r)
        self.sums += np.stack([p.sum(0), r.sum(0), f1.sum(0)])
        self.images += len(s)

    def result(self) -> dict[int, dict[str, float]]:
        if not self.images:
            nan = float("nan")
            return {
                k: dict.fromkeys(("precision", "recall", "f1", "f1_per_image"), nan)
                for k in self.ks
            }
        mean = self.sums / self.images
        out = {}
        for j, k in enumerate(self.ks):
            p, r = float(mean[0, j]), float(mean[1, j])
            out[k] = {
                "precision": p,
                "recall": r,
                "f1": 2 * p * r / (p + r) if p + r else 0.0,
                "f1_per_image": float(mean[2, j]),
            }
        return out


class _FirstPass:
    """Instance, class-level and curve figures, and the positives' sort keys for AP."""

    def __init__(self, num_classes, ks, threshold, score_threshold, groups, curve_thresholds):
        self.threshold, self.score_threshold = threshold, score_threshold
        self.instance = _InstanceAccumulator(ks)
        self.group_cols = groups
        self.group_acc = {
            name: _InstanceAccumulator(tuple(k for k in ks if k <= len(cols)))
            for name, cols in groups.items()
            if len(cols) >= ks[0]
        }
        self.positives = np.zeros(num_classes, np.int64)
        self.true_positives = np.zeros(num_classes, np.int64)
        self.predicted = np.zeros(num_classes, np.int64)
        self.keys: list[np.ndarray] = []
        self.thresholds = None if curve_thresholds is None else np.asarray(curve_thresholds)
        if self.thresholds is not None:
            if np.any(np.diff(self.thresholds) <= 0):
                raise ValueError("curve thresholds: expected strictly ascending values")
            self.curve_all = np.zeros(len(self.thresholds) + 1, np.int64)
            self.curve_pos = np.zeros(len(self.thresholds) + 1, np.int64)

    @property
    def images_with_positives(self) -> int:
        return self.instance.images

    def update(self, s: np.ndarray, y: np.ndarray) -> None:
        positive = np.asarray(y) >= self.threshold
        if positive.shape != s.shape:
            raise ValueError(f"labels block {positive.shape}; expected {s.shape}")
        self.instance.update(s, positive)
        for name, acc in self.group_acc.items():
            cols = self.group_cols[name]
            acc.update(s[:, cols], positive[:, cols])
        predicted = s >= np.float32(self.score_threshold)
        self.positives += positive.sum(axis=0)
        self.predicted += predicted.sum(axis=0)
        self.true_positives += (predicted & positive).sum(axis=0)
        rows, cols = np.nonzero(positive)
        self.keys.append(_sort_keys(cols, s[rows, cols]))
        if self.thresholds is not None:
            bins = np.searchsorted(self.thresholds, s, side="right").ravel()
            self.curve_all += np.bincount(bins, minlength=len(self.curve_all))
            self.curve_pos += np.bincount(bins[positive.ravel()], minlength=len(self.curve_pos))

    def curve(self) -> dict[str, np.ndarray] | None:
        if self.thresholds is None:
            return None
        # Scores in bin b are >= thresholds[j] for every j < b.
        at_or_above = np.cumsum(self.curve_all[::-1])[::-1][1:]
        pos_at_or_above = np.cumsum(self.curve_pos[::-1])[::-1][1:]
        return {
            "thresholds": self.thresholds,
            "precision": _ratio(pos_at_or_above.astype(np.float64), at_or_above),
            "recall": pos_at_or_above / max(int(self.positives.sum()), 1),
        }


def _average_precision(
    source: Source, first: _FirstPass, rows: int, progress: bool | None
) -> np.ndarray:
    """Second pass: for every positive, the images of its class scoring at or above it."""
    num_classes = len(first.positives)
    keys = np.sort(np.concatenate(first.keys))
    classes = np.flatnonzero(first.positives)  # only these need their columns sorted
    compact = np.full(num_classes, -1, np.int64)
    compact[classes] = np.arange(len(classes))
    key_class = compact[(keys >> np.uint64(32)).astype(np.int64)]
    keys = (key_class.astype(np.uint64) << np.uint64(32)) | (keys & np.uint64(0xFFFFFFFF))
    at_or_above = np.zeros(len(keys), np.int64)
    n = source.shape[0]
    for start, (s, _) in enumerate(_progress(source.blocks(rows), n, rows, "AP", progress)):
        s = _scores(s, start * rows)
        columns = np.ascontiguousarray(s[:, classes].T)  # [classes, rows]
        columns.sort(axis=1)
        flat = _sort_keys(np.arange(len(classes))[:, None], columns).ravel()
        ends = (key_class + 1) * len(s)
        at_or_above += ends - np.searchsorted(flat, keys, side="left")
    # Positives of the same class at or above each positive: its rank from the class's end.
    class_end = np.searchsorted(key_class, np.arange(len(classes)), side="right")
    positives_above = class_end[key_class] - np.searchsorted(keys, keys, side="left")
    precision = positives_above / at_or_above
    ap = np.full(num_classes, np.nan)
    ap[classes] = (
        np.bincount(key_class, weights=precision, minlength=len(classes))
        / (first.positives[classes])
    )
    return ap


# --- helpers ----------------------------------------------------------------------------


def _scores(block: np.ndarray, first_row: int) -> np.ndarray:
    """A block of scores as float32 with -0.0 made 0.0 (so equal scores get equal keys)."""
    s = np.asarray(block, dtype=np.float32) + np.float32(0.0)
    bad = np.isnan(s).any(axis=1)
    if bad.any():
        raise ValueError(
            f"scores row {first_row + int(np.argmax(bad))} holds NaN; expected numbers"
        )
    return s


def _sort_keys(classes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """uint64 keys ordered as (class, score): the class above 32 bits of the float32 score
    mapped to an unsigned integer of the same order (sign flipped; negatives inverted)."""
    bits = np.ascontiguousarray(scores, dtype=np.float32).view(np.uint32)
    ordered = bits ^ (((bits >> np.uint32(31)) * np.uint32(0x7FFFFFFF)) | np.uint32(0x80000000))
    return (np.asarray(classes, dtype=np.uint64) << np.uint64(32)) | ordered.astype(np.uint64)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices (in no particular order) of the k largest scores per row; ties at the k-th
    score go to the lower class index."""
    if k >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, top, axis=1).min(axis=1, keepdims=True)
    over = np.flatnonzero((scores >= kth).sum(axis=1) > k)  # more tied at the k-th score
    if len(over):
        above = scores[over] > kth[over]
        tied = scores[over] == kth[over]
        need = k - above.sum(axis=1, keepdims=True)
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
        top[over] = np.nonzero(chosen)[1].reshape(len(over), k)
    return top


def _ranked_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The k largest scores' indices per row, in order (score down, then class index up)."""
    top = _top_k(scores, k)
    order = np.lexsort((top, -np.take_along_axis(scores, top, axis=1)), axis=1)
    return np.take_along_axis(top, order, axis=1)


def _ratio(num, den):
    """num / den with 0 where den is 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def _progress(blocks, n: int, rows: int, desc: str, progress: bool | None):
    from mlimages.core.progress import tqdm

    total = -(-n // rows)
    return tqdm(blocks, total=total, desc=desc, unit="block", disable=quiet(progress))
