"""The on-disk record, shared by writer and reader: TFRecord framing and tf.train.Example.

Ours (schema `sparse`) store the labels sparse, `label/index` int64 + `label/confidence`
float32, beside the stored JPEG bytes (`image`), `name`, `width` and `height`; the authors'
two schemas (`legacy_records`) decode to the same `Record`, so every reader sees one shape.

Both layers are written and parsed here without TensorFlow (a record's framing is four
fields and a CRC-32C; an Example is three nested length-delimited messages), so the writer's
worker processes never import it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from mlimages.input.legacy_records import (
    LEGACY_SCHEMAS,
    Features,
    legacy_label_entries,
    legacy_labels,
    legacy_schema,
)

SPARSE = "sparse"
SCHEMAS = (SPARSE, *LEGACY_SCHEMAS)

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
        entries = [("label/index", "int64", indices), ("label/confidence", "float", confidences)]
    elif schema in LEGACY_SCHEMAS:
        entries = legacy_label_entries(indices, confidences, schema, num_classes)
    else:
        raise ValueError(f"schema {schema!r}; expected one of {', '.join(SCHEMAS)}")
    return b"".join(_entry(*entry) for entry in entries)


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


def parse_features(data: bytes) -> Features:
    """A serialized Example as {key: (kind, values)}, kind one of bytes/float/int64."""
    kinds = {1: "bytes", 2: "float", 3: "int64"}
    features: Features = {}
    for number, _, features_msg in _fields(data):
        if number != 1:
            continue
        for _, _, entry in _fields(features_msg):
            parts = {n: v for n, _, v in _fields(entry)}
            key = parts.get(1, b"").decode()
            kind = [(n, v) for n, _, v in _fields(parts.get(2, b"")) if n in kinds]
            features[key] = (kinds[kind[0][0]], _list_values(*kind[0])) if kind else ("", [])
    return features


def schema_of(features: Features) -> str:
    if "label/index" in features:
        return SPARSE
    schema = legacy_schema(features)
    if schema is None:
        raise ValueError(
            "no labels; expected `label/index` + `label/confidence` (ours), `label` as float32 "
            "bytes or `label` as int64 (the authors' legacy schema)"
        )
    return schema


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
    else:
        indices, confidences = legacy_labels(features, schema, num_classes)
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
