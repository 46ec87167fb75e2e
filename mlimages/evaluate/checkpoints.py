"""Evaluation stage (notebook 06): the paper's metrics for the study's checkpoints.

Multi-label: the pretraining model on the validation records, with sigmoid scores written
to `scores.npy` (float32) and the targets to `labels.npy` (float16 confidences) a batch at a
time, then every figure of `mlimages.core.metrics` streamed from those files, so the paper's
88,739 x 11,166 validation set needs no more memory than the miniature's. Single-label: the
fine-tuned checkpoints (`finetune/ckpt<N>/seed<S>/model.keras`) on the target's validation
records, top-1/top-5 at the fine-tuning base and large sizes.

Every multi-label figure stands beside its baseline computed in the same run: the class-prior
ranking, which scores every image by the training class frequencies (the share of training
records carrying each class, from the train split's shard index that the records stage
wrote) and so ignores the image. Its mAP is the mean validation prevalence of the classes
(a constant score ties every image within a class); its top-k are the k most frequent
training classes for every image. What the model adds over it is what pretraining learnt
beyond the label prior.

Files in `runs/<profile>/evaluate/` (figures in percent): `metrics.json`, `multilabel.csv`
(a row a k: precision/recall/F1@k and mAP, the class-prior ranking's as `prior_*`
columns), `by_depth.csv`, `classes.csv` (AP a class),
`pr_curve.csv`, `single_label.csv` (when fine-tuned checkpoints exist), `params.yaml`.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.config.params import EVAL_CROP_FRACTION, Params
from mlimages.core import metrics, npy
from mlimages.core.atomic import write_json_atomic
from mlimages.data.taxonomy import Taxonomy
from mlimages.input import records
from mlimages.input.shard_index import SplitIndex

STAGE = "evaluate"
PRETRAIN_STAGE, FINETUNE_STAGE = "pretrain", "finetune"
RESULTS_CSV = "results.csv"  # notebook 05's table a checkpoint
COUNTS = ("images", "images_with_positives", "classes", "classes_with_positives")
CURVE_THRESHOLDS = np.round(np.arange(1, 200) / 200, 3)  # 0.005 … 0.995 on sigmoid scores
PRIOR_SPLIT = "train"  # the class prior is the pretraining records' class frequencies
PRIOR_PREFIX = "prior_"  # multilabel.csv: the class-prior ranking's columns


# --- inputs of the stage -----------------------------------------------------------------


def profile_dictionary(params: Params) -> str | None:
    """The profile's dictionary (path or URL): the miniature's, `data.dictionary`, or None."""
    from mlimages.data.synthetic import ensure_miniature

    if params.data.uses_miniature:
        return str(ensure_miniature(params.synth, params.run_dir / "data" / "mini").dictionary)
    dictionary = params.data.dictionary
    if dictionary is None or "://" in dictionary:
        return dictionary
    return str(params.resolve_path(dictionary))


def profile_taxonomy(params: Params) -> Taxonomy | None:
    from mlimages.data.taxonomy import load_dictionary

    dictionary = profile_dictionary(params)
    return load_dictionary(dictionary) if dictionary else None


def pretrained_model_path(params: Params) -> Path:
    from mlimages.train.checkpoint import MODEL_FILE

    path = params.run_dir / PRETRAIN_STAGE / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no pretraining model; run notebook 04 (`mlimages pretrain`)"
        )
    return path


def finetuned_runs(params: Params) -> list[tuple[int, int, Path]]:
    """(ckpt, seed, model file) of every finished fine-tuning run, in order."""
    from mlimages.train.checkpoint import MODEL_FILE

    found = []
    for path in (params.run_dir / FINETUNE_STAGE).glob(f"ckpt*/seed*/{MODEL_FILE}"):
        ckpt = re.fullmatch(r"ckpt(\d+)", path.parent.parent.name)
        seed = re.fullmatch(r"seed(\d+)", path.parent.name)
        if ckpt and seed:
            found.append((int(ckpt.group(1)), int(seed.group(1)), path))
    return sorted(found)


def run_task(model_file: Path) -> str:
    """The single-label task a fine-tuning run trained on, from its `fingerprint.json`
    (runs from before `finetune.task` existed trained on the target task)."""
    recorded = model_file.parent / "fingerprint.json"
    values = json.loads(recorded.read_text()) if recorded.is_file() else {}
    return values.get("finetune.task", "target")


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


# --- computing -----------------------------------------------------------------------------


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


def profile_prior(params: Params, num_classes: int) -> np.ndarray | None:
    """The class prior of the profile's training records, or None (with a warning naming the
    file) where the records stage left no usable train index for `num_classes` classes."""
    import warnings

    try:
        prior = class_prior(records.split_index(params.run_dir, PRIOR_SPLIT))
    except (FileNotFoundError, ValueError) as exc:
        warnings.warn(f"no class-prior baseline: {exc}", stacklevel=2)
        return None
    if len(prior) != num_classes:
        warnings.warn(
            f"no class-prior baseline: the {PRIOR_SPLIT} records have {len(prior)} classes, the "
            f"evaluated ones {num_classes}",
            stacklevel=2,
        )
        return None
    return prior


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


def evaluate_finetuned(params: Params) -> pd.DataFrame:
    """Every fine-tuned checkpoint at both fine-tuning sizes, beside notebook 05's figures."""
    from mlimages.train.checkpoint import load_model, model_label

    runs = finetuned_runs(params)
    other = [(c, s) for c, s, path in runs if run_task(path) != params.finetune.task]
    if other:  # another task's runs share the folder: they have another class count
        print(
            f"evaluate: {len(other)} fine-tuned run(s) of another task than "
            f"finetune.task = {params.finetune.task} left out (ckpt, seed: {other})",
            file=sys.stderr,
        )
        runs = [run for run in runs if (run[0], run[1]) not in other]
    columns = ["ckpt", "seed", "model", "img_size", "top1", "top5", "images"]
    if not runs:
        return pd.DataFrame(columns=columns)
    index = records.split_index(params.run_dir, params.finetune.splits[1])
    sizes = sorted({params.finetune.base_size, params.finetune.large_size})
    crop, batch = params.pipeline.eval_crop_fraction, params.evaluate.batch
    decoded = decoded_batches(index, sizes, batch, crop)
    rows = []
    for ckpt, seed, path in runs:
        model = load_model(path)
        for row in evaluate_single_label(model, index, sizes, batch, crop, decoded):
            rows.append({"ckpt": ckpt, "seed": seed, "model": model_label(model), **row})
    table = pd.DataFrame(rows, columns=columns)
    reported = _finetune_results(params)
    if reported is not None:
        table = table.merge(reported, on=["ckpt", "seed", "img_size"], how="left")
    return table


def _finetune_results(params: Params) -> pd.DataFrame | None:
    """top1/top5 as notebook 05 reported them (`finetune/ckpt<N>/results.csv`), if any."""
    tables = [
        pd.read_csv(p)
        for p in sorted((params.run_dir / FINETUNE_STAGE).glob(f"ckpt*/{RESULTS_CSV}"))
    ]
    if not tables:
        return None
    table = pd.concat(tables)[["ckpt", "seed", "img_size", "top1", "top5"]]
    return table.rename(columns={"top1": "top1_finetune_stage", "top5": "top5_finetune_stage"})


# --- the stage and its files ---------------------------------------------------------------


def run_evaluate_stage(params: Params, progress: bool | None = None) -> dict[str, Any]:
    """Evaluate the pretraining model (multi-label) and every fine-tuned checkpoint
    (single-label); write the stage's files. Returns the tables and `metrics.json`'s dict."""
    from mlimages.train.checkpoint import load_model, model_label

    ev = params.evaluate
    progress = ev.progress if progress is None else progress
    out = params.stage_dir(STAGE)
    params.write(out / "params.yaml")
    model_path = pretrained_model_path(params)
    model = load_model(model_path)
    index = records.split_index(params.run_dir, "val")
    size = ev.image_size or params.pretrain.image_size
    taxonomy = profile_taxonomy(params)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        folder = out if ev.keep_scores else Path(scratch)
        result = evaluate_multilabel(
            model, index, size, folder, taxonomy, ev.max_k, ev.threshold, ev.score_threshold,
            ev.batch, params.pipeline.eval_crop_fraction, progress,
        )  # fmt: skip
        prior = _prior_result(params, result, folder / "labels.npy", progress)
    tables = multilabel_tables(result, taxonomy, model_label(model), size, prior)
    tables["single_label"] = evaluate_finetuned(params)
    summary = {
        "model": str(model_path),
        "model_name": model_label(model),
        "split": "val",
        "img_size": size,
        "units": "percent",
        "threshold": ev.threshold,
        "score_threshold": ev.score_threshold,
        **percent(result.summary()),
        "prior": _prior_summary(prior),
        "by_depth": tables["by_depth"].to_dict(orient="records"),
        "finetune": tables["single_label"].to_dict(orient="records"),
    }
    for name, table in tables.items():
        if len(table) or name != "single_label":
            table.to_csv(out / f"{name}.csv", index=False)
        else:  # no fine-tuned checkpoints (any more): no table from an earlier run
            (out / f"{name}.csv").unlink(missing_ok=True)
    write_json_atomic(out / "metrics.json", _plain(summary))
    return {"summary": summary, "result": result, "prior": prior, "taxonomy": taxonomy, **tables}


def _prior_result(
    params: Params, result: metrics.MultilabelMetrics, labels: Path, progress: bool | None
) -> metrics.MultilabelMetrics | None:
    """The class-prior ranking's figures on the same targets and ks as `result`."""
    prior = profile_prior(params, result.num_classes)
    if prior is None:
        return None
    ev = params.evaluate
    return prior_multilabel(prior, labels, result.ks, ev.threshold, ev.score_threshold, progress)


def _prior_summary(prior: metrics.MultilabelMetrics | None) -> dict[str, Any] | None:
    """metrics.json's `prior`: the class-prior ranking's mAP and figures at k (percent)."""
    if prior is None:
        return None
    figures = {k: v for k, v in prior.summary().items() if "_at_" in k or k == "map"}
    return {"source": f"{PRIOR_SPLIT} records' class frequencies", **percent(figures)}


def evaluate_checkpoint(
    params: Params,
    ckpt: str | Path,
    out: str | Path,
    split: str | None = None,
    image_size: int | None = None,
    sizes: list[int] | None = None,
) -> dict[str, Any]:
    """One checkpoint on one split of the profile's records (`mlimages evaluate --ckpt`):
    multi-label figures on multi-label records, top-1/top-5 at `sizes` (default: the
    fine-tuning base and large sizes) on single-label ones. The split defaults to `val` or
    the fine-tuning task's validation split (`target_val`, `novel_val`), whichever has the
    checkpoint's class count."""
    from mlimages.train.checkpoint import load_model, model_label, num_classes_of

    ev = params.evaluate
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params.write(out / "params.yaml")
    model = load_model(ckpt)
    classes = num_classes_of(model)
    split = split or _split_with_classes(params, classes, ckpt)
    index = records.split_index(params.run_dir, split)
    summary: dict[str, Any] = {
        "model": str(ckpt),
        "model_name": model_label(model),
        "split": split,
        "units": "percent",
    }
    if index.single_label:
        sizes = sizes or sorted({params.finetune.base_size, params.finetune.large_size})
        rows = evaluate_single_label(
            model, index, sizes, ev.batch, params.pipeline.eval_crop_fraction
        )
        table = pd.DataFrame(rows)
        table.insert(0, "model", model_label(model))
        table.to_csv(out / "single_label.csv", index=False)
        summary["single_label"] = rows
    else:
        size = image_size or ev.image_size or params.pretrain.image_size
        taxonomy = profile_taxonomy(params)
        if taxonomy is not None and taxonomy.num_classes != index.num_classes:
            taxonomy = None
        result = evaluate_multilabel(
            model, index, size, out, taxonomy, ev.max_k, ev.threshold, ev.score_threshold,
            ev.batch, params.pipeline.eval_crop_fraction, ev.progress,
        )  # fmt: skip
        prior = _prior_result(params, result, out / "labels.npy", ev.progress)
        tables = multilabel_tables(result, taxonomy, model_label(model), size, prior)
        for name, table in tables.items():
            table.to_csv(out / f"{name}.csv", index=False)
        summary |= {
            "img_size": size,
            "threshold": ev.threshold,
            "score_threshold": ev.score_threshold,
        }
        summary |= percent(result.summary())
        summary["prior"] = _prior_summary(prior)
    write_json_atomic(out / "metrics.json", _plain(summary))
    return _plain(summary)


def _split_with_classes(params: Params, classes: int, ckpt: str | Path) -> str:
    """`val` or a single-label task's validation split (the fine-tuning task's first),
    whichever records exist with `classes` classes."""
    candidates = list(dict.fromkeys(("val", params.finetune.splits[1], "target_val", "novel_val")))
    for split in candidates:
        try:
            if records.split_index(params.run_dir, split).num_classes == classes:
                return split
        except FileNotFoundError:
            continue
    raise ValueError(f"{ckpt}: {classes} classes; no {', '.join(candidates)} records have as many")


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


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


# --- what notebook 06 shows -------------------------------------------------------------------


def plot_at_k(multilabel: pd.DataFrame):
    """Precision, recall and F1 against k, with the class prior's F1 (dashed) and the paper's
    F1@5 and F1@10."""
    import matplotlib.pyplot as plt

    from mlimages.paper.facts import MULTILABEL_RESULTS

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for column in ("precision_at_k", "recall_at_k", "f1_at_k", "f1_per_image_at_k"):
        ax.plot(multilabel["k"], multilabel[column], marker="o", label=column.removesuffix("_at_k"))
    prior = f"{PRIOR_PREFIX}f1_at_k"
    if prior in multilabel and multilabel[prior].notna().any():
        ax.plot(multilabel["k"], multilabel[prior], "k--", label="f1, class-prior ranking")
    for published in MULTILABEL_RESULTS:
        k = int(published.key.rsplit("_", 1)[1])
        ax.plot([k], [published.value], "k*", markersize=11)
        ax.annotate(
            f"paper F1@{k}", (k, published.value), textcoords="offset points", xytext=(5, 5)
        )
    ax.set_xlabel("k (top-k predictions)")
    ax.set_ylabel("%")
    ax.set_xticks(multilabel["k"])
    ax.legend(fontsize=8)
    ax.set_title("instance-level figures at k (validation)")
    fig.tight_layout()
    return fig


def plot_pr_curve(curve: pd.DataFrame, multilabel: pd.DataFrame):
    """Micro-averaged precision-recall over score thresholds, and P@k against R@k."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(curve["recall"], curve["precision"])
    for t in (0.1, 0.5, 0.9):
        row = curve.iloc[(curve["threshold"] - t).abs().argmin()]
        axes[0].plot(row["recall"], row["precision"], "o")
        axes[0].annotate(
            f"t={t}", (row["recall"], row["precision"]), xytext=(4, 4), textcoords="offset points"
        )
    axes[0].set_title("micro-averaged, over score thresholds")
    axes[1].plot(multilabel["recall_at_k"], multilabel["precision_at_k"], marker="o")
    for _, row in multilabel.iterrows():
        axes[1].annotate(
            f"k={int(row['k'])}",
            (row["recall_at_k"], row["precision_at_k"]),
            xytext=(4, 2),
            textcoords="offset points",
            fontsize=7,
        )
    axes[1].set_title("instance-level, top-k")
    for ax in axes:
        ax.set_xlabel("recall (%)")
        ax.set_ylabel("precision (%)")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
    fig.tight_layout()
    return fig


def tag_grid(
    model,
    index: SplitIndex,
    image_size: int,
    taxonomy: Taxonomy,
    images: int = 12,
    tags: int = 5,
    threshold: float = 0.5,
    crop_fraction: float = EVAL_CROP_FRACTION,
):
    """Validation images (the model's input) with their top tags; a tick marks a true label."""
    import matplotlib.pyplot as plt
    import tensorflow as tf

    from mlimages.evaluate.tagging import top_tags
    from mlimages.input import pipeline
    from mlimages.train.checkpoint import with_image_size

    dataset = pipeline.eval_dataset(
        index, image_size, images, index.num_classes, pipeline.PRETRAIN, crop_fraction
    )
    x, y = next(iter(dataset))
    y = y.numpy()
    logits = with_image_size(model, image_size)(x, training=False)
    scores = tf.sigmoid(tf.cast(logits, tf.float32)).numpy()
    predicted = top_tags(scores, taxonomy, tags)
    cols = 4
    rows = -(-len(predicted) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.6 * cols, 3.0 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, (ax, image_tags) in enumerate(zip(axes.ravel(), predicted, strict=False)):
        ax.imshow((x[i].numpy() + 1.0) / 2.0)
        lines = [
            f"{'✓' if y[i, t['index']] >= threshold else '·'} {t['name']} {t['score']:.2f}"
            for t in image_tags
        ]
        ax.set_title("\n".join(lines), fontsize=7, loc="left")
    fig.suptitle(f"top-{tags} tags of validation images ({image_size} px; ✓ = a true label)")
    return fig


def validation_tag_grid(params: Params, taxonomy: Taxonomy):
    """`tag_grid` of the profile's pretraining model on its first validation records."""
    from mlimages.train.checkpoint import load_model

    ev = params.evaluate
    return tag_grid(
        load_model(pretrained_model_path(params)),
        records.split_index(params.run_dir, "val"),
        ev.image_size or params.pretrain.image_size,
        taxonomy,
        ev.grid_images,
        ev.grid_tags,
        ev.threshold,
        params.pipeline.eval_crop_fraction,
    )


def headline(summary: dict[str, Any]) -> pd.DataFrame:
    """The figures a reader looks for first, beside the class-prior ranking's (the baseline
    computed in the same run) and the paper's where it published one (%)."""
    from mlimages.paper.facts import MULTILABEL_RESULTS

    published = {p.key.removeprefix("instance_"): p.value for p in MULTILABEL_RESULTS}
    prior = summary.get("prior") or {}
    keys = ["map", "precision_at_5", "recall_at_5", "f1_at_5", "precision_at_10"]
    keys += ["recall_at_10", "f1_at_10", "macro_f1", "micro_f1"]
    rows = [
        {"figure": k, "ours": summary[k], "class prior": prior.get(k), "paper": published.get(k)}
        for k in keys
        if k in summary
    ]
    return pd.DataFrame(rows).set_index("figure")


def beside_prior(multilabel: pd.DataFrame) -> pd.DataFrame:
    """Notebook 06's table at k: each of our figures followed by the class prior's (%)."""
    columns = ["k"]
    for name in ("precision_at_k", "recall_at_k", "f1_at_k", "map"):
        columns += [name, f"{PRIOR_PREFIX}{name}"]
    shown = multilabel[[c for c in columns if c in multilabel.columns]]
    return shown.rename(columns=lambda c: c.replace(PRIOR_PREFIX, "prior ").replace("_at_k", ""))


def finetune_summary(single_label: pd.DataFrame) -> pd.DataFrame:
    """Top-1/top-5 mean and spread over seeds, a row per (ckpt, img_size)."""
    grouped = single_label.groupby(["ckpt", "img_size"])
    table = grouped[["top1", "top5"]].agg(["mean", "std"])
    table.columns = [f"{a}_{b}" for a, b in table.columns]
    table["seeds"] = grouped["seed"].nunique()
    return table.reset_index()


def save_figure(params: Params, name: str, fig) -> Path:
    """A notebook figure as PNG in the stage folder (left open for the notebook to show)."""
    path = params.stage_dir(STAGE) / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path
