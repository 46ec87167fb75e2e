"""The paper's facts in one place: the published numbers of Wu et al. (2019), and the
constants of the authors' code (network, loss, schedules, input) that the reproduction keeps,
each with its source. Profiles' defaults, the network, the loss, the schedules and the planner
read them from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PAPER = "Wu et al., Tencent ML-Images, IEEE Access 2019 (arXiv 1901.01703)"
STATISTICS = f"{PAPER}: statistics of the database"
HIERARCHY = f"{PAPER}: semantic hierarchy"

PAPER_IMAGES = 17_609_752  # training images (statistics of the database)
PAPER_CLASSES = 11_166  # classes (statistics of the database)


@dataclass(frozen=True)
class Published:
    """One published figure and where it was stated."""

    key: str
    value: float
    description: str
    source: str


DATASET_STATISTICS: tuple[Published, ...] = (
    Published("train_images", PAPER_IMAGES, "training images", STATISTICS),
    Published("val_images", 88_739, "validation images", STATISTICS),
    Published("classes", PAPER_CLASSES, "classes", STATISTICS),
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
ORIGINAL_BYTES = 2_000_000  # an original image as the earlier re-implementation stored it (2 MB)
BASE_SIZE = 224  # pretraining, fine-tuning and the first evaluation size
LARGE_SIZE = 299  # the late fine-tuning size of ckpt 3 and 4, and the second evaluation size
PAPER_SIZES = (BASE_SIZE, LARGE_SIZE)  # the two evaluation sizes of the paper's table


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


# --- The authors' run, as the paper states it ----------------------------------------------

PAPER_EPOCHS = 60
PAPER_GPUS = 128
PAPER_HOURS = 90.0
PAPER_GLOBAL_BATCH = 4_096  # images a step over all GPUs; the schedule's rates are for it


# --- The network: the authors' models/resnet.py --------------------------------------------

DEPTHS: dict[int, tuple[int, ...]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
PAPER_DEPTH = 101  # the paper's ResNet-101
PAPER_WIDTH = 64  # the stem's filters and stage 0's bottleneck width
BN_MOMENTUM = 0.997
BN_EPSILON = 1e-5


def model_name(
    depth: int | None,
    blocks: Sequence[int] | None = None,
    width: int | None = None,
    *,
    paper_spelling: bool = False,
) -> str:
    """A network's name in files and tables: `resnet101` for a depth of the paper's, or
    `resnet_1_1_1_1` for `blocks` a stage (which win over `depth`), then `_w16` for a `width`
    other than the paper's (None: the width left out, as in a Keras model's own name).

    `paper_spelling` (the planner's tables): a network of the paper's blocks and width in its
    spelling, `ResNet-101`; any other as its blocks a stage, always with its width."""
    if paper_spelling:
        counts = tuple(blocks) if blocks is not None else DEPTHS[depth]
        for paper_depth, paper_counts in DEPTHS.items():
            if counts == paper_counts and width == PAPER_WIDTH:
                return f"ResNet-{paper_depth}"
        return "resnet_" + "_".join(map(str, counts)) + f"_w{width}"
    name = f"resnet{depth}" if blocks is None else "resnet_" + "_".join(map(str, blocks))
    return name if width is None or width == PAPER_WIDTH else f"{name}_w{width}"


# --- Pretraining: the authors' train.py and flags.py, with example/train.sh ------------------

PAPER_STEPS = 440_000  # example/train.sh MAXIER
PAPER_MOMENTUM = 0.9  # fine-tuning's too
PAPER_LR = 0.08
PAPER_DECAY_STEPS = 110_000
PAPER_DECAY_FACTOR = 0.1
PAPER_NUM_DECAYS = 4  # train.py: boundaries at lr_decay_step x [1, 2, 3, 4]
PAPER_WARMUP_LR = 0.01
PAPER_WARMUP_STEPS = 35_200
PAPER_WARMUP_INTERVAL = 4_400
PAPER_WARMUP_FACTOR = 1.297
PAPER_WEIGHT_DECAY = 1e-4  # L2 on every weight outside batch norm; fine-tuning's too

# The adaptive loss of train.py.
PAPER_POS_WEIGHT = 12.0
PAPER_MASK_THRES = 0.7
PAPER_NEG_SELECT = 0.1  # example/train.sh; flags.py defaults to 0.3
PAPER_SELECT_SEED = 1234  # flags.py `random_seed`, "for negative class selection"
IGNORE_TARGET = -1.0  # the authors' `non_neg_mask`: a target of -1 contributes no loss
# A class's coefficient from its streaks t (positive) and n (negative, selected):
# max(-log10((0.01 + t) / 10), 0.01) when positive; -log10((8 + n) / 10) if above 0.01, else
# 0.001, when negative and selected.
COEF_SCALE = 10.0
POS_STREAK_OFFSET = 0.01
POS_COEF_FLOOR = 0.01
NEG_STREAK_OFFSET = 8.0
NEG_COEF_THRESHOLD = 0.01
NEG_COEF_FLOOR = 0.001

# The asymmetric loss of the loss ablation (not the paper's): the published defaults of
# Ridnik et al., Asymmetric Loss For Multi-Label Classification (ICCV 2021).
ASL_GAMMA_NEG = 4.0
ASL_GAMMA_POS = 0.0
ASL_CLIP = 0.05
ASL_EPS = 1e-8  # the reference implementation's clamp of a probability before its log


# --- Fine-tuning: the authors' finetune.py with example/finetune.sh --------------------------

FINETUNE_STEPS = 600_000
FINETUNE_GLOBAL_BATCH = 256  # 4 GPUs x 64 images
FINETUNE_LR = 0.1
FINETUNE_DECAY_STEPS = 150_000
FINETUNE_DECAY_AT = tuple(k * FINETUNE_DECAY_STEPS / FINETUNE_STEPS for k in (1, 2, 3))
FINETUNE_DECAY_FACTOR = 0.1
FINETUNE_BN_WEIGHT_DECAY = 1e-5  # 0.1 x the weight decay, on batch norm's gamma and beta


# --- Input: the authors' data_processing/image_preprocessing.py, train.py, finetune.py ---------

ASPECT_RATIO_RANGE = (0.75, 1.33)
PRETRAIN_CROP = (0.7, 0.7)  # (min_object_covered, smallest area) of a pretraining crop
FINETUNE_CROP = (0.0, 0.05)  # the same of a fine-tuning crop
CROP_ATTEMPTS = 100  # `max_attempts` of the distorted bounding box
MAX_ANGLE = math.pi / 4
BRIGHTNESS_DELTA = 32.0 / 255.0  # the `random_brightness` bound
SATURATION_RANGE = (0.5, 1.5)  # `random_saturation`'s lower and upper factors
HUE_DELTA = 0.2  # the `random_hue` bound
CONTRAST_RANGE = (0.5, 1.5)  # `random_contrast`'s lower and upper factors
EVAL_CROP_FRACTION = 0.8  # `central_fraction` in `eval_image`
