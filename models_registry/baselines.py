"""The momentum baseline as a model kind like any other (``TrainingConfig(model="momentum")``): trained, evaluated
walk-forward, registered and promoted only through the same gates, so the rule that is every model's yardstick
never trades unless it earns it too.

`MomentumClassifier` applies the rule of `trading.predictor.momentum_signal` (the sign of the return over the
last ``lookback`` bars outside a dead zone; one implementation) to the feature ``ret_<lookback>`` (a log return, so
the simple return is ``expm1``), and turns the rule's three answers (down, none, up) into class probabilities
fitted on the training data: P(label | rule's answer), the class frequencies among the training rows that got
that answer, with add-one smoothing. Its probabilities are therefore calibrated in sample, its expected return
comes from the training's class means like any model's, and its signal is the rule's when the fitted
probabilities agree with it.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from models_registry.features import FEATURE_NAMES, RETURN_HORIZONS
from models_registry.labels import LABEL_CLASSES
from trading.predictor import momentum_signal


class MomentumClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, lookback: int = 60, dead_zone: float = 0.009) -> None:
        self.lookback = lookback
        self.dead_zone = dead_zone

    def _answers(self, X: np.ndarray) -> np.ndarray:
        if self.lookback not in RETURN_HORIZONS:
            raise ValueError(f"lookback must be one of the return features' horizons {RETURN_HORIZONS}")
        moves = np.expm1(np.asarray(X, dtype=np.float64)[:, FEATURE_NAMES.index(f"ret_{self.lookback}")])
        return np.array([momentum_signal(float(m), float(self.dead_zone))[0] for m in moves], dtype=np.int64)

    def fit(self, X: np.ndarray, y: np.ndarray) -> MomentumClassifier:
        labels = np.asarray(y, dtype=np.float64)
        answers = self._answers(X)
        self.classes_ = np.unique(labels)  # the classes seen, like any scikit-learn classifier
        if not set(self.classes_.tolist()) <= set(LABEL_CLASSES):
            raise ValueError(f"labels must be among {LABEL_CLASSES}")
        table = np.ones((3, len(self.classes_)))  # add-one smoothing
        for row, answer in enumerate((-1, 0, 1)):
            picked = labels[answers == answer]
            for col, cls in enumerate(self.classes_):
                table[row, col] += float(np.sum(picked == cls))
        self.probabilities_ = table / table.sum(axis=1, keepdims=True)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.probabilities_[self._answers(X) + 1])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])
