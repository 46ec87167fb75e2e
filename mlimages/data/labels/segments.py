"""Segment arithmetic on CSR arrays: runs of a flat array gathered without a Python loop.

A label table keeps every row's labels (and every key's bytes) as one segment of a flat array;
these helpers gather many segments at once, and cut work into spans whose temporaries stay
within a budget.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_BYTE_BUDGET = 1 << 23  # positions take_segments computes at once


def segment_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat positions of the segments ``[start, start + length)``, concatenated in order."""
    lengths = lengths.astype(np.int64, copy=False)
    total = int(lengths.sum())
    shift = starts.astype(np.int64, copy=False) - (np.cumsum(lengths) - lengths)
    return np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)


def spans(prefix: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """Split rows ``0..len(prefix)-1`` into runs whose weight (from a prefix sum) fits a budget."""
    n = len(prefix) - 1
    i = 0
    while i < n:
        j = int(np.searchsorted(prefix, prefix[i] + budget, side="right")) - 1
        j = min(max(j, i + 1), n)
        yield i, j
        i = j


def take_segments(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``data`` segments without one position per element for the whole output."""
    lengths = lengths.astype(np.int64, copy=False)
    prefix = np.concatenate(([0], np.cumsum(lengths)))
    out = np.empty(int(prefix[-1]), dtype=data.dtype)
    for i, j in spans(prefix + np.arange(len(prefix)), _BYTE_BUDGET):
        out[prefix[i] : prefix[j]] = data[segment_positions(starts[i:j], lengths[i:j])]
    return out


def row_ids(indptr: np.ndarray) -> np.ndarray:
    """Row number (relative to ``indptr[0]``'s row) of every label in a CSR slice."""
    return np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
