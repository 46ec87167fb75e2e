"""The authors' legacy label schemas, so that their TFRecords read like ours.

- `legacy-dense`: the pretraining records' `label`, raw little-endian float32[num_classes]
  bytes: four bytes a class in every record, however few labels it carries;
- `legacy-int64`: the fine-tuning records' `label`, one int64 class index.

Both are spoken in parsed features, {key: (kind, values)} as `record_format` encodes and
parses them, so this module needs no wire format of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LEGACY_DENSE, LEGACY_INT64 = "legacy-dense", "legacy-int64"
LEGACY_SCHEMAS = (LEGACY_DENSE, LEGACY_INT64)

Features = dict[str, tuple[str, list[Any]]]


def legacy_schema(features: Features) -> str | None:
    """The legacy schema whose `label` the features carry, None when neither."""
    kind = features.get("label", ("", []))[0]
    return {"bytes": LEGACY_DENSE, "int64": LEGACY_INT64}.get(kind)


def legacy_label_entries(
    indices: np.ndarray, confidences: np.ndarray, schema: str, num_classes: int
) -> list[tuple[str, str, Sequence[Any]]]:
    """The (key, kind, values) label features of a record in a legacy `schema`."""
    if schema == LEGACY_DENSE:
        dense = np.zeros(num_classes, dtype="<f4")
        dense[np.asarray(indices, dtype=np.int64)] = confidences
        return [("label", "bytes", [dense.tobytes()])]
    return [("label", "int64", [int(indices[0])])]


def legacy_labels(
    features: Features, schema: str, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(int64 indices, float32 confidences) of a record's legacy `label`."""
    if schema == LEGACY_DENSE:
        dense = np.frombuffer(features["label"][1][0], dtype="<f4")
        if num_classes is not None and len(dense) != num_classes:
            raise ValueError(f"dense label of {len(dense)} classes; expected {num_classes}")
        indices = np.flatnonzero(dense).astype(np.int64)  # -1 (the authors' "ignore") is kept
        return indices, dense[indices].astype(np.float32)
    return np.asarray(features["label"][1][:1], dtype=np.int64), np.ones(1, dtype=np.float32)
