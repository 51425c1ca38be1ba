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
) -> WalkForwardReport:
    """Fit a clone of `estimator` per fold on purged training samples and evaluate out of sample.

    Samples are the bars with a complete feature row and a label (warm-up head and unlabelled tail dropped);
    they must be consecutive bars so that the CV's label horizon counts bars.
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
    sample_index = features.index[positions]

    folds: list[FoldReport] = []
    proba_parts: list[np.ndarray] = []
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
        test_parts.append(test)
    test_all = np.concatenate(test_parts)
    proba_all = np.concatenate(proba_parts)
    oos = pd.DataFrame(proba_all, index=sample_index[test_all], columns=list(LABEL_CLASSES))

    window = bars.loc[oos.index[0] : oos.index[-1]]
    up, down = LABEL_CLASSES.index(1), LABEL_CLASSES.index(-1)
    signal = pd.Series(proba_all[:, up] - proba_all[:, down], index=oos.index).reindex(window.index)
    confidence = pd.Series(proba_all.max(axis=1), index=oos.index).reindex(window.index)
    backtest = run_backtest(
        window,
        signal.clip(-1.0, 1.0),
        confidence=confidence.clip(0.0, 1.0),
        size=size,
        taker_fee=taker_fee,
        slippage_bps=slippage_bps,
        trial_sharpes=trial_sharpes,
        risk=risk,
    )
    return WalkForwardReport(folds, classification_metrics(y[test_all], proba_all), oos, backtest)
