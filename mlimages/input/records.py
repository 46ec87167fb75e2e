"""TFRecord shards: write compact ones, read them and the authors' legacy ones, index them.

The authors' records store a dense float32 label vector, 44,664 bytes a record for 11,166
classes; ours store the same labels sparse (`label/index` int64 + `label/confidence` float32),
beside the same `image` (the stored JPEG bytes), `name`, `width` and `height`. The reader
recognises three schemas and yields the same `Record` for each:

- `sparse`: ours;
- `legacy-dense`: the authors' `label` as raw little-endian float32[num_classes] bytes;
- `legacy-int64`: the authors' fine-tuning records, `label` as one int64 class index.

Records are framed and encoded here without TensorFlow (the framing is four fields and a
CRC-32C; an Example is three nested length-delimited messages), so the writer's worker
processes start in well under a second instead of importing TensorFlow each. A shard is
written under a temporary name and renamed when complete; the per-split `index.json`,
written last, is what readers trust: shards, records per shard, label counts, so that steps
per epoch are exact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from io import BytesIO
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import google_crc32c
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from mlimages.config.params import Params
from mlimages.core.atomic import write_json_atomic
from mlimages.core.progress import quiet, tqdm
from mlimages.data.label_read import read_label_list
from mlimages.data.label_table import LabelTable

STAGE = "records"
SOURCE_STAGE = "download"
SPLITS = ("train", "val", "target_train", "target_val", "novel_train", "novel_val")
INDEX_NAME = "index.json"
SHARD_SUFFIX = ".tfrecord"
SPARSE, LEGACY_DENSE, LEGACY_INT64 = "sparse", "legacy-dense", "legacy-int64"
SCHEMAS = (SPARSE, LEGACY_DENSE, LEGACY_INT64)
INDEX_VERSION = 1

_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


class RecordError(ValueError):
    """A bad shard or record; the message names the shard, the record's position and why."""


@dataclass(frozen=True)
class Record:
    """One image and its labels, whatever schema it was stored in."""

    name: str
    width: int
    height: int
    image: bytes = field(repr=False)
    indices: np.ndarray  # int64 class indices
    confidences: np.ndarray  # float32, aligned with indices

    def labels(self) -> dict[int, float]:
        """{index: confidence}, confidences as the shortest decimal of their float32 (0.9)."""
        pairs = zip(self.indices.tolist(), self.confidences, strict=True)
        return {i: float(str(np.float32(c))) for i, c in pairs}

    def summary(self) -> dict[str, Any]:
        """What `mlimages records inspect` prints for a record."""
        return {
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "labels": self.labels(),
        }


# --- TFRecord framing ---------------------------------------------------------------------


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC-32C, the data, the data's masked CRC-32C."""
    length = _LENGTH.pack(len(data))
    return length + _CRC.pack(_masked_crc(length)) + data + _CRC.pack(_masked_crc(data))


def iter_frames(path: str | os.PathLike) -> Iterator[tuple[int, int, bytes]]:
    """(position, byte offset, data) of every record, checking both CRCs of each."""
    path = Path(path)
    with open(path, "rb") as f:
        position, offset = 0, 0
        while header := f.read(12):
            where = f"{path.name}: record {position} (byte offset {offset})"
            if len(header) < 12:
                raise RecordError(f"{where}: truncated header; the shard is incomplete")
            (length,) = _LENGTH.unpack_from(header)
            if _CRC.unpack_from(header, 8)[0] != _masked_crc(header[:8]):
                raise RecordError(f"{where}: CRC mismatch in the length; the shard is corrupt")
            body = f.read(length + 4)
            if len(body) < length + 4:
                raise RecordError(f"{where}: truncated record; the shard is incomplete")
            data = body[:length]
            if _CRC.unpack_from(body, length)[0] != _masked_crc(data):
                raise RecordError(f"{where}: CRC mismatch in the data; the shard is corrupt")
            yield position, offset, data
            position += 1
            offset += 16 + length


# --- tf.train.Example encoding ----------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as ten-byte two's complement, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(kind: str, values: Sequence[Any] | np.ndarray) -> bytes:
    if kind == "bytes":
        return _field(1, b"".join(_field(1, v) for v in values))
    if kind == "float":
        packed = np.asarray(values, dtype="<f4").tobytes()
        return _field(2, _field(1, packed) if len(packed) else b"")
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if packed else b"")


def _entry(key: str, kind: str, values: Sequence[Any] | np.ndarray) -> bytes:
    """One entry of the `Features.feature` map."""
    return _field(1, _field(1, key.encode()) + _field(2, _feature(kind, values)))


def label_features(
    indices: np.ndarray, confidences: np.ndarray, schema: str = SPARSE, num_classes: int = 0
) -> bytes:
    """The serialized label entries of a record in `schema`: what the labels cost on disk."""
    if schema == SPARSE:
        return _entry("label/index", "int64", indices) + _entry(
            "label/confidence", "float", confidences
        )
    if schema == LEGACY_DENSE:
        dense = np.zeros(num_classes, dtype="<f4")
        dense[np.asarray(indices, dtype=np.int64)] = confidences
        return _entry("label", "bytes", [dense.tobytes()])
    if schema == LEGACY_INT64:
        return _entry("label", "int64", [int(indices[0])])
    raise ValueError(f"schema {schema!r}; expected one of {', '.join(SCHEMAS)}")


def encode_example(record: Record, schema: str = SPARSE, num_classes: int = 0) -> bytes:
    """A serialized tf.train.Example, byte-compatible with TensorFlow's parser."""
    entries = (
        _entry("image", "bytes", [record.image])
        + _entry("name", "bytes", [record.name.encode()])
        + _entry("width", "int64", [record.width])
        + _entry("height", "int64", [record.height])
        + label_features(record.indices, record.confidences, schema, num_classes)
    )
    return _field(1, entries)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("varint runs past the end")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message; values of type 2 as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("field runs past the end")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _list_values(kind: int, payload: bytes) -> list[Any]:
    """Values of a BytesList (1), FloatList (2) or Int64List (3), packed or not."""
    values: list[Any] = []
    for _, wire, value in _fields(payload):
        if kind == 1:
            values.append(value)
        elif kind == 2:
            values.extend(np.frombuffer(value, "<f4").tolist())
        elif wire == 0:
            values.append(_signed(value))
        else:
            pos = 0
            while pos < len(value):
                v, pos = _read_varint(value, pos)
                values.append(_signed(v))
    return values


def parse_features(data: bytes) -> dict[str, tuple[str, list[Any]]]:
    """A serialized Example as {key: (kind, values)}, kind one of bytes/float/int64."""
    kinds = {1: "bytes", 2: "float", 3: "int64"}
    features: dict[str, tuple[str, list[Any]]] = {}
    for number, _, features_msg in _fields(data):
        if number != 1:
            continue
        for _, _, entry in _fields(features_msg):
            parts = {n: v for n, _, v in _fields(entry)}
            key = parts.get(1, b"").decode()
            kind = [(n, v) for n, _, v in _fields(parts.get(2, b"")) if n in kinds]
            features[key] = (kinds[kind[0][0]], _list_values(*kind[0])) if kind else ("", [])
    return features


def schema_of(features: dict[str, tuple[str, list[Any]]]) -> str:
    if "label/index" in features:
        return SPARSE
    kind = features.get("label", ("", []))[0]
    if kind == "bytes":
        return LEGACY_DENSE
    if kind == "int64":
        return LEGACY_INT64
    raise ValueError(
        "no labels; expected `label/index` + `label/confidence` (ours), `label` as float32 "
        "bytes or `label` as int64 (the authors' legacy schema)"
    )


def decode_example(data: bytes, num_classes: int | None = None) -> tuple[str, Record]:
    """(schema, record) of a serialized Example in any of the three schemas."""
    features = parse_features(data)
    for key, kind in (("image", "bytes"), ("name", "bytes"), ("width", "int64")):
        if features.get(key, ("", []))[0] != kind or len(features[key][1]) != 1:
            raise ValueError(f"feature {key!r} missing or not one {kind} value")
    schema = schema_of(features)
    if schema == SPARSE:
        indices = np.asarray(features["label/index"][1], dtype=np.int64)
        confidences = np.asarray(features.get("label/confidence", ("", []))[1], np.float32)
        if len(confidences) != len(indices):
            raise ValueError(f"{len(indices)} label indices but {len(confidences)} confidences")
    elif schema == LEGACY_DENSE:
        dense = np.frombuffer(features["label"][1][0], dtype="<f4")
        if num_classes is not None and len(dense) != num_classes:
            raise ValueError(f"dense label of {len(dense)} classes; expected {num_classes}")
        indices = np.flatnonzero(dense).astype(np.int64)  # -1 (the authors' "ignore") is kept
        confidences = dense[indices].astype(np.float32)
    else:
        indices = np.asarray(features["label"][1][:1], dtype=np.int64)
        confidences = np.ones(1, dtype=np.float32)
    if (
        num_classes is not None
        and len(indices)
        and not 0 <= indices.min() <= indices.max() < (num_classes)
    ):
        raise ValueError(f"class index out of range; expected 0..{num_classes - 1}")
    record = Record(
        name=features["name"][1][0].decode("utf-8", errors="replace"),
        width=int(features["width"][1][0]),
        height=int(features.get("height", ("", [0]))[1][0]),
        image=features["image"][1][0],
        indices=indices,
        confidences=confidences,
    )
    return schema, record


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


# --- sources --------------------------------------------------------------------------


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


# --- writer ----------------------------------------------------------------------------


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
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    labels = 0
    try:
        with open(tmp, "wb") as f:
            for name, image_path, indices, confidences in items:
                data = Path(image_path).read_bytes()
                width, height = _image_size(data, Path(image_path))
                record = Record(name, width, height, data, indices, confidences)
                f.write(frame(encode_example(record)))
                labels += len(indices)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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


# --- the stage ---------------------------------------------------------------------------


def _count_classes(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def split_classes(params: Params, split: str) -> int:
    """Classes of a split: the dictionary's, or the target task's for `target_*` splits, or
    the miniature's novel task's for `novel_*` splits."""
    from mlimages.data.synthetic import ensure_miniature

    mini = (
        ensure_miniature(params.synth, params.run_dir / "data" / "mini")
        if params.data.uses_miniature
        else None
    )
    if split.startswith("target_"):
        if params.records.target_dictionary:
            return _count_classes(params.resolve_path(params.records.target_dictionary))
        if mini is None:
            raise ValueError(
                "records.target_dictionary is not set; expected the target task's dictionary "
                "(one line a class) to write the target splits"
            )
        return _count_classes(mini.target_dictionary)
    if split.startswith("novel_"):
        if mini is None or not mini.has_novel:
            raise ValueError(
                f"{split}: no novel task; expected the miniature with synth.novel_classes >= 1"
            )
        return _count_classes(mini.novel_dictionary)
    if mini is not None:
        from mlimages.data.taxonomy import load_dictionary

        return load_dictionary(str(mini.dictionary)).num_classes
    if params.data.num_classes:
        return params.data.num_classes
    if params.data.dictionary:
        from mlimages.data.taxonomy import load_dictionary

        dictionary = params.data.dictionary
        if not dictionary.startswith(("http://", "https://")):
            dictionary = str(params.resolve_path(dictionary))
        return load_dictionary(dictionary).num_classes
    raise ValueError("data.num_classes and data.dictionary are not set; expected one of them")


def split_source(folder: Path, num_classes: int) -> Source:
    """A download split folder: its `labels.txt` (keys relative to it), else its manifest."""
    if (folder / "labels.txt").is_file():
        return from_label_list(folder / "labels.txt", folder, num_classes)
    if (folder / "manifest.jsonl").is_file():
        return from_manifest(folder / "manifest.jsonl", num_classes)
    raise FileNotFoundError(f"{folder}: no labels.txt or manifest.jsonl; run the download stage")


def _fingerprint(folder: Path, num_classes: int, params: Params, split: str) -> str:
    """Inputs and settings that decide a split's shards; equal means the shards can be kept."""
    digest = hashlib.sha256()
    for name in ("labels.txt", "manifest.jsonl"):
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
    settings = params.records.model_dump(include={"shard_mb", "min_shards"})
    digest.update(json.dumps([split, num_classes, settings, _seed(params)]).encode())
    return digest.hexdigest()[:16]


def _seed(params: Params) -> int:
    return params.records_seed


def split_index(params: Params, split: str) -> SplitIndex:
    """The index of a split written by the records stage (shards, records, exact steps)."""
    return SplitIndex.load(params.run_dir / STAGE / split / INDEX_NAME)


def available_splits(params: Params) -> list[str]:
    source = params.run_dir / SOURCE_STAGE
    return [s for s in SPLITS if (source / s).is_dir()]


def run_records_stage(params: Params, splits: Sequence[str] | None = None) -> dict[str, Any]:
    """Write (or keep, when inputs and settings are unchanged) every split's shards, verify
    them, and save `metrics.json` and `shards.csv` with the resolved parameters."""
    out = params.stage_dir(STAGE)
    params.write(out / "params.yaml")
    splits = list(splits or available_splits(params))
    if not splits:
        raise FileNotFoundError(
            f"{params.run_dir / SOURCE_STAGE}: no split folders ({', '.join(SPLITS)}); "
            "run the download stage (notebook 02) first"
        )
    cfg = params.records
    metrics: dict[str, Any] = {"splits": {}}
    rows = []
    for split in splits:
        folder = params.run_dir / SOURCE_STAGE / split
        num_classes = split_classes(params, split)
        fingerprint = _fingerprint(folder, num_classes, params, split)
        try:
            index = SplitIndex.load(out / split)
            reuse = index.fingerprint == fingerprint and index.check_files()
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            reuse = False
        if not reuse:
            index = write_split(
                split_source(folder, num_classes),
                out / split,
                split,
                num_classes,
                shard_mb=cfg.shard_mb,
                min_shards=cfg.min_shards,
                seed=_seed(params),
                workers=cfg.workers,
                progress=cfg.progress,
                fingerprint=fingerprint,
            )
        verified = verify(index.paths)
        if verified != index.records:
            raise RecordError(
                f"{out / split}: {verified} records on disk, index says {index.records}"
            )
        total_bytes = sum(s.bytes for s in index.shards)
        metrics["splits"][split] = {
            "records": index.records,
            "shards": len(index.shards),
            "bytes": total_bytes,
            "num_classes": num_classes,
            "single_label": index.single_label,
            "labels_per_image": sum(s.labels for s in index.shards) / index.records,
            "classes_present": sum(1 for n in index.images_per_class if n),
            "reused": reuse,
        }
        rows += [{"split": split, **asdict(s)} for s in index.shards]
    pd.DataFrame(rows).to_csv(out / "shards.csv", index=False)
    write_json_atomic(out / "metrics.json", metrics)
    return metrics


# --- what notebook 03 shows ----------------------------------------------------------------


def shard_table(params: Params) -> pd.DataFrame:
    """Every shard the stage wrote: split, file, records, bytes, labels, labels a record."""
    table = pd.read_csv(params.run_dir / STAGE / "shards.csv")
    table["labels_per_record"] = table["labels"] / table["records"]
    return table


def plot_shards(table: pd.DataFrame):
    """Records and labels a record, shard by shard: equal shards mean equal worker steps."""
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(table["split"]))
    fig, axes = plt.subplots(2, len(splits), figsize=(3.2 * len(splits), 4.5), squeeze=False)
    for column, split in enumerate(splits):
        rows = table[table["split"] == split].reset_index(drop=True)
        axes[0, column].bar(rows.index, rows["records"], color="tab:blue")
        axes[0, column].set_title(split)
        axes[1, column].bar(rows.index, rows["labels_per_record"], color="tab:orange")
        axes[1, column].set_xlabel("shard")
    axes[0, 0].set_ylabel("records")
    axes[1, 0].set_ylabel("labels a record")
    fig.tight_layout()
    return fig


def label_bytes_table(
    index: SplitIndex, paper_classes: int = 11_166, sample: int = 512
) -> pd.DataFrame:
    """Serialized label bytes a record: ours against the authors' dense schema, at this
    split's class count and at the paper's 11,166 (over the first `sample` records)."""
    ours, images = [], []
    for path in index.paths:
        for _, record in read_records(path):
            ours.append(len(label_features(record.indices, record.confidences)))
            images.append(len(record.image))
            if len(ours) >= sample:
                break
        if len(ours) >= sample:
            break
    ours_mean = float(np.mean(ours))
    rows = [("sparse (ours)", index.num_classes, ours_mean)]
    for classes in dict.fromkeys((index.num_classes, paper_classes)):
        one = (np.zeros(1, np.int64), np.ones(1, np.float32))
        size = len(label_features(*one, LEGACY_DENSE, classes))
        rows.append((f"dense float32 (authors') at {classes} classes", classes, float(size)))
    table = pd.DataFrame(rows, columns=["schema", "classes", "label_bytes_per_record"])
    table["times_ours"] = table["label_bytes_per_record"] / ours_mean
    table["image_bytes_per_record"] = float(np.mean(images))
    return table
