"""The ML-Images dictionary and semantic hierarchy: a forest of WordNet classes.

The authors' file lists `index  wnid  parent_index  name` tab-separated after a header.
Parents usually precede children but not always (class 9741 has parent 10348), so the
forest is built by traversal from the roots, never by index order. 262 names repeat:
classes are keyed by index or wnid, never by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mlimages.core.atomic import write_text_atomic
from mlimages.core.sources import fetch_to_cache

HEADER_FIRST_FIELD = "category_index"
AUTHORS_DICTIONARY_URL = (
    "https://raw.githubusercontent.com/Tencent/tencent-ml-images/master/data/"
    "dictionary_and_semantic_hierarchy.txt"
)


class DictionaryError(ValueError):
    """A dictionary file that is not a valid forest; the message names file and line."""


@dataclass(frozen=True)
class Taxonomy:
    """Classes 0..C-1 with one parent each (-1 for a root)."""

    wnids: tuple[str, ...]
    names: tuple[str, ...]
    parents: np.ndarray  # int32 [C], -1 = root
    source: str = ""
    _lines: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_forest(self.parents, self.source, self._lines)

    @property
    def num_classes(self) -> int:
        return len(self.wnids)

    @cached_property
    def depth(self) -> np.ndarray:
        """Depth in edges from the class's root (a root has depth 0)."""
        depth = np.full(self.num_classes, -1, dtype=np.int32)
        frontier = np.flatnonzero(self.parents < 0)
        depth[frontier] = 0
        children = self.children_csr
        level = 0
        while frontier.size:
            level += 1
            starts, ends = children[0][frontier], children[0][frontier + 1]
            frontier = _gather_ranges(children[1], starts, ends)
            depth[frontier] = level
        return depth

    @cached_property
    def children_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, indices) listing each class's children, in index order."""
        has_parent = np.flatnonzero(self.parents >= 0)
        order = has_parent[np.argsort(self.parents[has_parent], kind="stable")]
        counts = np.bincount(self.parents[has_parent], minlength=self.num_classes)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return indptr, order.astype(np.int32)

    @cached_property
    def roots(self) -> np.ndarray:
        return np.flatnonzero(self.parents < 0)

    @cached_property
    def leaves(self) -> np.ndarray:
        indptr = self.children_csr[0]
        return np.flatnonzero(indptr[1:] == indptr[:-1])

    @cached_property
    def _ancestor_csr(self) -> tuple[np.ndarray, np.ndarray]:
        depth = self.depth
        counts = depth.astype(np.int64) + 1
        indptr = np.concatenate([[0], np.cumsum(counts)])
        indices = np.empty(int(indptr[-1]), dtype=np.int32)
        node = np.arange(self.num_classes, dtype=np.int32)
        for step in range(int(depth.max()) + 1 if self.num_classes else 0):
            alive = depth >= step
            indices[indptr[:-1][alive] + step] = node[alive]
            node = np.where(alive, self.parents[node], -1).astype(np.int32)
        return indptr, indices

    def ancestor_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, indices): class j's chain is j, parent(j), …, root; the form closure needs."""
        return self._ancestor_csr

    def ancestors(self, index: int, include_self: bool = False) -> list[int]:
        indptr, indices = self._ancestor_csr
        chain = indices[indptr[index] : indptr[index + 1]].tolist()
        return chain if include_self else chain[1:]

    def children(self, index: int) -> list[int]:
        indptr, indices = self.children_csr
        return indices[indptr[index] : indptr[index + 1]].tolist()

    def subtree(self, index: int) -> np.ndarray:
        """The class and all its descendants, sorted."""
        indptr, indices = self._ancestor_csr
        owner = np.repeat(np.arange(self.num_classes), np.diff(indptr))
        return np.unique(owner[indices == index])

    @cached_property
    def index_of_wnid(self) -> dict[str, int]:
        return {wnid: i for i, wnid in enumerate(self.wnids)}

    def stats(self) -> dict[str, float | int]:
        """The figures the paper reports for its hierarchy (depths in edges from the root)."""
        depth = self.depth
        return {
            "classes": self.num_classes,
            "roots": int(self.roots.size),
            "leaves": int(self.leaves.size),
            "max_depth": int(depth.max()) if depth.size else 0,
            "mean_depth": float(depth.mean()) if depth.size else 0.0,
        }

    def write(self, path: str | os.PathLike) -> None:
        """Write in the authors' format, atomically."""
        rows = [f"{HEADER_FIRST_FIELD}\tcategory_id\tindex_of_parent_category\tcategory name"]
        rows += [
            f"{i}\t{w}\t{int(p)}\t{n}"
            for i, (w, p, n) in enumerate(zip(self.wnids, self.parents, self.names, strict=True))
        ]
        write_text_atomic(Path(path), "\n".join(rows) + "\n")

    @classmethod
    def from_records(
        cls, records: Iterable[tuple[str, str, int]], source: str = "<records>"
    ) -> Taxonomy:
        """From (wnid, name, parent index) in index order."""
        wnids, names, parents = zip(*records, strict=True) if records else ((), (), ())
        return cls(tuple(wnids), tuple(names), np.asarray(parents, dtype=np.int32), source)


def load_dictionary(
    path_or_url: str | os.PathLike, cache_dir: str | os.PathLike | None = None
) -> Taxonomy:
    """Read a dictionary file, or download it first when given an http(s) URL."""
    path = fetch_to_cache(str(path_or_url), cache_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"dictionary file not found: {path}") from None
    return parse_dictionary(text, source=str(path))


def parse_dictionary(text: str, source: str = "<text>") -> Taxonomy:
    rows: dict[int, tuple[str, str, int, int]] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if line_no == 1 and fields[0].strip() == HEADER_FIRST_FIELD:
            continue
        if len(fields) < 4:
            raise DictionaryError(
                f"{source}:{line_no}: {len(fields)} tab-separated fields; expected 4 "
                "(index, wnid, parent index, name)"
            )
        index = _parse_int(fields[0], source, line_no, "class index")
        parent = _parse_int(fields[2], source, line_no, "parent index")
        if index < 0:
            raise DictionaryError(f"{source}:{line_no}: class index {index}; expected >= 0")
        if index in rows:
            raise DictionaryError(
                f"{source}:{line_no}: duplicate class index {index} "
                f"(first defined on line {rows[index][3]}); expected each index once"
            )
        rows[index] = (fields[1].strip(), "\t".join(fields[3:]).strip(), parent, line_no)
    n = len(rows)
    missing = sorted(set(range(n)) - set(rows))
    if missing:
        raise DictionaryError(
            f"{source}: class index {missing[0]} missing; expected indices 0..{n - 1} "
            f"(largest given: {max(rows)})"
        )
    for index, (_, _, parent, line_no) in rows.items():
        if parent != -1 and not 0 <= parent < n:
            raise DictionaryError(
                f"{source}:{line_no}: class {index} has parent {parent}, which is not a class; "
                f"expected -1 (root) or an index in 0..{n - 1}"
            )
    ordered = [rows[i] for i in range(n)]
    return Taxonomy(
        wnids=tuple(r[0] for r in ordered),
        names=tuple(r[1] for r in ordered),
        parents=np.asarray([r[2] for r in ordered], dtype=np.int32),
        source=source,
        _lines=tuple(r[3] for r in ordered),
    )


def _parse_int(text: str, source: str, line_no: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DictionaryError(f"{source}:{line_no}: {what} {text!r}; expected an integer") from None


def _check_forest(parents: np.ndarray, source: str, lines: tuple[int, ...]) -> None:
    """Every class must reach a root; the first class that does not is on (or below) a cycle."""
    n = parents.size
    if n and (parents.max() >= n or parents.min() < -1):
        bad = int(np.flatnonzero((parents >= n) | (parents < -1))[0])
        raise DictionaryError(f"{source}: class {bad} has parent {parents[bad]}; not a class")
    reached = parents < 0
    node = parents.copy()
    for _ in range(n):
        pending = ~reached & (node >= 0)
        if not pending.any():
            break
        before = int(reached.sum())
        reached[pending] = reached[node[pending]] | (parents[node[pending]] < 0)
        node[pending] = parents[node[pending]]
        if int(reached.sum()) == before:
            break  # nothing new reached a root: what is left is on or below a cycle
    if not reached.all():
        bad = int(np.flatnonzero(~reached)[0])
        where = f"{source}:{lines[bad]}" if lines else source
        raise DictionaryError(
            f"{where}: class {bad} never reaches a root (its parent chain has a cycle); "
            "expected every class to descend from a class with parent -1"
        )


def _gather_ranges(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenate values[starts[k]:ends[k]] for all k without a Python loop."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=values.dtype)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return values[np.arange(total) + offsets]
