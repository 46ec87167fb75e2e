"""Reading label lists: the file in chunks of whole lines, each parsed onto one table.

The full training list has 17.6M lines, so each chunk takes the fast path, and only a chunk it
hands over goes through the per-line reference parser. ``read_label_list`` stops at the first
fault; ``read_lenient`` (the integrity check's reader) reports every fault and keeps the rest.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlimages.core.progress import quiet, tqdm
from mlimages.data.labels.builder import TableBuilder
from mlimages.data.labels.compiled import scanner
from mlimages.data.labels.fast import FastState, parse_chunk
from mlimages.data.labels.parse import FaultFn, parse_slow
from mlimages.data.labels.swar import PAD_BYTES
from mlimages.data.labels.table import LabelTable

_BOM = b"\xef\xbb\xbf"
_PIECE_BYTES = 1 << 20  # bytes read, and searched for newlines, at a time


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
    line lacks one; ``PAD_BYTES`` follow it. The buffer is overwritten by the next iteration.
    """
    buf = np.empty(_PIECE_BYTES + PAD_BYTES, dtype=np.uint8)
    start = scanned = size = seen = 0  # buf[start:size] unread; buf[start:scanned]: `seen` lines
    line, at_eof, at_start = 1, False, True
    while True:
        end, hits = _line_end(buf[scanned:size], chunk_lines - seen)
        if end < 0 and not at_eof:
            seen, scanned = seen + hits, size
            if len(buf) - PAD_BYTES - size < _PIECE_BYTES:
                if start:
                    buf[: size - start] = buf[start:size]
                    size, scanned, start = size - start, scanned - start, 0
                if len(buf) - PAD_BYTES - size < _PIECE_BYTES:
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
    through the reference parser (in its reporting mode): a fault costs a few dozen slow
    lines, not a chunk's. Class indices are not range-checked here (the caller
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
    table = TableBuilder()
    size, first_chunk = os.fstat(f.fileno()).st_size, True
    state = FastState(num_classes, compiled=scanner() is not None)
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
                    ok = parse_chunk(buf, lo, hi, state, table, pmap)
                    return table.key_offsets.size - before if ok else -1

                def slow(chunk: bytes, line: int, rows_at: list[int]) -> None:
                    parsed = parse_slow(chunk, line, source, None, lenient.on_fault, rows_at)
                    table.add(parsed)

                lenient.chunk(buf, (start, stop, term), first_line, parse, slow)
            elif not parse_chunk(buf, start, term, state, table, pmap):
                chunk = buf[start:stop].tobytes()
                table.add_all([parse_slow(chunk, first_line, source, num_classes)], pmap)
            if first_chunk and size > stop - start:  # one resize instead of doubling as we go
                table.reserve(1.05 * size / (stop - start), extra_bytes=stop - start)
            first_chunk = False
    return table.build(source)
