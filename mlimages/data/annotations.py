"""ML-Images label lists: parsing, a compact CSR table, and the statistics built on it.

A label list has one image per line, ``key<whitespace>idx:conf idx:conf ...``; ``idx`` without
``:conf`` means confidence 1.0. The full training list has 17.6M lines, so parsing runs over
chunks of lines on a fast path: a byte scanner in C (``mlimages/data/_labelscan.c``, built at
install where a compiler is found), vectorised numpy otherwise. A plain per-line parser stays
the reference for anything the fast path does not recognise, and the only source of error
messages.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from mlimages.core.progress import quiet, tqdm

try:  # the C scanner, built at install by setup.py where a compiler was found
    from mlimages.data import _labelscan
except ImportError:  # pragma: no cover - exercised by installs without a compiler
    _labelscan = None

__all__ = [
    "LabelListError",
    "LabelTable",
    "LenientRead",
    "Taxonomy",
    "label_stats",
    "read_label_list",
    "read_lenient",
]

_WHITESPACE = b" \t\n\r\x0b\x0c"  # exactly what bytes.split() splits on, so both parsers agree

_INT32_MAX = int(np.iinfo(np.int32).max)
_BOM = b"\xef\xbb\xbf"

_INDEX_RE = re.compile(rb"[0-9]+")
_CONF_RE = re.compile(rb"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_KINDS = ("file", "url", "imagenet")

# Work budgets (items per vectorised step) that bound temporaries on the 17.6M-line list.
_LABEL_BUDGET = 1 << 20
_BYTE_BUDGET = 1 << 23
_CLOSE_ROWS = 1 << 15
_DENSE_PAIRS = 1 << 22  # cooccurrence(): bincount over k*k cells up to this, else sort


class LabelListError(ValueError):
    """A malformed label list line; the message names file, line and what was expected."""


class Taxonomy(Protocol):
    """What ``LabelTable.close`` needs from a class hierarchy."""

    num_classes: int

    def ancestor_csr(self) -> tuple[np.ndarray, np.ndarray]: ...


def _error(source: str, line: int, what: str, expected: str) -> LabelListError:
    return LabelListError(f"{source}:{line}: {what}; expected {expected}")


def _show(token: bytes) -> str:
    return repr(token.decode("utf-8", errors="replace"))


def _segment_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat positions of the segments ``[start, start + length)``, concatenated in order."""
    lengths = lengths.astype(np.int64, copy=False)
    total = int(lengths.sum())
    shift = starts.astype(np.int64, copy=False) - (np.cumsum(lengths) - lengths)
    return np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)


def _spans(prefix: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """Split rows ``0..len(prefix)-1`` into runs whose weight (from a prefix sum) fits a budget."""
    n = len(prefix) - 1
    i = 0
    while i < n:
        j = int(np.searchsorted(prefix, prefix[i] + budget, side="right")) - 1
        j = min(max(j, i + 1), n)
        yield i, j
        i = j


def _take_segments(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``data`` segments without one position per element for the whole output."""
    lengths = lengths.astype(np.int64, copy=False)
    prefix = np.concatenate(([0], np.cumsum(lengths)))
    out = np.empty(int(prefix[-1]), dtype=data.dtype)
    for i, j in _spans(prefix + np.arange(len(prefix)), _BYTE_BUDGET):
        out[prefix[i] : prefix[j]] = data[_segment_positions(starts[i:j], lengths[i:j])]
    return out


def _row_ids(indptr: np.ndarray) -> np.ndarray:
    """Row number (relative to ``indptr[0]``'s row) of every label in a CSR slice."""
    return np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))


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

    17.6M Python strs would cost GBs. Arrays are stored read-only so that ``labels()`` can hand
    out views and tables derived by ``select``/``close`` never alias writable state.
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
        return _spans(self.indptr + np.arange(len(self.indptr)), _LABEL_BUDGET)

    def _kind_codes(self, compiled: bool | None = None) -> np.ndarray:
        """Per-key kind (index into ``_KINDS``), read from each key's first 16 bytes.

        ``compiled`` (default: where built) selects the C classifier, else numpy runs.
        """
        codes = np.zeros(len(self), dtype=np.int8)
        if compiled is None:
            compiled = _labelscan is not None
        if compiled:
            _labelscan.key_kind_codes(self.key_bytes, self.key_offsets, codes)
            return codes
        for r0, r1 in _spans(self.key_offsets, _PIECE_BYTES):
            o0, o1 = int(self.key_offsets[r0]), int(self.key_offsets[r1])
            buf = np.zeros((o1 - o0 + _PAD_BYTES) // 8 * 8, dtype=np.uint8)
            buf[: o1 - o0] = self.key_bytes[o0:o1]
            starts = self.key_offsets[r0:r1] - o0
            lengths = self.key_offsets[r0 + 1 : r1 + 1] - self.key_offsets[r0:r1]
            words = np.stack(_head_words(buf.view(np.uint64), starts, lengths), axis=1)
            head = words.view(np.uint8)  # (keys, 16), zero past each key's end
            lower = head | 0x20
            digit = (head >= ord("0")) & (head <= ord("9"))
            alpha = (lower >= ord("a")) & (lower <= ord("z"))
            other = ~(alpha | digit | (head == ord("+")) | (head == ord("-")) | (head == ord(".")))
            # URL: a letter, then letters, digits or "+.-" up to the first other byte, "://".
            other = other.view(np.uint64)  # one 0/1 byte per column
            lo_first, lo_none = _first_byte(other[:, 0], _ONES)
            hi_first, _ = _first_byte(other[:, 1], _ONES)
            colon = np.minimum(lo_first + lo_none * (8 + hi_first), 13)
            at = np.arange(r1 - r0) * 16 + colon
            flat = head.reshape(-1)
            url = (
                alpha[:, 0]
                & (flat[at] == ord(":"))
                & (flat[at + 1] == ord("/"))
                & (flat[at + 2] == ord("/"))
            )
            # ImageNet: "n", 8 digits, "/", then a name without "/".
            digits = digit.view(np.uint64)
            imagenet = (
                (lengths >= 11)
                & (head[:, 0] == ord("n"))
                & (head[:, 9] == ord("/"))
                & ((digits[:, 0] >> 8) == 0x01010101010101)
                & ((digits[:, 1] & 1) == 1)
            )
            named = np.flatnonzero(imagenet)
            if len(named):
                tail_len = lengths[named] - 10
                tail = _take_segments(buf, starts[named] + 10, tail_len) == ord("/")
                imagenet[named] = ~np.logical_or.reduceat(tail, np.cumsum(tail_len) - tail_len)
            codes[r0:r1] = np.where(url, 1, np.where(imagenet, 2, 0))
        return codes

    def key_kind(self) -> str:
        """ "url", "imagenet" (``n########/name``), "file", or "mixed"; an empty table is "file"."""
        present = np.flatnonzero(np.bincount(self._kind_codes(), minlength=len(_KINDS)))
        if len(present) > 1:
            return "mixed"
        return _KINDS[present[0]] if len(present) else "file"

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
            rows = _row_ids(self.indptr[r0 : r1 + 1])
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
            rows = _row_ids(self.indptr[r0 : r1 + 1])[keep]
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
        rows_per_chunk = max(1, min(_CLOSE_ROWS, _INT32_MAX // max(num_classes, 1)))
        counts, indices, confs = [], [], []
        for r0 in range(0, len(self), rows_per_chunk):
            r1 = min(len(self), r0 + rows_per_chunk)
            s, e = self.indptr[r0], self.indptr[r1]
            idx = self.indices[s:e]
            conf = self.confidences[s:e]
            n_anc = a_indptr[idx + 1] - a_indptr[idx]
            anc = a_indices[_segment_positions(a_indptr[idx], n_anc)].astype(np.int64)
            rows = np.repeat(_row_ids(self.indptr[r0 : r1 + 1]), n_anc)
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
            key_bytes=_take_segments(self.key_bytes, self.key_offsets[rows], key_lengths),
            key_offsets=np.concatenate(([0], np.cumsum(key_lengths))),
            indptr=np.concatenate(([0], np.cumsum(counts))),
            indices=_take_segments(self.indices, starts, counts),
            confidences=_take_segments(self.confidences, starts, counts),
            source=self.source,
        )

    def to_dense(self, rows: np.ndarray | None, num_classes: int) -> np.ndarray:
        """Dense float32 targets for a batch; a class listed twice keeps its max confidence."""
        rows = np.arange(len(self)) if rows is None else _normalise_rows(rows, len(self))
        counts = np.diff(self.indptr)[rows]
        pos = _segment_positions(self.indptr[rows], counts)
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
            cell = np.sort(_row_ids(self.indptr[r0 : r1 + 1])[keep] * k + pos[keep])
            cell = cell[np.diff(cell, prepend=-1) != 0]
            rows, pos = cell // k, cell % k
            per_row = np.bincount(rows, minlength=r1 - r0)
            row_start = np.concatenate(([0], np.cumsum(per_row)))
            # Pairs inside each row; batch the rows so that sum(m_r ** 2) stays bounded.
            pair_prefix = np.concatenate(([0], np.cumsum(per_row**2)))
            for a, b in _spans(pair_prefix + np.arange(len(pair_prefix)), _LABEL_BUDGET * 4):
                lo, hi = row_start[a], row_start[b]
                m = per_row[rows[lo:hi]]
                partner = _segment_positions(row_start[rows[lo:hi]], m)
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
        path = os.fspath(path)
        tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "x", encoding="utf-8", newline="\n") as f:
                for block in self._lines():
                    f.write(block)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

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
        if len(indices) and (indices.min() < 0 or indices.max() > _INT32_MAX):
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


@dataclass
class _Parsed:
    """One slice's rows, in the pieces that concatenate into a ``LabelTable``."""

    key_bytes: np.ndarray  # uint8
    key_lengths: np.ndarray  # int64
    counts: np.ndarray  # int64, labels per row
    indices: np.ndarray  # int32
    confidences: np.ndarray  # float32
    unique_rows: bool  # no class twice in a row, so statistics can skip a sort

    @classmethod
    def unlabelled(cls, key_bytes: np.ndarray, key_lengths: np.ndarray) -> _Parsed:
        counts = np.zeros(len(key_lengths), dtype=np.int64)
        no_labels = np.empty(0, np.int32), np.empty(0, np.float32)
        return cls(key_bytes, key_lengths, counts, *no_labels, True)


# Fast path: SWAR ("SIMD within a register") on uint64 words holding a token's first 16 bytes,
# each step one numpy op over all tokens of a slice small enough to stay in cache.
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_ZEROS = np.uint64(0x3030303030303030)  # "00000000"
_F0 = np.uint64(0xF0F0F0F0F0F0F0F0)
_SIXES = np.uint64(0x0606060606060606)
_THREES = np.uint64(0x3333333333333333)
_COLONS = np.uint64(0x3A3A3A3A3A3A3A3A)
_DOTS = np.uint64(0x2E2E2E2E2E2E2E2E)
_BYTE_OF_BIT = np.uint64(0x0001020304050607)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
_POW10 = 10.0 ** np.arange(9)
_SLICE_BYTES = 1 << 20
_PIECE_BYTES = 1 << 20
_PAD_BYTES = 32  # readable bytes after a chunk, for the 3-word gathers
_PREFAULT_MIN_BYTES = 1 << 24  # output columns from this size on are mapped, their pages at once
_MADV_POPULATE_WRITE = 23  # <linux/mman.h>; Python's mmap module names it from 3.13 on


def _head_words(
    words: np.ndarray, start: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The first 16 bytes at each ``start`` (two aligned words each), zeroed past ``length``.

    In-place steps: every fresh temporary of a slice's size costs page faults here.
    """
    q = start >> 3
    shift = (start & 7).view(np.uint64)
    shift <<= 3
    back = 64 - shift
    w1 = words[q]
    w1 >>= shift
    q += 1
    mid = words[q]
    w2 = mid >> shift
    mid <<= back
    w1 |= mid
    q += 1
    high = words[q]
    high <<= back
    w2 |= high
    bits = np.minimum(length, 16).view(np.uint64)
    bits <<= 3
    mask = np.left_shift(_ALL, bits, out=back)
    w1 &= np.invert(mask, out=mask)
    w2 &= np.right_shift(_ALL, np.subtract(128, bits, out=bits), out=mask)
    return w1, w2


def _first_byte(words: np.ndarray, pattern: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """Offset of the first byte equal to ``pattern``'s in each word (0 if none), and "none"."""
    x = words ^ pattern
    z = (x - _ONES) & ~x & _HIGH  # lowest set bit marks the first match exactly
    offset = ((((z & (0 - z)) >> 7) * _BYTE_OF_BIT) >> 56).view(np.int64)
    return offset, z == 0


def _digits(words: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, bool]:
    """Decimal value of the first ``n`` (1..8) bytes of each word, and whether all are digits."""
    n8 = (n << 3).view(np.uint64)
    high = _ALL << n8
    w = (words & ~high) | (_ZEROS & high)
    ok = bool(np.all(((w & _F0) | (((w + _SIXES) & _F0) >> 4)) == _THREES))
    d = (w - _ZEROS) << (64 - n8)  # right-align: the padding becomes leading zeros
    d = (d * 10 + (d >> 8)) & 0x00FF00FF00FF00FF
    d = (d * 100 + (d >> 16)) & 0x0000FFFF0000FFFF
    d = (d * 10000 + (d >> 32)) & 0xFFFFFFFF
    return d, ok


def _parse_tokens(
    w1: np.ndarray, w2: np.ndarray, length: np.ndarray, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Parse ``idx[:conf]`` tokens given as 16 zero-padded bytes; None if any is unusual."""
    colon, no_colon = _first_byte(w1, _COLONS)
    index_len = colon + length * no_colon
    if index_len.min() < 1 or index_len.max() > 8:
        return None
    indices, ok = _digits(w1, index_len)
    if not ok or (num_classes is not None and indices.max() >= num_classes):
        return None
    conf_len = length - colon - 1
    c8 = ((colon + 1) << 3).view(np.uint64)
    conf_word = (w1 >> c8) | (w2 << (64 - c8))
    bare = no_colon.any()
    if bare:  # "idx" alone: parse a dummy "0" and set 1.0 below
        conf_word[no_colon] = 0x30
        conf_len[no_colon] = 1
    if conf_len.min() < 1 or conf_len.max() > 8:
        return None
    dot, no_dot = _first_byte(conf_word, _DOTS)
    low = ~(_ALL << ((dot + 8 * no_dot) << 3).view(np.uint64))
    digit_word = (conf_word & low) | ((conf_word >> 8) & ~low)  # drop the dot
    n_digits = conf_len - 1 + no_dot
    if n_digits.min() < 1:
        return None
    value, ok = _digits(digit_word, n_digits)
    # value < 10**8 and 10**k are exact doubles, so one division rounds like float(text).
    confidences = value / _POW10[(conf_len - 1 - dot) * ~no_dot]
    if not ok or confidences.max() > 1.0:
        return None
    if bare:
        confidences[no_colon] = 1.0
    return indices.astype(np.int32), confidences.astype(np.float32)


class _Vocabulary:
    """Direct-mapped cache of parsed label tokens.

    A list has ~C x (a few confidences) distinct tokens, so after the first slices nearly every
    token is a hit: one row gather and two compares instead of the full SWAR parse. Only tokens
    that ``_parse_tokens`` accepted get in, so a hit is as valid as a parse.
    """

    def __init__(self, num_classes: int | None, bits: int = 18) -> None:
        self.num_classes = num_classes
        self.shift = np.uint64(64 - bits)
        # Rows of (first word, second word, int32 index | float32 conf << 32, padding): one
        # cache line per lookup. A first word of 0 never matches a token.
        self.table = np.zeros((1 << bits, 4), dtype=np.uint64)

    def parse(self, w1: np.ndarray, w2: np.ndarray, length: np.ndarray) -> np.ndarray | None:
        slot = (((w1 ^ w2) * _MIX) >> self.shift).view(np.int64)
        rows = np.take(self.table, slot, axis=0)
        value = rows[:, 2].copy()
        miss = np.flatnonzero((rows[:, 0] != w1) | (rows[:, 1] != w2))
        if len(miss):
            parsed = _parse_tokens(w1[miss], w2[miss], length[miss], self.num_classes)
            if parsed is None:
                return None
            fresh = parsed[0].view(np.uint32).astype(np.uint64)
            fresh |= parsed[1].view(np.uint32).astype(np.uint64) << 32
            value[miss] = fresh
            slot = slot[miss]
            self.table[slot, 0] = w1[miss]
            self.table[slot, 1] = w2[miss]
            self.table[slot, 2] = fresh
        return value


def _parse_slice(
    buf: np.ndarray, words: np.ndarray, start: int, stop: int, vocab: _Vocabulary
) -> _Parsed | None:
    """Parse ``buf[start:stop]`` (whole lines); None means "not sure": use the slow path."""
    b = buf[start:stop]
    sep = np.flatnonzero(b <= 32)
    sep_char = b[sep]
    if np.any(((sep_char - 9) > 4) & (sep_char != 32)):
        return None  # a control character that is not whitespace
    first = np.empty(len(sep), dtype=bool)  # token j ends at sep[j]; first = starts a line
    first[0] = True
    np.equal(sep_char[:-1], 10, out=first[1:])
    length = np.diff(sep, prepend=-1) - 1
    empty = length == 0
    if empty.any():
        first_empty = empty[first]  # per line
        if first_empty.any() and np.any(~empty & first_empty[np.cumsum(first) - 1]):
            return None  # leading whitespace: the slow path reports it
        keep = ~empty
        sep, length, first = sep[keep], length[keep], first[keep]
    keys = np.flatnonzero(first)
    if len(keys) == 0:  # blank lines only
        return _Parsed.unlabelled(np.empty(0, np.uint8), np.empty(0, np.int64))
    key_end = sep[keys]
    key_len = length[keys]
    key_start = key_end - key_len
    runs = np.empty(2 * len(keys) + 1, dtype=np.int64)  # alternate non-key and key byte runs
    runs[0] = key_start[0]
    runs[1::2] = key_len
    runs[2:-1:2] = key_start[1:] - key_end[:-1]
    runs[-1] = len(b) - key_end[-1]
    take = np.zeros(len(runs), dtype=bool)
    take[1::2] = True
    key_bytes = b[np.repeat(take, runs)]

    is_label = ~first
    lab_len = length[is_label]
    if len(lab_len) == 0:
        return _Parsed.unlabelled(key_bytes, key_len)
    if lab_len.max() > 16:
        return None
    w1, w2 = _head_words(words, sep[is_label] - lab_len + start, lab_len)
    value = vocab.parse(w1, w2, lab_len)
    if value is None:
        return None
    counts = np.diff(keys, append=len(first)) - 1
    indices = value.view(np.int32)[0::2]
    return _Parsed(
        key_bytes=key_bytes,
        key_lengths=key_len,
        counts=counts,
        indices=indices,
        confidences=value.view(np.float32)[1::2],
        unique_rows=_rows_are_unique(counts, indices),
    )


def _rows_are_unique(counts: np.ndarray, indices: np.ndarray) -> bool:
    """Whether no row lists a class twice (sort of row * C + class, int32 when it fits)."""
    width = int(indices.max(initial=0)) + 1
    dtype = np.int32 if len(counts) * width < _INT32_MAX else np.int64
    rows = np.repeat(np.arange(len(counts), dtype=dtype), counts)
    cell = np.sort(rows * dtype(width) + indices)
    return not np.any(cell[1:] == cell[:-1])


def _slice_bounds(buf: np.ndarray, start: int, stop: int) -> list[int]:
    """Cut ``buf[start:stop]`` (ending in a newline) into ~_SLICE_BYTES runs of whole lines."""
    bounds = [start]
    while bounds[-1] < stop:
        cut, window = bounds[-1] + _SLICE_BYTES, 4096
        while cut < stop:
            newlines = np.flatnonzero(buf[max(cut - window, bounds[-1]) : cut] == ord("\n"))
            if len(newlines):
                cut = max(cut - window, bounds[-1]) + int(newlines[-1]) + 1
                break
            if cut - window <= bounds[-1]:  # one line longer than a slice
                cut += window
            window *= 2
        bounds.append(min(cut, stop))
    return bounds


class _ThreadVocabulary(threading.local):
    """One ``_Vocabulary`` per worker thread: lookups and inserts then need no locking."""

    def __init__(self, num_classes: int | None, bits: int = 18) -> None:
        self.vocab = _Vocabulary(num_classes, bits)


class _Scratch(threading.local):
    """One thread's output arrays for the compiled scanner, reused from slice to slice.

    Fresh memory costs page faults, and a slice's output stays in cache until it is copied to
    the table. A row or a label takes at least two bytes of input, hence the sizes.
    """

    def __init__(self) -> None:
        self.capacity = -1

    def fit(self, size: int) -> _Scratch:
        if size > self.capacity:
            self.capacity = max(size, _SLICE_BYTES + (_SLICE_BYTES >> 2), 2 * self.capacity)
            half = self.capacity // 2 + 1
            self.keys = np.empty(self.capacity, np.uint8)
            self.key_lengths = np.empty(half, np.int64)
            self.counts = np.empty(half, np.int64)
            self.indices = np.empty(half, np.int32)
            self.confidences = np.empty(half, np.float32)
        return self


class _FastState:
    """What the fast path keeps across the chunks of one read.

    ``compiled`` selects the C scanner (``_labelscan.scan_lines``); otherwise the numpy path
    runs, with one token vocabulary per thread.
    """

    def __init__(self, num_classes: int | None, compiled: bool, vocab_bits: int = 18) -> None:
        self.top = _INT32_MAX if num_classes is None else num_classes - 1
        self.scan = _labelscan.scan_lines if compiled else None
        self.vocabs = _ThreadVocabulary(num_classes, vocab_bits)
        self.scratch = _Scratch()


def _parse_chunk(
    buf: np.ndarray,
    start: int,
    stop: int,
    state: _FastState,
    table: _TableBuilder,
    pmap: Any = map,
) -> bool:
    """Parse ``buf[start:stop]`` (whole lines, the last ending in a newline) onto ``table``.

    False means "not sure" (``table`` is then as before): the caller runs the reference parser.
    ``pmap`` may run the ~1 MiB slices in threads: the compiled scanner releases the GIL, and
    numpy does inside each operation.
    """
    if state.scan is None:
        parts = _parse_fast(buf, start, stop, state.vocabs, pmap)
        if parts is None:
            return False
        table.add_all(parts, pmap)
        return True
    bounds = _slice_bounds(buf, start, stop)
    mark = table.mark()
    table.make_room(stop - start)  # so that no column moves while slices are copied in
    turns = _Turns()
    ok = all(
        pmap(
            lambda k, lo, hi: _scan_slice(buf, lo, hi, state, table, turns, k),
            range(len(bounds) - 1),
            bounds[:-1],
            bounds[1:],
        )
    )
    if not ok:
        table.rollback(mark)
    return ok


class _Turns:
    """Lets slice k take its place in the table after slices 0..k-1, whichever thread runs it."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.next = 0
        self.failed = False

    @contextlib.contextmanager
    def turn(self, k: int) -> Iterator[None]:
        with self.cond:
            self.cond.wait_for(lambda: self.next == k)
            try:
                yield
            finally:
                self.next += 1
                self.cond.notify_all()


def _scan_slice(
    buf: np.ndarray,
    start: int,
    stop: int,
    state: _FastState,
    table: _TableBuilder,
    turns: _Turns,
    k: int,
) -> bool:
    """Scan one slice into this thread's scratch, then copy it to its place in ``table``."""
    try:
        s = state.scratch.fit(stop - start)
        status, rows, key_bytes, labels, unique, ascii_only = state.scan(
            buf,
            start,
            stop,
            state.top,
            s.keys,
            s.key_lengths,
            s.counts,
            s.indices,
            s.confidences,
        )
        ok = status == 0
        if ok and not ascii_only:  # keys must be UTF-8; checking whole lines is exact: the
            try:  # separators are ASCII, so no multi-byte sequence spans two tokens
                buf[start:stop].tobytes().decode("utf-8")
            except UnicodeDecodeError:
                ok = False
    except BaseException:
        with turns.turn(k):  # later slices wait for this one's turn
            turns.failed = True
        raise
    with turns.turn(k):
        turns.failed |= not ok
        if turns.failed:
            return False
        at = table.claim(key_bytes, rows, labels, bool(unique))
    table.key_bytes.data[at[0] : at[0] + key_bytes] = s.keys[:key_bytes]
    table.key_offsets.data[at[1] : at[1] + rows] = s.key_lengths[:rows]
    table.indptr.data[at[1] : at[1] + rows] = s.counts[:rows]
    table.indices.data[at[2] : at[2] + labels] = s.indices[:labels]
    table.confidences.data[at[2] : at[2] + labels] = s.confidences[:labels]
    return True


def _parse_fast(
    buf: np.ndarray, start: int, stop: int, vocabs: _ThreadVocabulary, pmap: Any = map
) -> list[_Parsed] | None:
    """Vectorised (numpy) parse of ``buf[start:stop]``; None means "not sure"."""
    chunk = buf[start:stop]
    if chunk.max(initial=0) >= 0x80:
        try:
            chunk.tobytes().decode("utf-8")
        except UnicodeDecodeError:
            return None
    words = buf[: len(buf) // 8 * 8].view(np.uint64)
    bounds = _slice_bounds(buf, start, stop)
    parts = list(
        pmap(lambda lo, hi: _parse_slice(buf, words, lo, hi, vocabs.vocab), bounds[:-1], bounds[1:])
    )
    return None if any(p is None for p in parts) else parts


FaultFn = Callable[[str, int, LabelListError], None]
"""``(kind, line, error)``: one fault of a lenient read (see ``_parse_slow``)."""


def _fault(on_fault: FaultFn | None, kind: str, line: int, error: LabelListError) -> None:
    if on_fault is None:
        raise error
    on_fault(kind, line, error)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse_slow(
    chunk: bytes,
    first_line: int,
    source: str,
    num_classes: int | None,
    on_fault: FaultFn | None = None,
    row_lines: list[int] | None = None,
) -> _Parsed:
    """Reference parser: one line at a time, raising ``LabelListError`` on the first problem.

    With ``on_fault`` (the integrity check) it reports every problem instead and skips what the
    problem names: the line for a bad key, the token for a bad index or confidence. Kinds:
    ``empty_key``, ``key_not_utf8``, ``bad_index``, ``index_out_of_range``, ``bad_confidence``.
    ``row_lines`` receives the line number of every row kept.
    """
    lines = chunk.split(b"\n")
    if chunk.endswith(b"\n"):
        lines.pop()
    top = _INT32_MAX if num_classes is None else num_classes - 1
    keys: list[bytes] = []
    counts: list[int] = []
    indices: list[int] = []
    confidences: list[float] = []
    unique_rows = True
    for number, line in enumerate(lines, first_line):
        tokens = line.split()
        if not tokens:
            continue
        if line[0] in _WHITESPACE:
            what = "empty key (line starts with whitespace)"
            _fault(on_fault, "empty_key", number, _error(source, number, what, "the key first"))
            continue
        if not _is_utf8(tokens[0]):
            error = _error(source, number, f"key {_show(tokens[0])} is not UTF-8", "UTF-8")
            _fault(on_fault, "key_not_utf8", number, error)
            continue
        count = 0
        for token in tokens[1:]:
            index_text, colon, conf_text = token.partition(b":")
            if not _INDEX_RE.fullmatch(index_text):
                what, expected = f"bad class index {_show(index_text)}", "a non-negative integer"
                _fault(on_fault, "bad_index", number, _error(source, number, what, expected))
                continue
            index = int(index_text)
            if index > top:
                what = f"class index {index} out of range"
                error = _error(source, number, what, f"0..{top}")
                _fault(on_fault, "index_out_of_range", number, error)
                continue
            conf = 1.0
            if colon:
                conf = float(conf_text) if _CONF_RE.fullmatch(conf_text) else -1.0
                if not 0.0 <= conf <= 1.0:
                    what = f"bad confidence {_show(conf_text)}"
                    error = _error(source, number, what, "a number in [0, 1]")
                    _fault(on_fault, "bad_confidence", number, error)
                    continue
            indices.append(index)
            confidences.append(conf)
            count += 1
        keys.append(tokens[0])
        counts.append(count)
        if row_lines is not None:
            row_lines.append(number)
        row = indices[len(indices) - count :]
        unique_rows = unique_rows and len(set(row)) == len(row)
    return _Parsed(
        key_bytes=np.frombuffer(b"".join(keys), dtype=np.uint8),
        key_lengths=np.array([len(k) for k in keys], dtype=np.int64),
        counts=np.array(counts, dtype=np.int64),
        indices=np.array(indices, dtype=np.int32),
        confidences=np.array(confidences, dtype=np.float32),
        unique_rows=unique_rows,
    )


def _mapped(capacity: int, dtype: type, prefault: int) -> tuple[np.ndarray, mmap.mmap | None]:
    """An uninitialised array whose first ``prefault`` values' pages are mapped in one call.

    Touching fresh memory page by page costs a fault each; on this project's VMs that is
    ~2.4 ns a byte, more than parsing it, while ``MADV_POPULATE_WRITE`` (Linux 5.14) maps a
    range for ~0.3 ns a byte. Pages past ``prefault`` cost nothing until written. Small arrays
    and other systems get plain ``np.empty`` (and no map).
    """
    itemsize = np.dtype(dtype).itemsize
    if capacity * itemsize < _PREFAULT_MIN_BYTES or not hasattr(mmap, "MAP_ANONYMOUS"):
        return np.empty(capacity, dtype=dtype), None
    region = mmap.mmap(-1, capacity * itemsize, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    length = min(prefault, capacity) * itemsize
    if length:
        with contextlib.suppress(OSError):  # an older kernel: pages fault in as written
            region.madvise(_MADV_POPULATE_WRITE, 0, length)
    return np.frombuffer(region, dtype=dtype), region


class _Column:
    """Append-only array, so each output byte is written once.

    Fresh memory is expensive (page faults), and concatenating per-slice pieces at the end
    would touch every output byte twice. Growing allocates anew (``_mapped``).
    """

    def __init__(self, dtype: type) -> None:
        self.data = np.empty(1 << 16, dtype=dtype)
        self.region: mmap.mmap | None = None  # the map behind ``data``, if it is one
        self.size = 0

    def reserve(self, capacity: int, expected: int = 0) -> None:
        """Room for ``capacity`` values; pages for the first ``expected`` are mapped now."""
        if capacity > len(self.data):
            grown, region = _mapped(capacity, self.data.dtype.type, max(expected, self.size))
            grown[: self.size] = self.data[: self.size]
            self.data, self.region = grown, region

    def extend(self, length: int) -> int:
        """Make room for ``length`` more values; returns where they go."""
        at, end = self.size, self.size + length
        if end > len(self.data):
            self.reserve(max(end, 2 * len(self.data)))
        self.size = end
        return at

    def append(self, values: np.ndarray) -> None:
        at = self.extend(len(values))
        self.data[at : self.size] = values

    def take(self) -> np.ndarray:
        """The values; the unused tail of a mapped array goes back to the system."""
        if self.region is not None:
            used = -(-self.size * self.data.itemsize // mmap.PAGESIZE) * mmap.PAGESIZE
            if used < len(self.region):
                self.region.madvise(mmap.MADV_DONTNEED, used, len(self.region) - used)
            return self.data[: self.size]
        self.data.resize(self.size, refcheck=False)  # shrinking: no copy, no fill
        return self.data


class _TableBuilder:
    """Collects parsed slices in file order into the arrays of one ``LabelTable``."""

    def __init__(self) -> None:
        self.key_bytes = _Column(np.uint8)
        self.key_offsets = _Column(np.int64)  # lengths until build(), after a leading 0
        self.indptr = _Column(np.int64)  # counts until build(), after a leading 0
        self.indices = _Column(np.int32)
        self.confidences = _Column(np.float32)
        self.key_offsets.append(np.zeros(1, np.int64))
        self.indptr.append(np.zeros(1, np.int64))
        self.unique_rows = True

    def _columns(self) -> tuple[_Column, ...]:
        return (self.key_bytes, self.key_offsets, self.indptr, self.indices, self.confidences)

    def add(self, part: _Parsed) -> None:
        self.add_all([part])

    def add_all(self, parts: list[_Parsed], pmap: Any = map) -> None:
        """Append ``parts`` in order; ``pmap`` may copy them in threads (numpy drops the GIL),
        which spreads the page faults of fresh output memory over the cores."""
        fields = ("key_bytes", "key_lengths", "counts", "indices", "confidences")
        jobs: list[list[tuple[np.ndarray, int, np.ndarray]]] = [[] for _ in parts]
        for column, field in zip(self._columns(), fields, strict=True):
            values = [getattr(part, field) for part in parts]
            starts = [column.extend(len(v)) for v in values]  # may move column.data
            for job, at, v in zip(jobs, starts, values, strict=True):
                job.append((column.data, at, v))
        for part in parts:
            self.unique_rows &= part.unique_rows
        list(pmap(_copy_all, jobs))

    def reserve(self, scale: float, extra_bytes: int = 0) -> None:
        """Size every column for ``scale`` times its content (the expected final size), plus
        room for any ``extra_bytes`` of input (memory not written to costs nothing)."""
        for column, bound in zip(self._columns(), self._bounds(extra_bytes), strict=True):
            expected = int(column.size * scale)
            column.reserve(expected + bound + 4096, expected)

    @staticmethod
    def _bounds(nbytes: int) -> tuple[int, ...]:
        """Most values ``nbytes`` of input can add to each column (a row or label takes 2)."""
        half = nbytes // 2 + 1
        return (nbytes, half, half, half, half)

    def make_room(self, nbytes: int) -> None:
        for column, bound in zip(self._columns(), self._bounds(nbytes), strict=True):
            if column.size + bound > len(column.data):
                column.reserve(max(column.size + bound, 2 * len(column.data)))

    def mark(self) -> tuple[Any, ...]:
        return (*(column.size for column in self._columns()), self.unique_rows)

    def rollback(self, mark: tuple[Any, ...]) -> None:
        for column, size in zip(self._columns(), mark, strict=False):
            column.size = size
        self.unique_rows = mark[-1]

    def claim(self, key_bytes: int, rows: int, labels: int, unique: bool) -> tuple[int, int, int]:
        """Places for one slice's values (after ``make_room``, so no column moves)."""
        at = (self.key_bytes.size, self.key_offsets.size, self.indices.size)
        for column, n in zip(self._columns(), (key_bytes, rows, rows, labels, labels), strict=True):
            column.size += n
            assert column.size <= len(column.data)
        self.unique_rows &= unique
        return at

    def build(self, source: str) -> LabelTable:
        key_offsets, indptr = self.key_offsets.take(), self.indptr.take()
        table = LabelTable(
            key_bytes=self.key_bytes.take(),
            key_offsets=np.cumsum(key_offsets, out=key_offsets),
            indptr=np.cumsum(indptr, out=indptr),
            indices=self.indices.take(),
            confidences=self.confidences.take(),
            source=source,
        )
        table.__dict__["_unique_rows"] = self.unique_rows  # seeds the cached_property
        return table


def _copy_all(jobs: list[tuple[np.ndarray, int, np.ndarray]]) -> None:
    for dst, at, values in jobs:
        dst[at : at + len(values)] = values


def _line_end(data: np.ndarray, lines: int) -> tuple[int, int]:
    """Offset just past the ``lines``-th newline in ``data`` and ``lines``, or -1 and the number
    of newlines in ``data`` if there are fewer."""
    is_newline = np.empty(min(len(data), _PIECE_BYTES), dtype=bool)  # reused: no page faults
    seen = 0
    for lo in range(0, len(data), _PIECE_BYTES):
        piece = np.equal(data[lo : lo + _PIECE_BYTES], ord("\n"), out=is_newline[: len(data) - lo])
        hits = int(np.count_nonzero(piece))
        if seen + hits >= lines:
            return lo + int(np.flatnonzero(piece)[lines - seen - 1]) + 1, lines
        seen += hits
    return -1, seen


def _iter_chunks(
    f: Any, chunk_lines: int, on_read: Any
) -> Iterator[tuple[np.ndarray, int, int, int]]:
    """Yield ``(buf, start, stop, first_line)``: ``chunk_lines`` whole lines in ``buf[start:stop]``.

    One reused buffer, so no chunk-sized allocations (page faults cost more than parsing here),
    filled ``_PIECE_BYTES`` at a time so that little is left to move to its front after a chunk;
    each byte is searched for newlines once. ``buf[stop]`` is a newline when the file's last
    line lacks one; ``_PAD_BYTES`` follow it. The buffer is overwritten by the next iteration.
    """
    buf = np.empty(_PIECE_BYTES + _PAD_BYTES, dtype=np.uint8)
    start = scanned = size = seen = 0  # buf[start:size] unread; buf[start:scanned]: `seen` lines
    line, at_eof, at_start = 1, False, True
    while True:
        end, hits = _line_end(buf[scanned:size], chunk_lines - seen)
        if end < 0 and not at_eof:
            seen, scanned = seen + hits, size
            if len(buf) - _PAD_BYTES - size < _PIECE_BYTES:
                if start:
                    buf[: size - start] = buf[start:size]
                    size, scanned, start = size - start, scanned - start, 0
                if len(buf) - _PAD_BYTES - size < _PIECE_BYTES:
                    grown = np.empty(2 * len(buf), dtype=np.uint8)
                    grown[:size] = buf[:size]
                    buf = grown
            n = f.readinto(memoryview(buf)[size : size + _PIECE_BYTES])
            on_read(n)
            at_eof = n == 0
            size += n
            if at_start and size >= 3:
                at_start = False
                start = 3 if buf[:3].tobytes() == _BOM else 0
                scanned = max(scanned, start)
            continue
        stop = scanned + end if end >= 0 else size
        if stop > start:
            if buf[stop - 1] != ord("\n"):
                buf[stop] = ord("\n")  # the file's last line; buf[stop] is padding here
            yield buf, start, stop, line
        if end < 0:
            return
        line += chunk_lines
        start = scanned = stop
        seen = 0


def read_label_list(
    path: str | os.PathLike[str],
    num_classes: int | None = None,
    chunk_lines: int = 262_144,
    progress: bool | None = None,
) -> LabelTable:
    """Read an ML-Images label list into a ``LabelTable``.

    ``num_classes`` turns out-of-range class indices into errors at read time. Each chunk of
    ``chunk_lines`` lines is parsed by the vectorised path, or, if that meets anything unusual,
    by the per-line reference parser, which raises ``LabelListError`` (file, line, expectation).
    """
    return _read(path, num_classes, chunk_lines, progress)


@dataclass
class LenientRead:
    """A label list read without stopping at faults (``read_lenient``).

    ``row_lines[i]`` is the line number of row ``i`` (blank lines and lines with a bad key
    make no row); ``lines`` counts every line of the file, blank ones too.
    """

    table: LabelTable
    row_lines: np.ndarray  # int64
    lines: int


def read_lenient(
    path: str | os.PathLike[str],
    on_fault: FaultFn,
    chunk_lines: int = 262_144,
    progress: bool | None = None,
) -> LenientRead:
    """Read what parses and report the rest: the integrity check's reader.

    Clean chunks take the same fast path as ``read_label_list``. A chunk it hands over is cut
    into pieces of 2,048 lines, a piece that fails again into pieces of 32, and only those go
    through the reference parser (in its reporting mode, ~10 us a line): a fault costs a few
    dozen slow lines, not a chunk's. Class indices are not range-checked here (the caller
    compares with its dictionary).
    """
    lenient = _Lenient(on_fault)
    table = _read(path, None, chunk_lines, progress, lenient)
    row_lines = np.concatenate([np.empty(0, np.int64), *lenient.row_lines])
    assert len(row_lines) == len(table), "every row has its line"
    return LenientRead(table, row_lines, lenient.lines)


class _Lenient:
    """State of a lenient read: the fault callback, every row's line number, lines seen."""

    PIECES = (2048, 32)  # lines a piece, at each level of falling back

    def __init__(self, on_fault: FaultFn) -> None:
        self.on_fault = on_fault
        self.row_lines: list[np.ndarray] = []
        self.lines = 0

    def chunk(
        self,
        buf: np.ndarray,
        span: tuple[int, int, int],
        first_line: int,
        parse: Callable[[int, int], int],
        slow: Callable[[bytes, int, list[int]], None],
        level: int = 0,
    ) -> None:
        """Parse ``buf[start:stop]`` (``term`` past the newline the last line may lack) with
        ``parse`` (the fast path: rows added, or -1 where it hands over); where it fails, in
        smaller pieces, then with ``slow``."""
        start, stop, term = span
        newlines = np.flatnonzero(buf[start:stop] == ord("\n"))
        lines = len(newlines) + int(buf[stop - 1] != ord("\n"))
        if level == 0:
            self.lines += lines
        added = parse(start, term)
        if added == lines:
            self.row_lines.append(np.arange(first_line, first_line + lines, dtype=np.int64))
            return
        if added >= 0:  # blank lines: rows are the lines with a token
            texts = buf[start:stop].tobytes().split(b"\n")[:lines]
            rows = [first_line + i for i, t in enumerate(texts) if t.split()]
            self.row_lines.append(np.asarray(rows, dtype=np.int64))
            return
        if level == len(self.PIECES):
            rows_at: list[int] = []
            slow(buf[start:stop].tobytes(), first_line, rows_at)
            self.row_lines.append(np.asarray(rows_at, dtype=np.int64))
            return
        step = self.PIECES[level]
        ends = newlines[step - 1 :: step] + start + 1
        cuts = [start, *[int(e) for e in ends if e < stop], stop]
        for k in range(len(cuts) - 1):
            lo, hi = cuts[k], cuts[k + 1]
            piece = (lo, hi, term if hi == stop else hi)
            self.chunk(buf, piece, first_line + k * step, parse, slow, level + 1)


def _read(
    path: str | os.PathLike[str],
    num_classes: int | None,
    chunk_lines: int,
    progress: bool | None,
    lenient: _Lenient | None = None,
) -> LabelTable:
    """``read_label_list``, or with ``lenient`` the reader of ``read_lenient``."""
    source = os.fspath(path)
    if chunk_lines < 1:
        raise ValueError(f"chunk_lines must be positive, got {chunk_lines}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    try:
        f = open(source, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "label list not found", source) from None
    table = _TableBuilder()
    size, first_chunk = os.fstat(f.fileno()).st_size, True
    state = _FastState(num_classes, compiled=_labelscan is not None)
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = max(1, min(workers or 1, 8))
    with (
        ThreadPoolExecutor(workers) as pool,
        f,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=os.path.basename(source),
            disable=quiet(progress),
        ) as bar,
    ):
        pmap = pool.map if workers > 1 else map
        for buf, start, stop, first_line in _iter_chunks(f, chunk_lines, bar.update):
            term = stop + (buf[stop - 1] != ord("\n"))
            if lenient is not None:

                def parse(lo: int, hi: int, buf: np.ndarray = buf) -> int:
                    before = table.key_offsets.size
                    ok = _parse_chunk(buf, lo, hi, state, table, pmap)
                    return table.key_offsets.size - before if ok else -1

                def slow(chunk: bytes, line: int, rows_at: list[int]) -> None:
                    parsed = _parse_slow(chunk, line, source, None, lenient.on_fault, rows_at)
                    table.add(parsed)

                lenient.chunk(buf, (start, stop, term), first_line, parse, slow)
            elif not _parse_chunk(buf, start, term, state, table, pmap):
                chunk = buf[start:stop].tobytes()
                table.add_all([_parse_slow(chunk, first_line, source, num_classes)], pmap)
            if first_chunk and size > stop - start:  # one resize instead of doubling as we go
                table.reserve(1.05 * size / (stop - start), extra_bytes=stop - start)
            first_chunk = False
    return table.build(source)


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
