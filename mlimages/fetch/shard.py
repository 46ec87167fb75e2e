"""Downloads across machines: the I-th of N parts of a list, and merging the parts back.

A job array runs `mlimages download LIST --out DIR --shard I/N` once for each I; every job
takes the keys whose stable hash falls in part I (sha1 of the UTF-8 key, its first 8 bytes
as a big-endian integer, modulo N: the same on every machine and Python, unlike `hash`)
and downloads them into `DIR/shard-I-of-N/` with its own manifest, plus `shard.json` naming
the list (its sha256), I, N and the image settings. `merge` then joins the parts into one
folder laid out like a single download (`manifest.jsonl`, `labels.txt`, `images/`), which
the records stage reads, after refusing parts that overlap or disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlimages.core.atomic import atomic_dir, write_json_atomic
from mlimages.data.labels.table import LabelTable
from mlimages.fetch.manifest import LABELS, MANIFEST, read_manifest, write_labels

SHARD_FILE = "shard.json"
MERGE_FILE = "merge.json"
RULE = "int.from_bytes(sha1(key.encode('utf-8')).digest()[:8], 'big') % N"


class MergeError(ValueError):
    """Parts that cannot be joined; the message names the parts and an example key."""


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` with 0 <= I < N (SLURM's `$SLURM_ARRAY_TASK_ID/N` with `--array=0-N-1`)."""
    head, sep, tail = text.partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index, count = -1, 0
    if not sep or count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}; expected I/N with 0 <= I < N, e.g. 3/16")
    return index, count


def key_digest(key: str) -> int:
    """The stable 64-bit hash a key's part is chosen by (see `RULE`)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big")


def shard_of(keys: list[str], count: int) -> np.ndarray:
    """The part (0..count-1) of every key."""
    return np.fromiter((key_digest(k) % count for k in keys), dtype=np.int64, count=len(keys))


def shard_dir(out: str | os.PathLike, index: int, count: int) -> Path:
    """`OUT/shard-I-of-N`, zero-padded so that the parts sort in order."""
    width = len(str(count - 1))
    return Path(out) / f"shard-{index:0{width}d}-of-{count}"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def select_shard(table: LabelTable, index: int, count: int) -> LabelTable:
    """The rows of `table` in part `index` of `count`, in list order."""
    return table.select(np.flatnonzero(shard_of(table.keys(), count) == index))


def describe(
    list_path: str | os.PathLike, part: LabelTable, index: int, count: int, settings: dict
) -> dict[str, Any]:
    """What `shard.json` records: merge compares it between parts."""
    return {
        "shard": index,
        "of": count,
        "rule": RULE,
        "list": os.fspath(list_path),
        "list_sha256": file_sha256(list_path),
        "keys": len(set(part.keys())),
        "settings": settings,
    }


def claim_folder(folder: Path, meta: dict[str, Any]) -> None:
    """Write `shard.json`, or check that the folder already holds this very part."""
    path = folder / SHARD_FILE
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        fields = ("shard", "of", "list_sha256")
        if any(old.get(k) != meta[k] for k in fields):
            raise ValueError(
                f"{folder} holds part {old.get('shard')}/{old.get('of')} of a list with sha256 "
                f"{old.get('list_sha256')}; expected part {meta['shard']}/{meta['of']} of "
                f"{meta['list']} ({meta['list_sha256']}): use another --out"
            )
    write_json_atomic(path, meta)


@dataclass
class _Part:
    folder: Path
    meta: dict[str, Any] | None
    records: dict[str, dict[str, Any]]

    @property
    def name(self) -> str:
        return str(self.folder)


def _load(folder: Path) -> _Part:
    if not (folder / MANIFEST).is_file():
        raise MergeError(f"{folder}: no {MANIFEST}; expected a download folder (a part)")
    meta = None
    if (folder / SHARD_FILE).is_file():
        meta = json.loads((folder / SHARD_FILE).read_text(encoding="utf-8"))
    return _Part(folder, meta, read_manifest(folder / MANIFEST))


def _check_agreement(parts: list[_Part], partial: bool) -> dict[str, Any] | None:
    """Same list, same N, same settings, each part once, all parts there and finished."""
    described = [p for p in parts if p.meta is not None]
    if not described:
        return None
    if len(described) != len(parts):
        bare = next(p for p in parts if p.meta is None)
        raise MergeError(
            f"{bare.name} has no {SHARD_FILE} but {described[0].name} has: expected parts "
            "of one sharded download (all with shard.json) or plain download folders only"
        )
    first = described[0]
    assert first.meta is not None
    for part in described[1:]:
        assert part.meta is not None
        for field, what in (("list_sha256", "list"), ("of", "N"), ("settings", "settings")):
            if part.meta.get(field) != first.meta.get(field):
                raise MergeError(
                    f"{part.name} and {first.name} disagree on the {what} "
                    f"({part.meta.get(field)} vs {first.meta.get(field)}); expected parts of "
                    "one list, one N and one set of image settings"
                )
    seen: dict[int, _Part] = {}
    for part in described:
        assert part.meta is not None
        index = part.meta["shard"]
        if index in seen:
            raise MergeError(
                f"{part.name} and {seen[index].name} are both part {index}/{first.meta['of']}; "
                "expected each part once"
            )
        seen[index] = part
    count = first.meta["of"]
    missing = sorted(set(range(count)) - set(seen))
    if missing and not partial:
        raise MergeError(
            f"parts {_few(missing)} of {count} are missing (have {len(seen)}); expected all "
            f"{count}, or --partial to merge what is there"
        )
    for part in described:
        assert part.meta is not None
        if len(part.records) < part.meta["keys"] and not partial:
            raise MergeError(
                f"{part.name}: {len(part.records)} of its {part.meta['keys']} keys have a "
                "record; expected a finished part (rerun its job), or --partial"
            )
    return first.meta


def _few(values: list[int], n: int = 8) -> str:
    shown = ", ".join(map(str, values[:n]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > n else "")


def _check_overlap(parts: list[_Part], meta: dict[str, Any] | None) -> None:
    """No key in two parts; in a sharded download, every key in the part its hash names."""
    digests = [
        np.fromiter(map(key_digest, part.records), dtype=np.uint64, count=len(part.records))
        for part in parts
    ]
    digest = np.concatenate([np.empty(0, np.uint64), *digests])
    owner = np.repeat(np.arange(len(parts)), [len(d) for d in digests])
    order = np.argsort(digest, kind="stable")
    same = np.flatnonzero(digest[order][1:] == digest[order][:-1])
    for at in same.tolist():
        a, b = int(owner[order[at]]), int(owner[order[at + 1]])
        shared = set(parts[a].records) & set(parts[b].records) if a != b else set()
        if shared:
            key = min(shared)
            raise MergeError(
                f"{parts[a].name} and {parts[b].name} overlap: {len(shared)} keys in both, "
                f"e.g. {key!r}; expected disjoint parts"
            )
    if meta is None:
        return
    for part, part_digest in zip(parts, digests, strict=True):
        assert part.meta is not None
        wrong = np.flatnonzero(part_digest % np.uint64(meta["of"]) != part.meta["shard"])
        if len(wrong):
            key = list(part.records)[int(wrong[0])]
            raise MergeError(
                f"{part.name}: key {key!r} belongs to part {key_digest(key) % meta['of']}, "
                f"not {part.meta['shard']} ({len(wrong)} such keys); expected keys chosen by "
                f"{RULE}"
            )


def _place(source: Path, target: Path) -> bool:
    """Hard-link an image into the merged folder (copy across file systems); True if linked."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
        return True
    except OSError:
        shutil.copy2(source, target)
        return False


def merge(
    out: str | os.PathLike, folders: list[str | os.PathLike], partial: bool = False
) -> dict[str, Any]:
    """Join download parts into `out`, built beside it and renamed into place at the end.

    Parts are taken in shard order (else as given), each part's records in its manifest's
    order (list order after a finished run). `out` must not exist or be empty.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"{out} exists and is not empty; expected a new folder to merge into")
    if not folders:
        raise MergeError("no parts given; expected one or more download folders")
    parts = [_load(Path(f)) for f in folders]
    by_path = {p.folder.resolve() for p in parts}
    if len(by_path) != len(parts):
        raise MergeError("a part is given twice; expected each folder once")
    meta = _check_agreement(parts, partial)
    if meta is not None:
        parts.sort(key=lambda p: p.meta["shard"] if p.meta else 0)
    _check_overlap(parts, meta)
    counts = {"keys": 0, "ok": 0, "failed": 0, "linked": 0, "copied": 0}
    with atomic_dir(out) as tmp:  # `out` is new or empty: a reader sees all of it or nothing
        scratch = tmp / ".labels"  # each part's labels.txt, appended to the merged one
        scratch.mkdir()
        with (
            open(tmp / MANIFEST, "w", encoding="utf-8") as manifest,
            open(tmp / LABELS, "wb") as labels,
        ):
            for part in parts:
                for key, record in part.records.items():
                    if record["status"] == "ok":
                        source = part.folder / record["path"]
                        if not source.is_file():
                            raise MergeError(
                                f"{part.name}: key {key!r} is ok but {record['path']} is "
                                "missing; expected its image (rerun that part's job)"
                            )
                        linked = _place(source, tmp / record["path"])
                        counts["linked" if linked else "copied"] += 1
                        counts["ok"] += 1
                    else:
                        counts["failed"] += 1
                    manifest.write(json.dumps(record, separators=(",", ":")) + "\n")
                counts["keys"] += len(part.records)
                write_labels(scratch, part.records, part.records)
                with open(scratch / LABELS, "rb") as piece:
                    shutil.copyfileobj(piece, labels)
        shutil.rmtree(scratch)
        summary = {
            "out": str(out),
            "parts": [p.name for p in parts],
            **counts,
            "list_sha256": meta["list_sha256"] if meta else None,
            "of": meta["of"] if meta else None,
        }
        write_json_atomic(tmp / MERGE_FILE, summary)
    return summary
