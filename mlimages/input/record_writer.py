"""Writing a split: images and sparse labels into equal, seeded shards, in parallel processes.

Each shard is written under a temporary name and renamed when complete; the split's
`index.json` (`shard_index`), written last, is what readers trust.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from io import BytesIO
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlimages.core.atomic import atomic_path, write_json_atomic
from mlimages.core.progress import quiet, tqdm
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable
from mlimages.input.record_format import SPARSE, Record, RecordError, encode_example, frame
from mlimages.input.shard_index import (
    INDEX_NAME,
    SHARD_SUFFIX,
    ShardInfo,
    SplitIndex,
    shard_names,
)


@dataclass(frozen=True)
class Source:
    """What goes into a split's shards: names, image files and sparse labels, in order."""

    names: list[str]
    paths: list[Path]
    labels: LabelTable
    description: str

    def __len__(self) -> int:
        return len(self.names)


def _key_path(key: str, root: Path) -> Path:
    if key.startswith("file://"):
        return Path(unquote(urlparse(key).path))
    return root / key


def from_label_list(
    label_list: str | os.PathLike, image_root: str | os.PathLike, num_classes: int
) -> Source:
    """A label list in the authors' format whose keys are paths under `image_root`."""
    table = read_label_list(label_list, num_classes=num_classes)
    keys = table.keys()
    root = Path(image_root)
    return Source(keys, [_key_path(k, root) for k in keys], table, f"label list {label_list}")


def from_manifest(manifest: str | os.PathLike, num_classes: int) -> Source:
    """The download manifest's `ok` rows: JSON lines with key, status, path, labels."""
    manifest = Path(manifest)
    names, paths, rows = [], [], []
    with open(manifest, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{manifest}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not JSON ({exc.msg}); expected one object") from None
            if not isinstance(row, dict) or row.get("status") not in ("ok", "failed"):
                raise ValueError(f"{where}: expected an object with status 'ok' or 'failed'")
            if row["status"] != "ok":
                continue
            missing = [k for k in ("key", "path", "labels") if k not in row]
            if missing:
                raise ValueError(
                    f"{where}: missing {', '.join(missing)}; expected key, path, labels"
                )
            labels = row["labels"]
            pairs = labels.items() if isinstance(labels, dict) else labels
            try:
                label_row = [(int(i), float(c)) for i, c in pairs]
            except (TypeError, ValueError):
                raise ValueError(
                    f"{where}: labels {labels!r}; expected {{index: confidence}} or "
                    "[[index, confidence], ...]"
                ) from None
            bad = [i for i, _ in label_row if not 0 <= i < num_classes]
            if bad:
                raise ValueError(f"{where}: class {bad[0]}; expected 0..{num_classes - 1}")
            names.append(str(row["key"]))
            paths.append(manifest.parent / row["path"])
            rows.append(label_row)
    keys = [f"r{i}" for i in range(len(names))]  # names may hold spaces; the table needs none
    return Source(names, paths, LabelTable.from_rows(keys, rows), f"manifest {manifest}")


def plan_shards(sizes: np.ndarray, shard_mb: float, min_shards: int) -> int:
    """Shards for a split: about `shard_mb` each, at least `min_shards` (so that several
    workers can split the files), never more than there are records."""
    wanted = int(np.ceil(float(sizes.sum()) / (shard_mb * 2**20)))
    return max(1, min(len(sizes), max(wanted, min_shards)))


def _image_size(data: bytes, path: Path) -> tuple[int, int]:
    if not data.startswith(b"\xff\xd8"):
        raise RecordError(f"{path}: not a JPEG (no FF D8 marker); the records store JPEG bytes")
    try:
        with Image.open(BytesIO(data)) as im:  # reads the header only
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise RecordError(f"{path}: unreadable JPEG ({exc})") from None


def write_shard(
    path: str | os.PathLike,
    items: Sequence[tuple[str, str, np.ndarray, np.ndarray]],
) -> ShardInfo:
    """Write (name, image path, indices, confidences) items to one shard, atomically."""
    path = Path(path)
    labels = 0
    with atomic_path(path, keep_suffix=False) as tmp, open(tmp, "wb") as f:
        for name, image_path, indices, confidences in items:
            data = Path(image_path).read_bytes()
            width, height = _image_size(data, Path(image_path))
            record = Record(name, width, height, data, indices, confidences)
            f.write(frame(encode_example(record)))
            labels += len(indices)
    return ShardInfo(path.name, len(items), path.stat().st_size, labels)


def _context() -> BaseContext:
    """fork where it is safe and instant; spawn once TensorFlow's threads exist in this
    process (the workers never import it), which needs the usual `__main__` guard."""
    return get_context("spawn" if "tensorflow" in sys.modules else "fork")


def _write_shard_job(args: tuple[str, list[tuple[str, str, np.ndarray, np.ndarray]]]) -> ShardInfo:
    return write_shard(*args)


def write_split(
    source: Source,
    out: str | os.PathLike,
    split: str,
    num_classes: int,
    *,
    shard_mb: float = 100.0,
    min_shards: int = 8,
    seed: int = 0,
    workers: int | None = None,
    progress: bool | None = None,
    fingerprint: str = "",
) -> SplitIndex:
    """Shuffle `source` by `seed`, deal it into equal shards, write them in parallel processes.

    The order depends on the seed alone, never on which process finishes first. Shards differ
    by at most one record, so workers that split the files get equal steps. The index is
    written last; shards of an earlier run that it does not list are then removed. Worker
    processes are forked, or spawned once TensorFlow is loaded here (a script then needs the
    `if __name__ == "__main__":` guard).
    """
    if len(source) == 0:
        raise ValueError(f"{source.description}: no images to write")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    missing = [p for p in source.paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{source.description}: {len(missing)} image files missing, e.g. {missing[0]}"
        )
    sizes = np.array([p.stat().st_size for p in source.paths], dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(source))
    count = plan_shards(sizes, shard_mb, min_shards)
    names = shard_names(split, count)
    labels = source.labels
    jobs = [
        (
            str(out / name),
            [(source.names[i], str(source.paths[i]), *labels.labels(i)) for i in part],
        )
        for name, part in zip(names, np.array_split(order, count), strict=True)
    ]
    workers = max(1, min(workers or os.cpu_count() or 1, count))
    (out / INDEX_NAME).unlink(missing_ok=True)  # the old index no longer describes the shards
    shards = []
    with (
        tqdm(total=count, desc=f"records {split}", unit="shard", disable=quiet(progress)) as bar,
        ExitStack() as stack,
    ):
        if workers == 1:
            results: Iterable[ShardInfo] = map(_write_shard_job, jobs)
        else:
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=_context()))
            results = pool.map(_write_shard_job, jobs)
        for info in results:
            shards.append(info)
            bar.update()
    single = bool(len(labels) and (labels.labels_per_image() == 1).all())
    index = SplitIndex(
        root=out,
        split=split,
        schema=SPARSE,
        num_classes=num_classes,
        single_label=single,
        seed=seed,
        shards=tuple(shards),
        images_per_class=tuple(int(n) for n in labels.images_per_class(num_classes)),
        fingerprint=fingerprint,
    )
    write_json_atomic(out / INDEX_NAME, index.to_json())
    for stale in out.glob(f"{split}-*{SHARD_SUFFIX}"):
        if stale.name not in names:
            stale.unlink()
    return index
