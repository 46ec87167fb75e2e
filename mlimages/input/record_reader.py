"""Reading a split back: its records, their schema, every CRC checked; and the splits read
out of a written one (the records without some classes, the first k of each class).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlimages.core.atomic import write_json_atomic
from mlimages.input.record_format import (
    Record,
    RecordError,
    decode_example,
    frame,
    iter_frames,
    parse_features,
    schema_of,
)
from mlimages.input.shard_index import INDEX_NAME, ShardInfo, SplitIndex, shard_names


def read_records(
    path: str | os.PathLike, num_classes: int | None = None
) -> Iterator[tuple[str, Record]]:
    """(schema, record) of every record of a shard; bad ones stop with shard and position."""
    for position, offset, data in iter_frames(path):
        try:
            yield decode_example(data, num_classes)
        except ValueError as exc:
            raise RecordError(
                f"{Path(path).name}: record {position} (byte offset {offset}): {exc}"
            ) from None


def inspect(path: str | os.PathLike, limit: int | None = None) -> list[dict[str, Any]]:
    """`[{"name", "width", "height", "labels": {index: confidence}}, ...]` of a shard."""
    out = []
    for _, record in read_records(path):
        if limit is not None and len(out) >= limit:
            break
        out.append(record.summary())
    return out


def detect_schema(path: str | os.PathLike) -> str:
    """The schema of a shard's first record (a shard holds one schema)."""
    for _, _, data in iter_frames(path):
        try:
            return schema_of(parse_features(data))
        except ValueError as exc:
            raise RecordError(f"{Path(path).name}: record 0: {exc}") from None
    raise RecordError(f"{Path(path).name}: empty shard; expected at least one record")


def verify(paths: Iterable[str | os.PathLike]) -> int:
    """Check every CRC of every shard; the number of records, or the first bad one's place.

    tf.data reports a corrupt record as `DataLossError: corrupted record at <offset>` without
    the file; this names the shard and the record.
    """
    return sum(1 for p in paths for _ in iter_frames(p))


# --- derived splits ----------------------------------------------------------------------

SUBSET_VERSION = 1  # bump when the choice of `class_subset` changes


def records_without(index: SplitIndex, classes: Iterable[int]) -> list[int]:
    """Records of each shard that carry none of `classes` (at any confidence): what a
    pipeline with `exclude_classes` reads an epoch, shard by shard."""
    excluded = {int(c) for c in classes}
    counts = []
    for path in index.paths:
        kept = 0
        for _, record in read_records(path, index.num_classes):
            kept += excluded.isdisjoint(record.indices.tolist())
        counts.append(kept)
    return counts


def subset_fingerprint(index: SplitIndex, k: int) -> str:
    """What decides `class_subset(index, k)`: the source split's fingerprint (its labels,
    shard settings and record order) and k."""
    payload = json.dumps([index.fingerprint, index.split, k, SUBSET_VERSION])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def class_subset(index: SplitIndex, k: int, out: str | os.PathLike) -> SplitIndex:
    """The first `k` records of each class of a single-label split, in the records' stored
    (seeded) order, as a split of its own in `out`: the K-examples-a-class training sets of
    data-efficiency runs. The choice depends on the records alone, never on a seed of
    training, and the k-subset holds the (k-1)-subset. Kept when `out` already holds it
    (same source fingerprint and k), else written whole under a temporary name and renamed.
    """
    if not index.single_label:
        raise ValueError(f"{index.root}: multi-label records; a k-a-class subset needs one label")
    out = Path(out)
    expected = subset_fingerprint(index, k)
    try:
        found = SplitIndex.load(out)
        if found.fingerprint == expected and found.check_files():
            return found
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    wanted = np.minimum(np.asarray(index.images_per_class), k)
    taken = np.zeros_like(wanted)
    chosen: list[tuple[bytes, int]] = []
    for path in index.paths:
        for _, _, data in iter_frames(path):
            _, record = decode_example(data, index.num_classes)
            label = int(record.indices[np.argmax(record.confidences)])
            if taken[label] < wanted[label]:
                taken[label] += 1
                chosen.append((data, label))
        if (taken >= wanted).all():
            break
    name = f"{index.split}-k{k}"
    count = max(1, min(len(index.shards), len(chosen)))
    # by hand, not atomic_path: a rename lost to another worker returns that worker's subset
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shards = []
    for file, part in zip(
        shard_names(name, count), np.array_split(np.arange(len(chosen)), count), strict=True
    ):
        with open(tmp / file, "wb") as f:
            for i in part.tolist():
                f.write(frame(chosen[i][0]))
        shards.append(ShardInfo(file, len(part), (tmp / file).stat().st_size, len(part)))
    subset = SplitIndex(
        root=out,
        split=name,
        schema=index.schema,
        num_classes=index.num_classes,
        single_label=True,
        seed=index.seed,
        shards=tuple(shards),
        images_per_class=tuple(int(n) for n in taken),
        fingerprint=expected,
    )
    write_json_atomic(tmp / INDEX_NAME, subset.to_json())
    shutil.rmtree(out, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError:  # another worker renamed its (identical) subset first
        shutil.rmtree(tmp, ignore_errors=True)
        return SplitIndex.load(out)
    return subset
