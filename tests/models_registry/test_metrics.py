"""Metrics against hand-computed values and the published deflated Sharpe ratio example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models_registry.evaluation.metrics import (
    BARS_PER_YEAR,
    classification_metrics,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    max_drawdown,
    probabilistic_sharpe_ratio,
    sharpe_ratio,
    sortino_ratio,
    trading_metrics,
)

RETURNS = [0.01, -0.02, 0.03, -0.01, 0.02]


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_sharpe_and_sortino_on_a_hand_computed_series() -> None:
    # mean 0.006; squared deviations sum to 0.00172; sample variance 0.00172 / 4
    per_bar = 0.006 / math.sqrt(0.00172 / 4)
    assert sharpe_ratio(RETURNS, periods_per_year=None) == pytest.approx(per_bar, rel=1e-12)
    assert sharpe_ratio(RETURNS) == pytest.approx(per_bar * math.sqrt(525_600), rel=1e-12)
    # downside deviation sqrt((0.02^2 + 0.01^2) / 5) = 0.01
    assert sortino_ratio(RETURNS, periods_per_year=None) == pytest.approx(0.6, rel=1e-12)


def test_max_drawdown_on_a_hand_computed_series() -> None:
    # equity 1 -> 1.01 -> 0.9898 (-2% from the 1.01 peak) -> 1.019494 -> 1.00929906 (-1%) -> ...
    assert max_drawdown(RETURNS) == pytest.approx(0.02, rel=1e-12)
    assert max_drawdown([-0.1, 0.05]) == pytest.approx(0.1)  # the curve starts at 1
    assert max_drawdown([0.01, 0.02]) == 0.0


def test_probabilistic_sharpe_ratio_hand_computed_for_normal_returns() -> None:
    # SR 0.1, T 101, skew 0, kurtosis 3: z = 0.1 * 10 / sqrt(1 + 0.5 * 0.01)
    expected = _phi(1.0 / math.sqrt(1.005))
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.8407, abs=1e-4)  # Phi(0.9975)
    # against a benchmark equal to the observed SR the probability is one half
    assert probabilistic_sharpe_ratio(0.1, 0.1, 101, -1.0, 6.0) == pytest.approx(0.5)


def test_negative_skew_and_fat_tails_lower_the_probabilistic_sharpe_ratio() -> None:
    normal = probabilistic_sharpe_ratio(0.1, 0.0, 200, 0.0, 3.0)
    assert probabilistic_sharpe_ratio(0.1, 0.0, 200, -2.0, 9.0) < normal


def test_deflated_sharpe_ratio_reproduces_the_published_example() -> None:
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example: annualised SR 2.5 over
    # 5 years of daily returns (T = 1250), 100 trials with annualised Sharpe variance 0.5, skew -3, kurtosis 10.
    sr_daily = 2.5 / math.sqrt(250)
    var_daily = 0.5 / 250
    sr0 = expected_max_sharpe(100, var_daily)
    assert sr0 * math.sqrt(250) == pytest.approx(1.7894, abs=1e-4)  # expected maximum, annualised
    assert deflated_sharpe_ratio(sr_daily, 1250, -3.0, 10.0, 100, var_daily) == pytest.approx(0.9004, abs=1e-4)


def test_deflated_sharpe_ratio_falls_with_more_trials_and_equals_psr_for_one_trial() -> None:
    args = (0.05, 2000, 0.0, 3.0)
    one = deflated_sharpe_ratio(*args, n_trials=1, var_trial_sharpes=0.001)
    assert one == pytest.approx(probabilistic_sharpe_ratio(0.05, 0.0, 2000, 0.0, 3.0))
    assert deflated_sharpe_ratio(*args, n_trials=10, var_trial_sharpes=0.001) < one
    assert deflated_sharpe_ratio(*args, n_trials=1000, var_trial_sharpes=0.001) < deflated_sharpe_ratio(
        *args, n_trials=10, var_trial_sharpes=0.001
    )


def test_trading_metrics_on_a_hand_computed_series() -> None:
    m = trading_metrics([0.01, 0.0, -0.02, 0.03, 0.0], turnover=2.5)
    assert m["net_pnl"] == pytest.approx(1.01 * 0.98 * 1.03 - 1)
    assert m["hit_rate"] == pytest.approx(2 / 3)  # zero-return bars are not counted
    assert m["turnover"] == 2.5
    assert m["n_trials"] == 1.0
    assert m["dsr"] == pytest.approx(m["psr"])


def test_trading_metrics_use_trial_sharpes_for_dsr() -> None:
    rng = np.random.default_rng(1)
    returns = rng.normal(2e-4, 1e-3, 5000)
    alone = trading_metrics(returns)
    deflated = trading_metrics(returns, trial_sharpes=list(rng.normal(0.0, 0.05, 50)))
    assert deflated["n_trials"] == 50
    assert deflated["dsr"] < alone["dsr"]
    assert BARS_PER_YEAR == 525_600


def test_classification_metrics_hand_computed() -> None:
    y = [1, -1, 0, 1]
    proba = np.array(
        [  # columns -1, 0, +1
            [0.1, 0.2, 0.7],
            [0.6, 0.3, 0.1],
            [0.2, 0.3, 0.5],
            [0.3, 0.4, 0.3],
        ]
    )
    m = classification_metrics(y, proba)
    assert m["accuracy"] == pytest.approx(2 / 4)  # rows 0 and 1 right
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.6, 0.3, 0.3])))
    # up vs not-up by P(up): positives {0.7, 0.3}, negatives {0.1, 0.5}; 0.7 beats both, 0.3 beats 0.1: 3 of 4 pairs
    assert m["roc_auc_up"] == pytest.approx(3 / 4)
    assert m["brier_up"] == pytest.approx(np.mean([(0.7 - 1) ** 2, 0.1**2, 0.5**2, (0.3 - 1) ** 2]))
    assert m["brier_multiclass"] == pytest.approx(
        np.mean([0.01 + 0.04 + 0.09, 0.16 + 0.09 + 0.01, 0.04 + 0.49 + 0.25, 0.09 + 0.16 + 0.49])
    )


def test_roc_auc_is_nan_when_only_one_class_occurs() -> None:
    m = classification_metrics([1, 1], [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    assert math.isnan(m["roc_auc_up"])
    assert math.isnan(m["roc_auc_ovr"])


def test_invalid_probabilities_are_rejected() -> None:
    with pytest.raises(ValueError, match="summing to 1"):
        classification_metrics([1], [[0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([2], [[0.2, 0.3, 0.5]])


def test_psr_at_095_keeps_its_false_positive_rate_on_zero_mean_fat_tailed_returns() -> None:
    """Under the null (true Sharpe ratio 0), PSR(0) >= 0.95 should happen in about 5 % of samples: simulated on
    2,000 series of 2,000 Student-t(5) returns (skewed and fat-tailed enough to need the moment correction)."""
    from models_registry.evaluation.metrics import probabilistic_sharpe_ratio, return_moments

    rng = np.random.default_rng(2024)
    hits = 0
    trials = 2000
    for _ in range(trials):
        r = rng.standard_t(5, 2000) * 1e-3
        sr, skew, kurt, n = return_moments(r)
        hits += probabilistic_sharpe_ratio(sr, 0.0, n, skew, kurt) >= 0.95
    rate = hits / trials
    # 5 % within a 99 % binomial band (n = 2000: +/- 1.26 points)
    assert 0.05 - 0.0126 <= rate <= 0.05 + 0.0126, rate


def test_dsr_refuses_the_best_of_many_unskilled_trials_at_its_nominal_rate() -> None:
    """Selecting the best of 20 zero-skill strategies makes its PSR(0) pass far more often than 5 %; the deflated
    Sharpe ratio, with the trials' count and variance, brings that back to about 5 % or less."""
    from models_registry.evaluation.metrics import (
        deflated_sharpe_ratio,
        probabilistic_sharpe_ratio,
        return_moments,
    )

    rng = np.random.default_rng(7)
    n_trials, worlds = 20, 600
    psr_pass = dsr_pass = 0
    for _ in range(worlds):
        series = rng.normal(0.0, 1e-3, (n_trials, 1000))
        moments = [return_moments(r) for r in series]
        sharpes = [m[0] for m in moments]
        best = int(np.argmax(sharpes))
        sr, skew, kurt, n = moments[best]
        psr_pass += probabilistic_sharpe_ratio(sr, 0.0, n, skew, kurt) >= 0.95
        dsr_pass += deflated_sharpe_ratio(sr, n, skew, kurt, n_trials, float(np.var(sharpes, ddof=1))) >= 0.95
    assert psr_pass / worlds > 0.4  # selection bias: the best of 20 looks skilled most of the time
    assert dsr_pass / worlds <= 0.05 + 0.023  # 99 % band around the nominal 5 % (n = 600)
