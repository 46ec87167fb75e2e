"""Notebook 03's tables and figures: shards, label bytes against the authors' schema, the
augmentation preview, and the report saved beside the records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.config import layout
from mlimages.config.sections import PipelineParams
from mlimages.core.atomic import write_json_atomic
from mlimages.input.legacy_records import LEGACY_DENSE
from mlimages.input.record_format import label_features
from mlimages.input.record_reader import read_records
from mlimages.input.shard_index import SplitIndex
from mlimages.paper.facts import PAPER_CLASSES


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
    index: SplitIndex, paper_classes: int = PAPER_CLASSES, sample: int = 512
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


def preview_figure(index: SplitIndex, image_size: int, options: PipelineParams, seed: int = 0):
    """Stored images, then two augmented draws, the un-augmented and the eval input."""
    import matplotlib.pyplot as plt

    from mlimages.input import pipeline  # TensorFlow: only for this figure

    mode = pipeline.FINETUNE if index.single_label else pipeline.PRETRAIN
    n = options.preview_images
    stored = []
    for path in index.paths:
        stored += [r for _, r in read_records(path)][: n - len(stored)]
        if len(stored) >= n:
            break
    jpegs = [r.image for r in stored]
    rows = pipeline.preview_rows(jpegs, image_size, options, mode, seed)
    size = (1.3 * len(jpegs), 1.45 * len(rows))
    fig, axes = plt.subplots(len(rows), len(jpegs), figsize=size, squeeze=False)
    for r, (title, images) in enumerate(rows.items()):
        for c, image in enumerate(images):
            axes[r, c].imshow(image)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{index.split}: stored {stored[0].width}x{stored[0].height}, input {image_size}")
    fig.tight_layout()
    return fig


def save_report(out: Path, tables: dict[str, pd.DataFrame], figures: dict[str, Any]) -> Path:
    """Tables (CSV) and figures (PNG) into the records stage folder `out`; their figures join
    `metrics.json` under `pipeline`."""
    import matplotlib.pyplot as plt

    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)
    path = out / layout.METRICS_FILE
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics["pipeline"] = {name: t.to_dict(orient="records") for name, t in tables.items()}
    write_json_atomic(path, metrics)
    return out
