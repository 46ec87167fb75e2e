"""The download manifest: one JSON line per finished key, the resume state and the label list.

Lines are appended and flushed as keys finish, so `kill -9` loses at most the keys in
flight; a torn last line (killed mid-write) is cut off when the manifest is reopened. At the
end of a complete run the manifest is rewritten in list order with one line per key, so two
runs of the same list agree line for line however they were interrupted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlimages.core.atomic import write_text_atomic
from mlimages.data.labels.table import LabelTable

MANIFEST = "manifest.jsonl"
LABELS = "labels.txt"
IMAGES = "images"
TMP = ".tmp"
LOCK = ".lock"


def store_path(key: str) -> str:
    """`images/ab/<hash>.jpg` from a hash of the key: never the URL path (collisions, `..`)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{IMAGES}/{digest[:2]}/{digest}.jpg"


def label_pairs(indices: np.ndarray, confidences: np.ndarray) -> list[list[float | int]]:
    """Labels as JSON pairs, confidences as the shortest decimal of their float32 (0.9, not
    0.8999999761581421)."""
    return [
        [int(i), float(np.format_float_positional(c, unique=True, trim="-"))]
        for i, c in zip(indices.tolist(), np.asarray(confidences, np.float32), strict=True)
    ]


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """Key -> its last record; a torn final line is ignored (and cut off by `ManifestWriter`)."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break  # torn by a kill: everything before it is complete
            try:
                record = json.loads(line)
                records[record["key"]] = record
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{path}:{number}: not a manifest record ({exc}); expected a JSON object "
                    "with at least 'key' and 'status'"
                ) from None
    return records


class ManifestWriter:
    """Exclusive writer of one output folder: holds a lock, appends and flushes each record."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = self.out / MANIFEST
        self._lock: IO[str] | None = None
        self._file: IO[str] | None = None

    def __enter__(self) -> ManifestWriter:
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.out / LOCK, "w")  # noqa: SIM115  (held until __exit__)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"{self.out}: another download is writing here") from None
        _cut_torn_line(self.path)
        tmp = self.out / TMP
        if tmp.is_dir():  # bodies a killed run was still writing
            for stale in tmp.iterdir():
                stale.unlink()
        tmp.mkdir(exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        return self

    def append(self, record: dict[str, Any]) -> None:
        assert self._file is not None, "use ManifestWriter as a context manager"
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


def compact(path: Path, order: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Rewrite the manifest: one line per key, keys of `order` first in that order."""
    records = read_manifest(path)
    keys = [k for k in dict.fromkeys(order) if k in records]
    listed = set(keys)
    keys += [k for k in records if k not in listed]
    text = "".join(json.dumps(records[k], separators=(",", ":")) + "\n" for k in keys)
    write_text_atomic(path, text)
    return {k: records[k] for k in keys}


def write_labels(out: Path, records: dict[str, dict[str, Any]], keys: Iterable[str]) -> int:
    """`labels.txt`: the `ok` rows of `keys` in the authors' format, keyed by stored path."""
    paths, rows = [], []
    for key in keys:
        record = records.get(key)
        if record is not None and record["status"] == "ok":
            paths.append(record["path"])
            rows.append([(int(i), float(c)) for i, c in record["labels"]])
    LabelTable.from_rows(paths, rows).write(out / LABELS)
    return len(paths)


def _cut_torn_line(path: Path) -> None:
    """Drop a last line without its newline, so that appending starts on a fresh line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)
