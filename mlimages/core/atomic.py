"""Write, then rename: a reader never finds half a file under its final name.

JSON is written strictly: `NaN` and `Infinity` are not JSON (RFC 8259), and strict parsers
(`jq`, browsers, most languages' standard libraries) refuse a file that holds them, so
non-finite floats become `null` on the way out.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(
    path: str | os.PathLike, tmp_dir: str | os.PathLike | None = None, keep_suffix: bool = True
) -> Iterator[Path]:
    """A temporary name to write `path` under; renamed onto `path` when the block ends, removed
    (file or folder) when it raises.

    The temporary name keeps the suffix, since Keras, numpy and matplotlib choose the format by
    it (unless `keep_suffix` is off: a partial file must not match its kind's pattern, as a
    shard's `*.tfrecord`), and holds the process and thread, so that concurrent writers never
    share one. It sits beside `path` unless `tmp_dir` (on the same file system) is given, for
    folders that others list while it is written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    where = Path(tmp_dir) if tmp_dir is not None else path.parent
    tag = f"tmp{os.getpid()}-{threading.get_ident()}"
    tmp = where / (f".{path.stem}.{tag}{path.suffix}" if keep_suffix else f".{path.name}.{tag}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """An empty temporary folder to fill in place of the folder `path`: renamed onto `path`
    when the block ends, a folder already there moved aside first and then removed (a reader
    sees the old folder or the new one, whole); removed when the block raises."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.mkdir()
        yield tmp
        old = tmp.with_name(f"{tmp.name}.old")
        if path.exists():
            os.replace(path, old)
    shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def finite_or_none(value: Any) -> Any:
    """`value` with every non-finite float (NaN, ±Infinity) replaced by None, recursively
    through dicts, lists and tuples; numpy scalars become Python floats (as `default=float`
    made them), other objects are left for the encoder to accept or refuse."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    if not isinstance(value, float):
        try:
            value = float(value)  # numpy scalars (float32, int64, ...): what default=float did
        except (TypeError, ValueError):
            return value
    return value if math.isfinite(value) else None


def dumps_json(payload: Any, **kwargs: Any) -> str:
    """`json.dumps` that never writes NaN or Infinity: non-finite floats become null first,
    and the encoder is told to refuse any that slipped through (`allow_nan=False`)."""
    return json.dumps(finite_or_none(payload), allow_nan=False, default=float, **kwargs)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    return write_text_atomic(path, dumps_json(payload, indent=2) + "\n")


def copy_files_atomic(names: Iterable[str], source: Path, target: Path) -> list[Path]:
    """Copy `source/<name>` to `target/<name>` for each name, each written then renamed, so
    a reader of `target` never sees half a file."""
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in names:
        with atomic_path(target / name) as tmp:
            shutil.copyfile(source / name, tmp)
        copied.append(target / name)
    return copied
