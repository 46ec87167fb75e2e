"""Typed, strict parameters: model defaults, then a profile file, then overrides.

Papermill only warns about a mistyped parameter; a reproduction that silently ignores
`num_trian: 10` is worse than one that stops, so every level refuses unknown keys and wrong
types with the key's dotted name and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mlimages.core.atomic import write_text_atomic

EVAL_CROP_FRACTION = 0.8  # the authors' `central_fraction` in eval_image (mlimages.input.pipeline)

PARAMS_DIR_ENV = "MLIMAGES_PARAMS_DIR"
RUNS_DIR_ENV = "MLIMAGES_RUNS"


class ParamsError(ValueError):
    """Bad parameters; the message names the file or override and the dotted key."""


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
    """The embedded mini ML-Images (DESIGN §5); sizes chosen for a 2-core laptop."""

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


class PretrainParams(StrictModel):
    """Pretraining (notebook 04): the loop itself; model, loss and schedule have their own sections.

    Defaults are the authors' run: global batch 4,096 over 128 GPUs, 440k steps at 224 px.
    """

    steps: int = Field(440_000, ge=1)
    global_batch: int = Field(4096, ge=1, description="images per step over all replicas")
    image_size: int = Field(224, ge=8)
    checkpoint_every: int = Field(5000, ge=1)
    log_every: int = Field(100, ge=1)
    eval_every: int = Field(5000, ge=0, description="P/R@k on a held-out slice; 0 = never")
    eval_images: int = Field(2000, ge=1, description="size of the held-out slice (val records)")
    workers: int = Field(1, ge=1, description="local worker processes on loopback")
    strategy: Literal["auto", "default", "mirrored", "multiworker"] = "auto"
    backend: Literal["tf", "horovod"] = Field(
        "tf", description="tf.distribute (strategy), or Horovod over Gloo (.venv-horovod)"
    )
    max_seconds: float | None = Field(None, gt=0, description="stop after a checkpoint when over")
    hold_out_novel: bool = Field(
        False,
        description="drop every image labelled with a novel leaf (synth.novel_classes), so "
        "pretraining never sees those leaves",
    )
    progress: bool | None = None


class ModelParams(StrictModel):
    """The authors' pre-activation ResNet (mlimages.paper.model); defaults are their ResNet-101."""

    depth: Literal[50, 101, 152] = 101
    blocks: list[int] | None = Field(
        None, min_length=4, max_length=4, description="blocks per stage; overrides depth"
    )
    width: int = Field(64, ge=1, description="stem filters; stage outputs are 4/8/16/32 times it")
    num_classes: int | None = Field(None, ge=1, description="None: the dataset's class count")
    mixed_precision: bool | None = Field(None, description="None: on where a GPU is visible")
    bn_momentum: float = Field(
        0.997, gt=0, lt=1, description="moving-average momentum of batch norm (the authors')"
    )

    @field_validator("blocks")
    @classmethod
    def _positive_blocks(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and min(value) < 1:
            raise ValueError("every stage needs at least one block")
        return value


LossKind = Literal["adaptive", "sigmoid", "weighted", "asl"]

# The loss keys each kind reads beyond `kind` and `weight_decay` (mlimages.paper.loss); a key set
# for a kind that does not read it is refused (`LossParams._no_ignored_keys`).
LOSS_KEYS_READ: dict[str, tuple[str, ...]] = {
    "adaptive": ("pos_weight", "mask_thres", "neg_select", "select_seed", "counters"),
    "sigmoid": (),
    "weighted": ("pos_weight",),
    "asl": ("asl_gamma_neg", "asl_gamma_pos", "asl_clip"),
}


class LossParams(StrictModel):
    """The pretraining loss (mlimages.paper.loss): the paper's adaptive weighted sigmoid
    cross-entropy with the authors' train.sh values, or one of the ablation's variants."""

    kind: LossKind = Field(
        "adaptive",
        description="adaptive: the paper's; sigmoid: plain sigmoid cross-entropy; weighted: "
        "with pos_weight, no adaptive coefficients; asl: the asymmetric loss",
    )
    pos_weight: float = Field(12.0, gt=0, description="weight of a positive target's term")
    mask_thres: float = Field(0.7, gt=0, le=1, description="a target >= this is a positive")
    neg_select: float = Field(0.1, ge=0, le=1, description="share of negative-only classes drawn")
    select_seed: int = Field(1234, description="seed of the negative draw (flags.py random_seed)")
    counters: Literal["global", "replica"] = Field(
        "global",
        description="adaptive streaks counted over the global batch, or each replica over its "
        "own local batch (as the authors' single-GPU code run on every GPU)",
    )
    asl_gamma_neg: float = Field(4.0, ge=0, description="asl: focusing exponent of negatives")
    asl_gamma_pos: float = Field(0.0, ge=0, description="asl: focusing exponent of positives")
    asl_clip: float = Field(
        0.05, ge=0, lt=1, description="asl: probability shifted off every negative (margin)"
    )
    weight_decay: float = Field(1e-4, ge=0, description="L2 on all weights but batch norm")

    @model_validator(mode="after")
    def _no_ignored_keys(self) -> LossParams:
        """A key the chosen kind does not read is refused, as `Params._no_ignored_keys` does."""
        read = set(LOSS_KEYS_READ[self.kind])
        ignored = [
            key
            for key in self.model_fields_set
            if key not in read and key not in ("kind", "weight_decay")
        ]
        if ignored:
            problems = [
                f"loss.{key} is set but loss.kind is {self.kind!r}, which does not read it, so "
                f"it would be ignored; expected it only with "
                + " or ".join(repr(k) for k, keys in LOSS_KEYS_READ.items() if key in keys)
                for key in sorted(ignored)
            ]
            raise ValueError("; ".join(problems))
        return self

    def keys_read(self) -> list[str]:
        """The keys this kind reads, `kind` first: what a saved profile lists."""
        return ["kind", *LOSS_KEYS_READ[self.kind], "weight_decay"]

    def in_effect(self) -> dict[str, Any]:
        """The values this kind reads (a run's fingerprint). `kind` and `counters` at their
        defaults are left out, so the paper's loss keeps the fingerprint it had before the
        variants existed and its finished runs are reused."""
        values = {key: getattr(self, key) for key in self.keys_read()}
        if self.kind == "adaptive":
            del values["kind"]
            if self.counters == "global":
                del values["counters"]
        return values


class ScheduleParams(StrictModel):
    """Momentum SGD with geometric warm-up and step decay (mlimages.paper.recipe).

    The values of the authors' train.sh."""

    momentum: float = Field(0.9, ge=0, lt=1)
    lr: float = Field(0.08, gt=0, description="rate after the warm-up, at reference_batch")
    decay_steps: int = Field(110_000, ge=1)
    decay_factor: float = Field(0.1, gt=0, le=1)
    num_decays: int = Field(4, ge=0)
    warmup_lr: float = Field(0.01, gt=0)
    warmup_steps: int = Field(35_200, ge=0)
    warmup_interval: int = Field(4_400, ge=1)
    warmup_factor: float = Field(1.297, ge=1)
    reference_batch: int | None = Field(
        4096, ge=1, description="global batch the rates are for; None: no linear scaling"
    )


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
        0.2, ge=0, le=0.5, description="random hue bound (the authors' 0.2); 0 turns it off"
    )
    eval_crop_fraction: float = Field(
        EVAL_CROP_FRACTION,
        gt=0,
        le=1,
        description="central crop side / shorter side (the authors' 0.8)",
    )
    finetune_min_area: float = Field(
        0.05, gt=0, le=1, description="smallest fine-tuning crop, share of the image (authors')"
    )
    rotation_fill: Literal["zeros", "nearest"] = Field(
        "zeros", description="corners a rotation uncovers: black (authors') or the edge pixels"
    )
    shuffle_buffer: int = Field(4096, ge=1, description="records shuffled in memory")
    cycle_length: int = Field(16, ge=1, description="shards read at once")
    preview_images: int = Field(8, ge=1, le=64, description="images in notebook 03's grids")
    throughput_images: int = Field(1024, ge=1, description="images timed in notebook 03")


class CheckpointSetting(StrictModel):
    """One row of the paper's fine-tuning table (DESIGN §3): how checkpoint `ckpt` is made."""

    ckpt: int = Field(ge=1)
    setting: str = Field(description="short text for tables, e.g. 'ML-Images -> target, base'")
    pretrained: bool = Field(description="start from the pretraining run (or init_checkpoint)")
    train_sizes: Literal["base", "large", "base_then_large"]
    linear_probe: bool = Field(False, description="only the new logits layer trains")


PAPER_CHECKPOINTS = (
    CheckpointSetting(
        ckpt=1, setting="target only, from scratch", pretrained=False, train_sizes="base"
    ),
    CheckpointSetting(
        ckpt=2, setting="ML-Images -> target, base", pretrained=True, train_sizes="base"
    ),
    CheckpointSetting(
        ckpt=3,
        setting="ML-Images -> target, base then large",
        pretrained=True,
        train_sizes="base_then_large",
    ),
    CheckpointSetting(
        ckpt=4, setting="ML-Images -> target, large", pretrained=True, train_sizes="large"
    ),
    CheckpointSetting(
        ckpt=5,
        setting="ML-Images frozen -> linear probe",
        pretrained=True,
        train_sizes="base",
        linear_probe=True,
    ),
    # Not the paper's: the baseline ckpt 5 must beat for the representation to count.
    CheckpointSetting(
        ckpt=6,
        setting="random init frozen -> linear probe",
        pretrained=False,
        train_sizes="base",
        linear_probe=True,
    ),
)


class FinetuneParams(StrictModel):
    """Fine-tuning (notebook 05): checkpoints 1..5 of the paper's table on the target task.

    Defaults are the authors' `finetune.sh`/`finetune.py`: softmax cross-entropy, lr 0.1 x0.1
    every 150k steps, global batch 256, 600k steps, weight decay 1e-4 (1e-5 on BN), 224 px
    then 299 px; a new logits layer always.
    """

    ckpt: int = Field(3, ge=1, description="which of `checkpoints` notebook 05 runs")
    checkpoints: list[CheckpointSetting] = Field(list(PAPER_CHECKPOINTS), min_length=1)
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="one run per seed")
    base_size: int = Field(224, ge=8, description="training and evaluation size (the 224)")
    large_size: int = Field(299, ge=8, description="the late / large size (the 299)")
    large_fraction: float = Field(
        0.25, gt=0, lt=1, description="base_then_large: share of the steps at the large size"
    )
    steps: int = Field(600_000, ge=1)
    global_batch: int = Field(256, ge=1, description="images per step over all replicas")
    lr: float = Field(0.1, gt=0, description="rate after the warm-up, at reference_batch")
    decay_at: list[float] = Field(
        [0.25, 0.5, 0.75],
        description="x decay_factor from these fractions of the steps on (the authors': every "
        "150k of 600k)",
    )
    decay_factor: float = Field(0.1, gt=0, le=1)
    warmup_fraction: float = Field(
        0.0, ge=0, lt=1, description="linear warm-up over this share of the steps (paper: none)"
    )
    precise_bn_batches: int = Field(
        0,
        ge=0,
        description="before saving, set BN statistics to their mean over this many training "
        "batches at the last training size (0: keep the moving averages, as the authors)",
    )
    reference_batch: int | None = Field(
        256, ge=1, description="global batch the rate is for; None: no linear scaling"
    )
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0, description="L2 on all trained weights but BN")
    bn_weight_decay: float = Field(1e-5, ge=0, description="L2 on BN gamma and beta")
    freeze_stages: bool = Field(
        False, description="freeze the stem and stages 0-1, BN statistics too (FixBlock2)"
    )
    init_checkpoint: str | None = Field(
        None,
        description="None: this profile's pretraining run (pretrain/model.keras); a .keras file; "
        "or an authors'-format TF1 checkpoint prefix or folder",
    )
    checkpoint_every: int = Field(5000, ge=1)
    log_every: int = Field(100, ge=1)
    eval_every: int = Field(5000, ge=0, description="val top-1 at both sizes; 0 = never")
    eval_batch: int = Field(256, ge=1)
    strategy: Literal["auto", "default", "mirrored", "multiworker"] = "auto"
    task: Literal["target", "novel"] = Field(
        "target",
        description="the single-label task: the target's (pretraining saw its classes) or the "
        "novel one (synth.novel_classes, their ancestors only seen)",
    )
    examples_per_class: int | None = Field(
        None,
        ge=1,
        description="train on the first K training images a class (records' order) only; "
        "None: all (evaluation stays whole)",
    )
    progress: bool | None = None

    @property
    def splits(self) -> tuple[str, str]:
        """The records splits fine-tuning trains and evaluates on: `target_train` and
        `target_val`, or `novel_train` and `novel_val` (`task`)."""
        return f"{self.task}_train", f"{self.task}_val"

    @field_validator("decay_at")
    @classmethod
    def _increasing_fractions(cls, value: list[float]) -> list[float]:
        if value != sorted(value) or any(not 0 < f < 1 for f in value):
            raise ValueError(f"{value}: expected increasing fractions of the steps in (0, 1)")
        return value

    @model_validator(mode="after")
    def _known_ckpt(self) -> FinetuneParams:
        numbers = [c.ckpt for c in self.checkpoints]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"checkpoints: ckpt numbers repeat ({numbers}); expected unique")
        if self.ckpt not in numbers:
            raise ValueError(f"ckpt {self.ckpt}: expected one of the checkpoints {numbers}")
        return self


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
        2_000_000, ge=1, description="original image size (the earlier re-implementation's 2 MB)"
    )


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


class LossVariant(StrictModel):
    """One arm of the loss ablation: a name for tables and the overrides that make it."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", description="short name: lower case, digits, _")
    overrides: dict[str, Any] = Field({}, description="dotted parameters, e.g. loss.kind: asl")
    against: str = Field("paper", description="the arm its differences are measured against")


DEFAULT_LOSS_VARIANTS = (
    LossVariant(name="paper"),
    LossVariant(name="sigmoid", overrides={"loss.kind": "sigmoid"}),
    LossVariant(name="weighted", overrides={"loss.kind": "weighted"}),
    LossVariant(name="asl", overrides={"loss.kind": "asl"}),
    LossVariant(name="paper_2_workers", overrides={"pretrain.workers": 2}),
    LossVariant(
        name="per_worker_counters",
        overrides={"loss.counters": "replica", "pretrain.workers": 2},
        against="paper_2_workers",  # the same two workers, counters over the global batch
    ),
)


class ExperimentsParams(StrictModel):
    """Experiments beyond the paper (notebook 08, `make experiments`, mlimages.study.experiments):
    the loss ablation, the data-efficiency curve and the novel classes, each a sweep of the
    study's own notebooks (mlimages.study.sweep)."""

    losses: list[LossVariant] = Field(list(DEFAULT_LOSS_VARIANTS), min_length=2)
    loss_seeds: list[int] = Field([0, 1, 2], min_length=1, description="pretraining seeds")
    loss_overrides: dict[str, Any] = Field(
        {}, description="dotted parameters every ablation run gets (e.g. a shorter pretraining)"
    )
    transfer_ckpt: int = Field(2, ge=1, description="the fine-tuning that measures transfer")
    k_values: list[int] = Field(
        [1, 2, 4, 8, 16], min_length=1, description="training images a class (BiT's K)"
    )
    k_ckpts: list[int] = Field([1, 2, 5], min_length=1)
    novel_ckpts: list[int] = Field([1, 2, 5], min_length=1)
    seeds: list[int] = Field(
        [0, 1, 2], min_length=1, description="fine-tuning seeds of the K and novel experiments"
    )

    @field_validator("losses")
    @classmethod
    def _unique_names(cls, value: list[LossVariant]) -> list[LossVariant]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError(f"loss variant names {names}; expected each once")
        unknown = [f"{v.name} against {v.against}" for v in value if v.against not in names]
        if unknown:
            raise ValueError(f"loss variants {unknown}: expected `against` to name an arm")
        return value


class Params(StrictModel):
    """One profile, resolved."""

    profile: str
    seed: int = 0
    runs_dir: str = "runs"
    run_name: str | None = Field(
        None, description="the run folder under runs_dir; None: the profile's name (sweeps set it)"
    )
    data: DataParams = DataParams()
    synth: SynthParams = SynthParams()
    explore: ExploreParams = ExploreParams()
    subset: SubsetParams = SubsetParams()
    download: DownloadParams = DownloadParams()
    pretrain: PretrainParams = PretrainParams()
    model: ModelParams = ModelParams()
    loss: LossParams = LossParams()
    schedule: ScheduleParams = ScheduleParams()
    records: RecordsParams = RecordsParams()
    pipeline: PipelineParams = PipelineParams()
    finetune: FinetuneParams = FinetuneParams()
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()
    plan: PlanParams = PlanParams()
    experiments: ExperimentsParams = ExperimentsParams()

    _root: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _no_ignored_keys(self) -> Params:
        """A key no stage would read is refused: silence would report a run that ignored it."""
        d, data, r = self.download, self.data, self.records
        problems = []
        if data.uses_miniature:
            for key in ("val_list", "num_classes"):
                if getattr(data, key) is not None:
                    problems.append(
                        f"data.{key} is set but data.train_list and data.dictionary are not, so "
                        "the miniature is used and it would be ignored; expected both or neither"
                    )
            if d.imagenet_root is not None:
                problems.append(
                    "download.imagenet_root is set, but the miniature's training list has no "
                    "ImageNet ids; expected it only with a real data.train_list"
                )
        if d.target_val_list is not None and d.target_train_list is None:
            problems.append("download.target_val_list is set without download.target_train_list")
        for listed, root in (
            ("target_train_list", "imagenet_train"),
            ("target_val_list", "imagenet_val"),
        ):
            if getattr(d, root) is not None and getattr(d, listed) is None:
                problems.append(f"download.{root} is set without download.{listed}, its list")
        if (r.target_dictionary is None) != (d.target_train_list is None):
            problems.append(
                "download.target_train_list and records.target_dictionary go together (a target "
                "task needs its classes; on the miniature both replace its own target task); "
                "expected both or neither"
            )
        for key, used in (
            ("pretrain.hold_out_novel: true", self.pretrain.hold_out_novel),
            ("finetune.task: novel", self.finetune.task == "novel"),
        ):
            if not used:
                continue
            if not data.uses_miniature:
                problems.append(
                    f"{key} asks for the novel classes, but data.train_list or data.dictionary "
                    "is set and only the miniature has novel classes; expected the miniature"
                )
            elif self.synth.novel_classes == 0:
                problems.append(
                    f"{key} asks for the novel classes, but synth.novel_classes is 0; expected "
                    "synth.novel_classes >= 1"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def root(self) -> Path:
        """Directory that relative paths in the profile are relative to (the project root)."""
        return self._root

    def resolve_path(self, path: str | os.PathLike) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self._root / p

    @property
    def run_dir(self) -> Path:
        base = os.environ.get(RUNS_DIR_ENV) or self.runs_dir
        return self.resolve_path(base) / (self.run_name or self.profile)

    @property
    def subset_seed(self) -> int:
        """The subset's seed: its own, else the profile's."""
        return self.seed if self.subset.seed is None else self.subset.seed

    @property
    def records_seed(self) -> int:
        """The record order's seed: its own, else the profile's."""
        return self.seed if self.records.seed is None else self.records.seed

    def stage_dir(self, stage: str) -> Path:
        path = self.run_dir / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def to_yaml(self) -> str:
        """Paths made absolute, so a saved params.yaml is itself a profile that loads anywhere."""
        dump = self.model_dump(mode="json")
        dump["runs_dir"] = str(self.resolve_path(self.runs_dir))
        # Only the loss keys its kind reads: a saved file that set the others would be refused.
        dump["loss"] = {key: dump["loss"][key] for key in self.loss.keys_read()}
        for key in ("dictionary", "train_list", "val_list"):
            value = dump["data"][key]
            if value is not None and "://" not in value:
                dump["data"][key] = str(self.resolve_path(value))
        return yaml.safe_dump(dump, sort_keys=False)

    def write(self, path: str | os.PathLike) -> Path:
        """Save the resolved parameters next to an artefact (write, then rename)."""
        return write_text_atomic(path, self.to_yaml())


def find_profile(name_or_path: str | os.PathLike) -> Path:
    """A YAML path as given, or `params/<name>.yaml` looked up from here upwards."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ParamsError(f"profile file not found: {path}")
        return path.resolve()
    candidates: list[Path] = []
    if os.environ.get(PARAMS_DIR_ENV):
        candidates.append(Path(os.environ[PARAMS_DIR_ENV]))
    here = Path.cwd().resolve()
    candidates += [d / "params" for d in (here, *here.parents)]
    candidates.append(Path(__file__).resolve().parents[2] / "params")
    for directory in candidates:
        path = directory / f"{text}.yaml"
        if path.is_file():
            return path.resolve()
    known = sorted({p.stem for d in candidates if d.is_dir() for p in d.glob("*.yaml")})
    raise ParamsError(
        f"unknown profile {text!r}; expected one of: {', '.join(known) or '(none found)'}"
    )


def parse_override(text: str) -> tuple[str, Any]:
    """`section.key=value`, read as YAML so that `3`, `0.5`, `true`, `null` keep their types."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ParamsError(f"override {text!r}; expected the form section.key=value")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ParamsError(f"override {text!r}: value is not valid YAML ({exc})") from None


def load_params(
    profile: str | os.PathLike,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Params:
    """Resolve a profile: model defaults, then the profile file, then dotted overrides."""
    path = find_profile(profile)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    raw.setdefault("profile", path.stem)
    root = path.parent.parent
    _validate(raw, str(path), root)
    if overrides:
        items = (
            [parse_override(o) for o in overrides]
            if isinstance(overrides, list)
            else list(overrides.items())
        )
        for key, value in items:
            _set_dotted(raw, key, value)
        return _validate(raw, f"{path} with overrides {dict(items)}", root)
    return _validate(raw, str(path), root)


def _validate(raw: dict[str, Any], where: str, root: Path) -> Params:
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_describe(exc, where)) from None
    params._root = root
    return params


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *sections, leaf = key.split(".")
    node = raw
    for i, section in enumerate(sections):
        child = node.setdefault(section, {})
        if not isinstance(child, dict):
            raise ParamsError(f"override {key!r}: {'.'.join(sections[: i + 1])} is not a section")
        node = child
    node[leaf] = value


def _describe(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid parameters"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if not key:  # a rule across sections: its message names the keys
            lines.append("  " + error["msg"].removeprefix("Value error, "))
        elif error["type"] == "value_error" and isinstance(error.get("input"), dict):
            # A rule across a section's keys (a model validator): its message names them.
            lines.append(f"  key {key!r}: " + error["msg"].removeprefix("Value error, "))
        elif error["type"] == "extra_forbidden":
            expected = _known_keys(error["loc"][:-1])
            lines.append(f"  key {key!r}: unknown key; expected one of: {', '.join(expected)}")
        else:
            got = error.get("input")
            expected = error["msg"].lower().removeprefix("input should be ")
            lines.append(f"  key {key!r}: got {got!r} ({type(got).__name__}); expected {expected}")
    return "\n".join(lines)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Params
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
