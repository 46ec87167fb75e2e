"""Paired intervals over seeds and verdicts, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from mlimages.core import stats


def test_t_quantiles_from_a_table() -> None:
    # Two-sided 95% critical values of Student's t (any statistics table).
    assert stats.t_quantile(0.95, 1) == pytest.approx(12.706, abs=1e-3)
    assert stats.t_quantile(0.95, 2) == pytest.approx(4.303, abs=1e-3)
    assert stats.t_quantile(0.95, 4) == pytest.approx(2.776, abs=1e-3)
    with pytest.raises(ValueError, match="df 0"):
        stats.t_quantile(0.95, 0)


def test_paired_differences_match_by_seed() -> None:
    a = {2: 30.0, 0: 10.0, 1: 20.0, 7: 99.0}  # seed 7 has no partner
    b = {0: 9.0, 1: 18.0, 2: 27.0, 5: 1.0}  # nor seed 5
    assert stats.paired_differences(a, b) == {0: 1.0, 1: 2.0, 2: 3.0}


def test_interval_of_three_seeds_by_hand() -> None:
    # differences 1, 2, 3: mean 2, sd 1, half-width t(0.975, 2) * 1 / sqrt(3) = 2.4841
    got = stats.paired_interval({0: 10.0, 1: 20.0, 2: 30.0}, {0: 9.0, 1: 18.0, 2: 27.0})
    assert (got.n, got.mean, got.sd) == (3, 2.0, 1.0)
    assert got.low == pytest.approx(2 - 2.48414, abs=1e-4)
    assert got.high == pytest.approx(2 + 2.48414, abs=1e-4)
    assert stats.verdict(1.0, got.low, got.high) == stats.INCONCLUSIVE


def test_interval_of_four_seeds_clears_zero() -> None:
    # differences 2, 3, 4, 5: mean 3.5, sd sqrt(5/3) = 1.29099, half 3.18245 * 1.29099 / 2
    got = stats.mean_interval([2.0, 3.0, 4.0, 5.0])
    assert got.sd == pytest.approx(1.290994, abs=1e-6)
    assert (got.low, got.high) == pytest.approx((1.44574, 5.55426), abs=1e-4)
    assert stats.verdict(+1.0, got.low, got.high) == stats.REPRODUCED
    assert stats.verdict(-3.0, got.low, got.high) == stats.NOT_REPRODUCED  # paper said lower


def test_one_seed_or_none_is_inconclusive() -> None:
    one = stats.paired_interval({0: 50.0, 1: 60.0}, {0: 40.0})
    assert one.n == 1 and one.mean == 10.0
    assert math.isnan(one.sd) and math.isnan(one.low) and math.isnan(one.high)
    assert stats.verdict(1.0, one.low, one.high) == stats.INCONCLUSIVE
    none = stats.paired_interval({}, {0: 1.0})
    assert none.n == 0 and math.isnan(none.mean)
    assert stats.verdict(1.0, none.low, none.high) == stats.INCONCLUSIVE


def test_zero_variance_gives_a_point_interval() -> None:
    same = stats.mean_interval([1.5, 1.5, 1.5])
    assert (same.sd, same.low, same.high) == (0.0, 1.5, 1.5)
    assert stats.verdict(3.0, same.low, same.high) == stats.REPRODUCED
    assert stats.verdict(-3.0, same.low, same.high) == stats.NOT_REPRODUCED
    tie = stats.mean_interval([0.0, 0.0])
    assert stats.verdict(1.0, tie.low, tie.high) == stats.INCONCLUSIVE  # touches zero


def test_verdict_sign_handling() -> None:
    # A paper difference below zero: our interval below zero reproduces it.
    assert stats.verdict(-1.0, -4.0, -0.5) == stats.REPRODUCED
    assert stats.verdict(-1.0, 0.5, 4.0) == stats.NOT_REPRODUCED
    assert stats.verdict(-1.0, -0.5, 0.5) == stats.INCONCLUSIVE
    assert stats.verdict(2.0, 0.0, 3.0) == stats.INCONCLUSIVE  # zero is on the edge
    with pytest.raises(ValueError, match="needs a direction"):
        stats.verdict(0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="expected low <= high"):
        stats.verdict(1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        stats.mean_interval([1.0, float("nan")])
