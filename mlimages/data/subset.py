"""Choose a subset of a label list that fits a budget of images or disk, keeping rare classes.

A uniform sample of 17.6M images keeps the head and loses the tail: ML-Images' rarest
classes have a few dozen images. Here the choice is made in two passes over one seeded
shuffle of the rows: first every class, rarest first, gets up to `min_per_class` images (the
floor); then the budget is filled in shuffled order, taking an image only while at least one
of its classes has fewer than `max_per_class` images (the cap), so that images whose every
class is already plentiful are skipped. Restricting to subtrees keeps only the labels inside
them and the images left with any label. The same seed gives the same subset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlimages.config.sections import SubsetParams
from mlimages.data.labels.table import LabelTable, label_stats
from mlimages.data.taxonomy import Taxonomy

BYTES_PER_PIXEL = 0.25  # JPEG of a photo at quality 90: about 2 bits a pixel
ASPECT = 4 / 3  # typical Flickr photo: the longer side is 4/3 of the shorter
_CHUNK = 8192


def estimated_bytes_per_image(max_side: int) -> int:
    """Stored bytes of a photo whose shorter side is `max_side` (about 34 kB at 320 px)."""
    return int(BYTES_PER_PIXEL * ASPECT * max_side * max_side)


def budget(spec: SubsetParams, max_side: int, available: int) -> int:
    """Images the budget buys: the smaller of `max_images` and the disk budget's worth."""
    limits = [available]
    if spec.max_images is not None:
        limits.append(spec.max_images)
    if spec.max_gb is not None:
        per_image = spec.bytes_per_image or estimated_bytes_per_image(max_side)
        limits.append(int(spec.max_gb * 1e9 // per_image))
    return min(limits)


def subtree_classes(taxonomy: Taxonomy, subtrees: list[str]) -> np.ndarray:
    """Class indices under the given roots (wnids or indices), roots included."""
    keep = np.zeros(taxonomy.num_classes, dtype=bool)
    for name in subtrees:
        if name in taxonomy.index_of_wnid:
            index = taxonomy.index_of_wnid[name]
        elif name.isdigit() and int(name) < taxonomy.num_classes:
            index = int(name)
        else:
            raise ValueError(
                f"subset.subtrees: {name!r} is neither a wnid of the dictionary nor a class index"
                f" in 0..{taxonomy.num_classes - 1}"
            )
        keep[taxonomy.subtree(index)] = True
    return np.flatnonzero(keep)


def restrict(table: LabelTable, classes: np.ndarray, num_classes: int) -> LabelTable:
    """Keep only labels of `classes`; rows keep their place, some may end with no label."""
    allowed = np.zeros(num_classes, dtype=bool)
    allowed[classes] = True
    keep = allowed[table.indices]
    rows = np.repeat(np.arange(len(table)), table.labels_per_image())
    counts = np.bincount(rows[keep], minlength=len(table))
    return LabelTable(
        key_bytes=table.key_bytes,
        key_offsets=table.key_offsets,
        indptr=np.concatenate(([0], np.cumsum(counts))),
        indices=table.indices[keep],
        confidences=table.confidences[keep],
        source=table.source,
    )


def choose(
    table: LabelTable,
    num_classes: int,
    spec: SubsetParams,
    *,
    seed: int,
    max_side: int,
    taxonomy: Taxonomy | None = None,
) -> LabelTable:
    """The chosen rows, in list order, as a label list (restricted to the subtrees if any)."""
    if spec.subtrees:
        if taxonomy is None:
            raise ValueError("subset.subtrees needs the dictionary (data.dictionary)")
        table = restrict(table, subtree_classes(taxonomy, spec.subtrees), num_classes)
    return table.select(select_rows(table, num_classes, spec, seed=seed, max_side=max_side))


def select_rows(
    table: LabelTable, num_classes: int, spec: SubsetParams, *, seed: int, max_side: int
) -> np.ndarray:
    """Row numbers of the subset, ascending; see the module docstring for the rule."""
    per_row = table.labels_per_image()
    labelled = per_row > 0
    order = np.random.default_rng(seed).permutation(np.flatnonzero(labelled))
    limit = budget(spec, max_side, len(order))
    state = _State(table, num_classes)
    if spec.min_per_class:
        _floor(state, order, spec.min_per_class, limit)
    if state.taken < limit:
        _fill(state, order, spec.max_per_class, limit)
    return np.flatnonzero(state.selected)


def _positions(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Label positions of `rows`, row after row (a vectorised concat of their ranges)."""
    counts = indptr[rows + 1] - indptr[rows]
    shift = np.repeat(indptr[rows] - (np.cumsum(counts) - counts), counts)
    return shift + np.arange(int(counts.sum()), dtype=np.int64)


class _State:
    def __init__(self, table: LabelTable, num_classes: int) -> None:
        self.table = table
        self.selected = np.zeros(len(table), dtype=bool)
        self.counts = np.zeros(num_classes, dtype=np.int64)
        self.taken = 0

    def take(self, rows: np.ndarray) -> None:
        self.selected[rows] = True
        self.taken += len(rows)
        classes = self.table.indices[_positions(self.table.indptr, rows)]
        self.counts += np.bincount(classes, minlength=len(self.counts))


def _floor(state: _State, order: np.ndarray, floor: int, limit: int) -> None:
    """Rarest class first: top each class up to `floor` images, in shuffled order."""
    table = state.table
    rank = np.empty(len(table), dtype=np.int64)
    rank[order] = np.arange(len(order))
    rows = np.repeat(np.arange(len(table)), table.labels_per_image())
    classes = table.indices.astype(np.int64)
    by_class = np.lexsort((rank[rows], classes))  # per class, rows in shuffled order
    rows, classes = rows[by_class], classes[by_class]
    totals = np.bincount(classes, minlength=len(state.counts))
    starts = np.concatenate(([0], np.cumsum(totals)))
    for c in np.argsort(totals, kind="stable"):
        if state.taken >= limit:
            return
        need = min(floor, totals[c]) - state.counts[c]
        if totals[c] == 0 or need <= 0:
            continue
        candidates = rows[starts[c] : starts[c + 1]]
        candidates = candidates[~state.selected[candidates]]
        _, first = np.unique(candidates, return_index=True)  # a class listed twice in a row
        candidates = candidates[np.sort(first)][: min(need, limit - state.taken)]
        state.take(candidates)


def _fill(state: _State, order: np.ndarray, cap: int | None, limit: int) -> None:
    """Fill the budget in shuffled order; with a cap, skip rows whose classes are all full.

    Within a chunk each row is judged as if every earlier row of the chunk had been taken,
    which can only under-fill a class, never push one over the cap.
    """
    rest = order[~state.selected[order]]
    table = state.table
    for start in range(0, len(rest), _CHUNK):
        room = limit - state.taken
        if room <= 0:
            return
        chunk = rest[start : start + _CHUNK]
        if cap is None:
            state.take(chunk[:room])
            continue
        counts = np.diff(table.indptr)[chunk]
        classes = table.indices[_positions(table.indptr, chunk)].astype(np.int64)
        owner = np.repeat(np.arange(len(chunk)), counts)
        by_class = np.lexsort((owner, classes))
        seen_before = np.empty(len(classes), dtype=np.int64)
        sorted_classes = classes[by_class]
        class_start = np.searchsorted(sorted_classes, sorted_classes, side="left")
        seen_before[by_class] = np.arange(len(classes)) - class_start
        under = (state.counts[classes] + seen_before) < cap
        useful = np.bincount(owner[under], minlength=len(chunk)) > 0
        state.take(chunk[useful][:room])


def coverage(
    full: LabelTable, chosen: LabelTable, num_classes: int, floor: int = 0
) -> pd.DataFrame:
    """The subset against the full list: images, classes covered, per-class and per-image."""
    rows = {}
    for name, table in (("full list", full), ("subset", chosen)):
        stats = label_stats(table, num_classes)
        per_class = table.images_per_class(num_classes)
        used = per_class[per_class > 0]
        rows[name] = {
            "images": stats["images"],
            "labels": stats["labels"],
            "classes_covered": stats["classes_used"],
            "labels_per_image_mean": round(stats["labels_per_image_mean"], 3),
            "images_per_class_median": float(np.median(used)) if len(used) else 0.0,
            "images_per_class_min": int(used.min()) if len(used) else 0,
        }
    full_counts = full.images_per_class(num_classes)
    chosen_counts = chosen.images_per_class(num_classes)
    present = full_counts > 0
    at_floor = chosen_counts[present] >= np.minimum(floor, full_counts[present])
    rows["full list"]["classes_at_floor"] = int(present.sum())
    rows["subset"]["classes_at_floor"] = int(at_floor.sum())
    return pd.DataFrame(rows)


def per_class(full: LabelTable, chosen: LabelTable, num_classes: int) -> pd.DataFrame:
    """Images per class in the full list and the subset, most frequent (in the full list) first."""
    frame = pd.DataFrame(
        {
            "full list": full.images_per_class(num_classes),
            "subset": chosen.images_per_class(num_classes),
        }
    )
    frame.index.name = "class"
    frame = frame[frame["full list"] > 0]
    return frame.sort_values("full list", ascending=False, kind="stable")
