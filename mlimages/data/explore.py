"""Data exploration (notebook 01): the hierarchy and the label statistics, as tables and figures.

Runs the same on the miniature and on the authors' real files; every table is a pandas
frame the notebook shows and `save` writes next to the stage's resolved parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlimages.config import layout
from mlimages.config.params import Params
from mlimages.core.atomic import write_json_atomic
from mlimages.data.labels.read import read_label_list
from mlimages.data.labels.table import LabelTable, label_stats
from mlimages.data.synthetic import MiniDataset, ensure_miniature, statistics
from mlimages.data.taxonomy import Taxonomy, load_dictionary
from mlimages.paper.facts import dataset_statistics

STAGE = layout.EXPLORE


@dataclass(frozen=True)
class ExploreData:
    """What notebook 01 looks at: the hierarchy, the labels as listed and after closure."""

    taxonomy: Taxonomy | None
    labels: LabelTable
    closed: LabelTable | None
    description: str
    val_images: int | None = None
    mini: MiniDataset | None = None  # the generated miniature, when the profile uses one

    @property
    def num_classes(self) -> int:
        if self.taxonomy is not None:
            return self.taxonomy.num_classes
        return int(self.labels.indices.max()) + 1 if self.labels.num_labels else 0

    @property
    def counted(self) -> LabelTable:
        """The table the statistics are computed on: closed when closure was asked for."""
        return self.closed if self.closed is not None else self.labels


def load(params: Params) -> ExploreData:
    """The profile's data: the generated miniature, or the dictionary and list it names."""
    data = params.data
    if data.uses_miniature:
        mini = ensure_miniature(
            params.synth, layout.miniature_dir(params.run_dir), progress=params.explore.progress
        )
        dictionary, train_list = str(mini.dictionary), str(mini.url_list("train"))
        val_list: Path | None = mini.url_list("val")
        description = f"mini ML-Images (generated, seed {params.synth.seed}) in {mini.root}"
    else:
        mini = None
        dictionary = data.dictionary
        train_list = str(params.resolve_path(data.train_list)) if data.train_list else None
        val_list = params.resolve_path(data.val_list) if data.val_list else None
        if dictionary and not dictionary.startswith(("http://", "https://")):
            dictionary = str(params.resolve_path(dictionary))
        description = f"dictionary {dictionary}, label list {train_list}"
    taxonomy = load_dictionary(dictionary) if dictionary else None
    if train_list is None:
        raise ValueError("data.train_list is not set; expected a label list to explore")
    num_classes = taxonomy.num_classes if taxonomy else data.num_classes
    labels = read_label_list(train_list, num_classes=num_classes, progress=params.explore.progress)
    closed = labels.close(taxonomy) if taxonomy is not None and params.explore.close else None
    val_images = _count_lines(val_list) if val_list is not None and val_list.is_file() else None
    return ExploreData(taxonomy, labels, closed, description, val_images, mini)


def hierarchy_table(taxonomy: Taxonomy) -> pd.DataFrame:
    stats = taxonomy.stats()
    return pd.DataFrame({"figure": list(stats), "value": list(stats.values())})


def depth_distribution(data: ExploreData) -> pd.DataFrame:
    """Classes and image labels per depth: does annotation sit at the leaves or high up?"""
    if data.taxonomy is None:
        raise ValueError("depth needs the dictionary; set data.dictionary")
    depth = data.taxonomy.depth
    counted = data.counted
    frame = pd.DataFrame(
        {
            "classes": np.bincount(depth),
            "labels": np.bincount(depth[counted.indices], minlength=depth.max() + 1),
        }
    )
    frame.index.name = "depth"
    return frame


def images_per_class(data: ExploreData) -> pd.Series:
    """Images per class, most frequent first, zero-image classes left out (the long tail)."""
    counts = data.counted.images_per_class(data.num_classes)
    series = pd.Series(counts, name="images")
    series.index.name = "class"
    return series[series > 0].sort_values(ascending=False)


def labels_per_image(data: ExploreData) -> pd.Series:
    return pd.Series(data.counted.labels_per_image(), name="labels")


def closure_effect(data: ExploreData) -> pd.DataFrame:
    """Statistics before and after ancestor closure (published lists are not closed everywhere)."""
    if data.closed is None:
        raise ValueError("closure needs the dictionary and explore.close = true")
    before = label_stats(data.labels, data.num_classes)
    after = label_stats(data.closed, data.num_classes)
    changed = int(
        np.count_nonzero(data.labels.labels_per_image() != data.closed.labels_per_image())
    )
    rows = ["labels", "labels_per_image_mean", "classes_used"]
    frame = pd.DataFrame(
        {"as listed": [before[r] for r in rows], "closed": [after[r] for r in rows]}, index=rows
    )
    frame.loc["images changed by closure"] = [np.nan, changed]
    return frame


def cooccurrence(data: ExploreData, top: int) -> pd.DataFrame:
    """Images shared by each pair of the `top` most frequent classes, labelled `index name`."""
    classes = images_per_class(data).index[:top].to_numpy()
    counts = data.counted.cooccurrence(classes)
    names = [_class_label(data.taxonomy, int(c)) for c in classes]
    return pd.DataFrame(counts, index=names, columns=names)


def published_vs_ours(data: ExploreData) -> pd.DataFrame:
    """The paper's figures beside ours, for every figure this data can measure."""
    ours = measured(data)
    rows = [
        {"figure": p.description, "paper": p.value, "ours": ours.get(p.key), "source": p.source}
        for p in dataset_statistics().values()
    ]
    return pd.DataFrame(rows)


def measured(data: ExploreData) -> dict[str, float | int]:
    """Our figures under the paper's names (`published_vs_ours` and `metrics.json`)."""
    stats = label_stats(data.counted, data.num_classes)
    per_class = data.counted.images_per_class(data.num_classes)
    ours: dict[str, float | int] = {
        "train_images": stats["images"],
        "labels_per_image_mean": stats["labels_per_image_mean"],
        "images_per_class_mean": stats["images_per_class_mean"],
        "classes_over_100_images": int(np.count_nonzero(per_class > 100)),
    }
    if data.val_images is not None:
        ours["val_images"] = data.val_images
    if data.taxonomy is not None:
        tax = data.taxonomy.stats()
        ours.update(
            classes=tax["classes"], max_depth=tax["max_depth"], mean_depth=tax["mean_depth"]
        )
    return ours


def plot_images_per_class(data: ExploreData):
    import matplotlib.pyplot as plt

    counts = images_per_class(data)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(np.arange(1, len(counts) + 1), counts.to_numpy())
    ax.set(yscale="log", xlabel="class rank", ylabel="images (log)", title="Images per class")
    fig.tight_layout()
    return fig


def plot_labels_per_image(data: ExploreData):
    import matplotlib.pyplot as plt

    counts = labels_per_image(data)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(counts, bins=np.arange(counts.max() + 2) - 0.5)
    ax.axvline(counts.mean(), color="k", ls="--", label=f"mean {counts.mean():.2f}")
    ax.set(xlabel="labels per image", ylabel="images", title="Labels per image")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_depth(data: ExploreData):
    import matplotlib.pyplot as plt

    frame = depth_distribution(data)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    frame["classes"].plot.bar(ax=axes[0], title="Classes per depth")
    frame["labels"].plot.bar(ax=axes[1], title="Labels per depth")
    fig.tight_layout()
    return fig


def plot_cooccurrence(data: ExploreData, top: int):
    import matplotlib.pyplot as plt
    import seaborn as sns

    frame = cooccurrence(data, top)
    size = max(5.0, 0.32 * len(frame))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(np.log10(frame + 1), ax=ax, cmap="viridis", cbar_kws={"label": "log10(images + 1)"})
    ax.set_title(f"Co-occurrence of the {len(frame)} most frequent classes")
    fig.tight_layout()
    return fig


def save(data: ExploreData, params: Params) -> Path:
    """Write tables (CSV), figures (PNG) and metrics.json into the stage folder."""
    import matplotlib.pyplot as plt

    out = params.stage_dir(STAGE)
    images_per_class(data).to_csv(out / "images_per_class.csv")
    metrics: dict[str, object] = {
        "description": data.description,
        "labels": label_stats(data.labels, data.num_classes),
        "measured": measured(data),
    }
    figures = {
        "images_per_class": plot_images_per_class(data),
        "labels_per_image": plot_labels_per_image(data),
    }
    if data.taxonomy is not None:
        metrics["hierarchy"] = data.taxonomy.stats()
        depth_distribution(data).to_csv(out / "depth.csv")
        cooccurrence(data, params.explore.top_classes).to_csv(out / "cooccurrence.csv")
        published_vs_ours(data).to_csv(out / "published_vs_ours.csv", index=False)
        figures["depth"] = plot_depth(data)
        figures["cooccurrence"] = plot_cooccurrence(data, params.explore.top_classes)
    if data.closed is not None:
        metrics["closed"] = label_stats(data.closed, data.num_classes)
        closure_effect(data).to_csv(out / "closure.csv")
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)
    write_json_atomic(out / layout.METRICS_FILE, metrics)
    return out


def miniature_vs_paper(data: ExploreData, global_batch: int) -> pd.DataFrame:
    """The miniature's figures (`synthetic.statistics`) beside the paper's; the rows the
    paper has no figure for (leaves, the spread of images per class, the share of leaves a
    batch holds) say whether the paper's mechanisms act on the miniature as at scale."""
    if data.mini is None:
        raise ValueError("the profile does not use the miniature (data.uses_miniature)")
    stats = statistics(data.mini, global_batch)
    paper = dataset_statistics()
    per_class = stats["images_per_class"]
    rows = [
        ("classes", stats["classes"]),
        ("max_depth", stats["max_depth"]),
        ("mean_depth", stats["mean_depth"]),
        ("labels_per_image_mean", stats["labels_per_image_mean"]),
        ("images_per_class_mean", per_class["mean"]),
        ("classes_over_100_images", stats["classes_over_100_images"]),
        ("train_images", stats["train_images"]),
    ]
    frame = pd.DataFrame(
        [
            {"figure": paper[key].description, "paper": paper[key].value, "miniature": value}
            for key, value in rows
        ]
    )
    extra = pd.DataFrame(
        [
            {"figure": "leaves", "paper": np.nan, "miniature": stats["leaves"]},
            {
                "figure": "images per class (median)",
                "paper": np.nan,
                "miniature": per_class["median"],
            },
            {"figure": "images per class (max)", "paper": np.nan, "miniature": per_class["max"]},
            {
                "figure": f"share of leaves in a batch of {global_batch}",
                "paper": np.nan,
                "miniature": stats["leaf_batch_presence"],
            },
        ]
    )
    return pd.concat([frame, extra], ignore_index=True)


def plot_training_grid(data: ExploreData, n: int = 12, columns: int = 6):
    """The first `n` training images with their leaf labels (names), as listed."""
    import matplotlib.pyplot as plt
    from PIL import Image

    if data.taxonomy is None:
        raise ValueError("leaf names need the dictionary; set data.dictionary")
    is_leaf = np.zeros(data.num_classes, dtype=bool)
    is_leaf[data.taxonomy.leaves] = True
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in zip(range(min(n, len(data.labels))), axes.ravel(), strict=False):
        key = data.labels.key(i)
        with Image.open(_local_path(key)) as image:
            ax.imshow(image.convert("RGB"))
        indices = data.labels.labels(i)[0]
        names = [data.taxonomy.names[c].split(",")[0][:22] for c in indices if is_leaf[c]]
        ax.set_title("\n".join(names), fontsize=7)
    fig.tight_layout()
    return fig


def plot_images_per_class_loglog(data: ExploreData):
    """Images per class against rank on log-log axes: all classes, and the leaves alone."""
    import matplotlib.pyplot as plt

    counts = images_per_class(data)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.loglog(np.arange(1, len(counts) + 1), counts.to_numpy(), label="all classes")
    if data.taxonomy is not None:
        leaves = counts[counts.index.isin(data.taxonomy.leaves)]
        ax.loglog(np.arange(1, len(leaves) + 1), leaves.to_numpy(), label="leaves")
    ax.set(xlabel="class rank (log)", ylabel="images (log)", title="Images per class, log-log")
    ax.legend()
    fig.tight_layout()
    return fig


def _count_lines(path: Path) -> int:
    """Images in a label list without parsing it (one per non-blank line)."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _class_label(taxonomy: Taxonomy | None, index: int) -> str:
    if taxonomy is None:
        return str(index)
    return f"{index} {taxonomy.names[index].split(',')[0]}"


def _local_path(key: str) -> Path:
    """A `file://` URL's path, percent-escapes decoded (a folder named `a=b` is `a%3Db`)."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    return Path(url2pathname(urlparse(key).path)) if key.startswith("file://") else Path(key)
