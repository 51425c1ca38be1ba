"""Walk-forward evaluation of a scikit-learn classifier: purged CV folds, out-of-sample probabilities,
classification metrics per fold and pooled, and a next-bar backtest of the pooled out-of-sample signals.

Signal from the predicted probabilities: ``P(up) - P(down)`` in [-1, 1] (a probability-weighted direction);
confidence: the largest class probability. Bars without an out-of-sample prediction inside the evaluated window
get no signal (flat). Classes the fold's training set lacks get probability 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from models_registry.evaluation.backtest import BacktestResult, SizeFunction, run_backtest
from models_registry.evaluation.metrics import classification_metrics
from models_registry.evaluation.risk_gate import RiskGate
from models_registry.evaluation.splits import PurgedWalkForwardCV
from models_registry.labels import DEFAULT_TAKER_FEE, LABEL_CLASSES


@dataclass(frozen=True)
class FoldReport:
    fold: int
    train_size: int
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    classification: dict[str, float]


@dataclass(frozen=True)
class WalkForwardReport:
    folds: list[FoldReport]
    classification: dict[str, float]  # pooled over all out-of-sample predictions
    probabilities: pd.DataFrame  # out-of-sample, columns LABEL_CLASSES
    backtest: BacktestResult
    expected_return: pd.Series | None = None  # out-of-sample, when forward returns were given
    window: pd.DataFrame | None = None  # the bars the backtest ran on


def _aligned_proba(model: Any, X: np.ndarray) -> np.ndarray:
    raw = model.predict_proba(X)
    out = np.zeros((len(X), len(LABEL_CLASSES)))
    for col, cls in enumerate(model.classes_):
        out[:, LABEL_CLASSES.index(int(cls))] = raw[:, col]
    return out


def walk_forward_evaluate(
    estimator: Any,
    features: pd.DataFrame,
    labels: pd.Series,
    bars: pd.DataFrame,
    cv: PurgedWalkForwardCV,
    *,
    taker_fee: float = DEFAULT_TAKER_FEE,
    slippage_bps: float = 5.0,
    size: SizeFunction | None = None,
    trial_sharpes: list[float] | None = None,
    risk: RiskGate | None = None,
    forward_returns: pd.Series | None = None,
) -> WalkForwardReport:
    """Fit a clone of `estimator` per fold on purged training samples and evaluate out of sample.

    Samples are the bars with a complete feature row and a label (warm-up head and unlabelled tail dropped);
    they must be consecutive bars so that the CV's label horizon counts bars.

    With `forward_returns` (the labels' forward returns), each fold's expected return of a test row is
    ``sum_k P(k) x mean forward return of class k in that fold's training samples`` (:func:`class_mean_returns`,
    what the final model records for live use): it goes to the backtest's sizing, which weighs it against costs.
    """
    if not features.index.equals(labels.index) or not features.index.equals(bars.index):
        raise ValueError("features, labels and bars must share one index")
    usable = features.notna().all(axis=1).to_numpy() & labels.notna().to_numpy()
    positions = np.flatnonzero(usable)
    if len(positions) == 0:
        raise ValueError("no bar has both a complete feature row and a label")
    if positions[-1] - positions[0] + 1 != len(positions):
        raise ValueError("usable samples must be consecutive bars (a NaN inside the history breaks the purge)")
    X = features.to_numpy()[positions]
    y = labels.to_numpy()[positions]
    fwd = None if forward_returns is None else forward_returns.reindex(features.index).to_numpy()[positions]
    sample_index = features.index[positions]

    folds: list[FoldReport] = []
    proba_parts: list[np.ndarray] = []
    expected_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for k, (train, test) in enumerate(cv.split(len(positions))):
        model = clone(estimator).fit(X[train], y[train])
        proba = _aligned_proba(model, X[test])
        folds.append(
            FoldReport(
                k, len(train), sample_index[test[0]], sample_index[test[-1]], classification_metrics(y[test], proba)
            )
        )
        proba_parts.append(proba)
        if fwd is not None:
            means = class_mean_returns(y[train], fwd[train])
            expected_parts.append(proba @ np.array([means[c] for c in LABEL_CLASSES]))
        test_parts.append(test)
    test_all = np.concatenate(test_parts)
    proba_all = np.concatenate(proba_parts)
    oos = pd.DataFrame(proba_all, index=sample_index[test_all], columns=list(LABEL_CLASSES))

    window = bars.loc[oos.index[0] : oos.index[-1]]
    up, down = LABEL_CLASSES.index(1), LABEL_CLASSES.index(-1)
    signal = pd.Series(proba_all[:, up] - proba_all[:, down], index=oos.index).reindex(window.index)
    confidence = pd.Series(proba_all.max(axis=1), index=oos.index).reindex(window.index)
    expected = pd.Series(np.concatenate(expected_parts), index=oos.index) if expected_parts else None
    backtest = run_backtest(
        window,
        signal.clip(-1.0, 1.0),
        confidence=confidence.clip(0.0, 1.0),
        size=size,
        taker_fee=taker_fee,
        slippage_bps=slippage_bps,
        trial_sharpes=trial_sharpes,
        risk=risk,
        expected=None if expected is None else expected.reindex(window.index),
    )
    return WalkForwardReport(
        folds, classification_metrics(y[test_all], proba_all), oos, backtest, expected_return=expected, window=window
    )


def class_mean_returns(labels: np.ndarray, forward_returns: np.ndarray) -> dict[int, float]:
    """Mean forward return of the samples of each label class (0.0 for a class without samples): with the
    probabilities, the expected move of a prediction."""
    out: dict[int, float] = {}
    for cls in LABEL_CLASSES:
        picked = forward_returns[(labels == cls) & np.isfinite(forward_returns)]
        out[cls] = float(picked.mean()) if len(picked) else 0.0
    return out
