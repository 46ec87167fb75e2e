"""`mlimages annotations check`: the integrity of a published label list, every fault at once.

The readers stop at the first malformed line, which is right for training and useless for
judging a 17.6M-line list that people download from a mirror. This check reads the list with
`read.read_lenient` (the same fast path; the reference parser in its reporting mode
where a chunk is unusual), then looks at the whole table with vectorised passes: duplicated
keys, class indices outside the dictionary, classes repeated on a line, labels whose parent
is missing (closure) and the classes each kind of key uses. Every fault is counted in full
and shown by a capped list of examples with their line numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlimages.data.labels.parse import LabelListError
from mlimages.data.labels.read import read_lenient
from mlimages.data.labels.table import KINDS, LabelTable
from mlimages.data.taxonomy import Taxonomy

EXAMPLES = 10
# Faults of the reference parser, grouped as the report names them.
PARSER_GROUPS = {
    "empty_key": "bad_key",
    "key_not_utf8": "bad_key",
    "bad_index": "bad_index",
    "bad_confidence": "bad_confidence",
    "index_out_of_range": "index_out_of_range",
}
_ROW_BUDGET = 1 << 20  # labels (or key bytes) a vectorised step looks at, bounding temporaries


@dataclass
class Fault:
    """One kind of fault: how many, on how many lines, and the first few with line numbers."""

    count: int = 0
    lines: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "lines": self.lines, "examples": self.examples}


class _ParserFaults:
    """Collects the reference parser's faults; they arrive in line order."""

    def __init__(self, source: str, limit: int) -> None:
        self.source, self.limit = source, limit
        self.faults = {group: Fault() for group in dict.fromkeys(PARSER_GROUPS.values())}
        self.last_line = dict.fromkeys(self.faults, 0)
        self.out_of_range_lines: list[int] = []

    def __call__(self, kind: str, line: int, error: LabelListError) -> None:
        group = PARSER_GROUPS[kind]
        fault = self.faults[group]
        fault.count += 1
        if self.last_line[group] != line:
            fault.lines += 1
            self.last_line[group] = line
        if group == "index_out_of_range":  # merged with the dictionary's range check later
            self.out_of_range_lines.append(line)
        if len(fault.examples) < self.limit:
            # The example has the line: drop the message's "file:line: " prefix.
            message = str(error).removeprefix(f"{self.source}:{line}: ")
            fault.examples.append({"line": line, "message": message})


@dataclass
class CheckReport:
    """What `check_list` found; `as_dict` is strict JSON (ints, strings, lists, null)."""

    source: str
    lines: int
    rows: int
    keys: int
    labels: int
    num_classes: int | None
    dictionary: str | None
    faults: dict[str, Fault]
    duplicate_extra_lines: int
    not_closed: Fault | None
    expect_closed: bool
    key_kinds: dict[str, dict[str, int]]
    published: int | None

    @property
    def nonblank_lines(self) -> int:
        """Lines with a key, kept or not: what a published line count counts."""
        return self.rows + self.faults["bad_key"].lines

    @property
    def published_difference(self) -> int | None:
        return None if self.published is None else self.nonblank_lines - self.published

    @property
    def clean(self) -> bool:
        found = any(f.count for f in self.faults.values())
        found |= bool(self.published_difference)
        found |= bool(self.expect_closed and self.not_closed and self.not_closed.count)
        return not found

    def as_dict(self) -> dict[str, Any]:
        faults = {name: fault.as_dict() for name, fault in self.faults.items()}
        faults["duplicate_keys"]["extra_lines"] = self.duplicate_extra_lines
        return {
            "list": self.source,
            "clean": self.clean,
            "lines": self.lines,
            "nonblank_lines": self.nonblank_lines,
            "rows": self.rows,
            "keys": self.keys,
            "labels": self.labels,
            "dictionary": self.dictionary,
            "num_classes": self.num_classes,
            "published": None
            if self.published is None
            else {"expected": self.published, "difference": self.published_difference},
            "faults": faults,
            "not_closed": None if self.not_closed is None else self.not_closed.as_dict(),
            "expect_closed": self.expect_closed,
            "key_kinds": self.key_kinds,
        }


def check_list(
    path: str | os.PathLike[str],
    taxonomy: Taxonomy | None = None,
    num_classes: int | None = None,
    published: int | None = None,
    expect_closed: bool = False,
    examples: int = EXAMPLES,
    progress: bool | None = None,
) -> CheckReport:
    """Check a label list; `num_classes` defaults to the dictionary's.

    Not being closed over ancestors is reported with the dictionary but is a fault only with
    `expect_closed`: the published lists are not closed everywhere.
    """
    if taxonomy is not None:
        if num_classes is not None and num_classes != taxonomy.num_classes:
            raise ValueError(
                f"--num-classes {num_classes} but the dictionary has {taxonomy.num_classes}; "
                "expected one of them, or both equal"
            )
        num_classes = taxonomy.num_classes
    if expect_closed and taxonomy is None:
        raise ValueError("expecting closure needs the dictionary (the hierarchy to close over)")
    parser = _ParserFaults(os.fspath(path), examples)
    read = read_lenient(path, parser, progress=progress)
    table, row_lines = read.table, read.row_lines
    faults = dict(parser.faults)
    faults["index_out_of_range"] = _out_of_range(table, row_lines, num_classes, parser)
    duplicates, extra, distinct = _duplicate_keys(table, row_lines, examples)
    faults["duplicate_keys"] = duplicates
    faults["repeated_class"] = _repeated_classes(table, row_lines, examples)
    return CheckReport(
        source=os.fspath(path),
        lines=read.lines,
        rows=len(table),
        keys=distinct,
        labels=table.num_labels,
        num_classes=num_classes,
        dictionary=taxonomy.source if taxonomy is not None else None,
        faults=faults,
        duplicate_extra_lines=extra,
        not_closed=None if taxonomy is None else _not_closed(table, row_lines, taxonomy, examples),
        expect_closed=expect_closed,
        key_kinds=_key_kinds(table, num_classes),
        published=published,
    )


def _label_spans(indptr: np.ndarray) -> list[tuple[int, int]]:
    """Rows in runs of about `_ROW_BUDGET` labels (at least one row each)."""
    spans, n, r0 = [], len(indptr) - 1, 0
    while r0 < n:
        r1 = int(np.searchsorted(indptr, indptr[r0] + _ROW_BUDGET, side="right")) - 1
        r1 = min(max(r1, r0 + 1), n)
        spans.append((r0, r1))
        r0 = r1
    return spans


def _label_rows(table: LabelTable, r0: int, r1: int) -> np.ndarray:
    """Row number (absolute) of every label of rows r0..r1-1."""
    return np.repeat(np.arange(r0, r1, dtype=np.int64), np.diff(table.indptr[r0 : r1 + 1]))


def _out_of_range(
    table: LabelTable,
    row_lines: np.ndarray,
    num_classes: int | None,
    parser: _ParserFaults,
) -> Fault:
    """Indices >= the number of classes, with those past int32 the parser already dropped."""
    parsed = parser.faults["index_out_of_range"]
    fault = Fault(count=parsed.count)
    lines = [np.asarray(parser.out_of_range_lines, dtype=np.int64)]
    found: list[dict[str, Any]] = []  # the first `limit` in file order, like the parser's
    if num_classes is not None and table.num_labels:
        for r0, r1 in _label_spans(table.indptr):
            s, e = table.indptr[r0], table.indptr[r1]
            bad = np.flatnonzero(table.indices[s:e] >= num_classes)
            if not len(bad):
                continue
            fault.count += len(bad)
            at = row_lines[_label_rows(table, r0, r1)[bad]]
            lines.append(at)
            limit = parser.limit
            for line, index in zip(
                at[:limit].tolist(), table.indices[s:e][bad[:limit]].tolist(), strict=True
            ):
                if len(found) < parser.limit:
                    what = f"class index {index} out of range; expected 0..{num_classes - 1}"
                    found.append({"line": line, "message": what})
    fault.lines = len(np.unique(np.concatenate(lines)))
    fault.examples = sorted(parsed.examples + found, key=lambda x: x["line"])[: parser.limit]
    return fault


# The key hash: a polynomial in an odd base P modulo 2**64, so that a key's value can be taken
# from position-weighted bytes of a whole block and shifted to its own start by P**-start
# (odd numbers are invertible modulo 2**64). Weak against crafted keys, which is fine: equal
# hashes are only candidates, compared byte for byte.
_P = 0x9E3779B97F4A7C15
_P_INV = pow(_P, -1, 2**64)
_HASH_BLOCK = 1 << 20  # key bytes a step


def _powers(base: int, n: int) -> np.ndarray:
    """base**0 .. base**(n-1) modulo 2**64 (uint64 products wrap)."""
    out = np.full(n, base, dtype=np.uint64)
    out[0] = 1
    return np.cumprod(out, out=out)


def _key_hashes(table: LabelTable) -> np.ndarray:
    """A 64-bit hash of every key, vectorised (17.6M Python strings would cost too much memory)."""
    offsets = table.key_offsets
    n = len(table)
    out = np.empty(n, dtype=np.uint64)
    size = int(min(_HASH_BLOCK, int(offsets[-1])) + 1)
    pw, inv = _powers(_P, size), _powers(_P_INV, size)
    r0 = 0
    while r0 < n:
        r1 = int(np.searchsorted(offsets, offsets[r0] + _HASH_BLOCK, side="right")) - 1
        r1 = min(max(r1, r0 + 1), n)
        o0, o1 = int(offsets[r0]), int(offsets[r1])
        if o1 - o0 > len(pw):  # one key longer than a block
            pw, inv = _powers(_P, o1 - o0), _powers(_P_INV, o1 - o0)
        starts = offsets[r0:r1] - o0
        values = table.key_bytes[o0:o1].astype(np.uint64)
        values *= pw[: o1 - o0]
        h = np.add.reduceat(values, starts)
        h *= inv[starts]
        h ^= (offsets[r0 + 1 : r1 + 1] - offsets[r0:r1]).astype(np.uint64) << np.uint64(40)
        h ^= h >> np.uint64(31)  # splitmix64's finaliser: spread the bits before sorting
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        out[r0:r1] = h
        r0 = r1
    return out


def _duplicate_keys(table: LabelTable, row_lines: np.ndarray, limit: int) -> tuple[Fault, int, int]:
    """Keys on more than one line: (fault, extra lines, distinct keys).

    `count` is the number of keys listed twice or more; each example gives the key, its first
    two line numbers and how often it occurs.
    """
    fault = Fault()
    if len(table) < 2:
        return fault, 0, len(table)
    h = _key_hashes(table)
    order = np.argsort(h, kind="stable")  # stable: rows of one hash stay in file order
    h = h[order]
    same = h[1:] == h[:-1]
    if not same.any():
        return fault, 0, len(table)
    edge = np.flatnonzero(np.diff(np.concatenate(([False], same, [False])).astype(np.int8)))
    groups = []  # (first row, rows) of each set of equal keys, verified byte for byte
    for a, b in zip(edge[0::2].tolist(), edge[1::2].tolist(), strict=True):
        rows = order[a : b + 1]
        by_key: dict[bytes, list[int]] = {}
        for row in rows.tolist():
            o0, o1 = table.key_offsets[row], table.key_offsets[row + 1]
            by_key.setdefault(table.key_bytes[o0:o1].tobytes(), []).append(row)
        groups += [(rs[0], rs) for rs in by_key.values() if len(rs) > 1]
    groups.sort()
    extra = sum(len(rs) - 1 for _, rs in groups)
    fault.count = len(groups)
    fault.lines = sum(len(rs) for _, rs in groups)
    for _, rs in groups[:limit]:
        fault.examples.append(
            {
                "key": table.key(rs[0]),
                "lines": row_lines[rs[:2]].tolist(),
                "occurrences": len(rs),
            }
        )
    return fault, extra, len(table) - extra


def _repeated_classes(table: LabelTable, row_lines: np.ndarray, limit: int) -> Fault:
    """Lines that list one class twice: `count` is lines, examples give line and class."""
    fault = Fault()
    if table._unique_rows:  # known from the read for free in the usual case
        return fault
    for r0, r1 in _label_spans(table.indptr):
        s, e = table.indptr[r0], table.indptr[r1]
        idx = table.indices[s:e].astype(np.int64)
        if not len(idx):
            continue
        width = int(idx.max()) + 1
        cell = np.sort(_label_rows(table, r0, r1) * width + idx)
        twice = cell[1:][cell[1:] == cell[:-1]]
        if not len(twice):
            continue
        bad_rows, first = np.unique(twice // width, return_index=True)
        fault.count += len(bad_rows)
        fault.lines += len(bad_rows)
        for row, cls in zip(
            bad_rows[:limit].tolist(), (twice[first[:limit]] % width).tolist(), strict=True
        ):
            if len(fault.examples) >= limit:
                break
            fault.examples.append({"line": int(row_lines[row]), "class": cls})
    return fault


def _not_closed(table: LabelTable, row_lines: np.ndarray, taxonomy: Taxonomy, limit: int) -> Fault:
    """Labels whose parent class is not on the same line.

    Checking parents is enough: a line where every label's parent is present holds every
    ancestor. `count` is labels missing their parent, `lines` the lines with any. A block of
    rows at a time marks its labels in a rows x classes matrix and looks the parents up there:
    no sort.
    """
    fault = Fault()
    num_classes = taxonomy.num_classes
    parents = np.asarray(taxonomy.parents, dtype=np.int64)
    block = max(1, min(4096, (1 << 26) // max(num_classes, 1)))
    marks = np.zeros(block * num_classes, dtype=bool)
    for r0 in range(0, len(table), block):
        r1 = min(r0 + block, len(table))
        s, e = table.indptr[r0], table.indptr[r1]
        idx = table.indices[s:e].astype(np.int64)
        rows = np.repeat(np.arange(r1 - r0, dtype=np.int64), np.diff(table.indptr[r0 : r1 + 1]))
        inside = idx < num_classes  # out-of-range indices are their own fault
        if not inside.all():
            idx, rows = idx[inside], rows[inside]
        cells = rows * num_classes + idx
        marks[cells] = True
        parent = parents[idx]
        has = parent >= 0
        missing = np.flatnonzero(has & ~marks[rows * num_classes + np.maximum(parent, 0)])
        marks[cells] = False
        if not len(missing):
            continue
        child_rows = rows[missing]  # non-decreasing: count the distinct ones by steps
        fault.count += len(missing)
        fault.lines += int(np.count_nonzero(np.diff(child_rows))) + 1
        for row, child in zip(
            child_rows[:limit].tolist(), idx[missing[:limit]].tolist(), strict=True
        ):
            if len(fault.examples) >= limit:
                break
            fault.examples.append(
                {
                    "line": int(row_lines[r0 + row]),
                    "class": child,
                    "missing_parent": int(parents[child]),
                }
            )
    return fault


def _key_kinds(table: LabelTable, num_classes: int | None) -> dict[str, dict[str, int]]:
    """Keys and distinct classes used by each kind of key (as `LabelTable.key_kind` sorts them)."""
    codes = table._kind_codes()
    width = num_classes if num_classes is not None else int(table.indices.max(initial=-1)) + 1
    dense = width <= 1 << 26  # a flag per class and kind; else sort
    used = np.zeros((len(KINDS), width if dense else 0), dtype=bool)
    sparse: list[list[np.ndarray]] = [[] for _ in KINDS]
    for r0, r1 in _label_spans(table.indptr):
        s, e = table.indptr[r0], table.indptr[r1]
        idx = table.indices[s:e]
        kind = np.repeat(codes[r0:r1], np.diff(table.indptr[r0 : r1 + 1]))
        inside = idx < width
        for k in range(len(KINDS)):
            chosen = idx[(kind == k) & inside]
            if dense:
                used[k, chosen] = True
            else:
                sparse[k].append(np.unique(chosen))
    out = {}
    for k, name in enumerate(KINDS):
        keys = int(np.count_nonzero(codes == k))
        if not keys:
            continue
        classes = used[k].sum() if dense else len(np.unique(np.concatenate([[], *sparse[k]])))
        out[name] = {"keys": keys, "classes_used": int(classes)}
    return out


def render(report: CheckReport) -> str:
    """The report for people: counts first, then each fault with its examples."""
    d = report.as_dict()
    out = [
        f"{d['list']}: {'clean' if d['clean'] else 'FAULTS FOUND'}",
        f"  lines {d['lines']}, with a key {d['nonblank_lines']}, rows read {d['rows']}, "
        f"distinct keys {d['keys']}, labels {d['labels']}",
    ]
    if d["num_classes"] is not None:
        where = f" ({d['dictionary']})" if d["dictionary"] else ""
        out.append(f"  classes 0..{d['num_classes'] - 1}{where}")
    if d["published"] is not None:
        p = d["published"]
        out.append(f"  published line count {p['expected']}: difference {p['difference']:+d}")
    for name, fault in d["faults"].items():
        out.append(f"  {name}: {fault['count']} on {fault['lines']} lines")
        out += [f"    {_example(x)}" for x in fault["examples"]]
    if d["not_closed"] is not None:
        nc = d["not_closed"]
        tag = " (a fault: --expect-closed)" if d["expect_closed"] else " (reported, not a fault)"
        out.append(f"  not closed over ancestors{tag}: {nc['count']} labels on {nc['lines']} lines")
        out += [f"    {_example(x)}" for x in nc["examples"]]
    for kind, numbers in d["key_kinds"].items():
        out.append(f"  {kind} keys: {numbers['keys']}, classes used {numbers['classes_used']}")
    return "\n".join(out)


def _example(x: dict[str, Any]) -> str:
    if "key" in x:
        return f"lines {', '.join(map(str, x['lines']))}: {x['key']} ({x['occurrences']} times)"
    if "missing_parent" in x:
        return f"line {x['line']}: class {x['class']} without its parent {x['missing_parent']}"
    if "class" in x:
        return f"line {x['line']}: class {x['class']} twice"
    return f"line {x['line']}: {x['message']}"
