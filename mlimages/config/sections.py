"""A profile's sections of the data, input, evaluation, report and planner stages: typed and
strict (unknown keys and wrong types are refused). The training sections are in
`mlimages.config.training`; `mlimages.config.params` assembles both into a profile.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlimages.paper.facts import EVAL_CROP_FRACTION, FINETUNE_CROP, HUE_DELTA, ORIGINAL_BYTES


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, frozen=True)


class DataParams(StrictModel):
    """Where the label lists and the hierarchy come from; all None means the miniature."""

    dictionary: str | None = Field(None, description="path or http(s) URL of the dictionary")
    train_list: str | None = Field(None, description="training label list (any key kind)")
    val_list: str | None = Field(None, description="validation label list")
    num_classes: int | None = Field(None, ge=1, description="checked against label indices")

    @property
    def uses_miniature(self) -> bool:
        return self.dictionary is None and self.train_list is None


class SynthParams(StrictModel):
    """The embedded mini ML-Images; sizes chosen for a 2-core laptop."""

    seed: int = 0
    num_train: int = Field(8000, ge=1)
    num_val: int = Field(1000, ge=1)
    image_size: int = Field(96, ge=16, le=1024, description="side of the generated originals")
    max_objects: int = Field(3, ge=1, le=8)
    tail_exponent: float = Field(
        0.95, ge=0.0, le=4.0, description="leaf draws follow p(rank) ~ rank^-a (the long tail)"
    )
    tail_floor: int = Field(
        3, ge=0, description="training images every leaf appears in at least (where they fit)"
    )
    label_noise: float = Field(
        0.05, ge=0.0, le=1.0, description="share of images with a wrong or missing leaf label"
    )
    unclosed_fraction: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="share of images listed without ancestors, as in the published lists",
    )
    target_classes: int = Field(20, ge=2)
    target_train_per_class: int = Field(16, ge=1)
    target_val_per_class: int = Field(30, ge=1)
    novel_classes: int = Field(
        0,
        ge=0,
        description="leaves of a second target task (the novel-classes experiment); 0: none",
    )
    jpeg_quality: int = Field(90, ge=50, le=100)


class ExploreParams(StrictModel):
    """Notebook 01."""

    close: bool = Field(True, description="close labels over ancestors before counting")
    top_classes: int = Field(20, ge=2, le=200, description="classes in the co-occurrence heatmap")
    progress: bool | None = None


class SubsetParams(StrictModel):
    """Which part of the training list to download (notebook 02); no budget = the whole list."""

    max_images: int | None = Field(None, ge=1, description="images to choose at most")
    max_gb: float | None = Field(None, gt=0, description="disk budget for the stored images, GB")
    bytes_per_image: int | None = Field(
        None, ge=1, description="stored size estimate; None: from download.max_side"
    )
    min_per_class: int = Field(0, ge=0, description="floor: rarest classes are served first")
    max_per_class: int | None = Field(
        None, ge=1, description="cap: an image is taken only while one of its classes is under it"
    )
    subtrees: list[str] = Field([], description="wnids or indices; keep only their classes")
    seed: int | None = Field(None, description="None: the profile's seed")

    @property
    def enabled(self) -> bool:
        return bool(self.max_images or self.max_gb or self.subtrees)


class DownloadParams(StrictModel):
    """Fetching, validating and resizing images (notebook 02); defaults suit real Flickr URLs."""

    workers: int = Field(32, ge=1, le=1024, description="threads: the global concurrency limit")
    per_host: int = Field(16, ge=1, description="concurrent requests to one host at most")
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(30.0, gt=0, description="seconds without a byte")
    total_timeout: float = Field(120.0, gt=0, description="seconds for one response in all")
    retries: int = Field(3, ge=0, description="on timeouts, connection errors, 5xx and 429")
    backoff: float = Field(1.0, ge=0, description="first retry waits up to this, doubling")
    backoff_max: float = Field(60.0, ge=0, description="longest wait, Retry-After included")
    max_redirects: int = Field(5, ge=0)
    max_bytes: int = Field(64 * 2**20, ge=1, description="largest body accepted")
    max_pixels: int = Field(100_000_000, ge=1, description="decompression-bomb limit")
    max_side: int = Field(320, ge=8, description="shorter side of a stored image at most")
    quality: int = Field(90, ge=50, le=100, description="JPEG quality of re-encoded images")
    placeholder_sha256: list[str] = Field([], description="bodies that are known placeholders")
    placeholder_urls: list[str] = Field(
        ["photo_unavailable"], description="a redirect to a URL containing one is a placeholder"
    )
    file_root: str | None = Field(None, description="file:// URLs allowed below it only")
    imagenet_root: str | None = Field(
        None, description="tree or per-synset tars for ImageNet-id keys of data.train_list"
    )
    target_train_list: str | None = Field(None, description="ImageNet-id-keyed target list")
    target_val_list: str | None = None
    imagenet_train: str | None = Field(None, description="tree or tars for target_train_list")
    imagenet_val: str | None = None
    retry_failed: bool = Field(False, description="fetch keys that failed before again")
    progress: bool | None = None


class RecordsParams(StrictModel):
    """TFRecord shards (notebook 03, mlimages.input.records); shard sizes as TensorFlow advises."""

    shard_mb: float = Field(100.0, gt=0, description="about this many MiB a shard")
    min_shards: int = Field(8, ge=1, description="at least this many (workers split by file)")
    workers: int | None = Field(None, ge=1, description="writer processes; None: every core")
    seed: int | None = Field(None, description="record order; None: the profile's seed")
    target_dictionary: str | None = Field(
        None, description="target task classes, one a line; None: the miniature's"
    )
    progress: bool | None = None


class PipelineParams(StrictModel):
    """The tf.data input (mlimages.input.pipeline): the paper's augmentation, eval preprocessing."""

    augment: bool = Field(True, description="false: decode, resize and scale only (debugging)")
    hue_delta: float = Field(
        HUE_DELTA, ge=0, le=0.5, description="random hue bound (the authors' 0.2); 0 turns it off"
    )
    eval_crop_fraction: float = Field(
        EVAL_CROP_FRACTION,
        gt=0,
        le=1,
        description="central crop side / shorter side (the authors' 0.8)",
    )
    finetune_min_area: float = Field(
        FINETUNE_CROP[1],
        gt=0,
        le=1,
        description="smallest fine-tuning crop, share of the image (authors')",
    )
    rotation_fill: Literal["zeros", "nearest"] = Field(
        "zeros", description="corners a rotation uncovers: black (authors') or the edge pixels"
    )
    shuffle_buffer: int = Field(4096, ge=1, description="records shuffled in memory")
    cycle_length: int = Field(16, ge=1, description="shards read at once")
    preview_images: int = Field(8, ge=1, le=64, description="images in notebook 03's grids")
    throughput_images: int = Field(1024, ge=1, description="images timed in notebook 03")


class EvaluateParams(StrictModel):
    """Evaluation (notebook 06, mlimages.evaluate.checkpoints).

    The paper's metrics on the validation records.

    Fine-tuned checkpoints are evaluated at `finetune.base_size` and `finetune.large_size`.
    """

    image_size: int | None = Field(
        None, ge=8, description="multi-label evaluation size; None: pretrain.image_size"
    )
    max_k: int = Field(10, ge=1, description="instance-level figures at k = 1..max_k")
    threshold: float = Field(0.5, gt=0, le=1, description="a label >= this is a positive")
    score_threshold: float = Field(
        0.5, gt=0, lt=1, description="class-level figures: a class is predicted at sigmoid >= this"
    )
    batch: int = Field(256, ge=1, description="images a forward pass")
    keep_scores: bool = Field(
        True, description="keep scores.npy and labels.npy (input of `mlimages metrics`)"
    )
    grid_images: int = Field(12, ge=1, le=64, description="validation images in notebook 06's grid")
    grid_tags: int = Field(5, ge=1, le=20, description="predicted tags shown an image")
    progress: bool | None = None


class ReportParams(StrictModel):
    """Notebook 07: the paper-vs-ours tables and figures, and where they are published."""

    publish_dir: str | None = Field(
        None, description="copy the tables and figures here (default profile: results); None: no"
    )
    readme: str | None = Field(
        None, description="README whose results section is rewritten (default profile); None: no"
    )


class PlanParams(StrictModel):
    """The compute and storage planner (mlimages.train.plan, notebook 07)."""

    gpu: str = Field("A100-80GB", description="a GPU of mlimages.train.plan.GPUS")
    gpu_counts: list[int] = Field([1, 8, 64], min_length=1, description="plans of the full run")
    images_per_s: float | None = Field(
        None, gt=0, description="a measured training rate a GPU; None: the GPU table's"
    )
    price_per_gpu_hour: float | None = Field(
        2.0, ge=0, description="USD, an assumed price; set yours (None: no cost)"
    )
    download_mbit_per_s: float = Field(1000.0, gt=0, description="download bandwidth")
    bytes_per_original: int = Field(
        ORIGINAL_BYTES,
        ge=1,
        description="original image size (the earlier re-implementation's 2 MB)",
    )
