"""Classification and trading metrics for model evaluation.

Classification (labels -1 / 0 / +1, probabilities with one column per class in ``classes`` order):
    ``accuracy``         argmax class vs the true class
    ``log_loss``         multi-class cross-entropy (scikit-learn's, clipped)
    ``roc_auc_up``       binary AUC of "up" (+1) vs "not up" (0 or -1), scored by P(up): what a long signal uses
    ``roc_auc_ovr``      macro one-vs-rest AUC over the classes that occur in ``y_true`` (each needs positives
                         and negatives); NaN when fewer than two classes occur
    ``brier_up``         mean (P(up) - [y = +1])^2
    ``brier_multiclass`` mean over samples of sum_k (p_k - [y = k])^2 (0 perfect, 2 worst)

Trading metrics on per-bar net simple returns (fractions of equity):
    ``net_pnl``          compounded return over the window, prod(1 + r) - 1
    ``sharpe``           mean / std (ddof=1) x sqrt(P), P = 525,600 one-minute bars a year (crypto trades 24/7)
    ``sortino``          mean / downside deviation x sqrt(P), downside deviation = sqrt(mean(min(r, 0)^2)),
                         target 0, over all bars
    ``max_drawdown``     largest fall of the equity curve from its running peak, as a positive fraction; the
                         curve starts at 1 before the first bar
    ``turnover``         sum of |position change| (in units of equity) when given
    ``hit_rate``         share of bars with a non-zero net return that were positive
    ``psr``              probabilistic Sharpe ratio against ``sr_benchmark`` (Bailey & López de Prado 2012)
    ``dsr``              deflated Sharpe ratio given the trials (Bailey & López de Prado 2014)

PSR and DSR work on the per-bar (not annualised) Sharpe ratio, with the sample skewness and the (non-excess,
Pearson) kurtosis of the returns, population moments, as in the papers::

    PSR(SR*) = Phi( (SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) )
    SR*_DSR  = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))     (gamma: Euler-Mascheroni)
    DSR      = PSR(SR*_DSR)

with N the number of trials and V the variance of their (per-bar) Sharpe ratios. For N = 1 there is no
selection to deflate: SR*_DSR = 0. Degenerate inputs (no dispersion, too few bars) give NaN, not an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import log_loss, roc_auc_score

from models_registry.labels import LABEL_CLASSES

BARS_PER_YEAR = 525_600
EULER_MASCHERONI = 0.5772156649015329


# --- classification ---------------------------------------------------------------------------------------


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    if positive.all() or not positive.any():
        return math.nan
    return float(roc_auc_score(positive, score))


def classification_metrics(
    y_true: Any, proba: Any, classes: Sequence[int] = LABEL_CLASSES, *, up_class: int = 1
) -> dict[str, float]:
    """Accuracy, log loss, ROC AUC (up vs not-up, and one-vs-rest macro) and Brier scores."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(proba, dtype=np.float64)
    cls = np.asarray(classes, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError("y_true must be a non-empty 1-d sequence of labels")
    if p.shape != (len(y), len(cls)):
        raise ValueError(f"proba must have shape {(len(y), len(cls))} (samples x classes), got {p.shape}")
    if not np.isin(y, cls).all():
        raise ValueError(f"y_true has labels outside {tuple(classes)} (NaN labels must be dropped first)")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("proba rows must be probabilities in [0, 1] summing to 1")
    if up_class not in classes:
        raise ValueError(f"up_class {up_class!r} is not one of {tuple(classes)}")
    up_col = list(classes).index(up_class)
    onehot = y[:, None] == cls[None, :]
    is_up = onehot[:, up_col]
    aucs = [_binary_auc(onehot[:, k], p[:, k]) for k in range(len(cls))]
    valid = [a for a in aucs if not math.isnan(a)]
    return {
        "accuracy": float(np.mean(cls[np.argmax(p, axis=1)] == y)),
        "log_loss": float(log_loss(y, p, labels=cls)),
        "roc_auc_up": _binary_auc(is_up, p[:, up_col]),
        "roc_auc_ovr": float(np.mean(valid)) if len(valid) >= 2 else math.nan,
        "brier_up": float(np.mean((p[:, up_col] - is_up) ** 2)),
        "brier_multiclass": float(np.mean(((p - onehot) ** 2).sum(axis=1))),
        "n_samples": float(len(y)),
    }


# --- trading ----------------------------------------------------------------------------------------------


def _returns(returns: Any) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError("returns must be 1-d")
    if not np.isfinite(r).all() or (r <= -1).any():
        raise ValueError("returns must be finite and > -1 (a return of -100% or worse ends the account)")
    return r


def sharpe_ratio(returns: Any, periods_per_year: float | None = BARS_PER_YEAR) -> float:
    """mean / std (ddof=1), times sqrt(periods_per_year); None for the per-period ratio. NaN if undefined."""
    r = _returns(returns)
    if len(r) < 2:
        return math.nan
    sd = float(np.std(r, ddof=1))
    if sd == 0.0:
        return math.nan
    scale = 1.0 if periods_per_year is None else math.sqrt(periods_per_year)
    return float(np.mean(r)) / sd * scale


def sortino_ratio(returns: Any, periods_per_year: float | None = BARS_PER_YEAR) -> float:
    """mean / sqrt(mean(min(r, 0)^2)), times sqrt(periods_per_year). NaN without downside."""
    r = _returns(returns)
    if len(r) < 1:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside == 0.0:
        return math.nan
    scale = 1.0 if periods_per_year is None else math.sqrt(periods_per_year)
    return float(np.mean(r)) / downside * scale


def equity_curve(returns: Any) -> np.ndarray:
    """Equity after each bar, starting from 1."""
    return np.cumprod(1.0 + _returns(returns))


def max_drawdown(returns: Any) -> float:
    """Largest peak-to-trough fall of the equity curve (starting at 1), as a positive fraction."""
    equity = np.concatenate(([1.0], equity_curve(returns)))
    return float(np.max(1.0 - equity / np.maximum.accumulate(equity)))


def probabilistic_sharpe_ratio(sharpe: float, sr_benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """P(true SR > sr_benchmark) given the observed per-period SR, T observations, skew and Pearson kurtosis."""
    if n_obs < 2 or not all(math.isfinite(x) for x in (sharpe, sr_benchmark, skew, kurtosis)):
        return math.nan
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if variance <= 0.0:
        return math.nan
    z = (sharpe - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(n_trials: int, var_trial_sharpes: float) -> float:
    """Expected maximum of `n_trials` Sharpe ratios with zero mean and the given variance (False Strategy
    theorem, Euler-Mascheroni approximation); 0 for a single trial."""
    if isinstance(n_trials, bool) or not isinstance(n_trials, int | np.integer) or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if not (math.isfinite(var_trial_sharpes) and var_trial_sharpes >= 0):
        raise ValueError(f"var_trial_sharpes must be finite and >= 0, got {var_trial_sharpes!r}")
    if n_trials == 1:
        return 0.0
    g = EULER_MASCHERONI
    z = (1 - g) * stats.norm.ppf(1 - 1 / n_trials) + g * stats.norm.ppf(1 - 1 / (n_trials * math.e))
    return math.sqrt(var_trial_sharpes) * float(z)


def deflated_sharpe_ratio(
    sharpe: float, n_obs: int, skew: float, kurtosis: float, n_trials: int, var_trial_sharpes: float
) -> float:
    """PSR against the Sharpe ratio the best of `n_trials` unskilled trials would show (all per-period)."""
    return probabilistic_sharpe_ratio(sharpe, expected_max_sharpe(n_trials, var_trial_sharpes), n_obs, skew, kurtosis)


def return_moments(returns: Any) -> tuple[float, float, float, int]:
    """(per-period Sharpe, skewness, Pearson kurtosis, T); population moments as in Bailey & López de Prado."""
    r = _returns(returns)
    sr = sharpe_ratio(r, periods_per_year=None)
    if len(r) < 3 or np.std(r) == 0.0:
        return sr, math.nan, math.nan, len(r)
    return sr, float(stats.skew(r)), float(stats.kurtosis(r, fisher=False)), len(r)


def trading_metrics(
    returns: Any,
    *,
    turnover: float | None = None,
    periods_per_year: float = BARS_PER_YEAR,
    sr_benchmark: float = 0.0,
    trial_sharpes: Sequence[float] | None = None,
) -> dict[str, float]:
    """Net PnL, Sharpe, Sortino, max drawdown, turnover, hit rate, PSR and DSR of per-bar net returns.

    `sr_benchmark` (per bar) is PSR's SR*. `trial_sharpes` are the per-bar Sharpe ratios of every trial behind
    this one (including it); DSR uses their count and variance. Without them DSR assumes one trial (= PSR(0)).
    """
    r = _returns(returns)
    sr, skew, kurt, n = return_moments(r)
    if trial_sharpes is not None:
        trials = np.asarray(trial_sharpes, dtype=np.float64)
        if trials.ndim != 1 or len(trials) < 1 or not np.isfinite(trials).all():
            raise ValueError("trial_sharpes must be a non-empty sequence of finite per-bar Sharpe ratios")
        n_trials, var_trials = len(trials), float(np.var(trials, ddof=1)) if len(trials) > 1 else 0.0
    else:
        n_trials, var_trials = 1, 0.0
    active = r[r != 0.0]
    return {
        "n_bars": float(n),
        "net_pnl": float(np.prod(1.0 + r) - 1.0) if n else 0.0,
        "sharpe": sharpe_ratio(r, periods_per_year),
        "sortino": sortino_ratio(r, periods_per_year),
        "max_drawdown": max_drawdown(r) if n else 0.0,
        "turnover": math.nan if turnover is None else float(turnover),
        "hit_rate": float(np.mean(active > 0)) if len(active) else math.nan,
        "psr": probabilistic_sharpe_ratio(sr, sr_benchmark, n, skew, kurt),
        "dsr": deflated_sharpe_ratio(sr, n, skew, kurt, n_trials, var_trials),
        "n_trials": float(n_trials),
    }
