"""The authors' schedules: closed forms at their boundaries, tables and Keras agree."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mlimages.config.params import load_params
from mlimages.paper import facts
from mlimages.paper import recipe as R
from mlimages.train import from_profile


@pytest.mark.parametrize(
    ("step", "lr"),
    [
        (0, 0.01),
        (4_399, 0.01),
        (4_400, 0.01 * 1.297),
        (35_199, 0.01 * 1.297**7),
        (35_200, 0.08),
        (110_000, 0.08),  # TF1 piecewise_constant keeps the old value at the boundary
        (110_001, 0.008),
        (220_001, 0.0008),
        (330_001, 0.00008),
        (440_001, 0.000008),
    ],
)
def test_pretraining_rate_at_the_authors_boundaries(step: int, lr: float) -> None:
    assert R.pretrain_lr(step) == pytest.approx(lr, rel=1e-12)


def test_the_warmup_factor_leads_from_001_to_008() -> None:
    assert R.geometric_warmup(35_200) == pytest.approx(0.08, rel=1e-3)


@pytest.mark.parametrize(
    ("step", "lr"), [(0, 0.1), (149_999, 0.1), (150_000, 0.01), (450_000, 1e-4)]
)
def test_finetuning_rate_decays_at_each_multiple(step: int, lr: float) -> None:
    assert R.finetune_lr(step) == pytest.approx(lr, rel=1e-12)


def _probe_steps(boundaries: tuple[int, ...], top: int) -> list[int]:
    rng = np.random.default_rng(0)
    near = [b + d for b in boundaries for d in (-1, 0, 1)]
    return sorted({0, *near, *rng.integers(0, top, 200).tolist()})


def test_tables_and_keras_schedules_equal_the_closed_forms() -> None:
    pre = R.pretrain_schedule(scale=0.5)
    fine = R.finetune_schedule(facts.FINETUNE_STEPS)
    for table, closed, top in [
        (pre, lambda s: R.pretrain_lr(s, scale=0.5), facts.PAPER_STEPS + 10),
        (fine, R.finetune_lr, facts.FINETUNE_STEPS),
    ]:
        keras_schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            list(table.boundaries), list(table.values)
        )
        for step in _probe_steps(table.boundaries, top):
            assert table(step) == closed(step), step
            assert float(keras_schedule(step)) == pytest.approx(closed(step), rel=1e-6), step


def test_linear_scaling_with_the_global_batch() -> None:
    assert R.lr_scale(4096, 4096) == 1.0
    assert R.lr_scale(256, 4096) == 1 / 16
    assert R.lr_scale(64, None) == 1.0
    with pytest.raises(ValueError):
        R.lr_scale(0, 256)


def test_profiles_schedules() -> None:
    paper = load_params("paper")
    assert from_profile.pretrain_schedule(paper.schedule, 4096) == R.pretrain_schedule()
    halved = from_profile.pretrain_schedule(paper.schedule, 2048)
    assert halved(35_200) == pytest.approx(0.04)
    for profile in ("smoke", "default"):
        params = load_params(profile)
        table = from_profile.pretrain_schedule(params.schedule, params.pretrain.global_batch)
        assert table(0) > 0 and table(params.pretrain.steps) > 0


def test_inconsistent_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="must end before the first decay"):
        R.pretrain_schedule(warmup_steps=200, decay_steps=100)
    with pytest.raises(ValueError, match="boundaries must increase"):
        R.Schedule((5, 3), (1.0, 0.5, 0.1))


def test_finetuning_schedule_scales_with_the_run_length() -> None:
    """Decays at fractions: halving the steps halves every boundary, the rates stay."""
    long = R.finetune_schedule(400, lr=0.1, decay_at=(0.5, 0.75))
    short = R.finetune_schedule(200, lr=0.1, decay_at=(0.5, 0.75))
    assert long.boundaries == (199, 299)
    assert short.boundaries == (99, 149)
    assert long.values == short.values == pytest.approx((0.1, 0.01, 0.001))


def test_finetuning_warmup_is_linear_then_the_staircase() -> None:
    table = R.finetune_schedule(100, lr=0.2, decay_at=(0.5,), warmup_fraction=0.1, scale=0.5)
    rates = [table(s) for s in range(100)]
    assert rates[:10] == pytest.approx([0.1 * (s + 1) / 10 for s in range(10)])
    assert rates[10:50] == pytest.approx([0.1] * 40)
    assert rates[50:] == pytest.approx([0.01] * 50)
    assert rates == [R.finetune_lr(s, 100, 0.2, (0.5,), 0.1, 0.1, 0.5) for s in range(100)]


def test_finetuning_schedule_refuses_fractions_out_of_order() -> None:
    with pytest.raises(ValueError, match="decay_at"):
        R.finetune_schedule(100, decay_at=(0.75, 0.5))
