"""Builders for the experiment tests: a registered model whose versions serve the real feature pipeline (a
champion in production and treatments), experiments made through the services, and synthetic matured outcomes
with a known truth (registry `Prediction` + `PredictionOutcome` rows, as outcome tracking writes them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from experiments.models import Arm, Experiment, ExperimentObservation
from experiments.services import experiment_create, experiment_start
from models_registry.features import FEATURE_NAMES, compute_features, drop_warmup
from models_registry.models import ModelVersion, Prediction, PredictionOutcome, RegisteredModel
from models_registry.services import model_version_promote
from tests.models_registry.factories import make_model, make_version
from tests.models_registry.synthetic import make_bars

SIGNATURE = [{"name": n, "type": "float64"} for n in FEATURE_NAMES]
BARS = make_bars(900, seed=3)
FEATURES = drop_warmup(compute_features(BARS))
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLASS_MEANS = {"-1": -0.05, "0": 0.0, "1": 0.05}


def _estimator(favoured: int, seed: int) -> Any:
    """A logistic regression that puts ~95 % on one class whatever the features (a buyer: +1; flat: 0)."""
    rng = np.random.default_rng(seed)
    y = np.full(len(FEATURES), favoured)
    others = [c for c in (-1, 0, 1) if c != favoured]
    flip = rng.random(len(y)) < 0.05
    y[flip] = rng.choice(others, int(flip.sum()))
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.01)).fit(FEATURES.to_numpy(), y)


ESTIMATORS = {"flat": _estimator(0, 1), "buy": _estimator(1, 2)}


def served_version(model: RegisteredModel, kind: str, *, horizon: int = 15) -> ModelVersion:
    return make_version(
        model,
        estimator=ESTIMATORS[kind],
        signature=SIGNATURE,
        hyperparameters={"signal_threshold": 0.5, "class_mean_returns": CLASS_MEANS, "horizon": horizon},
        feature_set_name="kraken_bars_1m",
    )


def cheap_model(n_versions: int = 3, *, promote: int | None = 1) -> tuple[RegisteredModel, list[ModelVersion]]:
    """A model with `n_versions` small versions (the registry test estimator), v`promote` in production."""
    model = make_model(gates={})
    versions = [make_version(model, hyperparameters={"horizon": 1}) for _ in range(n_versions)]
    if promote is not None:
        model_version_promote(model_name=model.name, version=promote, reason="champion", actor="test")
    return model, versions


def shadow_experiment(model: RegisteredModel, versions: Sequence[int], **overrides: Any) -> Experiment:
    fields: dict[str, Any] = {
        "model_name": model.name,
        "name": "shadow test",
        "treatments": [{"version": v} for v in versions],
        "minimum_sample": 200,
        "burn_in": 50,
        "actor": "user:tester",
        "reason": "does the retrained version beat the champion?",
        **overrides,
    }
    experiment = experiment_create(**fields)
    return experiment_start(experiment_id=experiment.pk, actor="user:tester", reason="go")


def synthetic_outcomes(
    experiment: Experiment,
    arm: Arm,
    nets: Sequence[float],
    *,
    hits: Sequence[bool | None] | None = None,
    start: int = 0,
    symbol: str = "BTC/USD",
    observe: bool = True,
) -> list[str]:
    """For decisions start..start+len(nets)-1 (one a minute from T0): the arm's registry prediction and its
    matured outcome with the given net returns (and direction hits), and the arm's observation (as the router
    or the shadow task records it). Returns the decision keys."""
    keys, predictions, outcomes, observations = [], [], [], []
    for i in range(len(nets)):
        bar_time = T0 + timedelta(minutes=start + i)
        key = f"{symbol}:{bar_time.isoformat()}"
        keys.append(key)
        predictions.append(
            Prediction(
                decision_id=key, version_id=arm.version_id, symbol=symbol, features_hash="0" * 64,
                probabilities={"-1": 0.2, "0": 0.3, "1": 0.5}, predicted_class=1, signal=1, confidence=0.5,
                bar_time=bar_time, horizon=1,
            )
        )  # fmt: skip
    Prediction.objects.bulk_create(predictions)
    stored = dict(
        Prediction.objects.filter(decision_id__in=keys, version_id=arm.version_id).values_list("decision_id", "pk")
    )
    now = T0 + timedelta(days=1)
    for i, (key, net) in enumerate(zip(keys, nets, strict=True)):
        bar_time = T0 + timedelta(minutes=start + i)
        hit = None if hits is None else hits[i]
        outcomes.append(
            PredictionOutcome(
                prediction_id=stored[key], version_id=arm.version_id, symbol=symbol, bar_time=bar_time, horizon=1,
                window_end=bar_time + timedelta(minutes=1), signal=1, p_down=0.2, p_flat=0.3, p_up=0.5,
                status=PredictionOutcome.Status.MATURED, forward_return=net, realised_label=1 if net > 0 else -1,
                direction_hit=hit, position=1, net_return=net, matured_at=now, checked_at=now,
            )
        )  # fmt: skip
        if observe:
            observations.append(
                ExperimentObservation(
                    experiment=experiment, arm=arm, version_id=arm.version_id, decision_key=key, symbol=symbol,
                    bar_time=bar_time, latency_ms=1.0,
                )
            )  # fmt: skip
    PredictionOutcome.objects.bulk_create(outcomes)
    ExperimentObservation.objects.bulk_create(observations)
    return keys
