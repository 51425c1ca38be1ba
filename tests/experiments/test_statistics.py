"""Experiment statistics (issue 14): each test against values computed independently (scipy, statsmodels, hand
arithmetic from the papers' formulas) and, where it claims an error rate, by simulation on data whose truth is
known: type-I error at alpha on null data, with a look after every outcome for the always-valid p-values."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from experiments.statistics import (
    StatResult,
    always_valid_p,
    diebold_mariano,
    holm,
    mann_whitney,
    mcnemar,
    sharpe_difference,
    srm,
    two_proportions,
    welch_t,
)

ALPHA = 0.05


def binomial_upper(runs: int, rate: float, q: float = 0.999) -> float:
    """Upper edge of the band a rejection rate stays in with probability q when its true value is `rate`."""
    return float(stats.binom.ppf(q, runs, rate)) / runs


def binomial_lower(runs: int, rate: float, q: float = 0.001) -> float:
    return float(stats.binom.ppf(q, runs, rate)) / runs


def test_importable_without_django_settings() -> None:
    code = "import sys; sys.modules['django'] = None; import experiments.statistics as s; print(s.holm([0.5])[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "0.5"


def test_result_is_frozen_and_serialises_nan_as_none() -> None:
    result = mcnemar(3, 12)
    with pytest.raises(AttributeError):
        result.p_value = 0.5  # type: ignore[misc]
    as_dict = result.as_dict()
    assert as_dict["ci_low"] is None
    assert as_dict["p_value"] == pytest.approx(0.03515625)


# --- Welch ------------------------------------------------------------------------------------------------


def test_welch_matches_scipy_unequal_variance_t_test() -> None:
    rng = np.random.default_rng(1)
    control, treatment = rng.normal(0.0, 1.0, 30), rng.normal(0.4, 2.5, 47)
    result = welch_t(control, treatment, alpha=0.10)
    expected = stats.ttest_ind(treatment, control, equal_var=False)
    ci = expected.confidence_interval(confidence_level=0.90)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-10)
    assert result.df == pytest.approx(expected.df, rel=1e-12)
    assert result.estimate == pytest.approx(treatment.mean() - control.mean(), rel=1e-12)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_welch_hand_computed() -> None:
    # control [1, 2, 3]: mean 2, s^2 1, v = 1/3; treatment [2, 4, 6, 8]: mean 5, s^2 20/3, v = 5/3
    # t = 3 / sqrt(2) = 2.1213; df = 4 / ((1/3)^2 / 2 + (5/3)^2 / 3) = 4 / (1/18 + 25/27) = 216 / 53 = 4.0755
    result = welch_t([1, 2, 3], [2, 4, 6, 8])
    assert result.statistic == pytest.approx(3 / math.sqrt(2))
    assert result.df == pytest.approx(216 / 53)
    assert result.estimate == 3.0


def test_welch_keeps_type_one_error_and_coverage_with_unequal_variances() -> None:
    rng = np.random.default_rng(11)
    runs = 3000
    rejections = covered = 0
    for _ in range(runs):
        result = welch_t(rng.normal(1.0, 1.0, 12), rng.normal(1.0, 3.0, 40))
        rejections += result.p_value < ALPHA
        covered += result.ci_low <= 0.0 <= result.ci_high
    assert binomial_lower(runs, ALPHA) <= rejections / runs <= binomial_upper(runs, ALPHA)
    assert covered == runs - rejections  # the interval inverts the test


def test_welch_rejects_bad_input_and_is_nan_without_variance() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        welch_t([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        welch_t([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        welch_t([1.0, 2.0], [1.0, 2.0], alpha=1.5)
    flat = welch_t([1.0, 1.0], [2.0, 2.0])
    assert math.isnan(flat.statistic)
    assert math.isnan(flat.p_value)
    assert flat.estimate == 1.0


# --- Mann-Whitney -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
def test_mann_whitney_matches_scipy_asymptotic_with_continuity(ties: bool) -> None:
    rng = np.random.default_rng(2)
    control, treatment = rng.normal(0.0, 1.0, 40), rng.normal(0.5, 1.0, 33)
    if ties:
        control, treatment = np.round(control), np.round(treatment)
    result = mann_whitney(control, treatment)
    expected = stats.mannwhitneyu(treatment, control, method="asymptotic", use_continuity=True)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-10)
    # the control's U and the treatment's U add to n_c n_t; the estimate is P(T > C) + P(T = C) / 2
    assert result.estimate == pytest.approx(expected.statistic / (40 * 33))
    diffs = treatment[:, None] - control[None, :]
    assert result.estimate == pytest.approx(np.mean(diffs > 0) + 0.5 * np.mean(diffs == 0))


def test_mann_whitney_hand_computed_with_ties() -> None:
    # pooled [1, 2, 2, 3 | 2, 3, 4]: ranks 1, 3, 3, 5.5 | 3, 5.5, 7; R_t = 15.5, U_t = 15.5 - 6 = 9.5, mu = 6
    # ties: a group of 3 (24) and of 2 (6): sigma^2 = 12/12 (8 - 30/42) = 7.2857; z = (3.5 - 0.5) / 2.6992
    result = mann_whitney([1, 2, 2, 3], [2, 3, 4])
    assert result.statistic == 9.5
    assert result.p_value == pytest.approx(2 * stats.norm.sf(3.0 / math.sqrt(8 - 30 / 42)))


def test_mann_whitney_keeps_type_one_error_on_tied_data() -> None:
    rng = np.random.default_rng(12)
    runs = 3000
    rejections = sum(mann_whitney(rng.poisson(3.0, 30), rng.poisson(3.0, 45)).p_value < ALPHA for _ in range(runs))
    # the continuity correction makes it slightly conservative
    assert binomial_lower(runs, 0.035) <= rejections / runs <= binomial_upper(runs, ALPHA)


def test_mann_whitney_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="control"):
        mann_whitney([], [1.0])
    assert math.isnan(mann_whitney([1.0, 1.0], [1.0]).p_value)  # everything tied: no dispersion to rank


# --- two proportions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("x_c", "n_c", "x_t", "n_t"), [(45, 180, 60, 200), (10, 10, 3, 12), (500, 1000, 530, 1000)])
def test_two_proportions_matches_statsmodels(x_c: int, n_c: int, x_t: int, n_t: int) -> None:
    result = two_proportions(x_c, n_c, x_t, n_t, alpha=0.05)
    z, p = proportions_ztest([x_t, x_c], [n_t, n_c])
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", compare="diff", alpha=0.05)
    assert result.statistic == pytest.approx(z, rel=1e-10)
    assert result.p_value == pytest.approx(p, rel=1e-10)
    assert result.estimate == pytest.approx(x_t / n_t - x_c / n_c)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-10)


def test_two_proportions_hand_computed() -> None:
    # 40/100 vs 60/100: pooled 0.5, se = sqrt(0.25 x 0.02) = 0.070711, z = 0.2 / 0.070711 = 2.8284
    # Wald se = sqrt(0.24/100 + 0.24/100) = 0.0692820, 95 % half-width 1.959964 x 0.0692820 = 0.1357903
    result = two_proportions(40, 100, 60, 100)
    assert result.statistic == pytest.approx(2 * math.sqrt(2))
    assert (result.ci_low, result.ci_high) == pytest.approx((0.2 - 0.1357903, 0.2 + 0.1357903), abs=1e-6)


def test_two_proportions_keeps_type_one_error() -> None:
    rng = np.random.default_rng(13)
    runs = 4000
    x_c, x_t = rng.binomial(300, 0.3, runs), rng.binomial(250, 0.3, runs)
    rejections = sum(two_proportions(int(a), 300, int(b), 250).p_value < ALPHA for a, b in zip(x_c, x_t, strict=True))
    assert binomial_lower(runs, ALPHA) <= rejections / runs <= binomial_upper(runs, ALPHA)


def test_two_proportions_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="exceed"):
        two_proportions(5, 4, 1, 10)
    with pytest.raises(ValueError, match="at least one trial"):
        two_proportions(0, 0, 1, 10)
    with pytest.raises(ValueError, match="integer"):
        two_proportions(1.5, 4, 1, 10)  # type: ignore[arg-type]
    assert math.isnan(two_proportions(0, 10, 0, 12).p_value)  # 0/0: nothing varies


# --- McNemar ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("b", "c"), [(0, 0), (3, 12), (12, 12), (10, 14), (11, 14), (10, 25), (130, 95)])
def test_mcnemar_matches_statsmodels_on_both_sides_of_25_discordant_pairs(b: int, c: int) -> None:
    result = mcnemar(b, c)
    exact = b + c < 25
    expected = sm_mcnemar([[50, b], [c, 50]], exact=exact, correction=True)
    assert result.method == ("exact binomial" if exact else "chi-square, continuity corrected")
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.estimate == c - b


def test_mcnemar_hand_computed() -> None:
    # 3 vs 12 (15 discordant): exact, 2 P(Bin(15, 1/2) <= 3) = 2 (1 + 15 + 105 + 455) / 2^15 = 0.03515625
    assert mcnemar(3, 12).p_value == pytest.approx(2 * 576 / 2**15, rel=1e-12)
    # 10 vs 25 (35 discordant): chi2 = (15 - 1)^2 / 35 = 5.6
    assert mcnemar(10, 25).statistic == pytest.approx(5.6)


@pytest.mark.parametrize(
    ("pairs", "at_least"),
    [(60, 0.01), (400, 0.03)],  # ~12 discordant pairs (exact branch, very conservative), then ~80 (chi-square)
)
def test_mcnemar_keeps_type_one_error_at_or_below_alpha(pairs: int, at_least: float) -> None:
    rng = np.random.default_rng(14)
    runs = 10000
    discordant = rng.binomial(pairs, 0.2, runs)
    b = rng.binomial(discordant, 0.5)
    rejections = sum(mcnemar(int(x), int(m - x)).p_value < ALPHA for x, m in zip(b, discordant, strict=True))
    assert at_least <= rejections / runs <= binomial_upper(runs, ALPHA)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="only_treatment_right"):
        mcnemar(1, -1)


# --- Diebold-Mariano --------------------------------------------------------------------------------------


def test_diebold_mariano_hand_computed_with_horizon_two() -> None:
    # d = [1, 2, 4, 3, 5]: dbar = 3, deviations [-2, -1, 1, 0, 2]; gamma_0 = 10/5 = 2, gamma_1 = (2 - 1 + 0 + 0)/5
    # = 0.2; V(dbar) = (2 + 2 x 0.2) / 5 = 0.48; DM = 3 / sqrt(0.48); HLN factor (5 + 1 - 4 + 2/5) / 5 = 0.48,
    # so DM* = 3 exactly, se = sqrt(0.48 / 0.48) = 1; p = 2 P(T_4 > 3) = 0.039941
    treatment = np.array([2.0, 1.0, 3.0, 0.5, 1.5])
    result = diebold_mariano(treatment + [1, 2, 4, 3, 5], treatment, horizon=2)
    assert result.statistic == pytest.approx(3.0)
    assert result.p_value == pytest.approx(0.039941, abs=1e-6)
    assert result.df == 4
    assert result.estimate == pytest.approx(3.0)
    assert (result.ci_low, result.ci_high) == pytest.approx((3 - 2.776445, 3 + 2.776445), abs=1e-6)


def test_diebold_mariano_falls_back_to_horizon_one_when_the_long_run_variance_is_not_positive() -> None:
    # d = [2, 0, 3, 1, 4]: gamma_0 = 2, gamma_1 = -1, so gamma_0 + 2 gamma_1 = 0; with h = 1: V = 2/5,
    # factor (5 + 1 - 2) / 5 = 0.8, DM* = 2 / sqrt(0.4 / 0.8) = 2.828427 (= the paired t)
    result = diebold_mariano([2, 0, 3, 1, 4], [0, 0, 0, 0, 0], horizon=2)
    assert result.statistic == pytest.approx(2 * math.sqrt(2))
    assert "h=1" in result.method


def test_diebold_mariano_with_horizon_one_is_the_paired_t_test() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.gamma(2.0, 1.0, 80), rng.gamma(2.2, 1.0, 80)
    result = diebold_mariano(a, b)
    expected = stats.ttest_rel(a, b)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-10)


def test_diebold_mariano_variance_matches_statsmodels_uniform_kernel_hac() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(4)
    e = rng.normal(size=303)
    d = e[3:] + 0.6 * e[2:-1] + 0.4 * e[1:-2] + 0.1
    h, n = 3, len(d)
    fit = sm.OLS(d, np.ones(n)).fit(
        cov_type="HAC", cov_kwds={"maxlags": h - 1, "kernel": "uniform", "use_correction": False}
    )
    factor = (n + 1 - 2 * h + h * (h - 1) / n) / n
    expected_stat = d.mean() / math.sqrt(float(fit.cov_params()[0, 0])) * math.sqrt(factor)
    result = diebold_mariano(d, np.zeros(n), horizon=h)
    assert result.statistic == pytest.approx(expected_stat, rel=1e-10)
    assert result.p_value == pytest.approx(2 * stats.t.sf(abs(expected_stat), n - 1), rel=1e-10)


def test_diebold_mariano_keeps_type_one_error_on_overlapping_forecast_errors() -> None:
    # equal accuracy, d an MA(2) as 3-step-ahead forecasts make it; h = 3
    rng = np.random.default_rng(15)
    runs, n = 2000, 200
    e = rng.normal(size=(runs, n + 2))
    d = e[:, 2:] + 0.5 * e[:, 1:-1] + 0.25 * e[:, :-2]
    rejections = sum(diebold_mariano(row, np.zeros(n), horizon=3).p_value < ALPHA for row in d)
    assert binomial_lower(runs, ALPHA) <= rejections / runs <= binomial_upper(runs, ALPHA)


def test_diebold_mariano_rejects_unpaired_or_short_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        diebold_mariano([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3 pairs"):
        diebold_mariano([1, 2], [1, 2], horizon=2)
    with pytest.raises(ValueError, match="horizon"):
        diebold_mariano([1, 2, 3], [1, 2, 3], horizon=0)


# --- Sharpe difference ------------------------------------------------------------------------------------


def test_sharpe_difference_hand_computed_uses_memmels_correction() -> None:
    # control [1, 3, 2, 4, 0]: mean 2, s^2 2.5; treatment [2, 3, 1, 5, 4]: mean 3, s^2 2.5; cov 3/4, rho 0.3
    # SR_c^2 = 4/2.5 = 1.6, SR_t^2 = 9/2.5 = 3.6, SR_c SR_t = 2.4; estimate = 1/sqrt(2.5) = 0.632456
    # Memmel: V = (2 - 0.6 + (1.6 + 3.6)/2 - 2.4 x 0.09) / 5 = 3.784 / 5 = 0.7568, z = 0.632456 / 0.869943
    # (Jobson-Korkie's uncorrected theta would give (4 - 2.4 x 1.09 / 2) / 5 = 0.5384)
    result = sharpe_difference([1, 3, 2, 4, 0], [2, 3, 1, 5, 4], alpha=0.05)
    assert result.estimate == pytest.approx(1 / math.sqrt(2.5))
    assert result.statistic == pytest.approx(1 / math.sqrt(2.5) / math.sqrt(0.7568))
    half = 1.959963984540054 * math.sqrt(0.7568)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.632456 - half, 0.632456 + half), abs=1e-6)


def test_sharpe_difference_matches_memmels_theta_in_moments() -> None:
    # the paper's form: z = (s_c mu_t - s_t mu_c) / sqrt(theta), theta in means, standard deviations, covariance
    rng = np.random.default_rng(5)
    common = rng.normal(size=250)
    c = 0.02 + 0.5 * (0.8 * common + 0.6 * rng.normal(size=250))
    t = 0.05 + 0.7 * (0.8 * common + 0.6 * rng.normal(size=250))
    mu_c, mu_t = c.mean(), t.mean()
    s_c, s_t = c.std(ddof=1), t.std(ddof=1)
    s_ct = float(np.corrcoef(c, t)[0, 1]) * s_c * s_t
    theta = (
        2 * s_c**2 * s_t**2
        - 2 * s_c * s_t * s_ct
        + 0.5 * mu_c**2 * s_t**2
        + 0.5 * mu_t**2 * s_c**2
        - mu_c * mu_t / (s_c * s_t) * s_ct**2
    ) / 250
    z = (s_c * mu_t - s_t * mu_c) / math.sqrt(theta)
    result = sharpe_difference(c, t)
    assert result.statistic == pytest.approx(z, rel=1e-10)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-10)


def test_sharpe_difference_keeps_type_one_error_and_coverage_on_correlated_returns() -> None:
    # equal per-bar Sharpe ratios of 0.1 with different volatilities, correlation 0.6
    rng = np.random.default_rng(16)
    runs, n = 2000, 500
    z1, z2 = rng.normal(size=(2, runs, n))
    c = 0.1 + z1
    t = 3.0 * (0.1 + 0.6 * z1 + 0.8 * z2)
    rejections = covered = 0
    for row_c, row_t in zip(c, t, strict=True):
        result = sharpe_difference(row_c, row_t)
        rejections += result.p_value < ALPHA
        covered += result.ci_low <= 0.0 <= result.ci_high
    assert binomial_lower(runs, ALPHA) <= rejections / runs <= binomial_upper(runs, ALPHA)
    assert covered == runs - rejections


def test_sharpe_difference_rejects_unpaired_input_and_is_nan_for_constant_returns() -> None:
    with pytest.raises(ValueError, match="same length"):
        sharpe_difference([0.1, 0.2, 0.3], [0.1, 0.2])
    assert math.isnan(sharpe_difference([0.1, 0.1, 0.1], [0.1, 0.2, 0.3]).statistic)


def test_constant_data_gives_nan_not_a_rounding_artefact() -> None:
    assert math.isnan(welch_t([0.1, 0.1, 0.1], [0.3, 0.3]).statistic)
    assert math.isnan(diebold_mariano([0.3, 0.3, 0.3], [0.1, 0.1, 0.1]).statistic)
    one_constant = welch_t([0.1, 0.1, 0.1], [0.2, 0.3, 0.4])
    assert one_constant.statistic == pytest.approx(0.2 / math.sqrt(0.01 / 3))


# --- always-valid p ---------------------------------------------------------------------------------------


def _always_valid_p_naive(x: np.ndarray, tau2: float, sigma2: float | None) -> list[float]:
    """Straight from the formula, recomputing everything at each n."""
    p, out = 1.0, []
    for n in range(1, len(x) + 1):
        s2 = sigma2 if sigma2 is not None else (float(np.var(x[:n], ddof=1)) if n >= 2 else 0.0)
        if s2 > 0:
            mean = float(np.mean(x[:n]))
            lam = math.sqrt(s2 / (s2 + n * tau2)) * math.exp(n * n * tau2 * mean**2 / (2 * s2 * (s2 + n * tau2)))
            p = min(p, 1 / lam)
        out.append(p)
    return out


def test_always_valid_p_hand_computed() -> None:
    # sigma2 = tau2 = 1, differences [1, 1]: Lambda_1 = sqrt(1/2) e^(1/4) = 0.90794 -> p_1 = min(1, 1.1014) = 1;
    # Lambda_2 = sqrt(1/3) e^(4/6) = 1.12455 -> p_2 = 0.88924
    p = always_valid_p([1.0, 1.0], tau2=1.0, sigma2=1.0)
    assert p[0] == 1.0
    assert p[1] == pytest.approx(math.sqrt(3) * math.exp(-2 / 3))


@pytest.mark.parametrize("sigma2", [None, 2.0])
def test_always_valid_p_matches_the_formula_recomputed_at_every_n(sigma2: float | None) -> None:
    rng = np.random.default_rng(6)
    x = 1e6 + rng.normal(0.3, 1.5, 300)  # a large offset: the running variance must not cancel
    x[:3] = x[0]  # the first differences equal: no variance yet, p stays 1
    got = always_valid_p(x - 1e6 + 0.2, tau2=0.5, sigma2=sigma2)
    expected = _always_valid_p_naive(x - 1e6 + 0.2, 0.5, sigma2)
    assert got == pytest.approx(expected, rel=1e-8)
    if sigma2 is None:
        assert list(got[:3]) == [1.0, 1.0, 1.0]
    assert (np.diff(got) <= 0).all()


def test_always_valid_p_holds_alpha_under_continuous_peeking_where_a_peeked_t_test_does_not() -> None:
    # A/A: 2,000 runs of 500 paired differences with mean 0, a look after every outcome. Rejection = the p-value
    # fell below alpha at any look. The always-valid p (sigma2 known) stays at or below alpha; the fixed-sample
    # t-test read at every look rejects several times as often.
    rng = np.random.default_rng(17)
    runs, n = 2000, 500
    x = rng.normal(0.0, 1.0, (runs, n))
    avp_rejections = sum(always_valid_p(row, tau2=0.1, sigma2=1.0)[-1] < ALPHA for row in x)
    looks = np.arange(2, n + 1)
    s, ss = np.cumsum(x, axis=1)[:, 1:], np.cumsum(x * x, axis=1)[:, 1:]
    var = (ss - s * s / looks) / (looks - 1)
    t = (s / looks) / np.sqrt(var / looks)
    naive_p = 2 * stats.t.sf(np.abs(t), looks - 1)
    naive_rejections = int(np.count_nonzero((naive_p < ALPHA).any(axis=1)))
    assert avp_rejections / runs <= binomial_upper(runs, ALPHA)
    assert naive_rejections / runs > 4 * ALPHA
    assert naive_rejections > 4 * avp_rejections


def test_always_valid_p_with_a_burn_in_variance_holds_alpha_under_continuous_peeking() -> None:
    # the recipe for unknown variance: estimate sigma2 on the first 100 differences, test the ones after
    rng = np.random.default_rng(18)
    runs = 2000
    x = rng.normal(0.0, 2.0, (runs, 600))
    rejections = sum(
        always_valid_p(row[100:], tau2=0.4, sigma2=float(np.var(row[:100], ddof=1)))[-1] < ALPHA for row in x
    )
    assert rejections / runs <= binomial_upper(runs, ALPHA)


def test_always_valid_p_plug_in_variance_from_two_outcomes_inflates_type_one_error() -> None:
    # issue 14's sigma2=None (sample variance from n = 2 on) is not valid at small n, as its docstring warns:
    # two nearly equal first differences make a tiny variance and a huge Lambda. This pins that warning.
    rng = np.random.default_rng(19)
    runs = 1000
    rejections = sum(always_valid_p(rng.normal(size=500), tau2=0.1)[-1] < ALPHA for _ in range(runs))
    assert rejections / runs > 2 * ALPHA


def test_always_valid_p_detects_a_real_effect() -> None:
    rng = np.random.default_rng(20)
    runs = 300
    detected = sum(always_valid_p(rng.normal(0.3, 1.0, 500), tau2=0.1, sigma2=1.0)[-1] < ALPHA for _ in range(runs))
    assert detected / runs > 0.9


def test_always_valid_p_is_fast_on_100000_outcomes() -> None:
    x = np.random.default_rng(7).normal(size=100_000)
    always_valid_p(x, tau2=0.01)
    started = time.perf_counter()
    p = always_valid_p(x, tau2=0.01)
    assert time.perf_counter() - started < 0.5  # O(n); about 5 ms on one core
    assert len(p) == 100_000


def test_always_valid_p_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="tau2"):
        always_valid_p([0.1, 0.2], tau2=0.0)
    with pytest.raises(ValueError, match="sigma2"):
        always_valid_p([0.1, 0.2], tau2=1.0, sigma2=-1.0)
    with pytest.raises(ValueError, match="finite"):
        always_valid_p([0.1, math.nan], tau2=1.0)
    with pytest.raises(ValueError, match="at least 1"):
        always_valid_p([], tau2=1.0)


# --- SRM --------------------------------------------------------------------------------------------------


def test_srm_matches_scipy_chisquare_and_hand_computed() -> None:
    # 520 vs 480 at 50/50: chi2 = (20^2 + 20^2) / 500 = 1.6; estimate 0.52 - 0.5
    result = srm([520, 480], [50, 50])
    assert result.statistic == pytest.approx(1.6)
    assert result.estimate == pytest.approx(0.02)
    counts, weights = [1040, 2950, 1010], [0.2, 0.6, 0.2]
    expected = stats.chisquare(counts, np.asarray(weights) * sum(counts))
    result = srm(counts, weights)
    assert (result.statistic, result.p_value, result.df) == pytest.approx((expected.statistic, expected.pvalue, 2))


def test_srm_false_alarm_rate_at_p_below_0_001_on_a_correct_router() -> None:
    rng = np.random.default_rng(21)
    runs = 20000
    counts = rng.multinomial(5000, [0.5, 0.3, 0.2], size=runs)
    p = np.array([srm(row, [50, 30, 20]).p_value for row in counts])
    assert np.count_nonzero(p < 0.001) / runs <= binomial_upper(runs, 0.001)
    assert binomial_lower(runs, 0.01) <= np.count_nonzero(p < 0.01) / runs <= binomial_upper(runs, 0.01)


def test_srm_trips_on_a_broken_router() -> None:
    # a router that sends 51.5 % instead of 50 % over 20,000 decisions
    rng = np.random.default_rng(22)
    flagged = sum(srm(rng.multinomial(20000, [0.515, 0.485]), [1, 1]).p_value < 0.001 for _ in range(200))
    assert flagged / 200 > 0.8


def test_srm_rejects_bad_allocation() -> None:
    with pytest.raises(ValueError, match="weights must be finite and > 0"):
        srm([10, 10], [1, 0])
    with pytest.raises(ValueError, match="one allocation per arm"):
        srm([10, 10], [1, 1, 1])
    with pytest.raises(ValueError, match="whole numbers"):
        srm([10, -1], [1, 1])
    with pytest.raises(ValueError, match="not all be zero"):
        srm([0, 0], [1, 1])


# --- Holm -------------------------------------------------------------------------------------------------


def test_holm_hand_computed_in_input_order() -> None:
    # sorted 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> running max 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_matches_statsmodels() -> None:
    p = np.random.default_rng(8).uniform(0, 0.2, 12)
    p[3] = p[7]  # a tie
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], rel=1e-12)


def test_holm_controls_the_family_wise_error_rate() -> None:
    rng = np.random.default_rng(23)
    runs = 5000
    p = rng.uniform(size=(runs, 5))
    raw_any = np.count_nonzero((p < ALPHA).any(axis=1)) / runs
    holm_any = sum((holm(row) < ALPHA).any() for row in p) / runs
    assert holm_any <= binomial_upper(runs, ALPHA)
    assert raw_any > 0.2  # uncorrected: 1 - 0.95^5 = 0.226


def test_holm_rejects_values_that_are_not_p_values() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.2])
    with pytest.raises(ValueError, match="at least 1"):
        holm([])


def test_every_test_returns_the_common_result() -> None:
    results = [
        welch_t([1, 2, 3], [2, 3, 5]),
        mann_whitney([1, 2, 3], [2, 3, 5]),
        two_proportions(3, 10, 5, 10),
        mcnemar(2, 5),
        diebold_mariano([1, 2, 3], [2, 2, 2]),
        sharpe_difference([1, 2, 3], [2, 3, 5]),
        srm([10, 12], [1, 1]),
    ]
    assert all(isinstance(r, StatResult) for r in results)
