"""Evaluation stage (notebook 06): the paper's metrics for the study's checkpoints.

Multi-label: the pretraining model on the validation records, its scores streamed through
`.npy` files (`mlimages.evaluate.multilabel`). Single-label: the fine-tuned checkpoints
(`finetune/ckpt<N>/seed<S>/model.keras`) on the task's validation records, top-1/top-5 at
the fine-tuning base and large sizes (`mlimages.evaluate.finetuned`). This module resolves a
profile into their arguments and writes the stage's files; notebook 06's figures and display
tables are in `mlimages.report.evaluation`.

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

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.config import layout
from mlimages.config.params import Params
from mlimages.core import metrics
from mlimages.core.atomic import write_json_atomic
from mlimages.data.taxonomy import Taxonomy
from mlimages.evaluate import finetuned, multilabel
from mlimages.input import records
from mlimages.train.finetune import eval_sizes

STAGE = layout.EVALUATE
PRIOR_SPLIT = "train"  # the class prior is the pretraining records' class frequencies


# --- inputs of the stage -----------------------------------------------------------------


def profile_dictionary(params: Params) -> str | None:
    """The profile's dictionary (path or URL): the miniature's, `data.dictionary`, or None."""
    from mlimages.data.synthetic import ensure_miniature

    if params.data.uses_miniature:
        return str(ensure_miniature(params.synth, layout.miniature_dir(params.run_dir)).dictionary)
    dictionary = params.data.dictionary
    if dictionary is None or "://" in dictionary:
        return dictionary
    return str(params.resolve_path(dictionary))


def profile_taxonomy(params: Params) -> Taxonomy | None:
    from mlimages.data.taxonomy import load_dictionary

    dictionary = profile_dictionary(params)
    return load_dictionary(dictionary) if dictionary else None


def pretrained_model_path(params: Params) -> Path:
    path = params.run_dir / layout.PRETRAIN / layout.MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no pretraining model; run notebook 04 (`mlimages pretrain`)"
        )
    return path


def profile_prior(params: Params, num_classes: int) -> np.ndarray | None:
    """The class prior of the profile's training records, or None (with a warning naming the
    file) where the records stage left no usable train index for `num_classes` classes."""
    import warnings

    try:
        prior = multilabel.class_prior(records.split_index(params.run_dir, PRIOR_SPLIT))
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


def evaluate_finetuned(params: Params) -> pd.DataFrame:
    """Every fine-tuned checkpoint of the profile's task at both fine-tuning sizes, beside
    notebook 05's figures."""
    folder = params.run_dir / layout.FINETUNE
    runs = finetuned.finetuned_runs(folder)
    other = [(c, s) for c, s, path in runs if finetuned.run_task(path) != params.finetune.task]
    if other:  # another task's runs share the folder: they have another class count
        print(
            f"evaluate: {len(other)} fine-tuned run(s) of another task than "
            f"finetune.task = {params.finetune.task} left out (ckpt, seed: {other})",
            file=sys.stderr,
        )
        runs = [run for run in runs if (run[0], run[1]) not in other]
    if not runs:
        return pd.DataFrame(columns=list(finetuned.COLUMNS))
    index = records.split_index(params.run_dir, params.finetune.splits[1])
    table = finetuned.evaluate_runs(
        runs, index, eval_sizes(params.finetune), params.evaluate.batch,
        params.pipeline.eval_crop_fraction,
    )  # fmt: skip
    reported = finetuned.reported_results(folder)
    if reported is not None:
        table = table.merge(reported, on=["ckpt", "seed", "img_size"], how="left")
    return table


# --- the stage and its files ---------------------------------------------------------------


def run_evaluate_stage(params: Params, progress: bool | None = None) -> dict[str, Any]:
    """Evaluate the pretraining model (multi-label) and every fine-tuned checkpoint
    (single-label); write the stage's files. Returns the tables and `metrics.json`'s dict."""
    from mlimages.train.checkpoint import load_model, model_label

    ev = params.evaluate
    progress = ev.progress if progress is None else progress
    out = params.stage_dir(STAGE)
    params.write(out / layout.PARAMS_FILE)
    model_path = pretrained_model_path(params)
    model = load_model(model_path)
    index = records.split_index(params.run_dir, "val")
    size = ev.image_size or params.pretrain.image_size
    taxonomy = profile_taxonomy(params)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        folder = out if ev.keep_scores else Path(scratch)
        result = multilabel.evaluate_multilabel(
            model, index, size, folder, taxonomy, ev.max_k, ev.threshold, ev.score_threshold,
            ev.batch, params.pipeline.eval_crop_fraction, progress,
        )  # fmt: skip
        prior = _prior_result(params, result, folder / "labels.npy", progress)
    tables = multilabel.multilabel_tables(result, taxonomy, model_label(model), size, prior)
    tables["single_label"] = evaluate_finetuned(params)
    summary = {
        "model": str(model_path),
        "model_name": model_label(model),
        "split": "val",
        "img_size": size,
        "units": "percent",
        "threshold": ev.threshold,
        "score_threshold": ev.score_threshold,
        **multilabel.percent(result.summary()),
        "prior": _prior_summary(prior),
        "by_depth": tables["by_depth"].to_dict(orient="records"),
        "finetune": tables["single_label"].to_dict(orient="records"),
    }
    for name, table in tables.items():
        if len(table) or name != "single_label":
            table.to_csv(out / f"{name}.csv", index=False)
        else:  # no fine-tuned checkpoints (any more): no table from an earlier run
            (out / f"{name}.csv").unlink(missing_ok=True)
    write_json_atomic(out / layout.METRICS_FILE, _plain(summary))
    return {"summary": summary, "result": result, "prior": prior, "taxonomy": taxonomy, **tables}


def _prior_result(
    params: Params, result: metrics.MultilabelMetrics, labels: Path, progress: bool | None
) -> metrics.MultilabelMetrics | None:
    """The class-prior ranking's figures on the same targets and ks as `result`."""
    prior = profile_prior(params, result.num_classes)
    if prior is None:
        return None
    ev = params.evaluate
    return multilabel.prior_multilabel(
        prior, labels, result.ks, ev.threshold, ev.score_threshold, progress
    )


def _prior_summary(prior: metrics.MultilabelMetrics | None) -> dict[str, Any] | None:
    """metrics.json's `prior`: the class-prior ranking's mAP and figures at k (percent)."""
    if prior is None:
        return None
    figures = {k: v for k, v in prior.summary().items() if "_at_" in k or k == "map"}
    return {"source": f"{PRIOR_SPLIT} records' class frequencies", **multilabel.percent(figures)}


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
    params.write(out / layout.PARAMS_FILE)
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
        sizes = sizes or eval_sizes(params.finetune)
        rows = finetuned.evaluate_single_label(
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
        result = multilabel.evaluate_multilabel(
            model, index, size, out, taxonomy, ev.max_k, ev.threshold, ev.score_threshold,
            ev.batch, params.pipeline.eval_crop_fraction, ev.progress,
        )  # fmt: skip
        prior = _prior_result(params, result, out / "labels.npy", ev.progress)
        tables = multilabel.multilabel_tables(result, taxonomy, model_label(model), size, prior)
        for name, table in tables.items():
            table.to_csv(out / f"{name}.csv", index=False)
        summary |= {
            "img_size": size,
            "threshold": ev.threshold,
            "score_threshold": ev.score_threshold,
        }
        summary |= multilabel.percent(result.summary())
        summary["prior"] = _prior_summary(prior)
    write_json_atomic(out / layout.METRICS_FILE, _plain(summary))
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
