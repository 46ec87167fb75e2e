"""Notebook 02's tables and figures: subset coverage, the run, failures, disk used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from mlimages.config import layout
from mlimages.config.params import Params
from mlimages.data import subset
from mlimages.data.labels.table import LabelTable
from mlimages.fetch import download
from mlimages.fetch.manifest import MANIFEST, read_manifest

MB = 1e6


def runs_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per split: what the run did and how fast."""
    columns = ["listed", "ok", "failed", "skipped", "seconds", "images_per_s", "mb_per_s"]
    return pd.DataFrame({n: {c: s[c] for c in columns} for n, s in metrics["splits"].items()}).T


def disk_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Bytes of the originals against what is stored, per split and in all."""
    rows = {}
    for name, s in {**metrics["splits"], "all": metrics["total"]}.items():
        rows[name] = {
            "images": s["ok"],
            "original_MB": round(s["bytes_original"] / MB, 3),
            "stored_MB": round(s["bytes_stored"] / MB, 3),
            "stored/original": round(s["bytes_stored"] / s["bytes_original"], 3)
            if s["bytes_original"]
            else np.nan,
            "stored_kB_per_image": round(s["bytes_stored"] / s["ok"] / 1e3, 2) if s["ok"] else 0,
        }
    return pd.DataFrame(rows).T


def plot_coverage(full: LabelTable, chosen: LabelTable, num_classes: int):
    """Images per class by rank in the full list, and labels per image, before and after."""
    import matplotlib.pyplot as plt

    frame = subset.per_class(full, chosen, num_classes)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    rank = np.arange(1, len(frame) + 1)
    axes[0].plot(rank, frame["full list"], label=f"full list ({len(full)} images)")
    axes[0].plot(rank, frame["subset"], label=f"subset ({len(chosen)} images)")
    axes[0].set(yscale="log", xlabel="class rank (full list)", ylabel="images (log)")
    axes[0].set_title("Images per class")
    axes[0].legend()
    bins = np.arange(max(full.labels_per_image().max(initial=0), 1) + 2) - 0.5
    for table, name in ((full, "full list"), (chosen, "subset")):
        axes[1].hist(table.labels_per_image(), bins=bins, alpha=0.6, density=True, label=name)
    axes[1].set(xlabel="labels per image", ylabel="share of images", title="Labels per image")
    axes[1].legend()
    fig.tight_layout()
    return fig


def plot_failures(failures: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    if failures.empty:
        ax.text(0.5, 0.5, "no failures", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        failures.plot.barh(stacked=True, ax=ax)
        ax.set(xlabel="keys", ylabel="reason", title="Failures by reason and split")
    fig.tight_layout()
    return fig


def plot_disk(disk: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    disk.drop(index="all")[["original_MB", "stored_MB"]].plot.bar(ax=ax, rot=0)
    ax.set(ylabel="MB", title="Disk: originals against stored images")
    fig.tight_layout()
    return fig


def plot_samples(params: Params, split: str = "train", count: int = 16):
    """A few stored images of one split, at their stored size."""
    import matplotlib.pyplot as plt

    folder = download.split_dirs(params)[split]
    records = [r for r in read_manifest(folder / MANIFEST).values() if r["status"] == "ok"]
    records = records[:count]
    cols = min(8, max(len(records), 1))
    rows = max(1, -(-len(records) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, record in zip(axes.ravel(), records, strict=False):
        with Image.open(Path(folder) / record["path"]) as image:
            ax.imshow(image)
        ax.set_title(f"{record['width']}x{record['height']}", fontsize=7)
    fig.suptitle(f"Stored images ({split})", fontsize=9)
    fig.tight_layout()
    return fig


def save_figures(params: Params, figures: dict[str, Any]) -> Path:
    """Write the figures as PNG into the stage folder and close them."""
    import matplotlib.pyplot as plt

    out = params.stage_dir(layout.DOWNLOAD)
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)
    return out
