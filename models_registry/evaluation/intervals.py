"""Intervals and hit/calibration statistics shared by training (validation metrics), live outcome metrics and the
promotion gates. Pure numpy/scipy, no Django: one implementation of each figure, wherever it is computed.

``wilson_interval``          score interval for a proportion (Wilson 1927); accepts a fractional (effective) n
``effective_sample_size``    n x gamma_0 / long-run variance with Bartlett weights (Newey & West 1987), for the
                             overlapping forward windows of predictions made every bar over an h-bar horizon
``overlap_max_lag``          the Bartlett truncation lag used for an h-bar overlap (2h, see its docstring)
``direction_hits``           sign(P(up) - P(down)) vs sign(forward return), zero signs excluded
``calibration_buckets``      equal-width reliability diagram: predicted vs observed frequency and count per bin
``expected_calibration_error``  ECE (Naeini et al. 2015; top-label ECE for the multiclass case, Guo et al. 2017)
``sharpe_interval``          per-observation Sharpe ratio with a HAC (Newey-West) standard error (Lo 2002)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_CLASSES: tuple[int, ...] = (-1, 0, 1)
Z_95 = 1.959963984540054


# --- proportions ------------------------------------------------------------------------------------------


def wilson_interval(successes: float, n: float, *, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    With p = successes / n::

        centre    = (p + z^2 / (2n)) / (1 + z^2 / n)
        half-width = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

    Source: E. B. Wilson (1927), "Probable inference, the law of succession, and statistical inference", JASA 22;
    recommended over the Wald interval by Brown, Cai & DasGupta (2001), "Interval Estimation for a Binomial
    Proportion", Statistical Science 16. `n` may be fractional: with serially dependent trials pass the effective
    sample size (:func:`effective_sample_size`) and ``successes = p_hat * n_eff`` so the width is honest.
    n = 0 gives the uninformative (0, 1).
    """
    if not (math.isfinite(n) and n >= 0):
        raise ValueError(f"n must be a finite number >= 0, got {n!r}")
    if not (math.isfinite(successes) and 0 <= successes <= n):
        raise ValueError(f"successes must be in [0, n], got {successes!r} of {n!r}")
    if not (math.isfinite(z) and z > 0):
        raise ValueError(f"z must be > 0, got {z!r}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z / denominator * math.sqrt(max(p * (1.0 - p) / n + z2 / (4.0 * n * n), 0.0))
    return max(0.0, centre - half), min(1.0, centre + half)


# --- serial dependence ------------------------------------------------------------------------------------


def _autocovariances(x: np.ndarray, max_lag: int) -> np.ndarray:
    """gamma_k = (1/n) sum_{t} (x_t - m)(x_{t+k} - m) for k = 0..max_lag (the biased, PSD-preserving estimator)."""
    n = len(x)
    d = x - x.mean()
    lags = min(max_lag, n - 1)
    out = np.zeros(max_lag + 1)
    for k in range(lags + 1):
        out[k] = float(np.dot(d[: n - k], d[k:])) / n
    return out


def bartlett_weights(max_lag: int) -> np.ndarray:
    """w_k = 1 - k / (L + 1), k = 0..L (Newey & West 1987)."""
    return 1.0 - np.arange(max_lag + 1) / (max_lag + 1.0)


def long_run_variance(x: Any, max_lag: int) -> float:
    """Newey-West long-run variance: gamma_0 + 2 sum_{k=1}^{L} (1 - k/(L+1)) gamma_k."""
    values = _series(x)
    if max_lag < 0 or isinstance(max_lag, bool) or not isinstance(max_lag, int | np.integer):
        raise ValueError(f"max_lag must be an integer >= 0, got {max_lag!r}")
    if len(values) == 0:
        return math.nan
    gamma = _autocovariances(values, int(max_lag))
    w = bartlett_weights(int(max_lag))
    return float(gamma[0] + 2.0 * np.dot(w[1:], gamma[1:]))


def effective_sample_size(x: Any, max_lag: int) -> float:
    """How many independent observations the mean of a serially correlated series is worth.

    ``n_eff = n x gamma_0 / LRV`` with LRV the Newey-West (Bartlett kernel) long-run variance
    ``gamma_0 + 2 sum_{k=1}^{L} (1 - k/(L+1)) gamma_k``, so that ``gamma_0 / n_eff`` is the HAC variance of the
    mean (Newey & West 1987, "A Simple, Positive Semi-Definite, Heteroskedasticity and Autocorrelation Consistent
    Covariance Matrix", Econometrica 55; the variance-inflation view of n_eff: e.g. Wilks, "Statistical Methods
    in the Atmospheric Sciences", 5.2.4). For an AR(1) with coefficient rho it tends to n (1 - rho) / (1 + rho).

    Use: predictions made every bar over an h-bar horizon have overlapping forward windows, so consecutive hits
    are positively correlated and a Wilson interval on the raw n is too narrow. Pass the hit indicators (0/1) with
    ``max_lag = overlap_max_lag(h)`` and feed n_eff to :func:`wilson_interval`.

    Clipped to [1, n] (negative dependence is not credited; 1 keeps the interval defined); a constant series has
    no dependence to measure and returns n. An empty series returns 0.
    """
    values = _series(x)
    n = len(values)
    if n == 0:
        return 0.0
    gamma0 = float(np.var(values))
    if gamma0 == 0.0 or n == 1:
        return float(n)
    lrv = long_run_variance(values, max_lag)
    if not (lrv > 0.0):
        return 1.0
    return float(min(float(n), max(1.0, n * gamma0 / lrv)))


def overlap_max_lag(horizon: int) -> int:
    """Bartlett truncation lag for predictions one bar apart with `horizon`-bar forward windows: 2 x horizon.

    Overlapping windows make correlations that decay roughly linearly to zero at lag h - 1; Bartlett weights at
    L = h - 1 would keep only about 2/3 of that extra variance (and undercover), while L = 2h keeps about 5/6 and
    adds little noise. The simulation in tests/models_registry/test_intervals.py checks the resulting coverage.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon!r}")
    return 2 * int(horizon) if horizon > 1 else 0


# --- direction --------------------------------------------------------------------------------------------


def direction_hits(p_down: Any, p_up: Any, forward_return: Any) -> tuple[int, int]:
    """(hits, n): the model's direction sign(P(up) - P(down)) against sign(forward return).

    Rows where either sign is 0 (no directional view, or no move) or any input is NaN are excluded from n.
    The one definition of "direction hit rate": training records it on out-of-sample folds as
    ``direction_hit_rate`` / ``direction_n``, live outcome metrics use it per prediction.
    """
    down = np.asarray(p_down, dtype=np.float64).ravel()
    up = np.asarray(p_up, dtype=np.float64).ravel()
    fwd = np.asarray(forward_return, dtype=np.float64).ravel()
    if not (len(down) == len(up) == len(fwd)):
        raise ValueError(f"p_down, p_up and forward_return differ in length: {len(down)}, {len(up)}, {len(fwd)}")
    with np.errstate(invalid="ignore"):
        model = np.sign(up - down)
        truth = np.sign(fwd)
    valid = np.isfinite(model) & np.isfinite(truth) & (model != 0) & (truth != 0)
    return int(np.count_nonzero(model[valid] == truth[valid])), int(np.count_nonzero(valid))


def direction_hit_array(p_down: Any, p_up: Any, forward_return: Any) -> np.ndarray:
    """Per row: 1.0 hit, 0.0 miss, NaN excluded (same rule as :func:`direction_hits`)."""
    down = np.asarray(p_down, dtype=np.float64).ravel()
    up = np.asarray(p_up, dtype=np.float64).ravel()
    fwd = np.asarray(forward_return, dtype=np.float64).ravel()
    with np.errstate(invalid="ignore"):
        model = np.sign(up - down)
        truth = np.sign(fwd)
    valid = np.isfinite(model) & np.isfinite(truth) & (model != 0) & (truth != 0)
    out = np.full(len(fwd), np.nan)
    out[valid] = (model[valid] == truth[valid]).astype(np.float64)
    return out


# --- calibration ------------------------------------------------------------------------------------------


def _series(x: Any) -> np.ndarray:
    values = np.asarray(x, dtype=np.float64).ravel()
    if not np.isfinite(values).all():
        raise ValueError("values must be finite")
    return values


def _confidence_and_correct(prob: Any, outcome: Any, classes: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(prob, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64).ravel()
    if p.ndim == 1:
        if p.shape[0] != y.shape[0]:
            raise ValueError(f"prob and outcome differ in length: {p.shape[0]} vs {y.shape[0]}")
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("with 1-d probabilities the outcome must be 0 or 1")
        confidence, correct = p, y
    elif p.ndim == 2:
        cls = np.asarray(DEFAULT_CLASSES if classes is None else classes, dtype=np.float64)
        if p.shape != (len(y), len(cls)):
            raise ValueError(f"prob must have shape {(len(y), len(cls))} (samples x classes), got {p.shape}")
        if not np.isin(y, cls).all():
            raise ValueError(f"outcome has labels outside {tuple(cls)}")
        top = np.argmax(p, axis=1)
        confidence = p[np.arange(len(y)), top]
        correct = (cls[top] == y).astype(np.float64)
    else:
        raise ValueError("prob must be 1-d (binary) or 2-d (samples x classes)")
    if not np.isfinite(confidence).all() or (confidence < 0).any() or (confidence > 1).any():
        raise ValueError("probabilities must be in [0, 1]")
    return confidence, correct


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    # bin b holds (b/M, (b+1)/M]; 0 goes to the first bin (Guo et al. 2017's B_m = ((m-1)/M, m/M])
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


@dataclass(frozen=True)
class CalibrationBucket:
    lower: float
    upper: float
    count: int
    mean_predicted: float  # NaN when empty
    observed_frequency: float  # NaN when empty

    def as_dict(self) -> dict[str, Any]:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "count": self.count,
            "mean_predicted": None if math.isnan(self.mean_predicted) else self.mean_predicted,
            "observed_frequency": None if math.isnan(self.observed_frequency) else self.observed_frequency,
        }


def calibration_buckets(
    prob: Any, outcome: Any, bins: int = 10, *, classes: Sequence[int] | None = None
) -> list[CalibrationBucket]:
    """Reliability diagram on `bins` equal-width bins ((b/M, (b+1)/M], 0 in the first).

    Binary case: `prob` is P(event) (1-d) and `outcome` 0/1. Multiclass case: `prob` is samples x classes
    (columns in `classes` order, default -1, 0, +1) and `outcome` the true label; each row is binned by its
    predicted-class confidence max_k p_k and "observed" is whether the predicted class was right (top-label
    reliability, Guo et al. 2017, "On Calibration of Modern Neural Networks", ICML, section 2).
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    confidence, correct = _confidence_and_correct(prob, outcome, classes)
    index = _bin_index(confidence, int(bins))
    counts = np.bincount(index, minlength=bins)
    sum_conf = np.bincount(index, weights=confidence, minlength=bins)
    sum_correct = np.bincount(index, weights=correct, minlength=bins)
    out = []
    for b in range(bins):
        c = int(counts[b])
        out.append(
            CalibrationBucket(
                lower=b / bins,
                upper=(b + 1) / bins,
                count=c,
                mean_predicted=float(sum_conf[b] / c) if c else math.nan,
                observed_frequency=float(sum_correct[b] / c) if c else math.nan,
            )
        )
    return out


def expected_calibration_error(
    prob: Any, outcome: Any, bins: int = 10, *, classes: Sequence[int] | None = None
) -> float:
    """ECE = sum_b (n_b / n) |observed_b - mean_predicted_b| over the bins of :func:`calibration_buckets`.

    Naeini, Cooper & Hauskrecht (2015), "Obtaining Well Calibrated Probabilities Using Bayesian Binning", AAAI;
    for samples x classes probabilities, the top-label ECE of Guo et al. (2017), eq. 3 (confidence = the
    predicted class's probability, accuracy = whether it was right). NaN with no samples.
    """
    buckets = calibration_buckets(prob, outcome, bins, classes=classes)
    n = sum(b.count for b in buckets)
    if n == 0:
        return math.nan
    return float(sum(b.count / n * abs(b.observed_frequency - b.mean_predicted) for b in buckets if b.count))


# --- Sharpe -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharpeInterval:
    sharpe: float  # per observation: mean / std (population)
    low: float
    high: float
    se: float
    n: int
    lags: int

    def as_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "sharpe": clean(self.sharpe),
            "low": clean(self.low),
            "high": clean(self.high),
            "se": clean(self.se),
            "n": self.n,
            "lags": self.lags,
        }


def sharpe_interval(returns: Any, *, lags: int, z: float = Z_95) -> SharpeInterval:
    """Per-observation Sharpe ratio SR = mu / sigma with a HAC standard error (Lo 2002, section 3.2, GMM).

    theta = (mu, sigma^2) estimated from the moment conditions m_t = (r_t - mu, (r_t - mu)^2 - sigma^2); their
    long-run covariance Sigma is the Newey-West estimate with Bartlett weights up to `lags` (Newey & West 1987);
    by the delta method with grad g = (1 / sigma, -mu / (2 sigma^3))::

        Var(SR_hat) = grad' Sigma grad / T,    interval SR_hat +/- z se

    For IID normal returns and lags = 0 this reduces to Lo's (1 + SR^2 / 2) / T. Source: A. W. Lo (2002), "The
    Statistics of Sharpe Ratios", Financial Analysts Journal 58(4). NaNs when T < 2 or the returns are constant.
    Overlapping h-bar returns: use ``lags = overlap_max_lag(h)``.
    """
    r = _series(returns)
    if isinstance(lags, bool) or not isinstance(lags, int | np.integer) or lags < 0:
        raise ValueError(f"lags must be an integer >= 0, got {lags!r}")
    n = len(r)
    nan = math.nan
    if n < 2:
        return SharpeInterval(nan, nan, nan, nan, n, int(lags))
    mu = float(r.mean())
    d = r - mu
    var = float(np.mean(d * d))
    if var <= 0.0:
        return SharpeInterval(nan, nan, nan, nan, n, int(lags))
    sigma = math.sqrt(var)
    sr = mu / sigma
    moments = np.column_stack((d, d * d - var))
    L = min(int(lags), n - 1)
    sigma_hat = moments.T @ moments / n
    w = bartlett_weights(L)
    for k in range(1, L + 1):
        gamma_k = moments[k:].T @ moments[:-k] / n
        sigma_hat += w[k] * (gamma_k + gamma_k.T)
    grad = np.array([1.0 / sigma, -mu / (2.0 * sigma**3)])
    v = float(grad @ sigma_hat @ grad)
    se = math.sqrt(max(v, 0.0) / n)
    return SharpeInterval(sr, sr - z * se, sr + z * se, se, n, int(lags))


@dataclass(frozen=True)
class MeanInterval:
    mean: float
    low: float
    high: float
    se: float
    n: int
    n_effective: float

    def as_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "mean": clean(self.mean),
            "low": clean(self.low),
            "high": clean(self.high),
            "se": clean(self.se),
            "n": self.n,
            "n_effective": clean(self.n_effective),
        }


def mean_interval(x: Any, *, lags: int, z: float = Z_95) -> MeanInterval:
    """Mean with a HAC (Newey-West, Bartlett weights up to `lags`) standard error: se = sqrt(LRV / T), interval
    mean +/- z se (Newey & West 1987). With lags = 0 it is the usual sqrt(population variance / T). NaNs below
    two observations; a constant series has se 0."""
    values = _series(x)
    n = len(values)
    nan = math.nan
    if n < 2:
        m = float(values.mean()) if n else nan
        return MeanInterval(m, nan, nan, nan, n, float(n))
    lrv = max(long_run_variance(values, lags), 0.0)
    m = float(values.mean())
    se = math.sqrt(lrv / n)
    return MeanInterval(m, m - z * se, m + z * se, se, n, effective_sample_size(values, lags))
