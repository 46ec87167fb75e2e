"""The reference label-list parser: one line at a time, and the only source of error messages.

A label list has one image per line, ``key<whitespace>idx:conf idx:conf ...``; ``idx`` without
``:conf`` means confidence 1.0. The fast paths hand over anything they do not recognise to
this parser, which names the file, line and expectation of the first fault, or, for the
integrity check, reports every fault and keeps the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from mlimages.data.labels.builder import Parsed
from mlimages.data.labels.table import INT32_MAX

_WHITESPACE = b" \t\n\r\x0b\x0c"  # exactly what bytes.split() splits on, so both parsers agree
_INDEX_RE = re.compile(rb"[0-9]+")
_CONF_RE = re.compile(rb"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class LabelListError(ValueError):
    """A malformed label list line; the message names file, line and what was expected."""


def _error(source: str, line: int, what: str, expected: str) -> LabelListError:
    return LabelListError(f"{source}:{line}: {what}; expected {expected}")


def _show(token: bytes) -> str:
    return repr(token.decode("utf-8", errors="replace"))


FaultFn = Callable[[str, int, LabelListError], None]
"""``(kind, line, error)``: one fault of a lenient read (see ``parse_slow``)."""


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


def parse_slow(
    chunk: bytes,
    first_line: int,
    source: str,
    num_classes: int | None,
    on_fault: FaultFn | None = None,
    row_lines: list[int] | None = None,
) -> Parsed:
    """Reference parser: one line at a time, raising ``LabelListError`` on the first problem.

    With ``on_fault`` (the integrity check) it reports every problem instead and skips what the
    problem names: the line for a bad key, the token for a bad index or confidence. Kinds:
    ``empty_key``, ``key_not_utf8``, ``bad_index``, ``index_out_of_range``, ``bad_confidence``.
    ``row_lines`` receives the line number of every row kept.
    """
    lines = chunk.split(b"\n")
    if chunk.endswith(b"\n"):
        lines.pop()
    top = INT32_MAX if num_classes is None else num_classes - 1
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
    return Parsed(
        key_bytes=np.frombuffer(b"".join(keys), dtype=np.uint8),
        key_lengths=np.array([len(k) for k in keys], dtype=np.int64),
        counts=np.array(counts, dtype=np.int64),
        indices=np.array(indices, dtype=np.int32),
        confidences=np.array(confidences, dtype=np.float32),
        unique_rows=unique_rows,
    )
