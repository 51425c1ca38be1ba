"""End to end: features -> labels -> purged walk-forward fits -> out-of-sample metrics and backtest."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from models_registry.evaluation.splits import PurgedWalkForwardCV
from models_registry.evaluation.walk_forward import walk_forward_evaluate
from models_registry.features import WARMUP_BARS, compute_features
from models_registry.labels import make_labels
from tests.models_registry.synthetic import make_bars


class RecordingLogit(LogisticRegression):
    """Logistic regression that records the rows it was trained on (by their first feature value)."""

    fitted_on: list[np.ndarray] = []

    def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def]
        RecordingLogit.fitted_on.append(np.asarray(X)[:, 0].copy())
        return super().fit(X, y, sample_weight)


def test_walk_forward_trains_only_on_purged_past_and_backtests_out_of_sample() -> None:
    bars = make_bars(3000, seed=12)
    features = compute_features(bars)
    labels = make_labels(bars["close"], horizon=15, taker_fee=0.0005)["label"]
    cv = PurgedWalkForwardCV(3, label_horizon=15, embargo=10)
    RecordingLogit.fitted_on = []
    report = walk_forward_evaluate(RecordingLogit(max_iter=500), features, labels, bars, cv)

    n_samples = 3000 - WARMUP_BARS - 15
    test_size = n_samples // 4
    assert len(report.folds) == 3
    assert report.classification["n_samples"] == 3 * test_size
    assert set(report.classification) >= {"accuracy", "log_loss", "roc_auc_up", "brier_up"}
    assert list(report.probabilities.columns) == [-1, 0, 1]
    for fold, seen in zip(report.folds, RecordingLogit.fitted_on, strict=True):
        fold_start = features.index.get_loc(fold.test_start)
        trained_rows = features.index[np.isin(features["ret_1"].to_numpy(), seen)]
        assert features.index.get_loc(trained_rows[-1]) + 15 < fold_start  # purged: labels end before the test
    # the backtest covers exactly the out-of-sample window and compares with buy-and-hold over it
    bt = report.backtest
    assert bt.returns.index[0] == report.probabilities.index[0]
    assert bt.returns.index[-1] == report.probabilities.index[-1]
    assert bt.buy_and_hold_returns.index.equals(bt.returns.index)


def test_walk_forward_rejects_misaligned_inputs() -> None:
    bars = make_bars(600)
    features = compute_features(bars)
    labels = make_labels(bars["close"], horizon=5)["label"]
    with pytest.raises(ValueError, match="share one index"):
        walk_forward_evaluate(
            LogisticRegression(), features.iloc[1:], labels, bars, PurgedWalkForwardCV(2, label_horizon=5)
        )
