"""The download stage (notebook 02): choose a subset, then fetch or extract every split.

Output, in `runs/<profile>/download/`, one folder per split: `train` and `val` (the
multi-label ML-Images lists, URL-keyed), `target_train` and `target_val` (the single-label
target task, ImageNet-id-keyed), and on a miniature with a novel task `novel_train` and
`novel_val` (its second single-label task, laid out like the target's). Each holds
`manifest.jsonl`, the stored images (`images/ab/<hash>.jpg`) and `labels.txt`, the `ok` rows
in the authors' format keyed by the image path relative to the split folder: the input of
the records stage. On the miniature
the URLs are `file://` URLs below the miniature's folder, fetched through the same code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlimages.config import layout
from mlimages.config.params import Params
from mlimages.config.sections import DownloadParams
from mlimages.core.atomic import write_json_atomic
from mlimages.data import subset
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable
from mlimages.data.synthetic import MiniDataset, ensure_miniature
from mlimages.data.taxonomy import Taxonomy, load_dictionary
from mlimages.fetch.fetcher import Fetched, Fetcher, FetchFailed, FetchRules
from mlimages.fetch.imagenet import LocalImages, extract
from mlimages.fetch.ingest import FetchFn, Summary, image_rules, ingest

STAGE = layout.DOWNLOAD
SUBSET_DIR = "subset"
NOVEL_SPLITS = ["novel_train", "novel_val"]


def fetch_rules(download: DownloadParams, file_root: str | os.PathLike | None) -> FetchRules:
    return FetchRules(
        connect_timeout=download.connect_timeout,
        read_timeout=download.read_timeout,
        total_timeout=download.total_timeout,
        retries=download.retries,
        backoff=download.backoff,
        backoff_max=download.backoff_max,
        max_redirects=download.max_redirects,
        max_bytes=download.max_bytes,
        per_host=download.per_host,
        file_root=Path(file_root) if file_root else None,
        placeholder_urls=tuple(download.placeholder_urls),
    )


def download_list(
    table: LabelTable,
    out: Path,
    download: DownloadParams,
    *,
    file_root: str | os.PathLike | None = None,
    imagenet_root: str | os.PathLike | None = None,
    desc: str = "download",
) -> Summary:
    """Fetch a URL-keyed list into `out`; ImageNet-id keys come from `imagenet_root`."""
    fetcher = Fetcher(fetch_rules(download, file_root))
    local = LocalImages(imagenet_root, download.max_bytes) if imagenet_root else None

    def fetch(key: str, seed: int) -> Fetched:
        if "://" in key:
            return fetcher.fetch(key, seed)
        if local is not None:
            return local.fetch(key, seed)
        raise FetchFailed("not_a_url", "an ImageNet id or file name; set an ImageNet root")

    route: FetchFn = fetch
    try:
        return ingest(
            table,
            out,
            route,
            image_rules(download),
            workers=download.workers,
            retry_failed=download.retry_failed,
            progress=download.progress,
            desc=desc,
            on_interrupt=fetcher.stop,
        )
    finally:
        fetcher.stop()


@dataclass(frozen=True)
class Split:
    """One split's input: a label list and where its images come from."""

    name: str
    label_list: Path
    kind: str  # "urls" (download) or "imagenet" (local tree or tars)
    root: Path | None  # file:// root for URLs, tree or tar folder for ImageNet ids


def split_dirs(params: Params) -> dict[str, Path]:
    """The stage's split folders for this profile (records read `labels.txt` in each)."""
    base = params.run_dir / STAGE
    return {name: base / name for name in _split_names(params)}


def _split_names(params: Params) -> list[str]:
    d = params.download
    novel = NOVEL_SPLITS if params.data.uses_miniature and params.synth.novel_classes else []
    if params.data.uses_miniature and d.target_train_list is None:
        return ["train", "val", "target_train", "target_val", *novel]
    names = ["train"] + (["val"] if params.data.val_list or params.data.uses_miniature else [])
    return [
        *names,
        *(
            name
            for name, listed in (
                ("target_train", d.target_train_list),
                ("target_val", d.target_val_list),
            )
            if listed
        ),
        *novel,
    ]


def splits(params: Params) -> dict[str, Split]:
    """Inputs of every split; generates the miniature on the default and smoke profiles."""
    d, data = params.download, params.data
    mini = miniature(params) if data.uses_miniature else None
    if mini is not None:
        found = {
            "train": Split("train", mini.url_list("train"), "urls", mini.root),
            "val": Split("val", mini.url_list("val"), "urls", mini.root),
        }
        tasks = ["target"] if d.target_train_list is None else []  # the miniature's own
        tasks += ["novel"] if mini.has_novel else []
        for task in tasks:
            for part in ("train", "val"):
                name = f"{task}_{part}"
                found[name] = Split(
                    name, mini.task_list(task, part), "imagenet", mini.task_dir(task) / part
                )
        if d.target_train_list is None:
            return found
    else:
        file_root = params.resolve_path(d.file_root) if d.file_root else None
        found = {"train": Split("train", params.resolve_path(data.train_list), "urls", file_root)}
        if data.val_list:
            found["val"] = Split("val", params.resolve_path(data.val_list), "urls", file_root)
    for name, listed, root in (
        ("target_train", d.target_train_list, d.imagenet_train),
        ("target_val", d.target_val_list, d.imagenet_val),
    ):
        if listed:
            if not root:
                key = "imagenet_train" if name == "target_train" else "imagenet_val"
                raise ValueError(
                    f"download.{key} is not set; expected the ImageNet tree or tar folder "
                    f"holding the images of {listed}"
                )
            found[name] = Split(
                name, params.resolve_path(listed), "imagenet", params.resolve_path(root)
            )
    novel = {name: found.pop(name) for name in NOVEL_SPLITS if name in found}
    return found | novel  # the novel task after the target task, as split_dirs lists them


def miniature(params: Params) -> MiniDataset:
    return ensure_miniature(
        params.synth, layout.miniature_dir(params.run_dir), progress=params.download.progress
    )


def hierarchy(params: Params) -> tuple[Taxonomy | None, int | None]:
    """The dictionary (for subtrees and class counts) and the number of classes."""
    if params.data.uses_miniature:
        taxonomy = load_dictionary(str(miniature(params).dictionary))
    elif params.data.dictionary:
        source = params.data.dictionary
        if not source.startswith(("http://", "https://")):
            source = str(params.resolve_path(source))
        taxonomy = load_dictionary(source)
    else:
        return None, params.data.num_classes
    return taxonomy, taxonomy.num_classes


def read_split(params: Params, split: Split) -> LabelTable:
    """A split's label list; class indices checked against the dictionary for ML-Images lists."""
    _, num_classes = hierarchy(params) if split.kind == "urls" else (None, None)
    return read_label_list(
        split.label_list, num_classes=num_classes, progress=params.download.progress
    )


def num_classes_of(params: Params, table: LabelTable) -> int:
    _, num_classes = hierarchy(params)
    return num_classes or (int(table.indices.max()) + 1 if table.num_labels else 1)


def choose_subset(params: Params, table: LabelTable) -> tuple[LabelTable, pd.DataFrame | None]:
    """The training rows to download and, when a subset is configured, its coverage table.

    Writes `subset/train_list.txt`, `coverage.csv` and `per_class.csv` into the stage folder.
    """
    spec = params.subset
    if not spec.enabled:
        return table, None
    taxonomy, _ = hierarchy(params)
    num_classes = num_classes_of(params, table)
    chosen = subset.choose(
        table,
        num_classes,
        spec,
        seed=params.subset_seed,
        max_side=params.download.max_side,
        taxonomy=taxonomy,
    )
    out = params.stage_dir(STAGE) / SUBSET_DIR
    out.mkdir(exist_ok=True)
    chosen.write(out / "train_list.txt")
    cover = subset.coverage(table, chosen, num_classes, spec.min_per_class)
    cover.to_csv(out / "coverage.csv")
    subset.per_class(table, chosen, num_classes).to_csv(out / "per_class.csv")
    return chosen, cover


def run_split(params: Params, split: Split, table: LabelTable, out: Path) -> Summary:
    d = params.download
    if split.kind == "imagenet":
        assert split.root is not None
        return extract(table, split.root, out, d, desc=split.name)
    imagenet_root = params.resolve_path(d.imagenet_root) if d.imagenet_root else None
    return download_list(
        table, out, d, file_root=split.root, imagenet_root=imagenet_root, desc=split.name
    )


def run_download_stage(params: Params) -> dict[str, Any]:
    """Subset (if configured), then every split; writes and returns `metrics.json`."""
    stage = params.stage_dir(STAGE)
    inputs = splits(params)
    dirs = split_dirs(params)
    summaries: dict[str, dict[str, Any]] = {}
    cover = None
    for name, split in inputs.items():
        table = read_split(params, split)
        if name == "train":
            table, cover = choose_subset(params, table)
        summaries[name] = run_split(params, split, table, dirs[name]).as_dict()
    metrics = {
        "splits": summaries,
        "total": _totals(summaries),
        "max_side": params.download.max_side,
        "quality": params.download.quality,
        "subset": None if cover is None else cover.to_dict(),
    }
    write_json_atomic(stage / layout.METRICS_FILE, metrics)
    failures_table(summaries).to_csv(stage / "failures.csv")
    return metrics


def failures_table(summaries: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Failed keys by reason (rows) and split (columns)."""
    frame = pd.DataFrame({name: s["failures"] for name, s in summaries.items()}).fillna(0)
    frame = frame.astype(int)
    frame.index.name = "reason"
    return frame


def _totals(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    keys = ("listed", "ok", "failed", "skipped", "bytes_original", "bytes_stored")
    total = {k: sum(s[k] for s in summaries.values()) for k in keys}
    total["stored_over_original"] = (
        round(total["bytes_stored"] / total["bytes_original"], 4) if total["bytes_original"] else 0
    )
    return total
