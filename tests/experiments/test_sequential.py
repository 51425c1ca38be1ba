"""The sequential test that decides experiments (`experiments.sequential`): the incremental moments agree with
numpy, a revised value replaces its old contribution exactly, and the A/A type-I error with a look after every
outcome stays at or below alpha (paired, as in shadow mode, and two-sample, as in split mode), within the
binomial band of its run count."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from experiments.sequential import (
    BURN,
    TEST,
    Moments,
    Stream,
    always_valid_interval,
    inverse_lambda,
    on_grid,
    paired_look,
    two_sample_look,
)
from experiments.statistics import always_valid_p

ALPHA = 0.05
RUNS = 200


def binomial_upper(runs: int, rate: float, q: float = 0.999) -> float:
    return float(stats.binom.ppf(q, runs, rate)) / runs


def test_moments_agree_with_numpy_and_removal_undoes_an_addition() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(1e4, 1e-3, 500)  # a large offset: the shift keeps the variance accurate
    m = Moments()
    for v in values:
        m.add(float(v))
    assert m.mean == pytest.approx(values.mean(), rel=1e-12)
    assert m.variance == pytest.approx(values.var(ddof=1), rel=1e-6)
    m.add(12345.0)
    m.remove(12345.0)
    assert m.n == 500
    assert m.variance == pytest.approx(values.var(ddof=1), rel=1e-6)
    assert Moments.of(m.as_dict()) == m


def test_burn_in_fixes_sigma2_and_only_later_values_enter_the_test() -> None:
    s = Stream(burn_in=10)
    phases = [s.add(float(x)) for x in range(15)]
    assert phases == [BURN] * 10 + [TEST] * 5
    assert s.sigma2 == pytest.approx(np.var(np.arange(10.0), ddof=0))  # Newey-West, 0 lags: gamma_0
    assert s.test.n == 5
    assert s.all.n == 15
    assert Stream.of(s.as_dict(), burn_in=10, lags=0).as_dict() == s.as_dict()


def test_a_revised_value_replaces_its_contribution() -> None:
    s = Stream(burn_in=3)
    for x in (1.0, 2.0, 4.0):
        s.add(x)
    phase = s.add(10.0)
    s.remove(10.0, phase)
    s.add(6.0)
    fresh = Stream(burn_in=3)
    for x in (1.0, 2.0, 4.0, 6.0):
        fresh.add(x)
    assert s.all.mean == pytest.approx(fresh.all.mean)
    assert s.test.mean == pytest.approx(fresh.test.mean)
    assert s.sigma2 == fresh.sigma2


def test_paired_look_is_the_always_valid_p_of_the_statistics_module_with_the_burn_in_variance() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0.3, 1.0, 400)
    s, p = Stream(burn_in=100), 1.0
    for v in x:
        s.add(float(v))
        look = paired_look(s, 0.04)
        if look is not None:
            p = min(p, look.inverse_lambda)
    sigma2 = float(np.var(x[:100], ddof=0))
    expected = always_valid_p(x[100:], 0.04 * sigma2, sigma2=sigma2)[-1]
    assert p == pytest.approx(expected, rel=1e-9)


def test_the_confidence_sequence_excludes_zero_exactly_when_p_is_below_alpha() -> None:
    for theta in (0.0, 0.05, 0.1, 0.2, 0.4):
        inv = inverse_lambda(theta, 0.01, 0.04)
        low, high = always_valid_interval(theta, 0.01, 0.04, ALPHA)
        assert (inv < ALPHA) == (not low <= 0.0 <= high)


def _aa_paired(rng: np.random.Generator, n: int) -> bool:
    s, p = Stream(burn_in=100), 1.0
    for v in rng.normal(0.0, 1.0, n):
        s.add(float(v))
        look = paired_look(s, 0.04)
        if look is not None:
            p = min(p, look.inverse_lambda)
    return p < ALPHA


def _aa_split(rng: np.random.Generator, n: int) -> bool:
    control, treatment, p = Stream(burn_in=100), Stream(burn_in=100), 1.0
    to_treatment = rng.random(n) < 0.3
    for goes, v in zip(to_treatment, rng.normal(0.001, 0.01, n), strict=True):
        (treatment if goes else control).add(float(v))
        look = two_sample_look(control, treatment, 0.04)
        if look is not None:
            p = min(p, look.inverse_lambda)
    return p < ALPHA


@pytest.mark.parametrize(("case", "outcomes"), [(_aa_paired, 1000), (_aa_split, 2000)], ids=["paired", "split"])
def test_aa_with_a_look_after_every_outcome_holds_alpha(case, outcomes) -> None:  # type: ignore[no-untyped-def]
    """200 A/A runs, p read after every outcome: the rejection rate stays within the binomial band of alpha
    (at most alpha up to the 99.9 % sampling noise of 200 runs)."""
    rng = np.random.default_rng(20261207)
    rejections = sum(case(rng, outcomes) for _ in range(RUNS))
    assert rejections / RUNS <= binomial_upper(RUNS, ALPHA), f"{rejections}/{RUNS} false positives"


def test_the_plug_in_variance_would_not_hold_alpha() -> None:
    """The reason for the burn-in: the issue's running-variance plug-in rejects far more often (the test above
    would catch a regression to it)."""
    rng = np.random.default_rng(5)
    rejections = sum(bool(always_valid_p(rng.normal(0, 1, 1000), 0.04)[-1] < ALPHA) for _ in range(RUNS))
    assert rejections / RUNS > binomial_upper(RUNS, ALPHA)


def _aa_overlapping(rng: np.random.Generator, n: int, h: int, *, thinned: bool) -> bool:
    """Paired differences of h-bar outcomes predicted every bar: overlapping h-sums of independent noise."""
    d = np.convolve(rng.normal(0.0, 1.0, n + h), np.ones(h), "valid")[:n]
    s, p = Stream(burn_in=100), 1.0
    for i, v in enumerate(d):
        s.add(float(v), sequential=(i % h == 0) or not thinned)
        look = paired_look(s, 0.04)
        if look is not None:
            p = min(p, look.inverse_lambda)
    return p < ALPHA


def test_overlapping_outcomes_hold_alpha_on_the_non_overlapping_grid_and_not_without_it() -> None:
    rng = np.random.default_rng(77)
    thinned = sum(_aa_overlapping(rng, 2000, 5, thinned=True) for _ in range(RUNS))
    assert thinned / RUNS <= binomial_upper(RUNS, ALPHA), f"{thinned}/{RUNS} false positives"
    every_bar = sum(_aa_overlapping(rng, 2000, 5, thinned=False) for _ in range(RUNS))
    assert every_bar / RUNS > binomial_upper(RUNS, ALPHA)  # why the grid exists


def test_the_grid_takes_one_decision_every_horizon() -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    picked = [i for i in range(120) if on_grid(start + timedelta(minutes=i), 60)]
    assert picked == [0, 60]
    assert all(on_grid(start + timedelta(minutes=i), 1) for i in range(5))
    assert all(on_grid(start + timedelta(minutes=i), None) for i in range(5))
