"""The authors' learning-rate schedules as pure functions of the step, and as tables.

Pretraining (`train.py` with `example/train.sh`): while `step < warmup_steps`, the warm-up
`warmup_lr * warmup_factor ** (step // warmup_interval)` (TF1 `exponential_decay`, staircase);
then `lr * decay_factor ** k` with `k` the number of boundaries `decay_steps * (1..num_decays)`
strictly below the step (TF1 `piecewise_constant`: the old value holds *at* a boundary).
Fine-tuning (`finetune.py` with `example/finetune.sh`): `lr * decay_factor ** (step //
decay_steps)` (staircase: the new value starts *at* a multiple), i.e. x0.1 at 1/4, 2/4 and 3/4
of the 600k steps. Here the decays sit at fractions of the run (`decay_at`), so a shorter run
keeps the paper's shape, and an optional linear warm-up over the first `warmup_fraction` of the
steps (Goyal et al. 2017: the companion of the linear scaling rule; the paper has none) guards
the early steps of a freshly initialised head. Steps are the optimiser's iteration count
before the update, as TF1's `global_step` and Keras' `optimizer.iterations`.

Both are piecewise constant in the step, so each is also given as a `Schedule` (boundaries and
values with Keras' `PiecewiseConstantDecay` semantics, which a test checks) that the training
loop evaluates once a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlimages.paper.facts import (
    FINETUNE_DECAY_AT,
    FINETUNE_DECAY_FACTOR,
    FINETUNE_LR,
    FINETUNE_STEPS,
    PAPER_DECAY_FACTOR,
    PAPER_DECAY_STEPS,
    PAPER_LR,
    PAPER_NUM_DECAYS,
    PAPER_WARMUP_FACTOR,
    PAPER_WARMUP_INTERVAL,
    PAPER_WARMUP_LR,
    PAPER_WARMUP_STEPS,
)


def lr_scale(global_batch: int, reference_batch: int | None) -> float:
    """The linear scaling rule: learning rates grow with the global batch (1 when no reference)."""
    if reference_batch is None:
        return 1.0
    if global_batch < 1 or reference_batch < 1:
        raise ValueError(f"batch sizes must be positive; got {global_batch}, {reference_batch}")
    return global_batch / reference_batch


def geometric_warmup(
    step: int,
    start: float = PAPER_WARMUP_LR,
    interval: int = PAPER_WARMUP_INTERVAL,
    factor: float = PAPER_WARMUP_FACTOR,
) -> float:
    """The geometric warm-up: x`factor` every `interval` steps from `start`."""
    return start * factor ** (step // interval)


def step_decay_lr(
    step: int,
    lr: float = PAPER_LR,
    decay_steps: int = PAPER_DECAY_STEPS,
    decay_factor: float = PAPER_DECAY_FACTOR,
    num_decays: int = PAPER_NUM_DECAYS,
) -> float:
    """`train.py`'s piecewise-constant decay: the boundary step itself keeps the old rate."""
    k = sum(step > decay_steps * i for i in range(1, num_decays + 1))
    return lr * decay_factor**k


def pretrain_lr(
    step: int,
    lr: float = PAPER_LR,
    decay_steps: int = PAPER_DECAY_STEPS,
    decay_factor: float = PAPER_DECAY_FACTOR,
    num_decays: int = PAPER_NUM_DECAYS,
    warmup_lr: float = PAPER_WARMUP_LR,
    warmup_steps: int = PAPER_WARMUP_STEPS,
    warmup_interval: int = PAPER_WARMUP_INTERVAL,
    warmup_factor: float = PAPER_WARMUP_FACTOR,
    scale: float = 1.0,
) -> float:
    """The pretraining rate at `step` (times `scale`, see `lr_scale`)."""
    if step < warmup_steps:
        return scale * geometric_warmup(step, warmup_lr, warmup_interval, warmup_factor)
    return scale * step_decay_lr(step, lr, decay_steps, decay_factor, num_decays)


def finetune_lr(
    step: int,
    steps: int = FINETUNE_STEPS,
    lr: float = FINETUNE_LR,
    decay_at: tuple[float, ...] = FINETUNE_DECAY_AT,
    decay_factor: float = FINETUNE_DECAY_FACTOR,
    warmup_fraction: float = 0.0,
    scale: float = 1.0,
) -> float:
    """The fine-tuning rate at `step` of a `steps`-step run: a linear warm-up to `lr`, then
    x`decay_factor` from each step `round(fraction * steps)` of `decay_at` on."""
    warmup = round(warmup_fraction * steps)
    if step < warmup:
        return scale * lr * (step + 1) / warmup
    k = sum(step >= round(f * steps) for f in decay_at)
    return scale * lr * decay_factor**k


@dataclass(frozen=True)
class Schedule:
    """A piecewise-constant rate: `values[i]` for `boundaries[i-1] < step <= boundaries[i]`."""

    boundaries: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError("a schedule needs one more value than boundaries")
        if list(self.boundaries) != sorted(set(self.boundaries)):
            raise ValueError(f"schedule boundaries must increase: {self.boundaries}")

    def __call__(self, step: int) -> float:
        return self.values[sum(step > b for b in self.boundaries)]


def pretrain_schedule(
    lr: float = PAPER_LR,
    decay_steps: int = PAPER_DECAY_STEPS,
    decay_factor: float = PAPER_DECAY_FACTOR,
    num_decays: int = PAPER_NUM_DECAYS,
    warmup_lr: float = PAPER_WARMUP_LR,
    warmup_steps: int = PAPER_WARMUP_STEPS,
    warmup_interval: int = PAPER_WARMUP_INTERVAL,
    warmup_factor: float = PAPER_WARMUP_FACTOR,
    scale: float = 1.0,
) -> Schedule:
    """`pretrain_lr` as a table: warm-up stairs end one step before each multiple of the
    interval; decay boundaries are the authors' own (after the warm-up)."""
    if warmup_steps > decay_steps:
        raise ValueError(
            f"warm-up ({warmup_steps} steps) must end before the first decay ({decay_steps})"
        )
    if warmup_steps > 0 and warmup_interval < 1:
        raise ValueError(f"warm-up interval must be positive; got {warmup_interval}")
    boundaries: list[int] = []
    values: list[float] = []
    stairs = math.ceil(warmup_steps / warmup_interval) if warmup_steps > 0 else 0
    for k in range(stairs):
        values.append(scale * warmup_lr * warmup_factor**k)
        boundaries.append(min((k + 1) * warmup_interval, warmup_steps) - 1)
    for k in range(num_decays + 1):
        values.append(scale * lr * decay_factor**k)
        if k < num_decays:
            boundaries.append(decay_steps * (k + 1))
    return Schedule(tuple(boundaries), tuple(values))


def finetune_schedule(
    steps: int,
    lr: float = FINETUNE_LR,
    decay_at: tuple[float, ...] = FINETUNE_DECAY_AT,
    decay_factor: float = FINETUNE_DECAY_FACTOR,
    warmup_fraction: float = 0.0,
    scale: float = 1.0,
) -> Schedule:
    """`finetune_lr` as a table covering steps 0..`steps`."""
    if steps < 1:
        raise ValueError(f"steps must be positive; got {steps}")
    if list(decay_at) != sorted(decay_at) or any(not 0 < f < 1 for f in decay_at):
        raise ValueError(f"decay_at = {list(decay_at)}; expected increasing fractions in (0, 1)")
    warmup = round(warmup_fraction * steps)
    cuts = sorted({*range(1, warmup + 1), *(round(f * steps) for f in decay_at)} - {0})
    boundaries = tuple(c - 1 for c in cuts if c < steps)
    starts = (0, *(b + 1 for b in boundaries))
    values = tuple(
        finetune_lr(s, steps, lr, decay_at, decay_factor, warmup_fraction, scale) for s in starts
    )
    return Schedule(boundaries, values)
