"""A profile's training sections: the network, the loss, the schedules of pretraining and
fine-tuning, and the experiments beyond the paper. Their defaults are the paper's and its
authors' scripts' (`mlimages.paper.facts`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mlimages.config.sections import StrictModel
from mlimages.paper.facts import (
    ASL_CLIP,
    ASL_GAMMA_NEG,
    ASL_GAMMA_POS,
    BASE_SIZE,
    BN_MOMENTUM,
    DEPTHS,
    FINETUNE_BN_WEIGHT_DECAY,
    FINETUNE_DECAY_AT,
    FINETUNE_DECAY_FACTOR,
    FINETUNE_GLOBAL_BATCH,
    FINETUNE_LR,
    FINETUNE_STEPS,
    LARGE_SIZE,
    PAPER_DECAY_FACTOR,
    PAPER_DECAY_STEPS,
    PAPER_DEPTH,
    PAPER_GLOBAL_BATCH,
    PAPER_LR,
    PAPER_MASK_THRES,
    PAPER_MOMENTUM,
    PAPER_NEG_SELECT,
    PAPER_NUM_DECAYS,
    PAPER_POS_WEIGHT,
    PAPER_SELECT_SEED,
    PAPER_STEPS,
    PAPER_WARMUP_FACTOR,
    PAPER_WARMUP_INTERVAL,
    PAPER_WARMUP_LR,
    PAPER_WARMUP_STEPS,
    PAPER_WEIGHT_DECAY,
    PAPER_WIDTH,
)


class PretrainParams(StrictModel):
    """Pretraining (notebook 04): the loop itself; model, loss and schedule have their own sections.

    Defaults are the authors' run: global batch 4,096 over 128 GPUs, 440k steps at 224 px.
    """

    steps: int = Field(PAPER_STEPS, ge=1)
    global_batch: int = Field(
        PAPER_GLOBAL_BATCH, ge=1, description="images per step over all replicas"
    )
    image_size: int = Field(BASE_SIZE, ge=8)
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

    depth: Literal[tuple(DEPTHS)] = PAPER_DEPTH
    blocks: list[int] | None = Field(
        None, min_length=4, max_length=4, description="blocks per stage; overrides depth"
    )
    width: int = Field(
        PAPER_WIDTH, ge=1, description="stem filters; stage outputs are 4/8/16/32 times it"
    )
    num_classes: int | None = Field(None, ge=1, description="None: the dataset's class count")
    mixed_precision: bool | None = Field(None, description="None: on where a GPU is visible")
    bn_momentum: float = Field(
        BN_MOMENTUM, gt=0, lt=1, description="moving-average momentum of batch norm (the authors')"
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
    pos_weight: float = Field(
        PAPER_POS_WEIGHT, gt=0, description="weight of a positive target's term"
    )
    mask_thres: float = Field(
        PAPER_MASK_THRES, gt=0, le=1, description="a target >= this is a positive"
    )
    neg_select: float = Field(
        PAPER_NEG_SELECT, ge=0, le=1, description="share of negative-only classes drawn"
    )
    select_seed: int = Field(
        PAPER_SELECT_SEED, description="seed of the negative draw (flags.py random_seed)"
    )
    counters: Literal["global", "replica"] = Field(
        "global",
        description="adaptive streaks counted over the global batch, or each replica over its "
        "own local batch (as the authors' single-GPU code run on every GPU)",
    )
    asl_gamma_neg: float = Field(
        ASL_GAMMA_NEG, ge=0, description="asl: focusing exponent of negatives"
    )
    asl_gamma_pos: float = Field(
        ASL_GAMMA_POS, ge=0, description="asl: focusing exponent of positives"
    )
    asl_clip: float = Field(
        ASL_CLIP, ge=0, lt=1, description="asl: probability shifted off every negative (margin)"
    )
    weight_decay: float = Field(
        PAPER_WEIGHT_DECAY, ge=0, description="L2 on all weights but batch norm"
    )

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

    momentum: float = Field(PAPER_MOMENTUM, ge=0, lt=1)
    lr: float = Field(PAPER_LR, gt=0, description="rate after the warm-up, at reference_batch")
    decay_steps: int = Field(PAPER_DECAY_STEPS, ge=1)
    decay_factor: float = Field(PAPER_DECAY_FACTOR, gt=0, le=1)
    num_decays: int = Field(PAPER_NUM_DECAYS, ge=0)
    warmup_lr: float = Field(PAPER_WARMUP_LR, gt=0)
    warmup_steps: int = Field(PAPER_WARMUP_STEPS, ge=0)
    warmup_interval: int = Field(PAPER_WARMUP_INTERVAL, ge=1)
    warmup_factor: float = Field(PAPER_WARMUP_FACTOR, ge=1)
    reference_batch: int | None = Field(
        PAPER_GLOBAL_BATCH,
        ge=1,
        description="global batch the rates are for; None: no linear scaling",
    )


class CheckpointSetting(StrictModel):
    """One row of the paper's fine-tuning table: how checkpoint `ckpt` is made."""

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
    base_size: int = Field(BASE_SIZE, ge=8, description="training and evaluation size (the 224)")
    large_size: int = Field(LARGE_SIZE, ge=8, description="the late / large size (the 299)")
    large_fraction: float = Field(
        0.25, gt=0, lt=1, description="base_then_large: share of the steps at the large size"
    )
    steps: int = Field(FINETUNE_STEPS, ge=1)
    global_batch: int = Field(
        FINETUNE_GLOBAL_BATCH, ge=1, description="images per step over all replicas"
    )
    lr: float = Field(FINETUNE_LR, gt=0, description="rate after the warm-up, at reference_batch")
    decay_at: list[float] = Field(
        list(FINETUNE_DECAY_AT),
        description="x decay_factor from these fractions of the steps on (the authors': every "
        "150k of 600k)",
    )
    decay_factor: float = Field(FINETUNE_DECAY_FACTOR, gt=0, le=1)
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
        FINETUNE_GLOBAL_BATCH,
        ge=1,
        description="global batch the rate is for; None: no linear scaling",
    )
    momentum: float = Field(PAPER_MOMENTUM, ge=0, lt=1)
    weight_decay: float = Field(
        PAPER_WEIGHT_DECAY, ge=0, description="L2 on all trained weights but BN"
    )
    bn_weight_decay: float = Field(
        FINETUNE_BN_WEIGHT_DECAY, ge=0, description="L2 on BN gamma and beta"
    )
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
