"""A split's `index.json`: its shards, records a shard, label counts, so steps are exact.

The writer writes the index after every shard is complete and renamed; readers trust the
index alone, never a listing of the folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

INDEX_NAME = "index.json"
SHARD_SUFFIX = ".tfrecord"
INDEX_VERSION = 1


@dataclass(frozen=True)
class ShardInfo:
    file: str
    records: int
    bytes: int
    labels: int  # label entries in the shard (an image with 9 labels counts 9)


@dataclass(frozen=True)
class SplitIndex:
    """A split's shards as written: what training needs to find them and count steps."""

    root: Path
    split: str
    schema: str
    num_classes: int
    single_label: bool
    seed: int
    shards: tuple[ShardInfo, ...]
    images_per_class: tuple[int, ...]
    fingerprint: str = ""

    @property
    def records(self) -> int:
        return sum(s.records for s in self.shards)

    @property
    def paths(self) -> list[Path]:
        return [self.root / s.file for s in self.shards]

    def worker_records(self, num_workers: int = 1) -> list[int]:
        """Records each worker reads when shards are dealt out as `shard(n, i)` does."""
        if not 1 <= num_workers <= len(self.shards):
            raise ValueError(
                f"{num_workers} workers for {len(self.shards)} shards of {self.root}; expected "
                "at most one worker a shard (write more shards: records.min_shards)"
            )
        return [sum(s.records for s in self.shards[i::num_workers]) for i in range(num_workers)]

    def steps_per_epoch(self, global_batch: int, num_workers: int = 1) -> int:
        """Full batches every worker can take in one pass (the slowest worker decides)."""
        per_worker = global_batch // num_workers
        if per_worker < 1 or per_worker * num_workers != global_batch:
            raise ValueError(f"global batch {global_batch} does not split over {num_workers}")
        return min(self.worker_records(num_workers)) // per_worker

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload.pop("root")
        return {"version": INDEX_VERSION, "records": self.records, **payload}

    @classmethod
    def load(cls, path: str | os.PathLike) -> SplitIndex:
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_NAME
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: no shard index; run `mlimages records write`"
            ) from None
        if raw.get("version") != INDEX_VERSION:
            raise ValueError(
                f"{path}: index version {raw.get('version')}; expected {INDEX_VERSION}"
            )
        raw.pop("version")
        raw.pop("records")
        raw["shards"] = tuple(ShardInfo(**s) for s in raw["shards"])
        raw["images_per_class"] = tuple(raw["images_per_class"])
        return cls(root=path.parent, **raw)

    def check_files(self) -> bool:
        """Every shard present with the size the index recorded."""
        pairs = zip(self.paths, self.shards, strict=True)
        return all(p.is_file() and p.stat().st_size == s.bytes for p, s in pairs)


def shard_names(split: str, count: int) -> list[str]:
    return [f"{split}-{i:05d}-of-{count:05d}{SHARD_SUFFIX}" for i in range(count)]
