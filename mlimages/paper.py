"""The published numbers of Wu et al. (2019), with their sources, as data."""

from __future__ import annotations

from dataclasses import dataclass

PAPER = "Wu et al., Tencent ML-Images, IEEE Access 2019 (arXiv 1901.01703)"
STATISTICS = f"{PAPER}: statistics of the database"
HIERARCHY = f"{PAPER}: semantic hierarchy"


@dataclass(frozen=True)
class Published:
    """One published figure and where it was stated."""

    key: str
    value: float
    description: str
    source: str


DATASET_STATISTICS: tuple[Published, ...] = (
    Published("train_images", 17_609_752, "training images", STATISTICS),
    Published("val_images", 88_739, "validation images", STATISTICS),
    Published("classes", 11_166, "classes", STATISTICS),
    Published("classes_over_100_images", 10_505, "classes with over 100 images", STATISTICS),
    Published("labels_per_image_mean", 8.72, "labels per image (mean)", STATISTICS),
    Published("images_per_class_mean", 13_843, "images per class (mean)", STATISTICS),
    Published("max_depth", 16, "longest path in the hierarchy (edges)", HIERARCHY),
    Published("mean_depth", 7.47, "average depth of a class (edges)", HIERARCHY),
)


def dataset_statistics() -> dict[str, Published]:
    return {p.key: p for p in DATASET_STATISTICS}
