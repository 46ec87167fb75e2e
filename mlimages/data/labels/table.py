"""The label table: a label list held as CSR arrays, and the statistics built on it.

Keys are stored as one utf-8 byte buffer plus offsets, labels as ``indptr`` / ``indices`` /
``confidences``: the full training list has 17.6M lines, too many to hold as Python strings.
The table also writes itself back in the authors' text format.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from mlimages.core.atomic import atomic_path
from mlimages.data.labels.compiled import scanner
from mlimages.data.labels.segments import row_ids, segment_positions, spans, take_segments
from mlimages.data.labels.swar import key_kind_codes

INT32_MAX = int(np.iinfo(np.int32).max)
KINDS = ("file", "url", "imagenet")  # what a key names, in the order of its kind code

# Work budgets (items per vectorised step) that bound temporaries on the 17.6M-line list.
_LABEL_BUDGET = 1 << 20
_CLOSE_ROWS = 1 << 15
_DENSE_PAIRS = 1 << 22  # cooccurrence(): bincount over k*k cells up to this, else sort


class Taxonomy(Protocol):
    """What ``LabelTable.close`` needs from a class hierarchy."""

    num_classes: int

    def ancestor_csr(self) -> tuple[np.ndarray, np.ndarray]: ...


def _readonly(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


def _normalise_rows(rows: np.ndarray, n: int) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise TypeError(
            f"rows must be a 1-D integer array, got {rows.dtype} with shape {rows.shape}"
        )
    rows = rows.astype(np.int64)
    rows[rows < 0] += n
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"row index out of range for a table of {n} rows")
    return rows


@dataclass(frozen=True)
class LabelTable:
    """CSR multi-label table; keys stored as one utf-8 byte buffer + offsets.

    Arrays are stored read-only so that ``labels()`` can hand out views and tables derived by
    ``select``/``close`` never alias writable state.
    """

    key_bytes: np.ndarray
    key_offsets: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    confidences: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        dtypes = {
            "key_bytes": np.uint8,
            "key_offsets": np.int64,
            "indptr": np.int64,
            "indices": np.int32,
            "confidences": np.float32,
        }
        for name, dtype in dtypes.items():
            arr = np.asarray(getattr(self, name))
            if arr.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
            converted = arr.astype(dtype, copy=False)
            lossy = converted is not arr and not np.array_equal(converted, arr)
            if lossy and np.dtype(dtype).kind != "f":  # rounding confidences to float32 is fine
                raise TypeError(f"{name} does not fit {np.dtype(dtype)} (got {arr.dtype})")
            object.__setattr__(self, name, _readonly(converted))
        n = len(self.indptr) - 1
        if n < 0 or len(self.key_offsets) != n + 1:
            raise ValueError("indptr and key_offsets must both have length len(table) + 1")
        if self.indptr[0] != 0 or self.indptr[-1] != len(self.indices):
            raise ValueError("indptr must run from 0 to len(indices)")
        if len(self.confidences) != len(self.indices):
            raise ValueError("indices and confidences must have the same length")
        if self.key_offsets[0] != 0 or self.key_offsets[-1] != len(self.key_bytes):
            raise ValueError("key_offsets must run from 0 to len(key_bytes)")
        offsets, indptr = self.key_offsets, self.indptr
        if np.any(offsets[1:] <= offsets[:-1]) or np.any(indptr[1:] < indptr[:-1]):
            raise ValueError("keys must be non-empty and indptr non-decreasing")

    def __eq__(self, other: object) -> bool:
        """Compare contents; ``source`` is provenance only, so it does not take part."""
        if not isinstance(other, LabelTable):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("key_bytes", "key_offsets", "indptr", "indices", "confidences")
        )

    def __repr__(self) -> str:
        return f"LabelTable({len(self)} images, {self.num_labels} labels, source={self.source!r})"

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def _row(self, i: int) -> int:
        n = len(self)
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"row {i} out of range for a table of {n} rows")
        return j

    def key(self, i: int) -> str:
        i = self._row(i)
        return self.key_bytes[self.key_offsets[i] : self.key_offsets[i + 1]].tobytes().decode()

    def keys(self) -> list[str]:
        buf = self.key_bytes.tobytes()
        offs = self.key_offsets.tolist()
        return [buf[a:b].decode() for a, b in zip(offs[:-1], offs[1:], strict=True)]

    def labels(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        i = self._row(i)
        s, e = self.indptr[i], self.indptr[i + 1]
        return self.indices[s:e], self.confidences[s:e]

    @property
    def num_labels(self) -> int:
        return len(self.indices)

    @property
    def label_nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.confidences.nbytes

    def _label_spans(self) -> Iterator[tuple[int, int]]:
        return spans(self.indptr + np.arange(len(self.indptr)), _LABEL_BUDGET)

    def _kind_codes(self, compiled: bool | None = None) -> np.ndarray:
        """Per-key kind (index into ``KINDS``), read from each key's first 16 bytes.

        ``compiled`` (default: where built) selects the C classifier, else numpy runs.
        """
        codes = np.zeros(len(self), dtype=np.int8)
        if compiled is None:
            compiled = scanner() is not None
        classify = scanner().key_kind_codes if compiled else key_kind_codes
        classify(self.key_bytes, self.key_offsets, codes)
        return codes

    def key_kind(self) -> str:
        """ "url", "imagenet" (``n########/name``), "file", or "mixed"; an empty table is "file"."""
        present = np.flatnonzero(np.bincount(self._kind_codes(), minlength=len(KINDS)))
        if len(present) > 1:
            return "mixed"
        return KINDS[present[0]] if len(present) else "file"

    def labels_per_image(self) -> np.ndarray:
        return np.diff(self.indptr)

    def _check_classes(self, num_classes: int) -> None:
        if num_classes < 0:
            raise ValueError(f"num_classes must be non-negative, got {num_classes}")
        if self.num_labels and int(self.indices.max()) >= num_classes:
            raise ValueError(
                f"class index {int(self.indices.max())} out of range; expected 0..{num_classes - 1}"
            )

    @cached_property
    def _unique_rows(self) -> bool:
        """No row lists a class twice; then counting labels counts images (no sort needed)."""
        for r0, r1 in self._label_spans():
            s, e = self.indptr[r0], self.indptr[r1]
            rows = row_ids(self.indptr[r0 : r1 + 1])
            cell = np.sort(rows * (int(self.indices[s:e].max(initial=0)) + 1) + self.indices[s:e])
            if np.any(cell[1:] == cell[:-1]):
                return False
        return True

    def images_per_class(self, num_classes: int, threshold: float = 0.0) -> np.ndarray:
        """Images per class; a class listed twice on one line still counts that image once."""
        self._check_classes(num_classes)
        counts = np.zeros(num_classes, dtype=np.int64)
        for r0, r1 in self._label_spans():
            s, e = self.indptr[r0], self.indptr[r1]
            conf, idx = self.confidences[s:e], self.indices[s:e]
            keep = conf >= threshold if threshold else conf > 0
            if self._unique_rows:  # then counting labels counts images
                counts += np.bincount(idx if keep.all() else idx[keep], minlength=num_classes)
                continue
            rows = row_ids(self.indptr[r0 : r1 + 1])[keep]
            # np.sort + run mask: np.unique is far slower on this numpy for 10M+ int64 keys.
            cell = np.sort(rows * num_classes + idx[keep])
            cell = cell[np.diff(cell, prepend=-1) != 0]
            counts += np.bincount(cell % num_classes, minlength=num_classes)
        return counts

    def close(self, taxonomy: Taxonomy) -> LabelTable:
        """Add every ancestor of every label, each with the max confidence of labels implying it."""
        num_classes = int(taxonomy.num_classes)
        a_indptr, a_indices = taxonomy.ancestor_csr()
        a_indptr = np.asarray(a_indptr, dtype=np.int64)
        a_indices = np.asarray(a_indices, dtype=np.int32)
        if len(a_indptr) != num_classes + 1 or a_indptr[-1] != len(a_indices):
            raise ValueError("ancestor_csr() must return indptr of length C + 1 and its indices")
        if len(a_indices) and (a_indices.min() < 0 or a_indices.max() >= num_classes):
            raise ValueError(f"ancestor_csr() has class indices outside 0..{num_classes - 1}")
        self._check_classes(num_classes)
        # One int64 sort key per (row, class, conf): row*C + class in the high 32 bits, inverted
        # float32 bits below (monotone for conf >= 0) so that the first of each run is the max.
        rows_per_chunk = max(1, min(_CLOSE_ROWS, INT32_MAX // max(num_classes, 1)))
        counts, indices, confs = [], [], []
        for r0 in range(0, len(self), rows_per_chunk):
            r1 = min(len(self), r0 + rows_per_chunk)
            s, e = self.indptr[r0], self.indptr[r1]
            idx = self.indices[s:e]
            conf = self.confidences[s:e]
            n_anc = a_indptr[idx + 1] - a_indptr[idx]
            anc = a_indices[segment_positions(a_indptr[idx], n_anc)].astype(np.int64)
            rows = np.repeat(row_ids(self.indptr[r0 : r1 + 1]), n_anc)
            # "+ 0" turns -0.0 into +0.0, whose bits would otherwise sort above every positive.
            bits = (np.repeat(conf, n_anc) + np.float32(0)).view(np.uint32).astype(np.int64)
            key = np.sort(((rows * num_classes + anc) << 32) | (0xFFFFFFFF - bits))
            cell = key >> 32
            first = np.diff(cell, prepend=-1) != 0
            cell, low = cell[first], key[first] & 0xFFFFFFFF
            counts.append(np.bincount(cell // num_classes, minlength=r1 - r0))
            indices.append((cell % num_classes).astype(np.int32))
            confs.append((0xFFFFFFFF - low).astype(np.uint32).view(np.float32))
        return LabelTable(
            key_bytes=self.key_bytes,
            key_offsets=self.key_offsets,
            indptr=np.concatenate(
                ([0], np.cumsum(np.concatenate([np.empty(0, np.int64), *counts])))
            ),
            indices=np.concatenate([np.empty(0, np.int32), *indices]),
            confidences=np.concatenate([np.empty(0, np.float32), *confs]),
            source=self.source,
        )

    def select(self, rows: np.ndarray) -> LabelTable:
        rows = _normalise_rows(rows, len(self))
        counts = np.diff(self.indptr)[rows]
        key_lengths = np.diff(self.key_offsets)[rows]
        starts = self.indptr[rows]
        return LabelTable(
            key_bytes=take_segments(self.key_bytes, self.key_offsets[rows], key_lengths),
            key_offsets=np.concatenate(([0], np.cumsum(key_lengths))),
            indptr=np.concatenate(([0], np.cumsum(counts))),
            indices=take_segments(self.indices, starts, counts),
            confidences=take_segments(self.confidences, starts, counts),
            source=self.source,
        )

    def to_dense(self, rows: np.ndarray | None, num_classes: int) -> np.ndarray:
        """Dense float32 targets for a batch; a class listed twice keeps its max confidence."""
        rows = np.arange(len(self)) if rows is None else _normalise_rows(rows, len(self))
        counts = np.diff(self.indptr)[rows]
        pos = segment_positions(self.indptr[rows], counts)
        idx = self.indices[pos]
        if len(idx) and int(idx.max()) >= num_classes:
            raise ValueError(
                f"class index {int(idx.max())} out of range; expected 0..{num_classes - 1}"
            )
        out = np.zeros((len(rows), num_classes), dtype=np.float32)
        np.maximum.at(out, (np.repeat(np.arange(len(rows)), counts), idx), self.confidences[pos])
        return out

    def cooccurrence(self, classes: np.ndarray) -> np.ndarray:
        """Images having both classes (conf > 0) for each pair of ``classes``; diag = per class."""
        classes = np.asarray(classes).astype(np.int64).ravel()
        k = len(classes)
        if k and classes.min() < 0:
            raise ValueError("classes must be non-negative")
        if len(np.unique(classes)) != k:
            raise ValueError("classes must not repeat")
        out = np.zeros((k, k), dtype=np.int64)
        if k == 0 or self.num_labels == 0:
            return out
        position = np.full(max(int(classes.max()), int(self.indices.max())) + 1, -1, np.int64)
        position[classes] = np.arange(k)
        flat_out = out.reshape(-1)
        for r0, r1 in self._label_spans():
            s, e = self.indptr[r0], self.indptr[r1]
            pos = position[self.indices[s:e]]
            keep = (pos >= 0) & (self.confidences[s:e] > 0)
            cell = np.sort(row_ids(self.indptr[r0 : r1 + 1])[keep] * k + pos[keep])
            cell = cell[np.diff(cell, prepend=-1) != 0]
            rows, pos = cell // k, cell % k
            per_row = np.bincount(rows, minlength=r1 - r0)
            row_start = np.concatenate(([0], np.cumsum(per_row)))
            # Pairs inside each row; batch the rows so that sum(m_r ** 2) stays bounded.
            pair_prefix = np.concatenate(([0], np.cumsum(per_row**2)))
            for a, b in spans(pair_prefix + np.arange(len(pair_prefix)), _LABEL_BUDGET * 4):
                lo, hi = row_start[a], row_start[b]
                m = per_row[rows[lo:hi]]
                partner = segment_positions(row_start[rows[lo:hi]], m)
                pair = np.repeat(pos[lo:hi], m) * k + pos[partner]
                if k * k <= _DENSE_PAIRS:
                    flat_out += np.bincount(pair, minlength=k * k)
                else:
                    pair = np.sort(pair)
                    edge = np.flatnonzero(np.diff(pair, prepend=-1, append=-1) != 0)
                    flat_out[pair[edge[:-1]]] += np.diff(edge)
        return out

    def _lines(self) -> Iterator[str]:
        """The authors' text format, a block of lines at a time."""
        for r0, r1 in self._label_spans():
            s, e = self.indptr[r0], self.indptr[r1]
            values, inverse = np.unique(self.confidences[s:e], return_inverse=True)
            suffix = [":" + np.format_float_positional(v, unique=True, trim="-") for v in values]
            tokens = [
                f"{i}{suffix[c]}"
                for i, c in zip(self.indices[s:e].tolist(), inverse.tolist(), strict=True)
            ]
            bounds = (self.indptr[r0 : r1 + 1] - s).tolist()
            raw = self.key_bytes[self.key_offsets[r0] : self.key_offsets[r1]].tobytes()
            koffs = (self.key_offsets[r0 : r1 + 1] - self.key_offsets[r0]).tolist()
            keys = [raw[a:b].decode() for a, b in zip(koffs[:-1], koffs[1:], strict=True)]
            yield "".join(
                "\t".join([keys[r], *tokens[bounds[r] : bounds[r + 1]]]) + "\n"
                for r in range(r1 - r0)
            )

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write ``key\\tidx:conf...``; atomic so a crash never leaves a truncated list behind.

        Confidences use the shortest decimal that reads back to the same float32 ("1", "0.9").
        """
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for block in self._lines():
                f.write(block)

    @classmethod
    def from_rows(
        cls,
        keys: Sequence[str],
        rows: Sequence[Sequence[tuple[int, float]]],
        source: str = "",
    ) -> LabelTable:
        """Build a table in memory, rejecting what the text format could not round-trip."""
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} keys but {len(rows)} label rows")
        encoded = [k.encode() for k in keys]
        for k in encoded:
            if k.split() != [k]:
                raise ValueError(f"key {k.decode()!r} must be non-empty and contain no whitespace")
        flat = [pair for row in rows for pair in row]
        indices = np.array([int(i) for i, _ in flat], dtype=np.int64)
        confs = np.array([float(c) for _, c in flat], dtype=np.float64)
        if len(indices) and (indices.min() < 0 or indices.max() > INT32_MAX):
            raise ValueError("class indices must be in 0..2147483647")
        if len(confs) and not ((confs >= 0) & (confs <= 1)).all():
            raise ValueError("confidences must be numbers in [0, 1]")
        return cls(
            key_bytes=np.frombuffer(b"".join(encoded), dtype=np.uint8),
            key_offsets=np.concatenate(([0], np.cumsum([len(k) for k in encoded], dtype=np.int64))),
            indptr=np.concatenate(([0], np.cumsum([len(r) for r in rows], dtype=np.int64))),
            indices=indices.astype(np.int32),
            confidences=(confs + 0.0).astype(np.float32),  # no -0.0
            source=source,
        )


def label_stats(table: LabelTable, num_classes: int | None = None) -> dict[str, Any]:
    """Summary numbers as plain Python values so that they can go straight into JSON."""
    per_image = table.labels_per_image()
    if num_classes is None:
        num_classes = int(table.indices.max()) + 1 if table.num_labels else 0
    per_class = table.images_per_class(num_classes)
    used = per_class[per_class > 0]
    return {
        "images": len(table),
        "labels": table.num_labels,
        "labels_per_image_mean": float(per_image.mean()) if len(table) else 0.0,
        "labels_per_image_max": int(per_image.max()) if len(table) else 0,
        "classes_used": len(used),
        "key_kind": table.key_kind(),
        "images_per_class_mean": float(used.mean()) if len(used) else 0.0,
    }
