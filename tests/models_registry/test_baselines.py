"""The momentum baseline is a model like any other: trained, evaluated, registered, loaded from its artifact and
served, and promoted only through the same gates."""

from __future__ import annotations

import numpy as np
import pytest

from galfriday_site.settings import DEFAULT_PROMOTION_GATES
from models_registry.baselines import MomentumClassifier
from models_registry.features import FEATURE_NAMES
from models_registry.prediction import PredictionService
from models_registry.selectors import promotion_gate_report
from models_registry.training import TrainingConfig, TrainingResult, train_model
from tests.models_registry.conftest import store_bars, window_of
from tests.models_registry.factories import registry_settings  # noqa: F401
from tests.models_registry.synthetic import make_bars
from trading.predictor import momentum_signal

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]


def rows(moves: list[float]) -> np.ndarray:
    X = np.zeros((len(moves), len(FEATURE_NAMES)))
    X[:, FEATURE_NAMES.index("ret_60")] = np.log1p(moves)
    return X


def test_the_classifier_applies_the_trading_rule_and_fits_probabilities_per_answer() -> None:
    moves = [0.02, 0.03, -0.02, 0.001, -0.001, 0.025]
    labels = np.array([1, 1, -1, 0, 0, -1], dtype=float)
    model = MomentumClassifier(lookback=60, dead_zone=0.009).fit(rows(moves), labels)
    answers = [momentum_signal(m, 0.009)[0] for m in moves]
    assert answers == [1, 1, -1, 0, 0, 1]
    proba = model.predict_proba(rows([0.05, 0.0, -0.05]))
    # "up" answered three times: labels +1, +1, -1 -> (1+1, 0+1, 2+1) / 6 for (-1, 0, +1)
    assert proba[0] == pytest.approx([2 / 6, 1 / 6, 3 / 6])
    assert proba[1] == pytest.approx([1 / 5, 3 / 5, 1 / 5])
    assert proba[2] == pytest.approx([2 / 4, 1 / 4, 1 / 4])
    assert proba.sum(axis=1) == pytest.approx(np.ones(3))


def test_a_momentum_version_is_registered_served_and_gated_like_any_model(settings) -> None:  # type: ignore[no-untyped-def]
    bars = make_bars(1500, seed=11, book=False)
    store_bars(bars)
    start, end = window_of(bars)
    result = train_model(symbol="BTC/USD", start=start, end=end, config=TrainingConfig(model="momentum", horizon=15))
    assert isinstance(result, TrainingResult)
    version = result.version
    assert version.hyperparameters["model"] == "momentum"
    assert "class_mean_returns" in version.hyperparameters

    service = PredictionService()
    out = service.predict_one(
        dict.fromkeys(FEATURE_NAMES, 0.0) | {"ret_60": 0.05}, model_name=version.model.name, selector=version.version
    )
    assert sum(out.probabilities.values()) == pytest.approx(1.0)

    settings.MODELS_REGISTRY_PROMOTION_GATES = DEFAULT_PROMOTION_GATES
    report = promotion_gate_report(version=version, target="production")
    assert not report.passed  # a random walk: the rule has no edge, and the same gates refuse it
