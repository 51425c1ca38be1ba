"""Statistics for champion/challenger experiments (issue 14). Pure numpy/scipy, no Django: importable and checkable
on their own.

Every test is two-sided and returns a :class:`StatResult` with ``statistic``, ``p_value``, ``estimate``, ``ci_low``
and ``ci_high`` (NaN where not defined); ``estimate`` is treatment minus control unless the function says otherwise.

Unpaired (split experiments, each decision in one arm):
    ``welch_t``            Welch's t, Welch-Satterthwaite degrees of freedom, CI of the mean difference
    ``mann_whitney``       Mann-Whitney U, normal approximation with tie and continuity correction
    ``two_proportions``    z with the pooled proportion, unpooled Wald CI of the difference
    ``srm``                sample-ratio mismatch: chi-square goodness of fit of arm counts to the allocation
Paired (shadow experiments, both arms on the same decisions):
    ``mcnemar``            paired hit/miss; exact binomial below 25 discordant pairs, else chi-square with correction
    ``diebold_mariano``    equal predictive accuracy on loss differentials, Harvey-Leybourne-Newbold correction
    ``sharpe_difference``  Jobson-Korkie test of equal Sharpe ratios with Memmel's correction
    ``always_valid_p``     mixture SPRT always-valid p-values (Johari et al.) for the mean of paired differences
Across metrics:
    ``holm``               Holm step-down adjusted p-values, in the input order

Bad input (empty or non-finite data, mismatched lengths for paired tests, impossible counts, non-positive
variances or weights) raises ValueError. Degenerate but valid data (no dispersion at all) gives NaN statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

__all__ = [
    "StatResult",
    "always_valid_p",
    "diebold_mariano",
    "holm",
    "mann_whitney",
    "mcnemar",
    "sharpe_difference",
    "srm",
    "two_proportions",
    "welch_t",
    "welch_t_summary",
    "z_test_summary",
]

NAN = math.nan
MCNEMAR_EXACT_BELOW = 25  # discordant pairs; below this McNemar uses the exact binomial test


@dataclass(frozen=True)
class StatResult:
    """One test's outcome. ``df`` is the reference distribution's degrees of freedom (NaN for normal/exact tests);
    ``method`` names the variant used (e.g. McNemar's exact or chi-square branch)."""

    statistic: float
    p_value: float
    estimate: float
    ci_low: float
    ci_high: float
    df: float = NAN
    method: str = ""

    def as_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "statistic": clean(self.statistic),
            "p_value": clean(self.p_value),
            "estimate": clean(self.estimate),
            "ci_low": clean(self.ci_low),
            "ci_high": clean(self.ci_high),
            "df": clean(self.df),
            "method": self.method,
        }


# --- validation -------------------------------------------------------------------------------------------


def _sample(x: Any, name: str, *, min_n: int = 1) -> np.ndarray:
    values = np.asarray(x, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {values.shape}")
    if len(values) < min_n:
        raise ValueError(f"{name} needs at least {min_n} observation(s), got {len(values)}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return values


def _paired(a: Any, b: Any, name_a: str, name_b: str, *, min_n: int) -> tuple[np.ndarray, np.ndarray]:
    x = _sample(a, name_a)
    y = _sample(b, name_b)
    if len(x) != len(y):
        raise ValueError(f"{name_a} and {name_b} are paired and must have the same length: {len(x)} vs {len(y)}")
    if len(x) < min_n:
        raise ValueError(f"{name_a} and {name_b} need at least {min_n} pairs, got {len(x)}")
    return x, y


def _var(x: np.ndarray) -> float:
    """Sample variance (ddof = 1), exactly 0 for a constant series (np.var can leave rounding dust there)."""
    return 0.0 if float(np.ptp(x)) == 0.0 else float(np.var(x, ddof=1))


def _alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not (isinstance(alpha, int | float) and 0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(alpha)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


# --- unpaired ---------------------------------------------------------------------------------------------


def welch_t(control: Any, treatment: Any, alpha: float = 0.05) -> StatResult:
    """Welch's unequal-variance t-test of equal means; estimate = mean(treatment) - mean(control).

    With sample variances s_i^2 (ddof = 1) and v_i = s_i^2 / n_i::

        t  = (mean_t - mean_c) / sqrt(v_c + v_t)
        df = (v_c + v_t)^2 / (v_c^2 / (n_c - 1) + v_t^2 / (n_t - 1))          (Welch-Satterthwaite)
        p  = 2 P(T_df > |t|),   CI = estimate -/+ t_{df, 1 - alpha/2} sqrt(v_c + v_t)

    Sources: B. L. Welch (1947), "The generalization of 'Student's' problem when several different population
    variances are involved", Biometrika 34; F. E. Satterthwaite (1946), Biometrics Bulletin 2. Each arm needs two
    observations; two constant arms (no variance at all) give NaN statistic, p and interval.
    """
    c = _sample(control, "control", min_n=2)
    t = _sample(treatment, "treatment", min_n=2)
    return welch_t_summary(float(c.mean()), _var(c), len(c), float(t.mean()), _var(t), len(t), alpha=alpha)


def welch_t_summary(
    mean_control: float,
    var_control: float,
    n_control: int,
    mean_treatment: float,
    var_treatment: float,
    n_treatment: int,
    alpha: float = 0.05,
) -> StatResult:
    """`welch_t` from each arm's mean, sample variance (ddof = 1) and size: what sufficient statistics kept
    incrementally give (experiments' split results). Same formulas and result as `welch_t` on the samples."""
    a = _alpha(alpha)
    n_c = _count(n_control, "n_control")
    n_t = _count(n_treatment, "n_treatment")
    if n_c < 2 or n_t < 2:
        raise ValueError(f"each arm needs at least 2 observations, got {n_c} and {n_t}")
    for value, name in ((var_control, "var_control"), (var_treatment, "var_treatment")):
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"{name} must be a finite variance >= 0, got {value!r}")
    estimate = float(mean_treatment - mean_control)
    v_c = float(var_control) / n_c
    v_t = float(var_treatment) / n_t
    se2 = v_c + v_t
    if se2 <= 0.0:
        return StatResult(NAN, NAN, estimate, NAN, NAN, NAN, "welch")
    se = math.sqrt(se2)
    df = se2 * se2 / (v_c * v_c / (n_c - 1) + v_t * v_t / (n_t - 1))
    statistic = estimate / se
    p = float(min(1.0, 2.0 * special.stdtr(df, -abs(statistic))))
    half = float(special.stdtrit(df, 1.0 - a / 2.0)) * se
    return StatResult(statistic, p, estimate, estimate - half, estimate + half, df, "welch")


def z_test_summary(estimate: float, variance_of_estimate: float, alpha: float = 0.05) -> StatResult:
    """Two-sided z-test of a zero mean from an estimate and its variance (e.g. a mean of paired differences with a
    long-run variance over n): z = estimate / sqrt(V), p = 2 (1 - Phi(|z|)), CI = estimate -/+ z_{1-alpha/2} sqrt(V).
    The large-sample test of any asymptotically normal estimator (e.g. Casella & Berger, "Statistical
    Inference", 10.3.2). A non-positive variance gives NaN statistic, p and interval."""
    a = _alpha(alpha)
    if not math.isfinite(estimate):
        raise ValueError(f"estimate must be finite, got {estimate!r}")
    if not (math.isfinite(variance_of_estimate) and variance_of_estimate > 0.0):
        return StatResult(NAN, NAN, float(estimate), NAN, NAN, NAN, "z")
    se = math.sqrt(variance_of_estimate)
    z = float(estimate) / se
    p = float(min(1.0, 2.0 * special.ndtr(-abs(z))))
    half = float(special.ndtri(1.0 - a / 2.0)) * se
    return StatResult(z, p, float(estimate), estimate - half, estimate + half, NAN, "z")


def mann_whitney(control: Any, treatment: Any) -> StatResult:
    """Mann-Whitney U (Wilcoxon rank-sum) test, normal approximation with tie and continuity correction.

    Ranks of the pooled sample (mid-ranks for ties), R_t the treatment's rank sum, N = n_c + n_t::

        U_t     = R_t - n_t (n_t + 1) / 2                     (the statistic: treatment's U)
        mu      = n_c n_t / 2
        sigma^2 = n_c n_t / 12 * ((N + 1) - sum_j (t_j^3 - t_j) / (N (N - 1)))      (t_j: size of tie group j)
        z       = (|U_t - mu| - 1/2) / sigma,   p = min(1, 2 (1 - Phi(z)))

    Said otherwise: estimate = U_t / (n_c n_t) = P(T > C) + P(T = C) / 2, the probability that a treatment
    observation beats a control one (0.5 under the null; the "common-language effect size", McGraw & Wong 1992);
    no interval (NaN). Sources: H. B. Mann & D. R. Whitney (1947), Annals of Mathematical Statistics 18; the tie
    correction as in E. L. Lehmann (1975), "Nonparametrics: Statistical Methods Based on Ranks". The same p-value
    as ``scipy.stats.mannwhitneyu(treatment, control, method="asymptotic", use_continuity=True)``. All values
    tied (sigma = 0): NaN p-value.
    """
    c = _sample(control, "control")
    t = _sample(treatment, "treatment")
    n_c, n_t = len(c), len(t)
    n = n_c + n_t
    pooled = np.concatenate((c, t))
    ranks = stats.rankdata(pooled)
    u_t = float(ranks[n_c:].sum()) - n_t * (n_t + 1) / 2.0
    estimate = u_t / (n_c * n_t)
    _, tie_sizes = np.unique(pooled, return_counts=True)
    tie_term = float(np.sum(tie_sizes.astype(np.float64) ** 3 - tie_sizes)) / (n * (n - 1)) if n > 1 else 0.0
    var = n_c * n_t / 12.0 * ((n + 1) - tie_term)
    if var <= 0.0:
        return StatResult(u_t, NAN, estimate, NAN, NAN, NAN, "normal approximation, tie and continuity corrected")
    z = (abs(u_t - n_c * n_t / 2.0) - 0.5) / math.sqrt(var)
    p = float(min(1.0, 2.0 * special.ndtr(-z)))
    return StatResult(u_t, p, estimate, NAN, NAN, NAN, "normal approximation, tie and continuity corrected")


def two_proportions(
    successes_control: int, n_control: int, successes_treatment: int, n_treatment: int, alpha: float = 0.05
) -> StatResult:
    """Two-sample z-test of equal proportions with the pooled proportion; Wald (unpooled) CI of the difference.

    p_i = x_i / n_i, p = (x_c + x_t) / (n_c + n_t), estimate = p_t - p_c::

        z  = (p_t - p_c) / sqrt(p (1 - p) (1/n_c + 1/n_t)),     p-value = 2 (1 - Phi(|z|))
        CI = (p_t - p_c) -/+ z_{1 - alpha/2} sqrt(p_c (1 - p_c) / n_c + p_t (1 - p_t) / n_t)

    Source: A. Agresti (2013), "Categorical Data Analysis", 3rd ed., chapter 3 (the pooled z-test and the Wald
    interval of a difference of proportions); the same as statsmodels' ``proportions_ztest`` and
    ``confint_proportions_2indep(..., method="wald")``. When every trial in both arms succeeded, or none did, z is
    0/0: NaN statistic and p.
    """
    a = _alpha(alpha)
    x_c, n_c = _count(successes_control, "successes_control"), _count(n_control, "n_control")
    x_t, n_t = _count(successes_treatment, "successes_treatment"), _count(n_treatment, "n_treatment")
    if n_c < 1 or n_t < 1:
        raise ValueError(f"each arm needs at least one trial, got n_control={n_c}, n_treatment={n_t}")
    if x_c > n_c or x_t > n_t:
        raise ValueError(f"successes cannot exceed trials: {x_c}/{n_c} (control), {x_t}/{n_t} (treatment)")
    p_c, p_t = x_c / n_c, x_t / n_t
    estimate = p_t - p_c
    pooled = (x_c + x_t) / (n_c + n_t)
    se_wald = math.sqrt(p_c * (1.0 - p_c) / n_c + p_t * (1.0 - p_t) / n_t)
    half = float(special.ndtri(1.0 - a / 2.0)) * se_wald
    se_pooled = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t))
    if se_pooled == 0.0:
        return StatResult(NAN, NAN, estimate, estimate - half, estimate + half, NAN, "pooled z")
    z = estimate / se_pooled
    p = float(min(1.0, 2.0 * special.ndtr(-abs(z))))
    return StatResult(z, p, estimate, estimate - half, estimate + half, NAN, "pooled z")


def srm(counts: Sequence[int] | Any, weights: Sequence[float] | Any) -> StatResult:
    """Sample-ratio mismatch: Pearson's chi-square goodness of fit of the arm counts to the allocation.

    With N = sum of counts and expected e_i = N w_i / sum(w)::

        chi2 = sum_i (o_i - e_i)^2 / e_i,   df = k - 1,   p = P(chi2_df > chi2)

    Said otherwise: estimate = the largest |o_i / N - w_i / sum(w)|, how far the worst arm's share is from its
    allocation; no interval. Flag at p < 0.001, warn at p < 0.01 (issue 14). Source: K. Pearson (1900); for SRM in
    online experiments, Fabijan et al. (2019), "Diagnosing Sample Ratio Mismatch in Online Controlled Experiments",
    KDD. The same p-value as ``scipy.stats.chisquare(counts, expected)``.
    """
    raw = np.asarray(counts)
    if raw.ndim != 1 or len(raw) < 2:
        raise ValueError(f"counts must be a 1-d sequence over at least two arms, got shape {raw.shape}")
    observed = np.asarray(raw, dtype=np.float64)
    if not np.isfinite(observed).all() or (observed < 0).any() or (observed != np.round(observed)).any():
        raise ValueError("counts must be whole numbers >= 0")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != observed.shape:
        raise ValueError(f"weights must give one allocation per arm: {w.shape} vs counts {observed.shape}")
    if not np.isfinite(w).all() or (w <= 0).any():
        raise ValueError("weights must be finite and > 0 (an arm with no allocation has no place in the test)")
    total = float(observed.sum())
    if total <= 0:
        raise ValueError("counts must not all be zero")
    share = w / w.sum()
    expected = total * share
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    df = len(observed) - 1
    p = float(special.chdtrc(df, chi2))
    estimate = float(np.max(np.abs(observed / total - share)))
    return StatResult(chi2, p, estimate, NAN, NAN, float(df), "chi-square goodness of fit")


# --- paired -----------------------------------------------------------------------------------------------


def mcnemar(only_control_right: int, only_treatment_right: int) -> StatResult:
    """McNemar's test on paired hit/miss: b = pairs only the control got right, c = only the treatment.

    With m = b + c discordant pairs::

        m < 25:  exact binomial, statistic = min(b, c), p = min(1, 2 P(Bin(m, 1/2) <= min(b, c)))
        m >= 25: chi2 = (|b - c| - 1)^2 / (b + c), 1 df, p = P(chi2_1 > chi2)      (Edwards' continuity correction)

    estimate = c - b, the treatment's hits minus the control's (concordant pairs cancel); no interval (the
    total number of pairs is not an input). Sources: Q. McNemar (1947), Psychometrika 12; A. L. Edwards (1948),
    Psychometrika 13. The same as statsmodels'
    ``mcnemar([[., b], [c, .]], exact=m < 25, correction=True)``. No discordant pairs: p = 1.
    """
    b = _count(only_control_right, "only_control_right")
    c = _count(only_treatment_right, "only_treatment_right")
    m = b + c
    estimate = float(c - b)
    if m < MCNEMAR_EXACT_BELOW:
        k = min(b, c)
        p = float(min(1.0, 2.0 * special.bdtr(k, m, 0.5)))
        return StatResult(float(k), p, estimate, NAN, NAN, NAN, "exact binomial")
    chi2 = (abs(b - c) - 1.0) ** 2 / m
    p = float(special.chdtrc(1, chi2))
    return StatResult(chi2, p, estimate, NAN, NAN, 1.0, "chi-square, continuity corrected")


def _dm_core(d: np.ndarray, horizon: int) -> tuple[float, float] | None:
    """(variance of the mean, HLN factor) for horizon h, or None when the long-run variance is not positive."""
    n = len(d)
    if float(np.ptp(d)) == 0.0:
        return None
    e = d - d.mean()
    gamma = np.array([float(np.dot(e[: n - k], e[k:])) / n for k in range(horizon)])
    lrv = float(gamma[0] + 2.0 * gamma[1:].sum())
    if not lrv > 0.0:
        return None
    factor = (n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n
    return lrv / n, factor


def diebold_mariano(loss_control: Any, loss_treatment: Any, horizon: int = 1) -> StatResult:
    """Diebold-Mariano test of equal predictive accuracy with the Harvey-Leybourne-Newbold correction.

    On the loss differential d_t = loss_control_t - loss_treatment_t (estimate = mean d; > 0: the treatment's
    losses are lower), with gamma_k = (1/n) sum_{t>k} (d_t - dbar)(d_{t-k} - dbar) and h = horizon::

        V(dbar) = (gamma_0 + 2 sum_{k=1}^{h-1} gamma_k) / n                      (Diebold & Mariano 1995, eq. 8)
        DM      = dbar / sqrt(V(dbar))
        DM*     = DM sqrt((n + 1 - 2h + h (h - 1) / n) / n),  p = 2 P(T_{n-1} > |DM*|)   (Harvey et al. 1997)

    statistic = DM*, df = n - 1. The interval inverts the same test at 95 % (the signature has no alpha):
    dbar -/+ t_{n-1, 0.975} sqrt(V(dbar) / factor). With h = 1 this is exactly the paired t-test on d.

    Sources: F. X. Diebold & R. S. Mariano (1995), "Comparing Predictive Accuracy", JBES 13; D. Harvey,
    S. Leybourne & P. Newbold (1997), "Testing the equality of prediction mean squared errors", IJF 13. The
    rectangular window can give a non-positive variance when h > 1: then, as R's ``forecast::dm.test``
    (Hyndman), the test is computed with h = 1 and ``method`` says so. Constant d: NaN statistic and p.
    Needs n >= horizon + 1 pairs.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    h = int(horizon)
    c, t = _paired(loss_control, loss_treatment, "loss_control", "loss_treatment", min_n=max(2, h + 1))
    d = c - t
    n = len(d)
    estimate = float(d.mean())
    method = f"Diebold-Mariano, HLN-corrected, h={h}"
    core = _dm_core(d, h)
    if core is None and h > 1:
        h = 1
        method = f"Diebold-Mariano, HLN-corrected, h=1 (the h={int(horizon)} long-run variance was not positive)"
        core = _dm_core(d, 1)
    df = float(n - 1)
    if core is None:
        return StatResult(NAN, NAN, estimate, NAN, NAN, df, method)
    var_mean, factor = core
    se = math.sqrt(var_mean / factor)
    statistic = estimate / se
    p = float(min(1.0, 2.0 * special.stdtr(df, -abs(statistic))))
    half = float(special.stdtrit(df, 0.975)) * se
    return StatResult(statistic, p, estimate, estimate - half, estimate + half, df, method)


def sharpe_difference(returns_control: Any, returns_treatment: Any, alpha: float = 0.05) -> StatResult:
    """Jobson-Korkie test of equal Sharpe ratios on paired returns, with Memmel's correction.

    Per-observation SR_i = mean_i / s_i (sample standard deviations, ddof = 1), rho the Pearson correlation of the
    two return series, T pairs; estimate = SR_t - SR_c::

        V = (2 - 2 rho + (SR_c^2 + SR_t^2) / 2 - SR_c SR_t rho^2) / T
        z = (SR_t - SR_c) / sqrt(V),   p = 2 (1 - Phi(|z|)),   CI = estimate -/+ z_{1 - alpha/2} sqrt(V)

    This is Jobson & Korkie's z = (s_c mu_t - s_t mu_c) / sqrt(theta) divided through by s_c s_t, with Memmel's
    corrected theta = (2 s_c^2 s_t^2 - 2 s_c s_t s_ct + mu_c^2 s_t^2 / 2 + mu_t^2 s_c^2 / 2
    - mu_c mu_t s_ct^2 / (s_c s_t)) / T. Sources: J. D. Jobson & B. M. Korkie (1981), "Performance Hypothesis
    Testing with the Sharpe and Treynor Measures", Journal of Finance 36; C. Memmel (2003), "Performance
    Hypothesis Testing with the Sharpe Ratio", Finance Letters 1. Assumes IID normal returns (Ledoit & Wolf 2008
    for the robust alternative). A constant series (s = 0): NaN everything but nothing is raised.
    """
    a = _alpha(alpha)
    c, t = _paired(returns_control, returns_treatment, "returns_control", "returns_treatment", min_n=3)
    n = len(c)
    s_c, s_t = math.sqrt(_var(c)), math.sqrt(_var(t))
    if s_c == 0.0 or s_t == 0.0:
        return StatResult(NAN, NAN, NAN, NAN, NAN, NAN, "Jobson-Korkie-Memmel")
    sr_c, sr_t = float(c.mean()) / s_c, float(t.mean()) / s_t
    rho = float(np.corrcoef(c, t)[0, 1])
    estimate = sr_t - sr_c
    var = (2.0 - 2.0 * rho + 0.5 * (sr_c * sr_c + sr_t * sr_t) - sr_c * sr_t * rho * rho) / n
    if not var > 0.0:
        return StatResult(NAN, NAN, estimate, NAN, NAN, NAN, "Jobson-Korkie-Memmel")
    se = math.sqrt(var)
    z = estimate / se
    p = float(min(1.0, 2.0 * special.ndtr(-abs(z))))
    half = float(special.ndtri(1.0 - a / 2.0)) * se
    return StatResult(z, p, estimate, estimate - half, estimate + half, NAN, "Jobson-Korkie-Memmel")


def always_valid_p(differences: Any, tau2: float, sigma2: float | None = None) -> np.ndarray:
    """Always-valid p-values p_1..p_n of the mixture SPRT for H0: mean of the paired differences = 0.

    With a normal mixing distribution N(0, tau2) over the mean and mean_n the mean of the first n differences::

        Lambda_n = sqrt(s2 / (s2 + n tau2)) exp(n^2 tau2 mean_n^2 / (2 s2 (s2 + n tau2)))
        p_0 = 1,   p_n = min(p_{n-1}, 1 / Lambda_n)

    Source: R. Johari, P. Koomen, L. Pekelis & D. Walsh (2022), "Always Valid Inference: Continuous Monitoring of
    A/B Tests", Operations Research 70(3) (KDD 2017 as "Peeking at A/B Tests"), the normal mSPRT; after
    H. Robbins (1970). With s2 = sigma2 known, Lambda is a nonnegative martingale under H0 and by
    Ville's inequality P(p_n <= alpha for some n) <= alpha: reading p after every outcome never inflates the
    type-I error (tests/experiments/test_statistics.py checks it by simulation).

    sigma2 None: s2 is the sample variance (ddof = 1) of the first n differences, and p stays 1 while n < 2 (and
    while the first n differences are all equal). That plug-in is what issue 14 specifies but it is NOT valid at
    small n: a variance estimated from two or three differences can be tiny, so Lambda explodes; in A/A
    simulations with a look after every outcome it rejects far more often than alpha (see the benchmark). To stay
    valid, estimate sigma2 on a burn-in and pass it for the outcomes that follow.

    O(n) with cumulative sums; returns a float array of the n p-values (non-increasing).
    """
    x = _sample(differences, "differences")
    t2 = _positive(tau2, "tau2")
    n = np.arange(1, len(x) + 1, dtype=np.float64)
    mean = np.cumsum(x) / n
    if sigma2 is None:
        # shift by the first value so the running sums of squares do not cancel catastrophically
        y = x - x[0]
        sy = np.cumsum(y)
        syy = np.cumsum(y * y)
        s2 = np.zeros_like(n)
        s2[1:] = np.maximum(syy[1:] - sy[1:] * sy[1:] / n[1:], 0.0) / (n[1:] - 1.0)
        defined = s2 > 0.0
    else:
        s2 = np.full_like(n, _positive(sigma2, "sigma2"))
        defined = np.ones(len(n), dtype=bool)
    inverse = np.ones_like(n)
    s2d, nd, md = s2[defined], n[defined], mean[defined]
    spread = s2d + nd * t2
    log_lambda = 0.5 * np.log(s2d / spread) + nd * nd * t2 * md * md / (2.0 * s2d * spread)
    inverse[defined] = np.exp(-log_lambda)
    return np.minimum.accumulate(np.minimum(inverse, 1.0))


# --- across metrics ---------------------------------------------------------------------------------------


def holm(p_values: Sequence[float] | Any) -> np.ndarray:
    """Holm's step-down adjusted p-values, returned in the input order.

    Sort p ascending, p_(1) <= ... <= p_(m)::

        adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))

    Rejecting where adj <= alpha controls the family-wise error rate at alpha under any dependence. Source:
    S. Holm (1979), "A Simple Sequentially Rejective Multiple Test Procedure", Scandinavian Journal of Statistics
    6; the adjusted form as in Wright (1992), Biometrics 48. Same as statsmodels' ``multipletests(method="holm")``.
    """
    p = _sample(p_values, "p_values")
    if (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must be in [0, 1]")
    m = len(p)
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted
