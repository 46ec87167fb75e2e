"""What notebooks 04 and 05 show of a training run: figures and tables for reading.

Pretraining: loss, learning rate and held-out P/R@k against the step, the adaptive loss's
coefficients, a summary of the run. Fine-tuning: the size and learning-rate schedule of a
checkpoint setting, each seed's curves, and its accuracy beside the paper's. Everything is
read back from the files the stages wrote (`log.jsonl`, `params.yaml`, `schedule.csv`,
`metrics.json`), so the notebooks draw while the training runs in a subprocess.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mlimages.config import layout
from mlimages.config.params import Params
from mlimages.paper.facts import PAPER_SIZES
from mlimages.train import finetune
from mlimages.train.engine import read_log

# --- pretraining (notebook 04) -----------------------------------------------------------------


def plot_pretrain_curves(out: Path):
    """Loss, learning rate and held-out P/R@k against the step, from `log.jsonl`."""
    import matplotlib.pyplot as plt
    import pandas as pd

    log = pd.DataFrame(read_log(out))
    if log.empty:
        raise ValueError(f"{out / layout.LOG_FILE}: no logged steps yet")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    log.plot(x="step", y="loss", ax=axes[0], title="training loss", legend=False)
    log.plot(x="step", y="learning_rate", ax=axes[1], title="learning rate", legend=False)
    quality = [c for c in log.columns if c.startswith(("precision@", "recall@"))]
    if quality:
        log.dropna(subset=quality).plot(x="step", y=quality, ax=axes[2], marker="o")
        axes[2].set_title("held-out P/R@k")
    else:
        axes[2].set_axis_off()
    fig.tight_layout()
    return fig


def plot_coefficients(out: Path):
    """The adaptive loss's coefficients of the batch's positive classes against the step:
    median and 10-90% band, and the share at the 0.01 floor
    (`mlimages.train.engine.coefficient_summary`). A run of another loss kind has none: a
    figure saying so (notebook 04 runs on)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import yaml

    saved = out / layout.PARAMS_FILE
    loss = yaml.safe_load(saved.read_text()).get("loss", {}) if saved.is_file() else {}
    if loss.get("kind", "adaptive") != "adaptive":
        fig, ax = plt.subplots(figsize=(6, 1.5))
        text = f"no adaptive coefficients: loss.kind is {loss['kind']!r} (no streaks)"
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8)
        ax.set_axis_off()
        return fig
    log = pd.DataFrame(read_log(out))
    if "coef_median" not in log.columns:
        raise ValueError(
            f"{out / layout.LOG_FILE}: no loss coefficients (multi-label runs log them)"
        )
    log = log.dropna(subset=["coef_median"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    axes[0].fill_between(log["step"], log["coef_p10"], log["coef_p90"], alpha=0.3, label="10-90%")
    axes[0].plot(log["step"], log["coef_median"], label="median")
    axes[0].axhline(0.01, color="grey", linestyle="--", label="floor 0.01")
    axes[0].axhline(2.0, color="grey", linestyle=":", label="first batch (2.0)")
    axes[0].set_yscale("log")
    axes[0].set_title("coefficient of a class positive in the batch")
    axes[1].plot(log["step"], 100 * log["coef_at_floor"], label="at the floor (%)")
    axes[1].plot(log["step"], log["positive_classes"], label="positive classes in the batch")
    axes[1].set_title("classes at the floor, classes in the batch")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def pretrain_summary(out: Path, result: dict[str, Any]):
    """One row a figure a reader asks for after a run: speed per worker, where the weights are."""
    import pandas as pd

    log = pd.DataFrame(read_log(out))
    steady = log.iloc[1:] if len(log) > 1 else log  # the first window includes tracing
    rows = {
        "steps": result["steps"],
        "workers": result["workers"],
        "replicas": result["replicas"],
        "epochs": result.get("epochs"),
        "final loss": result["final_loss"],
        "images/s (all workers)": steady["images_per_sec"].mean() if len(steady) else None,
        "images/s per worker": steady["images_per_sec_per_worker"].mean() if len(steady) else None,
        "resumed from step": result["resumed_from_step"],
        "checkpoint": result["checkpoint"],
    }
    return pd.DataFrame({"value": rows})


# --- fine-tuning (notebook 05) -----------------------------------------------------------------


def plot_finetune_schedule(params: Params, ckpt: int):
    """Image size and learning rate against the step: the resolution schedule of `ckpt`."""
    import matplotlib.pyplot as plt

    table = finetune.read_schedule(params, ckpt)
    steps = [*table["first_step"], table["end_step"].iloc[-1]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3))
    for ax, column, title in (
        (axes[0], "image_size", "training image size (px)"),
        (axes[1], "learning_rate", "learning rate"),
    ):
        values = [*table[column], table[column].iloc[-1]]
        ax.step(steps, values, where="post")
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[1].set_yscale("log")
    sizes = finetune.eval_sizes(params.finetune)
    axes[0].set_yticks(sizes)
    axes[0].set_ylim(min(sizes) - 4, max(sizes) + 4)
    fig.tight_layout()
    return fig


def plot_finetune_curves(params: Params, ckpt: int):
    """Training loss and validation top-1 (both sizes) per seed, from each run's `log.jsonl`."""
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for seed in params.finetune.seeds:
        log = pd.DataFrame(read_log(finetune.seed_dir(params, ckpt, seed)))
        if log.empty:
            continue
        axes[0].plot(log["step"], log["loss"], label=f"seed {seed}")
        for column in (c for c in log.columns if c.startswith(("val_top1@", "train_top1@"))):
            points = log.dropna(subset=[column])
            style = "--" if column.startswith("train") else "-"
            axes[1].plot(
                points["step"], points[column], style, marker="o", label=f"seed {seed} {column}"
            )
    axes[0].set_title("training loss (softmax cross-entropy)")
    task = params.finetune.task
    axes[1].set_title(f"{task} top-1 (%): validation (solid), training (dashed)")
    for ax in axes:
        ax.set_xlabel("step")
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def paper_comparison(params: Params, ckpt: int):
    """A fine-tuned checkpoint's top-1/top-5, ours (mean ± std over seeds) next to the
    paper's, base size beside 224 and large beside 299."""
    import pandas as pd

    metrics = json.loads((finetune.ckpt_dir(params, ckpt) / layout.METRICS_FILE).read_text())
    paper = metrics["paper"] or {}
    f = params.finetune
    rows = []
    for ours, theirs in ((f.base_size, PAPER_SIZES[0]), (f.large_size, PAPER_SIZES[1])):
        spread = metrics["sizes"][str(ours)]
        published = paper.get(str(theirs), {})
        rows.append(
            {
                "ckpt": ckpt,
                "setting": metrics["setting"],
                "eval size (ours / paper)": f"{ours} / {theirs}",
                "top-1 ours": _pm(spread["top1_mean"], spread["top1_std"]),
                "top-1 paper": published.get("top1"),
                "top-5 ours": _pm(spread["top5_mean"], spread["top5_std"]),
                "top-5 paper": published.get("top5"),
                "seeds": spread["n"],
            }
        )
    return pd.DataFrame(rows)


def _pm(mean: float | None, std: float | None) -> str:
    """`mean ± std`; null (or NaN, in files written before JSON became strict) is left out."""
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.1f}" + ("" if std is None or math.isnan(std) else f" ± {std:.1f}")
