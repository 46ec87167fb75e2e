"""Single-label evaluation: fine-tuned checkpoints on a task's validation records.

Top-1/top-5 at each evaluation size (the fine-tuning base and large sizes), the records
decoded once for every model; beside them the figures the fine-tuning stage reported for the
same runs (`finetune/ckpt<N>/results.csv`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.config import fingerprint, layout
from mlimages.core import metrics
from mlimages.input.shard_index import SplitIndex
from mlimages.paper.facts import EVAL_CROP_FRACTION

COLUMNS = ("ckpt", "seed", "model", "img_size", "top1", "top5", "images")


def finetuned_runs(folder: Path) -> list[tuple[int, int, Path]]:
    """(ckpt, seed, model file) of every finished run in the fine-tuning stage's `folder`, in
    order."""
    found = []
    for path in folder.glob(f"{layout.CKPT_FOLDERS}/{layout.SEED_FOLDERS}/{layout.MODEL_FILE}"):
        ckpt = re.fullmatch(layout.ckpt_folder(r"(\d+)"), path.parent.parent.name)
        seed = re.fullmatch(layout.seed_folder(r"(\d+)"), path.parent.name)
        if ckpt and seed:
            found.append((int(ckpt.group(1)), int(seed.group(1)), path))
    return sorted(found)


def run_task(model_file: Path) -> str:
    """The single-label task a fine-tuning run trained on, from its `fingerprint.json`
    (runs from before `finetune.task` existed trained on the target task)."""
    recorded = model_file.parent / fingerprint.FILE
    values = json.loads(recorded.read_text()) if recorded.is_file() else {}
    return values.get("finetune.task", "target")


def evaluate_single_label(
    model,
    index: SplitIndex,
    sizes: list[int],
    batch: int = 256,
    crop_fraction: float = EVAL_CROP_FRACTION,
    decoded: dict[int, list[tuple[Any, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Top-1/top-5 (%) on single-label records at each size; `decoded` (size -> batches, as
    `decoded_batches` gives them) spares decoding the records again for every model."""
    from mlimages.input import pipeline
    from mlimages.train.checkpoint import num_classes_of, with_image_size

    if not index.single_label:
        raise ValueError(f"{index.root}: multi-label records; expected single-label ones")
    if num_classes_of(model) != index.num_classes:
        raise ValueError(
            f"the model has {num_classes_of(model)} classes, {index.root} {index.num_classes}"
        )
    rows = []
    for size in sizes:
        sized = with_image_size(model, size)
        dataset = (decoded or {}).get(size) or pipeline.eval_dataset(
            index, size, batch, index.num_classes, pipeline.FINETUNE, crop_fraction
        )
        hits, images = {1: 0, 5: 0}, 0
        for x, y in dataset:
            found = metrics.top_k_hits(np.asarray(sized(x, training=False)), np.asarray(y), (1, 5))
            hits = {k: hits[k] + found[k] for k in hits}
            images += len(y)
        rows.append(
            {
                "img_size": size,
                "top1": 100 * hits[1] / images,
                "top5": 100 * hits[5] / images,
                "images": images,
            }
        )
    return rows


def decoded_batches(
    index: SplitIndex, sizes: list[int], batch: int, crop_fraction: float
) -> dict[int, list[tuple[Any, Any]]]:
    """The single-label records' evaluation batches at each size, decoded once."""
    from mlimages.input import pipeline

    return {
        size: [
            (x.numpy(), y.numpy())
            for x, y in pipeline.eval_dataset(
                index, size, batch, index.num_classes, pipeline.FINETUNE, crop_fraction
            )
        ]
        for size in sizes
    }


def evaluate_runs(
    runs: list[tuple[int, int, Path]],
    index: SplitIndex,
    sizes: list[int],
    batch: int,
    crop_fraction: float,
) -> pd.DataFrame:
    """Every run of `runs` (`finetuned_runs`) on `index` at each size, a row a (run, size);
    the records are decoded once."""
    from mlimages.train.checkpoint import load_model, model_label

    decoded = decoded_batches(index, sizes, batch, crop_fraction)
    rows = []
    for ckpt, seed, path in runs:
        model = load_model(path)
        for row in evaluate_single_label(model, index, sizes, batch, crop_fraction, decoded):
            rows.append({"ckpt": ckpt, "seed": seed, "model": model_label(model), **row})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def reported_results(folder: Path) -> pd.DataFrame | None:
    """top1/top5 as notebook 05 reported them (`ckpt<N>/results.csv` in the fine-tuning
    stage's `folder`), if any."""
    tables = [pd.read_csv(p) for p in sorted(folder.glob(layout.RESULTS_FILES))]
    if not tables:
        return None
    table = pd.concat(tables)[["ckpt", "seed", "img_size", "top1", "top5"]]
    return table.rename(columns={"top1": "top1_finetune_stage", "top5": "top5_finetune_stage"})
