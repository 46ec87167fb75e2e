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


# --- ImageNet-val results (the paper's results table) ------------------------------------

RESULTS = (
    f"{PAPER}: ImageNet-val results of ResNet-101 "
    "(also Tencent/tencent-ml-images README, section Results)"
)
MSRA = "He et al., Deep Residual Learning (CVPR 2016), as listed in the paper's results table"
GOOGLE = (
    "Sun et al., Revisiting Unreasonable Effectiveness of Data (ICCV 2017, arXiv 1707.02968), "
    "as listed in the paper's results table"
)
REIMPLEMENTATION = "the earlier independent re-implementation, reduced training set (DESIGN §3)"
PAPER_SIZES = (224, 299)  # the two evaluation sizes of the paper's table


@dataclass(frozen=True)
class Accuracy:
    """One row of a results table: a checkpoint evaluated at one image size (top-1/top-5, %)."""

    name: str
    ckpt: int | None
    setting: str
    img_size: int
    top1: float
    top5: float
    source: str


CHECKPOINT_SETTINGS: dict[int, str] = {
    1: "trained on ImageNet only",
    2: "ML-Images -> ImageNet, 224",
    3: "ML-Images -> ImageNet, 224 then 299",
    4: "ML-Images -> ImageNet, 299",
    5: "ML-Images features, linear probe (ours; not in the paper)",
}


def _checkpoint(ckpt: int, at224: tuple[float, float], at299: tuple[float, float]):
    setting = CHECKPOINT_SETTINGS[ckpt]
    return tuple(
        Accuracy(f"ResNet-101 ckpt{ckpt}", ckpt, setting, size, top1, top5, RESULTS)
        for size, (top1, top5) in zip(PAPER_SIZES, (at224, at299), strict=True)
    )


IMAGENET_RESULTS: tuple[Accuracy, ...] = (
    *_checkpoint(1, (77.8, 93.9), (79.0, 94.5)),
    *_checkpoint(2, (78.8, 94.5), (79.5, 94.9)),
    *_checkpoint(3, (78.3, 94.2), (80.73, 95.5)),
    *_checkpoint(4, (75.8, 92.7), (79.6, 94.6)),
)

REFERENCE_RESULTS: tuple[Accuracy, ...] = (
    Accuracy("MSRA ResNet-101", None, "trained on ImageNet", 224, 76.4, 92.9, MSRA),
    Accuracy("Google ResNet-101", None, "trained on ImageNet", 299, 77.5, 93.9, GOOGLE),
    Accuracy("Google ResNet-101", None, "JFT-300M -> ImageNet", 299, 79.2, 94.7, GOOGLE),
)

REIMPLEMENTATION_RESULTS: tuple[Accuracy, ...] = (
    Accuracy("ResNet-101 ckpt2", 2, CHECKPOINT_SETTINGS[2], 224, 76.7, 92.92, REIMPLEMENTATION),
    Accuracy("ResNet-101 ckpt3", 3, CHECKPOINT_SETTINGS[3], 224, 75.61, 90.5, REIMPLEMENTATION),
)

MULTILABEL = f"{PAPER}: multi-label results on its val set, as quoted by {REIMPLEMENTATION}"
MULTILABEL_RESULTS: tuple[Published, ...] = (
    Published("instance_f1_at_5", 23.3, "instance-level F1 (%), top-5 predictions", MULTILABEL),
    Published("instance_f1_at_10", 28.1, "instance-level F1 (%), top-10 predictions", MULTILABEL),
)


def paper_accuracy(ckpt: int, img_size: int) -> Accuracy | None:
    """The paper's figure for checkpoint `ckpt` at 224 or 299; None where it has none (ckpt 5)."""
    return _find(IMAGENET_RESULTS, ckpt, img_size)


def reimplementation_accuracy(ckpt: int, img_size: int) -> Accuracy | None:
    return _find(REIMPLEMENTATION_RESULTS, ckpt, img_size)


def _find(rows: tuple[Accuracy, ...], ckpt: int, img_size: int) -> Accuracy | None:
    if img_size not in PAPER_SIZES:
        raise ValueError(f"img_size {img_size}: the paper evaluates at {PAPER_SIZES} only")
    return next((r for r in rows if r.ckpt == ckpt and r.img_size == img_size), None)
