"""What notebook 06 shows of the evaluation stage: figures and tables for reading.

Precision, recall and F1 against k beside the paper's F1@5 and F1@10, the precision-recall
curves, validation images with their top tags, the headline figures beside the class prior's
and the paper's, and the fine-tuned checkpoints' spread over seeds. The figures are drawn from
the stage's tables (`mlimages.evaluate.checkpoints.run_evaluate_stage`) and saved as PNG in
its folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.config import layout
from mlimages.config.params import Params
from mlimages.data.taxonomy import Taxonomy
from mlimages.evaluate import checkpoints
from mlimages.evaluate.multilabel import PRIOR_PREFIX
from mlimages.evaluate.tagging import record_tags
from mlimages.input import records
from mlimages.paper.facts import MULTILABEL_RESULTS

# --- figures -----------------------------------------------------------------------------------


def plot_at_k(multilabel: pd.DataFrame):
    """Precision, recall and F1 against k, with the class prior's F1 (dashed) and the paper's
    F1@5 and F1@10."""
    import matplotlib.pyplot as plt

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
    images: np.ndarray,
    labels: np.ndarray,
    predicted: list[list[dict[str, Any]]],
    image_size: int,
    tags: int = 5,
    threshold: float = 0.5,
):
    """Images (in [-1, 1], as the model saw them) with their top tags (`tagging.record_tags`);
    a tick marks a tag that is a true label."""
    import matplotlib.pyplot as plt

    cols = 4
    rows = -(-len(predicted) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.6 * cols, 3.0 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, (ax, image_tags) in enumerate(zip(axes.ravel(), predicted, strict=False)):
        ax.imshow((images[i] + 1.0) / 2.0)
        lines = [
            f"{'✓' if labels[i, t['index']] >= threshold else '·'} {t['name']} {t['score']:.2f}"
            for t in image_tags
        ]
        ax.set_title("\n".join(lines), fontsize=7, loc="left")
    fig.suptitle(f"top-{tags} tags of validation images ({image_size} px; ✓ = a true label)")
    return fig


def validation_tag_grid(params: Params, taxonomy: Taxonomy):
    """`tag_grid` of the profile's pretraining model on its first validation records."""
    from mlimages.train.checkpoint import load_model

    ev = params.evaluate
    size = ev.image_size or params.pretrain.image_size
    images, labels, predicted = record_tags(
        load_model(checkpoints.pretrained_model_path(params)),
        records.split_index(params.run_dir, "val"),
        size,
        taxonomy,
        ev.grid_images,
        ev.grid_tags,
        params.pipeline.eval_crop_fraction,
    )
    return tag_grid(images, labels, predicted, size, ev.grid_tags, ev.threshold)


def save_figure(params: Params, name: str, fig) -> Path:
    """A notebook figure as PNG in the stage folder (left open for the notebook to show)."""
    path = params.stage_dir(layout.EVALUATE) / f"{name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


# --- tables ------------------------------------------------------------------------------------


def headline(summary: dict[str, Any]) -> pd.DataFrame:
    """The figures a reader looks for first, beside the class-prior ranking's (the baseline
    computed in the same run) and the paper's where it published one (%)."""
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
