"""Multi-label evaluation of a model on records: the paper's figures beside the class prior's.

The model's sigmoid scores are written to `scores.npy` (float32) and the targets to
`labels.npy` (float16 confidences) a batch at a time, then every figure of
`mlimages.core.metrics` is streamed from those files, so the paper's 88,739 x 11,166
validation set needs no more memory than the miniature's. The class-prior ranking scores
every image by the training class frequencies and so ignores the image: its figures, on the
same targets, are the baseline of ours. The evaluation stage's tables (figures in percent)
are built here as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.core import metrics, npy
from mlimages.data.taxonomy import Taxonomy
from mlimages.input.shard_index import SplitIndex
from mlimages.paper.facts import EVAL_CROP_FRACTION

COUNTS = ("images", "images_with_positives", "classes", "classes_with_positives")
CURVE_THRESHOLDS = np.round(np.arange(1, 200) / 200, 3)  # 0.005 … 0.995 on sigmoid scores
PRIOR_PREFIX = "prior_"  # multilabel.csv: the class-prior ranking's columns


def depth_groups(taxonomy: Taxonomy | None, num_classes: int) -> dict[str, np.ndarray]:
    """Class indices at each depth of the hierarchy (a root has depth 0)."""
    if taxonomy is None:
        return {}
    if taxonomy.num_classes != num_classes:
        raise ValueError(
            f"dictionary {taxonomy.source}: {taxonomy.num_classes} classes; the scores have "
            f"{num_classes}"
        )
    depth = taxonomy.depth
    return {str(d): np.flatnonzero(depth == d) for d in range(int(depth.max()) + 1)}


# --- the model's figures ---------------------------------------------------------------------


def predict_multilabel(
    model,
    index: SplitIndex,
    image_size: int,
    folder: Path,
    batch: int = 256,
    crop_fraction: float = EVAL_CROP_FRACTION,
    progress: bool | None = None,
) -> metrics.NpySource:
    """Sigmoid scores and targets of every record, written to `folder` batch by batch."""
    import tensorflow as tf

    from mlimages.core.npy import NpyWriter
    from mlimages.core.progress import quiet, tqdm
    from mlimages.input import pipeline
    from mlimages.train.checkpoint import num_classes_of, with_image_size

    if index.single_label:
        raise ValueError(f"{index.root}: single-label records; expected multi-label ones")
    if num_classes_of(model) != index.num_classes:
        raise ValueError(
            f"the model has {num_classes_of(model)} classes, {index.root} {index.num_classes}"
        )
    model = with_image_size(model, image_size)
    dataset = pipeline.eval_dataset(
        index, image_size, batch, index.num_classes, pipeline.PRETRAIN, crop_fraction
    )
    shape = (index.records, index.num_classes)
    folder.mkdir(parents=True, exist_ok=True)
    scores = NpyWriter(folder / "scores.npy", shape, np.float32)
    labels = NpyWriter(folder / "labels.npy", shape, np.float16)
    bar = tqdm(total=index.records, desc="predicting", unit="img", disable=quiet(progress))
    try:
        for images, targets in dataset:
            logits = tf.cast(model(images, training=False), tf.float32)
            scores.write(tf.sigmoid(logits).numpy())
            labels.write(targets.numpy())
            bar.update(len(targets))
    except BaseException:
        scores.abort()
        labels.abort()
        raise
    finally:
        bar.close()
    return metrics.NpySource(scores.close(), labels.close())


def evaluate_multilabel(
    model,
    index: SplitIndex,
    image_size: int,
    folder: Path,
    taxonomy: Taxonomy | None = None,
    max_k: int = 10,
    threshold: float = 0.5,
    score_threshold: float = 0.5,
    batch: int = 256,
    crop_fraction: float = EVAL_CROP_FRACTION,
    progress: bool | None = None,
) -> metrics.MultilabelMetrics:
    """Predict every record (into `folder`), then every multi-label figure from the files."""
    source = predict_multilabel(model, index, image_size, folder, batch, crop_fraction, progress)
    return metrics.multilabel_metrics(
        source,
        ks=range(1, min(max_k, index.num_classes) + 1),
        threshold=threshold,
        score_threshold=score_threshold,
        groups=depth_groups(taxonomy, index.num_classes),
        curve_thresholds=CURVE_THRESHOLDS,
        progress=progress,
    )


# --- the class-prior ranking -----------------------------------------------------------------


class PriorSource:
    """Every image scored by the same class prior (a ranking that ignores the image), beside
    the targets of a labels `.npy` file: a `metrics.Source` that reads only the labels."""

    def __init__(self, prior: np.ndarray, labels: str | Path) -> None:
        self.prior = np.asarray(prior, dtype=np.float32)
        self.labels = npy.read_header(labels)
        if len(self.labels.shape) != 2 or self.labels.shape[1] != len(self.prior):
            raise ValueError(
                f"{labels}: shape {self.labels.shape}; expected [images, {len(self.prior)}] "
                "(the prior's classes)"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape  # type: ignore[return-value]

    def blocks(self, rows: int):
        for y in npy.iter_rows(self.labels, rows):
            yield np.broadcast_to(self.prior, y.shape), y


def class_prior(index: SplitIndex) -> np.ndarray:
    """Share of the split's records carrying each class (any confidence above 0), from the
    counts its shard index holds: no pass over the records."""
    counts = np.asarray(index.images_per_class, dtype=np.float64)
    if len(counts) != index.num_classes or not index.records or not counts.any():
        raise ValueError(
            f"{index.root}: images_per_class holds {len(counts)} counts (sum {counts.sum():g}) "
            f"for {index.num_classes} classes and {index.records} records; expected one count "
            "a class, not all zero (rewrite the records with `mlimages records write`)"
        )
    return counts / index.records


def prior_multilabel(
    prior: np.ndarray,
    labels: str | Path,
    ks: range | tuple[int, ...],
    threshold: float = 0.5,
    score_threshold: float = 0.5,
    progress: bool | None = None,
) -> metrics.MultilabelMetrics:
    """Every multi-label figure of the class-prior ranking on the targets in `labels`, with
    the definitions (and tie-breaking) of `mlimages.core.metrics`."""
    return metrics.multilabel_metrics(
        PriorSource(prior, labels), ks, threshold, score_threshold, progress=progress
    )


# --- the tables ------------------------------------------------------------------------------


def multilabel_tables(
    result: metrics.MultilabelMetrics,
    taxonomy: Taxonomy | None,
    model: str,
    img_size: int,
    prior: metrics.MultilabelMetrics | None = None,
) -> dict[str, pd.DataFrame]:
    """The stage's CSV tables, figures in percent; `multilabel` has the class-prior
    ranking's figures beside ours (`prior_*` columns, NaN without a prior)."""
    summary = result.summary()
    multilabel = pd.DataFrame(result.table())
    multilabel = percent_frame(multilabel)
    multilabel.insert(0, "img_size", img_size)
    multilabel.insert(0, "model", model)
    multilabel["map"] = 100 * summary["map"]
    multilabel["images"] = summary["images_with_positives"]
    multilabel = pd.concat([multilabel, prior_columns(prior, result.ks)], axis=1)
    groups = depth_groups(taxonomy, result.num_classes)
    by_depth = percent_frame(pd.DataFrame(result.group_table(groups)))
    if len(by_depth):
        by_depth = by_depth.rename(columns={"group": "depth"}).astype({"depth": int})
    classes = pd.DataFrame(
        {
            "index": np.arange(result.num_classes),
            "positives": result.positives,
            "predicted": result.predicted,
            "true_positives": result.true_positives,
            "ap": 100 * result.average_precision,
        }
    )
    if taxonomy is not None:
        classes.insert(1, "wnid", taxonomy.wnids)
        classes.insert(2, "name", taxonomy.names)
        classes.insert(3, "depth", taxonomy.depth)
    curve = pd.DataFrame(result.curve).rename(columns={"thresholds": "threshold"})
    curve[["precision", "recall"]] *= 100
    return {"multilabel": multilabel, "by_depth": by_depth, "classes": classes, "pr_curve": curve}


def prior_columns(prior: metrics.MultilabelMetrics | None, ks: tuple[int, ...]) -> pd.DataFrame:
    """`prior_precision_at_k` … and `prior_map` (percent), a row a k of `ks`."""
    names = ["precision_at_k", "recall_at_k", "f1_at_k", "f1_per_image_at_k"]
    if prior is None:
        frame = pd.DataFrame(np.nan, index=range(len(ks)), columns=names)
        frame["map"] = np.nan
    else:
        if prior.ks != tuple(ks):
            raise ValueError(f"class-prior figures at k = {prior.ks}; expected {tuple(ks)}")
        frame = percent_frame(pd.DataFrame(prior.table())).drop(columns="k")
        frame["map"] = 100 * prior.map
    return frame.add_prefix(PRIOR_PREFIX)


def percent(values: dict[str, Any]) -> dict[str, Any]:
    """Fractions to percent, counts left alone."""
    return {k: v if k in COUNTS else 100 * v for k, v in values.items()}


def percent_frame(table: pd.DataFrame) -> pd.DataFrame:
    keep = {"k", "group", *COUNTS}
    scaled = [c for c in table.columns if c not in keep]
    table[scaled] = table[scaled] * 100
    return table
