"""On a market whose truth is known: a model trained on the learnable scenario passes the gates, and its live hit
rate over its first outcomes agrees with the scenario's theoretical value within the interval.

"Live" here is the decision path on bars the model never saw: the two days after its training window, decided
bar by bar through the pipeline's predictor (features from the stored bars, the serving version, predictions
recorded), then matured by the outcome service from the stored bars. The theoretical value is the simulator's
own ground truth (`GET /_sim/scenario`), the hit rate of the best possible predictor at the model's horizon."""

from __future__ import annotations

import json
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone

from galfriday_site.settings import DEFAULT_PROMOTION_GATES
from models_registry.bootstrap import bootstrap_config
from models_registry.history import backfill_from_trades
from models_registry.models import Prediction, PredictionOutcome
from models_registry.outcomes import outcomes_mature, version_live_metrics
from models_registry.predictor import PipelinePredictor
from models_registry.selectors import promotion_gate_report
from models_registry.services import model_version_promote
from models_registry.training import TrainingResult, train_model
from tests.models_registry.factories import registry_settings  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]

LIVE_DAYS = 2
EVERY = 4  # decide every 4th bar of the live days (the outcomes overlap anyway; the interval accounts for it)


def test_live_hit_rate_of_a_model_that_earned_its_place_matches_the_scenarios_truth(  # type: ignore[no-untyped-def]
    trend_client, trend_sim, settings, django_capture_on_commit_callbacks
) -> None:
    settings.MODELS_REGISTRY_PROMOTION_GATES = DEFAULT_PROMOTION_GATES
    end = timezone.now().replace(second=0, microsecond=0)
    backfill_from_trades(symbol="BTC/USD", start=end - timedelta(days=14), end=end, client=trend_client)
    train_end = end - timedelta(days=LIVE_DAYS)
    config = bootstrap_config("BTC/USD")
    result = train_model(
        symbol="BTC/USD", start=train_end - timedelta(days=14 - LIVE_DAYS), end=train_end, config=config
    )
    assert isinstance(result, TrainingResult)
    version = result.version
    report = promotion_gate_report(version=version, target="production")
    assert report.passed, [r.detail for r in report.failures]
    with django_capture_on_commit_callbacks(execute=True):  # after commit: prediction services follow the promotion
        model_version_promote(model_name=version.model.name, version=version.version, reason="earned", actor="test")

    predictor = PipelinePredictor()
    last = end - timedelta(minutes=config.horizon + 1)
    bar = train_end
    while bar <= last:
        prediction = predictor.predict(symbol="BTC/USD", bar_time=bar, decision_id=f"live:{bar.isoformat()}")
        assert prediction.model_name == version.model.name, prediction.reason
        assert prediction.record is not None
        prediction.record()  # what the pipeline does inside the decision's transaction
        bar += timedelta(minutes=EVERY)
    assert Prediction.objects.filter(version=version).count() == LIVE_DAYS * 1440 // EVERY - (config.horizon // EVERY)

    outcomes_mature(now=end + timedelta(minutes=5))
    assert PredictionOutcome.objects.filter(version=version, status="matured").count() == (
        Prediction.objects.filter(version=version).count()
    )
    live = version_live_metrics(version=version, now=end)["windows"]["all"]["hit_rate"]

    with urllib.request.urlopen(f"{trend_sim.rest_url}/_sim/scenario?horizon={config.horizon}", timeout=30) as r:
        truth = json.load(r)["ground_truth"]["phases"][0]
    optimal, se = truth["hit_rate_optimal"], truth["hit_rate_optimal_se"]
    assert live["n"] > 500
    assert live["low"] < live["value"] < live["high"]
    # The best possible predictor's hit rate lies in the live interval (up to its Monte Carlo error); a model
    # without the edge (hit rate 1/2) would be far outside it.
    assert live["low"] <= optimal + 2 * se
    assert optimal - 2 * se <= live["high"]
    assert live["low"] > 0.5
