"""The fast path: a chunk of whole lines cut into slices, parsed in threads.

Each slice goes through the compiled scanner where this install built it, else through numpy
word tricks. Either hands a chunk over to the reference parser when anything is unusual,
leaving the table as it was.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from mlimages.data.labels.builder import Parsed, TableBuilder
from mlimages.data.labels.compiled import scanner
from mlimages.data.labels.swar import Vocabulary, head_words
from mlimages.data.labels.table import INT32_MAX

_SLICE_BYTES = 1 << 20


def _parse_slice(
    buf: np.ndarray, words: np.ndarray, start: int, stop: int, vocab: Vocabulary
) -> Parsed | None:
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
        return Parsed.unlabelled(np.empty(0, np.uint8), np.empty(0, np.int64))
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
        return Parsed.unlabelled(key_bytes, key_len)
    if lab_len.max() > 16:
        return None
    w1, w2 = head_words(words, sep[is_label] - lab_len + start, lab_len)
    value = vocab.parse(w1, w2, lab_len)
    if value is None:
        return None
    counts = np.diff(keys, append=len(first)) - 1
    indices = value.view(np.int32)[0::2]
    return Parsed(
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
    dtype = np.int32 if len(counts) * width < INT32_MAX else np.int64
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
    """One ``Vocabulary`` per worker thread: lookups and inserts then need no locking."""

    def __init__(self, num_classes: int | None, bits: int = 18) -> None:
        self.vocab = Vocabulary(num_classes, bits)


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


class FastState:
    """What the fast path keeps across the chunks of one read.

    ``compiled`` selects the C scanner (``_labelscan.scan_lines``); otherwise the numpy path
    runs, with one token vocabulary per thread.
    """

    def __init__(self, num_classes: int | None, compiled: bool, vocab_bits: int = 18) -> None:
        self.top = INT32_MAX if num_classes is None else num_classes - 1
        self.scan = scanner().scan_lines if compiled else None
        self.vocabs = _ThreadVocabulary(num_classes, vocab_bits)
        self.scratch = _Scratch()


def parse_chunk(
    buf: np.ndarray,
    start: int,
    stop: int,
    state: FastState,
    table: TableBuilder,
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
    state: FastState,
    table: TableBuilder,
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
) -> list[Parsed] | None:
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
