"""Stage fingerprints: a run folder is reused only for the parameters and inputs that made it.

A training run folder (pretraining, or one fine-tuning seed) is resumed when it was killed
and kept when it is finished, but only when it was made from the same parameters and inputs.
Each such folder holds `fingerprint.json`: the values its result depends on (dotted keys).
When a rerun's values differ, or a folder predates fingerprints, the old artefacts are
removed and the run starts afresh, with a line naming the changed keys: a rerun with changed
parameters never reports old results under the new label, and `params.yaml` beside the run
always describes what is in its folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from mlimages.config import layout
from mlimages.core.atomic import dumps_json, write_text_atomic

FILE = "fingerprint.json"
DISPLAY_ONLY = {"preview_images", "throughput_images"}  # pipeline keys notebook 03 alone reads


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested values as dotted keys, JSON-ready (tuples as lists)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.loads(dumps_json(value))
    return flat


def digest(values: dict[str, Any]) -> str:
    """A short hash of `values` (canonical JSON), e.g. to stand for an upstream run."""
    text = json.dumps(flatten(values), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """The fingerprint recorded in `path`'s folder (an upstream run) with the steps it ran,
    else the file's size and modification time: what a downstream run depends on."""
    recorded = path.parent / FILE
    if recorded.is_file():
        values = json.loads(recorded.read_text())
        metrics = path.parent / layout.METRICS_FILE  # the steps it ran (a longer run resumes)
        if metrics.is_file():
            values["run.steps"] = json.loads(metrics.read_text()).get("steps")
        return digest(values)
    if not path.exists():
        return "missing"
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key: old -> new` for every dotted key whose value differs."""
    a, b = flatten(old), flatten(new)
    return [
        f"{key}: {a.get(key, '(unset)')} -> {b.get(key, '(unset)')}"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def prepare(folder: Path, values: dict[str, Any], label: str) -> bool:
    """Make `folder` hold a run of `values`: keep its artefacts when its fingerprint matches
    (resume, or reuse a finished run), else remove them (`layout.TRAINING_ARTEFACTS`; other
    files such as the launcher's log stay) and record the new fingerprint. Returns True when it
    removed any."""
    recorded = folder / FILE
    if recorded.is_file():
        changes = changed_keys(json.loads(recorded.read_text()), values)
        if not changes:
            return False
        shown = "; ".join(changes[:6]) + (f"; {len(changes) - 6} more" if len(changes) > 6 else "")
        why = f"parameters or inputs changed ({shown})"
    else:
        why = "a run without a fingerprint"
    removed = clear(folder, label, why)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(recorded, json.dumps(flatten(values), indent=2, sort_keys=True) + "\n")
    return removed


def clear(folder: Path, label: str, why: str) -> bool:
    """Remove a run's artefacts from `folder`, saying why on stderr; True when there were any."""
    present = [folder / name for name in layout.TRAINING_ARTEFACTS if (folder / name).exists()]
    if present:
        print(f"{label}: {why}; starting afresh", file=sys.stderr)
    for path in present:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return bool(present)
