"""Intervals and hit/calibration statistics: against independently computed values (statsmodels, closed forms,
hand arithmetic) and, where they claim an error rate, by coverage simulations on data whose truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from models_registry.evaluation.intervals import (
    calibration_buckets,
    direction_hit_array,
    direction_hits,
    effective_sample_size,
    expected_calibration_error,
    long_run_variance,
    overlap_max_lag,
    sharpe_interval,
    wilson_interval,
)

# --- Wilson -----------------------------------------------------------------------------------------------


def test_wilson_reproduces_newcombes_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17, table I: 81 / 263 -> 0.2553 to 0.3662
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-5)
    assert high == pytest.approx(0.3662, abs=5e-5)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (1, 3), (55, 100), (523, 1000)])
def test_wilson_matches_statsmodels(k: int, n: int) -> None:
    expected = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson_interval(k, n) == pytest.approx(expected, abs=1e-9)


def test_wilson_is_uninformative_without_trials_and_rejects_bad_counts() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="n must"):
        wilson_interval(1, -1)


def test_wilson_covers_the_true_proportion_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(20240601)
    p, n, runs = 0.55, 200, 4000
    successes = rng.binomial(n, p, size=runs)
    covered = sum(lo <= p <= hi for lo, hi in (wilson_interval(int(k), n) for k in successes))
    assert 0.93 <= covered / runs <= 0.97


# --- effective sample size --------------------------------------------------------------------------------


def test_long_run_variance_matches_statsmodels_newey_west() -> None:
    rng = np.random.default_rng(5)
    x = np.convolve(rng.normal(size=2005), np.ones(6) / 6, mode="valid")
    fit = sm.OLS(x, np.ones(len(x))).fit(cov_type="HAC", cov_kwds={"maxlags": 7, "use_correction": False})
    var_of_mean = float(fit.cov_params()[0, 0])
    assert long_run_variance(x, 7) / len(x) == pytest.approx(var_of_mean, rel=1e-9)
    assert effective_sample_size(x, 7) == pytest.approx(float(np.var(x)) / var_of_mean, rel=1e-9)


def test_effective_sample_size_hand_computed() -> None:
    # x = [1, 0, 1, 0]: mean 1/2, gamma0 = 1/4, gamma1 = (3 x -1/4) / 4 = -3/16: negative dependence is not
    # credited (capped at n). x = [1, 1, 0, 0]: gamma1 = (1/4 - 1/4 + 1/4) / 4 = 1/16, L = 1: weight 1/2,
    # LRV = 1/4 + 2 x 1/2 x 1/16 = 5/16, n_eff = 4 x (1/4) / (5/16) = 3.2
    assert effective_sample_size([1, 0, 1, 0], 1) == 4.0
    assert effective_sample_size([1, 1, 0, 0], 1) == pytest.approx(3.2)
    assert effective_sample_size([1, 1, 1], 2) == 3.0  # constant: nothing to inflate
    assert effective_sample_size([], 3) == 0.0
    assert effective_sample_size([0.3, 0.5], 0) == 2.0


def test_effective_sample_size_of_an_ar1_series_tends_to_the_closed_form() -> None:
    rng = np.random.default_rng(11)
    rho, n = 0.6, 200_000
    e = rng.normal(size=n)
    x = np.empty(n)
    x[0] = e[0]
    for t in range(1, n):
        x[t] = rho * x[t - 1] + e[t]
    # n (1 - rho) / (1 + rho) = n / 4; a long Bartlett window gets within a few percent
    assert effective_sample_size(x, 200) == pytest.approx(n * (1 - rho) / (1 + rho), rel=0.06)


def test_wilson_with_effective_n_covers_hit_rates_of_overlapping_windows() -> None:
    """Hits of h-bar forward windows taken every bar: the raw-n Wilson interval undercovers badly, the
    effective-n one is close to nominal. Truth: P(sum of h N(mu, 1) steps > 0) = Phi(mu sqrt(h))."""
    rng = np.random.default_rng(7)
    h, n, mu, runs = 5, 1000, 0.05, 400
    p_true = float(stats.norm.cdf(mu * math.sqrt(h)))
    honest = naive = 0
    for _ in range(runs):
        path = np.concatenate(([0.0], np.cumsum(rng.normal(mu, 1.0, size=n + h))))
        hits = (path[h : h + n] - path[:n] > 0).astype(float)
        n_eff = effective_sample_size(hits, overlap_max_lag(h))
        low, high = wilson_interval(hits.mean() * n_eff, n_eff)
        honest += low <= p_true <= high
        low, high = wilson_interval(hits.sum(), n)
        naive += low <= p_true <= high
    assert honest / runs >= 0.90
    assert naive / runs < 0.80


def test_overlap_max_lag() -> None:
    assert overlap_max_lag(1) == 0
    assert overlap_max_lag(5) == 10
    with pytest.raises(ValueError, match="horizon"):
        overlap_max_lag(0)


# --- direction --------------------------------------------------------------------------------------------


def test_direction_hits_excludes_rows_without_a_view_or_a_move() -> None:
    p_down = [0.2, 0.5, 0.3, 0.4, 0.1, 0.6, 0.3]
    p_up = [0.5, 0.2, 0.3, 0.4, 0.7, 0.1, 0.6]
    fwd = [0.01, 0.02, 0.03, -0.01, 0.0, -0.02, math.nan]
    # row 0: up vs up hit; 1: down vs up miss; 2, 3: no view; 4: no move; 5: down vs down hit; 6: NaN
    assert direction_hits(p_down, p_up, fwd) == (2, 3)
    np.testing.assert_array_equal(
        direction_hit_array(p_down, p_up, fwd), [1.0, 0.0, np.nan, np.nan, np.nan, 1.0, np.nan]
    )


def test_direction_hits_rejects_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="length"):
        direction_hits([0.1], [0.2, 0.3], [0.0])


# --- calibration ------------------------------------------------------------------------------------------


def test_binary_calibration_buckets_and_ece_hand_computed() -> None:
    prob = [0.05, 0.1, 0.15, 0.95, 0.9, 0.0]
    outcome = [0, 0, 1, 1, 0, 0]
    buckets = calibration_buckets(prob, outcome, bins=10)
    # (0, 0.1] holds 0.05, 0.1 and 0.0 (zero goes to the first bin); (0.1, 0.2] holds 0.15; (0.8, 0.9] 0.9
    assert [b.count for b in buckets] == [3, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    assert buckets[0].mean_predicted == pytest.approx(0.05)
    assert buckets[0].observed_frequency == 0.0
    assert math.isnan(buckets[2].mean_predicted)
    assert buckets[2].as_dict()["observed_frequency"] is None
    # ECE = 3/6 |0 - 0.05| + 1/6 |1 - 0.15| + 1/6 |0 - 0.9| + 1/6 |1 - 0.95|
    expected = 0.5 * 0.05 + (0.85 + 0.9 + 0.05) / 6
    assert expected_calibration_error(prob, outcome, bins=10) == pytest.approx(expected)


def test_multiclass_ece_is_the_top_label_ece() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.45, 0.35], [0.05, 0.05, 0.9]])
    labels = [-1, -1, 0, 1]
    # confidences 0.7 (right), 0.6 (wrong), 0.45 (right), 0.9 (right); one per bin with 10 bins
    expected = (abs(1 - 0.7) + abs(0 - 0.6) + abs(1 - 0.45) + abs(1 - 0.9)) / 4
    assert expected_calibration_error(proba, labels) == pytest.approx(expected)
    buckets = calibration_buckets(proba, labels, bins=2)
    assert [b.count for b in buckets] == [1, 3]
    assert buckets[1].observed_frequency == pytest.approx(2 / 3)


def test_ece_is_small_for_calibrated_and_large_for_overconfident_probabilities() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(size=50_000)
    y = (rng.uniform(size=p.size) < p).astype(float)
    assert expected_calibration_error(p, y) < 0.01
    overconfident = np.where(p > 0.5, 0.99, 0.01)
    assert expected_calibration_error(overconfident, y) > 0.2


def test_calibration_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        calibration_buckets([0.2], [2])
    with pytest.raises(ValueError, match="shape"):
        calibration_buckets(np.ones((2, 2)) / 2, [0, 1])
    with pytest.raises(ValueError, match="bins"):
        calibration_buckets([0.2], [1], bins=0)


# --- Sharpe -----------------------------------------------------------------------------------------------


def test_sharpe_interval_without_lags_is_mertens_iid_standard_error() -> None:
    # with lags = 0, Var(SR) T = 1 - skew SR + (kurtosis - 1) / 4 SR^2 (Mertens 2002; the PSR denominator)
    r = np.array([0.01, -0.02, 0.03, -0.01, 0.02, 0.015, -0.005, 0.0])
    sr = r.mean() / r.std()
    g3, g4 = stats.skew(r), stats.kurtosis(r, fisher=False)
    se = math.sqrt((1 - g3 * sr + (g4 - 1) / 4 * sr**2) / len(r))
    out = sharpe_interval(r, lags=0)
    assert out.sharpe == pytest.approx(sr)
    assert out.se == pytest.approx(se)
    assert (out.low, out.high) == pytest.approx((sr - 1.959963984540054 * se, sr + 1.959963984540054 * se))


def test_sharpe_interval_is_undefined_for_constant_or_short_series() -> None:
    assert math.isnan(sharpe_interval([0.01], lags=0).sharpe)
    assert math.isnan(sharpe_interval([0.01, 0.01, 0.01], lags=1).se)
    assert sharpe_interval([0.01, 0.01], lags=1).as_dict()["sharpe"] is None
    with pytest.raises(ValueError, match="lags"):
        sharpe_interval([0.1, 0.2], lags=-1)


def test_hac_sharpe_interval_covers_the_true_sharpe_of_autocorrelated_returns() -> None:
    """AR(1) returns (rho 0.5) with a known Sharpe 0.1: the HAC interval covers near 95 %, the IID one does not."""
    rng = np.random.default_rng(2024)
    rho, sr_true, n, runs = 0.5, 0.1, 2000, 300
    hac = iid = 0
    for _ in range(runs):
        e = rng.normal(size=n)
        x = np.empty(n)
        x[0] = e[0] / math.sqrt(1 - rho**2)
        for t in range(1, n):
            x[t] = rho * x[t - 1] + e[t]
        r = x * math.sqrt(1 - rho**2) + sr_true  # unit variance, mean sr_true
        out = sharpe_interval(r, lags=20)
        hac += out.low <= sr_true <= out.high
        out = sharpe_interval(r, lags=0)
        iid += out.low <= sr_true <= out.high
    assert 0.90 <= hac / runs <= 0.98
    assert iid / runs < 0.80


def test_sharpe_interval_covers_iid_normal_returns_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(99)
    sr_true, runs = 0.05, 2000
    r = rng.normal(sr_true, 1.0, size=(runs, 500))
    covered = sum(1 for row in r if (o := sharpe_interval(row, lags=0)).low <= sr_true <= o.high)
    assert 0.93 <= covered / runs <= 0.97
