"""Size a run before starting it: disk, download time, GPU-hours, wall time and cost.

The earlier re-implementation of the paper could not size its run until it had failed on it.
The planner does the arithmetic up front from four kinds of input:

- training FLOPs per image, counted analytically for the paper's ResNet (`resnet_flops`,
  2 FLOPs a multiply-add over convolutions and the dense layer; a training step is taken as
  3 forward passes: forward, and a backward pass of twice its cost);
- a GPU's measured training rate on a reference ResNet (`GPUS`, each with its source),
  carried over to the planned model by the ratio of FLOPs per image; or a rate you measured
  (`images_per_s`, e.g. from `benchmarks/train_step.py --gpu`);
- bytes per stored image, from the downloader's own measurements (`measured_bytes` on a
  download stage's `metrics.json`) or the subset module's estimate for a `max_side`;
- a download bandwidth and a price per GPU-hour, which are yours to give.

`paper_run` replays the authors' run from what they state (17,609,752 images, 60 epochs,
128 GPUs, 90 hours); `paper_arithmetic` shows every step of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from mlimages.config import layout
from mlimages.config.params import Params
from mlimages.paper.facts import (
    BASE_SIZE,
    DEPTHS,
    ORIGINAL_BYTES,
    PAPER_CLASSES,
    PAPER_DEPTH,
    PAPER_EPOCHS,
    PAPER_GLOBAL_BATCH,
    PAPER_GPUS,
    PAPER_HOURS,
    PAPER_IMAGES,
    PAPER_STEPS,
    PAPER_WIDTH,
    model_name,
)

Layout = Literal["mlimages", "v1", "v1.5"]
TRAIN_PASSES = 3  # forward + backward (about twice the forward's FLOPs)


def _out(size: int, stride: int) -> int:
    """Output side of a padded conv or pool (explicit `(k-1)//2` padding or SAME): ceil."""
    return (size - 1) // stride + 1


def resnet_flops(
    blocks: Sequence[int],
    width: int = PAPER_WIDTH,
    image_size: int = BASE_SIZE,
    num_classes: int = 1000,
    layout: Layout = "mlimages",
) -> int:
    """Forward FLOPs of one image (2 a multiply-add; convolutions and the dense layer).

    `mlimages` is the authors' layout (`mlimages.paper.model`): no max-pool, stride 2 in every
    stage's first block (stage 0 too) on its 3x3 conv and projection. `v1.5` is the common
    ImageNet ResNet (max-pool after the stem, stage 0 at stride 1, stride on the 3x3 conv),
    `v1` the original (stride on the first 1x1 conv); both are here to carry measured rates
    of those models over to ours.
    """
    size = _out(image_size, 2)
    macs = size * size * width * 7 * 7 * 3
    if layout != "mlimages":
        size = _out(size, 2)  # 3x3/2 max-pool
    channels = width
    for stage, count in enumerate(blocks):
        out = 4 * width * 2**stage
        mid = out // 4
        for block in range(count):
            stride = 2 if block == 0 and (layout == "mlimages" or stage > 0) else 1
            o = _out(size, stride)
            if block == 0:
                macs += o * o * out * channels  # 1x1 projection shortcut
            conv1_side = o if layout == "v1" else size
            macs += conv1_side * conv1_side * mid * channels  # 1x1 reduce
            macs += o * o * mid * 9 * mid  # 3x3
            macs += o * o * out * mid  # 1x1 expand
            size, channels = o, out
    macs += channels * num_classes
    return 2 * macs


def train_flops(
    blocks: Sequence[int],
    width: int,
    image_size: int,
    num_classes: int,
    layout: Layout = "mlimages",
) -> int:
    """FLOPs of one training image: `TRAIN_PASSES` forward passes' worth."""
    return TRAIN_PASSES * resnet_flops(blocks, width, image_size, num_classes, layout)


@dataclass(frozen=True)
class GPU:
    """A GPU's training rate on a reference ResNet, and where the figure comes from."""

    name: str
    year: int
    precision: str
    reference: str  # key of REFERENCE_MODELS
    images_per_s: float  # training, one GPU, the reference model at 224
    scaling_8: float  # images/s of 8 GPUs over 8 x one GPU's, same source
    measured: bool
    source: str


# name -> (blocks, layout) of the models the sources measured; all at 224, 1,000 classes.
REFERENCE_MODELS: dict[str, tuple[tuple[int, ...], Layout]] = {
    "ResNet-50 v1.5": (DEPTHS[50], "v1.5"),
    "ResNet-152 v1": (DEPTHS[152], "v1"),
}

_TF_BENCH = (
    "TensorFlow 1.x performance guide, Benchmarks page (May 2017, tf_cnn_benchmarks, "
    "real ImageNet data, batch 64 a GPU)"
)
_DLE = (
    "NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "
    "training performance (pytorch-21.03 container)"
)
_A100_AMP = 2470.0
_A100_SCALING = 16621 / (8 * 2470)
# Datasheet HBM bandwidths (GB/s): A100 80GB 2,039; H100 SXM 3,350; H200 4,800. Peak dense
# FP16 tensor TFLOPS: A100 312, H100/H200 SXM 989. ResNet training with batch norm is bound
# by memory more than by tensor FLOPs, so the smaller of the two ratios is used: bandwidth.
_ESTIMATE = (
    "estimate, not a measurement: A100 80GB's measured mixed-precision rate ({_DLE}) x the "
    "HBM bandwidth ratio {ratio:.2f} (datasheets; the tensor-FLOPS ratio, 3.17, is larger); "
    "measure yours with benchmarks/train_step.py --gpu"
)

GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        GPU("K80", 2014, "fp32", "ResNet-152 v1", 20.0, 148 / (8 * 20.0), True,
            f"{_TF_BENCH}, Google Compute Engine K80 (one GK210 a GPU)"),
        GPU("P100", 2016, "fp32", "ResNet-152 v1", 91.4, 708 / (8 * 91.4), True,
            f"{_TF_BENCH}, NVIDIA DGX-1 P100"),
        GPU("V100-16GB", 2017, "mixed fp16", "ResNet-50 v1.5", 1200.0, 8322 / (8 * 1200), True,
            f"{_DLE}, DGX-1 16GB"),
        GPU("A100-80GB", 2020, "mixed fp16", "ResNet-50 v1.5", _A100_AMP, _A100_SCALING, True,
            f"{_DLE}, DGX A100 80GB"),
        GPU("H100-SXM", 2022, "mixed fp16", "ResNet-50 v1.5", _A100_AMP * 3350 / 2039,
            _A100_SCALING, False, _ESTIMATE.format(_DLE=_DLE, ratio=3350 / 2039)),
        GPU("H200", 2024, "mixed fp16", "ResNet-50 v1.5", _A100_AMP * 4800 / 2039,
            _A100_SCALING, False, _ESTIMATE.format(_DLE=_DLE, ratio=4800 / 2039)),
    )
}  # fmt: skip


def find_gpu(name: str) -> GPU:
    if name not in GPUS:
        raise ValueError(f"GPU {name!r} (plan.gpu): expected one of {', '.join(GPUS)}")
    return GPUS[name]


def gpu_rate(name: str, blocks: Sequence[int], width: int, image_size: int, num_classes: int):
    """One GPU's training images/s on the planned model: the measured rate x FLOPs ratio."""
    g = find_gpu(name)
    ref_blocks, layout = REFERENCE_MODELS[g.reference]
    ref = train_flops(ref_blocks, 64, 224, 1000, layout)
    return g.images_per_s * ref / train_flops(blocks, width, image_size, num_classes)


def estimated_stored_bytes(max_side: int) -> int:
    """Bytes of a stored photo at a shorter side of `max_side` (mlimages.data.subset's estimate)."""
    from mlimages.data.subset import estimated_bytes_per_image

    return estimated_bytes_per_image(max_side)


@dataclass(frozen=True)
class MeasuredBytes:
    """Bytes per image a download stage measured (`metrics.json`: totals over every split)."""

    images: int
    stored_per_image: float
    original_per_image: float
    max_side: int
    source: str


def measured_bytes(metrics_path: str | os.PathLike, split: str | None = None) -> MeasuredBytes:
    """Stored and original bytes per image from `runs/<profile>/download/metrics.json`, over
    every split or over one (`split`)."""
    path = Path(metrics_path)
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        total = metrics["total"] if split is None else metrics["splits"][split]
        ok, stored, original = total["ok"], total["bytes_stored"], total["bytes_original"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path}: expected a download stage's metrics.json with ok, bytes_stored and "
            f"bytes_original under {split and f'splits.{split}' or 'total'} "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if not ok:
        raise ValueError(f"{path}: no image was downloaded (total.ok = 0)")
    return MeasuredBytes(ok, stored / ok, original / ok, int(metrics.get("max_side", 0)), str(path))


@dataclass(frozen=True)
class Plan:
    """What a run costs. Rates are one GPU's; `scaling` is the multi-GPU efficiency."""

    label: str
    images: int
    epochs: float
    model: str
    image_size: int
    num_classes: int
    gpu: str
    gpus: int
    images_per_s_per_gpu: float
    scaling: float
    train_gflops_per_image: float
    bytes_per_stored_image: float
    bytes_per_original: float
    download_mbit_per_s: float
    price_per_gpu_hour: float | None

    @property
    def images_seen(self) -> float:
        return self.images * self.epochs

    @property
    def images_per_s(self) -> float:
        return self.images_per_s_per_gpu * self.gpus * self.scaling

    @property
    def wall_hours(self) -> float:
        return self.images_seen / self.images_per_s / 3600

    @property
    def gpu_hours(self) -> float:
        return self.wall_hours * self.gpus

    @property
    def disk_gb(self) -> float:
        return self.images * self.bytes_per_stored_image / 1e9

    @property
    def download_hours(self) -> float:
        bits = self.images * self.bytes_per_original * 8
        return bits / (self.download_mbit_per_s * 1e6) / 3600

    @property
    def cost(self) -> float | None:
        if self.price_per_gpu_hour is None:
            return None
        return self.gpu_hours * self.price_per_gpu_hour

    @property
    def sustained_tflops_per_gpu(self) -> float:
        return self.images_per_s * self.train_gflops_per_image / self.gpus / 1e3

    def as_dict(self) -> dict[str, Any]:
        """Inputs and estimates, one flat record (a table row, `--json`)."""
        return {
            **asdict(self),
            "images_seen": self.images_seen,
            "images_per_s": self.images_per_s,
            "sustained_tflops_per_gpu": self.sustained_tflops_per_gpu,
            "disk_gb": self.disk_gb,
            "download_hours": self.download_hours,
            "gpu_hours": self.gpu_hours,
            "wall_hours": self.wall_hours,
            "cost": self.cost,
        }


def plan(
    images: int,
    epochs: float,
    *,
    depth: int | None = PAPER_DEPTH,
    blocks: Sequence[int] | None = None,
    width: int = PAPER_WIDTH,
    image_size: int = BASE_SIZE,
    num_classes: int = PAPER_CLASSES,
    gpu: str = "A100-80GB",
    gpus: int = 1,
    images_per_s: float | None = None,
    scaling: float | None = None,
    bytes_per_image: float | None = None,
    max_side: int = 320,
    bytes_per_original: float = ORIGINAL_BYTES,
    download_mbit_per_s: float = 1000.0,
    price_per_gpu_hour: float | None = None,
    label: str | None = None,
) -> Plan:
    """A run of `epochs` over `images` on `gpus` GPUs of type `gpu` (or at `images_per_s` a GPU).

    Disk is the stored images (`bytes_per_image`, else the estimate at `max_side`); the
    download moves the originals (`bytes_per_original`) at `download_mbit_per_s`. Without a
    measured `scaling`, several GPUs run at the GPU's measured 8-GPU efficiency.
    """
    if images < 1 or epochs <= 0 or gpus < 1:
        raise ValueError(f"plan: images {images}, epochs {epochs}, gpus {gpus}; expected > 0")
    counts = tuple(blocks) if blocks is not None else DEPTHS.get(depth or 0)
    if counts is None:
        raise ValueError(f"plan: depth {depth!r}; expected one of {sorted(DEPTHS)} or blocks")
    if images_per_s is None:
        rate = gpu_rate(gpu, counts, width, image_size, num_classes)
    else:
        rate = float(images_per_s)
    if scaling is None:
        scaling = 1.0 if gpus == 1 or images_per_s is not None else find_gpu(gpu).scaling_8
    name = model_name(None, counts, width, paper_spelling=True)
    return Plan(
        label=label or f"{gpus} x {gpu}",
        images=int(images),
        epochs=float(epochs),
        model=name,
        image_size=image_size,
        num_classes=num_classes,
        gpu=gpu,
        gpus=gpus,
        images_per_s_per_gpu=rate,
        scaling=float(scaling),
        train_gflops_per_image=train_flops(counts, width, image_size, num_classes) / 1e9,
        bytes_per_stored_image=float(bytes_per_image or estimated_stored_bytes(max_side)),
        bytes_per_original=float(bytes_per_original),
        download_mbit_per_s=float(download_mbit_per_s),
        price_per_gpu_hour=price_per_gpu_hour,
    )


def paper_rate() -> float:
    """Images/s a GPU the paper's figures imply: images seen / (GPUs x seconds)."""
    return PAPER_IMAGES * PAPER_EPOCHS / (PAPER_GPUS * PAPER_HOURS * 3600)


def paper_run(price_per_gpu_hour: float | None = None, download_mbit_per_s: float = 1000.0):
    """The authors' run from its stated figures; the GPU is not named in the paper, so its rate
    is the one those figures imply (scaling included), and the images were stored as originals."""
    return plan(
        PAPER_IMAGES,
        PAPER_EPOCHS,
        depth=PAPER_DEPTH,
        image_size=BASE_SIZE,
        num_classes=PAPER_CLASSES,
        gpu="paper's (not named)",
        gpus=PAPER_GPUS,
        images_per_s=paper_rate(),
        scaling=1.0,
        bytes_per_image=ORIGINAL_BYTES,
        download_mbit_per_s=download_mbit_per_s,
        price_per_gpu_hour=price_per_gpu_hour,
        label="paper: 128 GPUs, 90 h (stated)",
    )


def paper_arithmetic() -> list[str]:
    """The paper's run, step by step: what its figures imply, and what hardware rates say."""
    seen = PAPER_IMAGES * PAPER_EPOCHS
    seconds = PAPER_HOURS * 3600
    run = paper_run()
    flops = run.train_gflops_per_image
    lines = [
        f"images seen = {PAPER_IMAGES:,} images x {PAPER_EPOCHS} epochs = {seen:,}",
        f"steps at a global batch of {PAPER_GLOBAL_BATCH:,} = {seen / PAPER_GLOBAL_BATCH:,.0f} "
        f"(the authors' script's {PAPER_STEPS:,} steps of {PAPER_GLOBAL_BATCH:,} would be "
        f"{PAPER_STEPS * PAPER_GLOBAL_BATCH / PAPER_IMAGES:.0f} epochs)",
        f"rate = {seen:,} / ({PAPER_HOURS:.0f} h x 3,600 s) = {seen / seconds:,.0f} images/s "
        f"in all = {paper_rate():.1f} images/s a GPU over {PAPER_GPUS} GPUs",
        f"planner: {seen:,} / ({PAPER_GPUS} GPUs x {paper_rate():.1f} images/s) / 3,600 "
        f"= {run.wall_hours:.1f} h wall, {run.gpu_hours:,.0f} GPU-hours",
        f"compute: ResNet-101 at 224 with {PAPER_CLASSES:,} classes = "
        f"{resnet_flops(DEPTHS[PAPER_DEPTH], PAPER_WIDTH, BASE_SIZE, PAPER_CLASSES) / 1e9:.2f} "
        "GFLOPs forward, "
        f"x {TRAIN_PASSES} = {flops:.1f} GFLOPs a training image; x {seen:,} = "
        f"{flops * seen / 1e9:.2f} EFLOPs; {run.sustained_tflops_per_gpu:.2f} TFLOP/s "
        "sustained a GPU",
    ]
    for name in ("K80", "P100"):
        rate = gpu_rate(name, DEPTHS[PAPER_DEPTH], PAPER_WIDTH, BASE_SIZE, PAPER_CLASSES)
        hours = seen / (PAPER_GPUS * rate * GPUS[name].scaling_8) / 3600
        lines.append(
            f"{name}: {GPUS[name].images_per_s:g} images/s measured on {GPUS[name].reference} "
            f"-> {rate:.1f} on this ResNet-101 (FLOPs ratio) -> {hours:.0f} h on {PAPER_GPUS} "
            f"at its 8-GPU scaling {GPUS[name].scaling_8:.2f}; the paper's rate is "
            f"{paper_rate() / rate:.0%} of it"
        )
    lines.append(
        f"disk: {PAPER_IMAGES:,} originals x {ORIGINAL_BYTES / 1e6:.0f} MB = "
        f"{PAPER_IMAGES * ORIGINAL_BYTES / 1e12:.1f} TB; stored at a shorter side of 320 px, "
        f"{PAPER_IMAGES * estimated_stored_bytes(320) / 1e12:.2f} TB"
    )
    return lines


def profile_images(params: Params) -> int:
    """Images a profile trains on: its subset's budget, the miniature's size or the full list."""
    if params.data.uses_miniature:
        available = params.synth.num_train
    else:
        available = PAPER_IMAGES  # the full training list
    limits = [available] + ([params.subset.max_images] if params.subset.max_images else [])
    if params.subset.max_gb:
        limits.append(int(params.subset.max_gb * 1e9 // _stored_bytes(params)[0]))
    return min(limits)


def profile_plan(params: Params, gpu: str | None = None, gpus: int = 1) -> Plan:
    """What `mlimages study --params <profile>` pretrains (its steps x global batch), planned."""
    images = profile_images(params)
    p, m = params.pretrain, params.model
    blocks = tuple(m.blocks) if m.blocks else DEPTHS[m.depth]
    per_image, original = _stored_bytes(params)
    return plan(
        images,
        p.steps * p.global_batch / images,
        blocks=blocks,
        width=m.width,
        image_size=p.image_size,
        num_classes=m.num_classes or params.data.num_classes or mini_classes(),
        gpu=gpu or params.plan.gpu,
        gpus=gpus,
        images_per_s=params.plan.images_per_s,
        bytes_per_image=per_image,
        bytes_per_original=original,
        download_mbit_per_s=params.plan.download_mbit_per_s,
        price_per_gpu_hour=params.plan.price_per_gpu_hour,
        label=f"profile {params.profile}",
    )


def _stored_bytes(params: Params) -> tuple[float, float]:
    """(stored, original) bytes an image: the profile's own download if it ran at this
    `max_side`, else the subset module's estimate and the plan section's original size."""
    metrics = params.run_dir / layout.DOWNLOAD / layout.METRICS_FILE
    if metrics.is_file():
        measured = measured_bytes(metrics)
        if measured.max_side == params.download.max_side:
            return measured.stored_per_image, measured.original_per_image
    return float(estimated_stored_bytes(params.download.max_side)), float(
        params.plan.bytes_per_original
    )


def mini_classes() -> int:
    from mlimages.data.synthetic import mini_taxonomy

    return mini_taxonomy().num_classes
