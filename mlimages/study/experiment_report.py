"""The experiments' figures, their findings as sentences, and publishing (notebook 08).

The tables come from `mlimages.study.experiments`; every figure shows its baseline beside it
(chance, the class-prior ranking, the from-scratch checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlimages.config.params import Params
from mlimages.core import stats
from mlimages.core.atomic import atomic_path, copy_files_atomic, write_text_atomic
from mlimages.study.experiments import (
    FROM_SCRATCH,
    PAPER_K,
    PRIOR_COLUMNS,
    STAGE,
    paper_gain,
)

README_START = "<!-- experiments:start -->"
README_END = "<!-- experiments:end -->"
FILES = (
    "loss_ablation.csv", "loss_ablation_summary.csv", "loss_ablation.png",
    "data_efficiency.csv", "data_efficiency_summary.csv", "data_efficiency.png",
    "novel_classes.csv", "novel_classes_summary.csv", "novel_classes.png",
    "baselines.csv",
)  # fmt: skip


# --- figures ------------------------------------------------------------------------------------


def _half_width(values: np.ndarray) -> float:
    interval = stats.mean_interval(values)
    return 0.0 if np.isnan(interval.high) else interval.high - interval.mean


def plot_loss_ablation(table: pd.DataFrame, chance: float | None = None):
    """mAP overall and by frequency third, and the transfer, per arm (mean, 95% interval),
    beside the class-prior ranking's mAP (black bars) and chance top-1 (dashed)."""
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(table["loss"]))
    metrics = ["map", "map_head", "map_middle", "map_tail"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [3, 1.4]})
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        own = table[table["loss"] == arm]
        means = [own[m].mean() for m in metrics]
        errors = [_half_width(own[m].to_numpy()) for m in metrics]
        x = np.arange(len(metrics)) + (i - (len(arms) - 1) / 2) * width
        axes[0].bar(x, means, width, yerr=errors, capsize=2, label=arm)
        axes[1].bar(
            i, own["transfer_top1"].mean(), yerr=_half_width(own["transfer_top1"].to_numpy()),
            capsize=3,
        )  # fmt: skip
    for x, column in enumerate(PRIOR_COLUMNS):
        if column in table and table[column].notna().any():
            label = "class prior" if x == 0 else None
            axes[0].hlines(table[column].iloc[0], x - 0.45, x + 0.45, color="black", label=label)
    if chance is not None:
        axes[1].axhline(chance, color="black", linestyle="--", linewidth=0.8, label="chance")
        axes[1].legend(fontsize=7)
    axes[0].set_xticks(range(len(metrics)), ["all classes", "head third", "middle", "tail"])
    axes[0].set_ylabel("validation mAP (%)")
    axes[0].set_title("pretraining: mAP by training frequency")
    axes[0].legend(fontsize=7)
    axes[1].set_xticks(range(len(arms)), arms, rotation=30, ha="right", fontsize=7)
    axes[1].set_ylabel("top-1 (%)")
    axes[1].set_title("transfer (ckpt 2 top-1)")
    fig.tight_layout()
    return fig


def plot_data_efficiency(table: pd.DataFrame, summary: pd.DataFrame, chance: float | None = None):
    """Top-1 against K per checkpoint beside chance (dashed), and the gain over ckpt 1 against
    K with the paper's point (ImageNet, 1,281 images a class) where it falls on the same axis."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    if chance is not None:
        axes[0].axhline(chance, color="black", linestyle="--", linewidth=0.8, label="chance")
    for ckpt in sorted(set(table["ckpt"])):
        own = table[table["ckpt"] == ckpt]
        ks = sorted(set(own["k"]))
        means = [own[own["k"] == k]["top1"].mean() for k in ks]
        errors = [_half_width(own[own["k"] == k]["top1"].to_numpy()) for k in ks]
        axes[0].errorbar(ks, means, yerr=errors, marker="o", capsize=3, label=f"ckpt {ckpt}")
    with_gain = summary.dropna(subset=["gain"])
    for ckpt in sorted(set(with_gain["ckpt"])):
        own = with_gain[with_gain["ckpt"] == ckpt]
        low = (own["gain"] - own["low"].astype(float)).fillna(0)
        high = (own["high"].astype(float) - own["gain"]).fillna(0)
        axes[1].errorbar(
            own["k"], own["gain"], yerr=[low, high], marker="o", capsize=3,
            label=f"ckpt {ckpt} - ckpt {FROM_SCRATCH}",
        )  # fmt: skip
    axes[1].plot([PAPER_K], [paper_gain()], marker="*", markersize=14, linestyle="none",
                 color="black", label="paper: ckpt 2 - 1, ImageNet (1,281 a class)")  # fmt: skip
    axes[1].axhline(0, color="grey", linewidth=0.8)
    for ax, title in zip(axes, ("top-1 against K", "gain over from-scratch"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("training images a class (K, log scale)")
        ax.set_title(title)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("top-1 (%)")
    axes[1].set_ylabel("top-1 points (95% interval)")
    fig.tight_layout()
    return fig


def plot_novel_classes(summary: pd.DataFrame):
    """Gains over ckpt 1 on seen and on novel leaves, per checkpoint (95% intervals)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    rows = summary.dropna(subset=["gain"]).reset_index(drop=True)
    labels = [f"ckpt {r.ckpt}\n{r.task.split(' (')[0]}" for r in rows.itertuples()]
    low = (rows["gain"] - rows["low"].astype(float)).fillna(0)
    high = (rows["high"].astype(float) - rows["gain"]).fillna(0)
    ax.bar(range(len(rows)), rows["gain"], yerr=[low, high], capsize=4)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel(f"top-1 gain over ckpt {FROM_SCRATCH} (points)")
    ax.set_title("transfer to seen and to novel leaves")
    fig.tight_layout()
    return fig


# --- saving and publishing ----------------------------------------------------------------------


def save(params: Params, tables: dict[str, pd.DataFrame], figures: dict[str, Any]) -> Path:
    """Tables as CSV, figures as PNG, into `<run>/experiments/` (write, then rename)."""
    out = params.stage_dir(STAGE)
    for name, frame in tables.items():
        write_text_atomic(out / f"{name}.csv", frame.to_csv(index=False))
    for name, fig in figures.items():
        with atomic_path(out / f"{name}.png") as tmp:
            fig.savefig(tmp, dpi=110)
    return out


def _interval(row: pd.Series, column: str) -> str:
    """`+3.4 [+2.9, +4.0]` from a summary row's difference column and its interval."""
    if pd.isna(row["low"]):
        return f"{row[column]:+.1f} (no interval)"
    return f"{row[column]:+.1f} [{row['low']:+.1f}, {row['high']:+.1f}]"


def loss_findings(summary: pd.DataFrame) -> str:
    """One clause an arm: its overall, head and tail mAP against its reference arm."""
    sentences = []
    for arm in dict.fromkeys(summary.loc[summary["against"].notna(), "loss"]):
        rows = summary[summary["loss"] == arm].set_index("metric")
        reference = rows["against"].iloc[0]
        parts = [
            f"{label} {_interval(rows.loc[metric], 'difference')}"
            for metric, label in (("map", "mAP"), ("map_head", "head"), ("map_tail", "tail"))
        ]
        sentences.append(f"`{arm}` against `{reference}`: " + ", ".join(parts))
    return "; ".join(sentences) + " (mAP points)."


def gain_findings(summary: pd.DataFrame, by: str, ckpt: int) -> str:
    """`ckpt`'s gain over ckpt 1 at every value of `by`, in order."""
    rows = summary[summary["ckpt"] == ckpt]
    return ", ".join(f"{row[by]}: {_interval(row, 'gain')}" for _, row in rows.iterrows())


def _table(frame: pd.DataFrame) -> str:
    from mlimages.report.text_tables import markdown_table

    return markdown_table(frame.astype(object).where(frame.notna(), "-"))


def readme_section(params: Params, loss: pd.DataFrame, efficiency: pd.DataFrame,
                   novel: pd.DataFrame, baseline: pd.DataFrame) -> str:  # fmt: skip
    """The README's experiments section: each finding as measured, then its table, and the
    baselines they stand beside."""
    where = f"{params.report.publish_dir}/{STAGE}" if params.report.publish_dir else STAGE
    e = params.experiments
    transfer = e.k_ckpts[1] if len(e.k_ckpts) > 1 else e.k_ckpts[0]
    lines = [
        f"Generated by notebook 08 on the `{params.profile}` profile (`make experiments`); "
        f"tables and figures in `{where}/`. Differences are paired over seeds, with 95% "
        "intervals; a reading (*higher*, *lower*) is given only where the interval excludes "
        "zero.",
        "",
        f"**Loss ablation** ({len(e.losses)} losses x {len(e.loss_seeds)} pretraining seeds; "
        "mAP and F1@5 on the validation images, by training-frequency third; transfer = ckpt "
        f"{e.transfer_ckpt} top-1, one fine-tuning a pretraining): {loss_findings(loss)}",
        "",
        _table(loss[loss["against"].notna()]),
        "",
        f"**Data efficiency**: ckpt {transfer}'s top-1 gain over ckpt {FROM_SCRATCH} by K "
        f"training images a class: {gain_findings(efficiency, 'k', transfer)}; the paper's is "
        f"{paper_gain():+.1f} at K = {PAPER_K} (ImageNet).",
        "",
        _table(efficiency),
        "",
        "**Novel classes** (leaves held out of pretraining, their ancestors seen): ckpt "
        f"{transfer}'s gain over ckpt {FROM_SCRATCH}, "
        f"{gain_findings(novel, 'task', transfer)}. The novel task has "
        f"{params.synth.novel_classes} classes, the target task {params.synth.target_classes} "
        "(chance differs): compare the gains, not the levels.",
        "",
        _table(novel),
        "",
        "**Baselines** (`baselines.csv`): the class-prior ranking (every image ranks the classes "
        "by their share of the training images) and a uniform guess, on the same validation "
        "images.",
        "",
        _table(baseline),
    ]
    return "\n".join(lines) + "\n"


def publish(params: Params, out: Path, section: str) -> list[Path]:
    """Copy the experiments' files to `<report.publish_dir>/experiments/` and rewrite the
    README's experiments section; nothing on profiles that publish nothing (smoke)."""
    from mlimages.report.paper_vs_ours import update_readme

    written: list[Path] = []
    if params.report.publish_dir:
        target = params.resolve_path(params.report.publish_dir) / STAGE
        written += copy_files_atomic(FILES, out, target)
    if params.report.readme:
        readme = params.resolve_path(params.report.readme)
        update_readme(readme, section, README_START, README_END)
        written.append(readme)
    return written
