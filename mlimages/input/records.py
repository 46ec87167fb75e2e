"""The records stage: every downloaded split into shards (kept when its inputs and settings are
unchanged), verified, and tabled in `metrics.json` and `shards.csv`.

The record itself is `record_format` (the authors' schemas: `legacy_records`); `record_writer`
writes the shards, `shard_index` lists them, `record_reader` reads them back. This stage alone
reads the profile's parameters; the modules it calls take plain values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlimages.config import layout
from mlimages.config.params import Params
from mlimages.config.sections import RecordsParams
from mlimages.core.atomic import atomic_path, write_json_atomic
from mlimages.input.record_format import RecordError
from mlimages.input.record_reader import verify
from mlimages.input.record_writer import Source, from_label_list, from_manifest, write_split
from mlimages.input.shard_index import INDEX_NAME, SplitIndex

if TYPE_CHECKING:
    from mlimages.data.synthetic import MiniDataset

STAGE = layout.RECORDS
SOURCE_STAGE = layout.DOWNLOAD
SPLITS = ("train", "val", "target_train", "target_val", "novel_train", "novel_val")


def _count_classes(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def split_classes(
    split: str,
    mini: MiniDataset | None,
    target_dictionary: Path | None = None,
    num_classes: int | None = None,
    dictionary: str | None = None,
) -> int:
    """Classes of a split: the dictionary's, or the target task's for `target_*` splits, or
    the miniature's novel task's for `novel_*` splits. `mini` is the miniature when the
    profile uses it; `target_dictionary`, `num_classes` and `dictionary` (a path or URL) are
    the profile's settings."""
    if split.startswith("target_"):
        if target_dictionary is not None:
            return _count_classes(target_dictionary)
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
    if num_classes:
        return num_classes
    if dictionary:
        from mlimages.data.taxonomy import load_dictionary

        return load_dictionary(dictionary).num_classes
    raise ValueError("data.num_classes and data.dictionary are not set; expected one of them")


def split_source(folder: Path, num_classes: int) -> Source:
    """A download split folder: its `labels.txt` (keys relative to it), else its manifest."""
    if (folder / "labels.txt").is_file():
        return from_label_list(folder / "labels.txt", folder, num_classes)
    if (folder / "manifest.jsonl").is_file():
        return from_manifest(folder / "manifest.jsonl", num_classes)
    raise FileNotFoundError(f"{folder}: no labels.txt or manifest.jsonl; run the download stage")


def _fingerprint(
    folder: Path, num_classes: int, records: RecordsParams, seed: int, split: str
) -> str:
    """Inputs and settings that decide a split's shards; equal means the shards can be kept."""
    digest = hashlib.sha256()
    for name in ("labels.txt", "manifest.jsonl"):
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
    settings = records.model_dump(include={"shard_mb", "min_shards"})
    digest.update(json.dumps([split, num_classes, settings, seed]).encode())
    return digest.hexdigest()[:16]


def split_index(run_dir: Path, split: str) -> SplitIndex:
    """The index of a split the records stage wrote in `run_dir` (shards, records, exact
    steps)."""
    return SplitIndex.load(run_dir / STAGE / split / INDEX_NAME)


def available_splits(run_dir: Path) -> list[str]:
    source = run_dir / SOURCE_STAGE
    return [s for s in SPLITS if (source / s).is_dir()]


def run_records_stage(params: Params, splits: Sequence[str] | None = None) -> dict[str, Any]:
    """Write (or keep, when inputs and settings are unchanged) every split's shards, verify
    them, and save `metrics.json` and `shards.csv` with the resolved parameters."""
    out = params.stage_dir(STAGE)
    params.write(out / layout.PARAMS_FILE)
    splits = list(splits or available_splits(params.run_dir))
    if not splits:
        raise FileNotFoundError(
            f"{params.run_dir / SOURCE_STAGE}: no split folders ({', '.join(SPLITS)}); "
            "run the download stage (notebook 02) first"
        )
    from mlimages.data.synthetic import ensure_miniature

    cfg, data = params.records, params.data
    mini = (
        ensure_miniature(params.synth, layout.miniature_dir(params.run_dir))
        if data.uses_miniature
        else None
    )
    target = params.resolve_path(cfg.target_dictionary) if cfg.target_dictionary else None
    dictionary = data.dictionary
    if dictionary and not dictionary.startswith(("http://", "https://")):
        dictionary = str(params.resolve_path(dictionary))
    metrics: dict[str, Any] = {"splits": {}}
    rows = []
    for split in splits:
        folder = params.run_dir / SOURCE_STAGE / split
        num_classes = split_classes(split, mini, target, data.num_classes, dictionary)
        fingerprint = _fingerprint(folder, num_classes, cfg, params.records_seed, split)
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
                seed=params.records_seed,
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
    with atomic_path(out / "shards.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    write_json_atomic(out / layout.METRICS_FILE, metrics)
    return metrics


# --- what notebook 03 shows ----------------------------------------------------------------


def shard_table(run_dir: Path) -> pd.DataFrame:
    """Every shard the stage wrote in `run_dir`: split, file, records, bytes, labels, labels a
    record."""
    table = pd.read_csv(run_dir / STAGE / "shards.csv")
    table["labels_per_record"] = table["labels"] / table["records"]
    return table
