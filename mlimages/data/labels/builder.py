"""Parsed slices collected, in file order, into the arrays of one label table.

Each output byte is written once: columns are append-only arrays sized from the first chunk,
large ones mapped with their pages at once, since fresh memory's page faults cost more than
parsing the bytes that fill it.
"""

from __future__ import annotations

import contextlib
import mmap
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlimages.data.labels.table import LabelTable

_PREFAULT_MIN_BYTES = 1 << 24  # output columns from this size on are mapped, their pages at once
_MADV_POPULATE_WRITE = 23  # <linux/mman.h>; Python's mmap module names it from 3.13 on


@dataclass
class Parsed:
    """One slice's rows, in the pieces that concatenate into a ``LabelTable``."""

    key_bytes: np.ndarray  # uint8
    key_lengths: np.ndarray  # int64
    counts: np.ndarray  # int64, labels per row
    indices: np.ndarray  # int32
    confidences: np.ndarray  # float32
    unique_rows: bool  # no class twice in a row, so statistics can skip a sort

    @classmethod
    def unlabelled(cls, key_bytes: np.ndarray, key_lengths: np.ndarray) -> Parsed:
        counts = np.zeros(len(key_lengths), dtype=np.int64)
        no_labels = np.empty(0, np.int32), np.empty(0, np.float32)
        return cls(key_bytes, key_lengths, counts, *no_labels, True)


def _mapped(capacity: int, dtype: type, prefault: int) -> tuple[np.ndarray, mmap.mmap | None]:
    """An uninitialised array whose first ``prefault`` values' pages are mapped in one call.

    Touching fresh memory page by page costs a fault each, more than parsing it;
    ``MADV_POPULATE_WRITE`` (Linux 5.14) maps the whole range in one call instead. Pages past
    ``prefault`` cost nothing until written. Small arrays and other systems get plain
    ``np.empty`` (and no map).
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


class TableBuilder:
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

    def add(self, part: Parsed) -> None:
        self.add_all([part])

    def add_all(self, parts: list[Parsed], pmap: Any = map) -> None:
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
