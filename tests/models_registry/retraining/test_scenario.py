"""End to end on the simulator's scenarios, fast settings (the drift scenario test's market: 1-minute bars written
ahead, market time driven by `now`, an hourly drift check): on `regime_change` the confirmed drift becomes a
retraining trigger with no operator action; the run waits until the bars after the change point fill the minimum
window and trains a challenger on them alone with the registry's training (the market moves from a weak trend to a
reversal regime, so there is something new to learn), the challenger is shadow-tested against the champion
through the experiments app (both predict every live minute; outcomes mature; the intake folds them; the verdict
concludes), and the run ends promoted through the gates or rejected with why, every step on the model's history;
on `random_walk` (the same noise, no change) over the same time no retraining is triggered.

Both arms' predictions and observations are written in bulk per hour (what the router and the shadow task write
per decision); everything else is the system's own path."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from experiments.evaluation import experiment_evaluate
from experiments.models import Arm, Experiment, ExperimentObservation
from experiments.retraining import retraining_experiments_advance
from models_registry.models import DriftReport, ModelVersion, Stage
from models_registry.retraining.models import RetrainingRun, RetrainingTrigger
from models_registry.retraining.selectors import lifecycle_timeline
from models_registry.services import model_version_promote
from models_registry.training import TrainingConfig, TrainingResult, train_model
from tests.models_registry.conftest import store_bars
from tests.models_registry.factories import registry_settings  # noqa: F401
from tests.models_registry.retraining.support import scenario_loop
from tests.models_registry.test_drift_scenario import (
    CHANGE_AT,
    CHECK_EVERY,
    DETECTION_BOUND_MINUTES,
    HORIZON,
    LIVE_MINUTES,
    ORIGIN,
    SCENARIOS,
    TRAIN_DAYS,
    WINDOW,
    _scenario_bars,
)

MIN_WINDOW_HOURS = 6.0
# The change moves from one learnable regime to another: a weak trend, then the price reverts to its level at
# the change (half-life 5 minutes, sigma x 12: at the 15-bar horizon the best predictor's hit rate is 0.73 and
# its gross return per trade above Kraken's base-tier round trip), so the champion degrades and a challenger
# trained after the change can learn the new regime.
REVERSAL = f"regime_change:drift=0.0001,regime_minutes=60,change_at={CHANGE_AT},vol_mult=12,half_life=5"

pytestmark = [
    pytest.mark.usefixtures("registry_settings"),
    pytest.mark.django_db,
    pytest.mark.services("postgres", "redis", "influxdb"),
]


@pytest.fixture(autouse=True)
def fast_loop(settings: Any) -> None:
    settings.MODELS_REGISTRY_EXTRA_GATES = ["experiments.gates.experiment_won_gate"]  # promotion needs the win
    settings.MODELS_REGISTRY_RETRAINING_WINDOW_HOURS = 24.0
    settings.MODELS_REGISTRY_RETRAINING_MIN_WINDOW_HOURS = MIN_WINDOW_HOURS
    settings.MODELS_REGISTRY_RETRAINING_COOLDOWN_HOURS = 6.0
    settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_MINIMUM_SAMPLE = 100
    settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_BURN_IN = 10
    settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_MAX_HOURS = 168.0


def _run(text: str, capture: Any) -> tuple[ModelVersion, list[DriftReport]]:
    symbol = f"S{uuid.uuid4().hex[:8].upper()}/USD"
    bars = _scenario_bars(text)
    store_bars(bars, symbol)
    config = TrainingConfig(model="logreg", horizon=HORIZON, dead_zone="auto", n_splits=3, min_samples=300)
    result = train_model(
        symbol=symbol,
        start=ORIGIN - timedelta(days=TRAIN_DAYS),
        end=ORIGIN,
        config=config,
        model_name=f"retrain-e2e-{symbol[1:9].lower()}",
        actor="test",
    )
    assert isinstance(result, TrainingResult)
    first = result.version
    with capture(execute=True):
        model_version_promote(model_name=first.model.name, version=first.version, reason="first", actor="test")
    loop = scenario_loop(
        bars, symbol, first=first, origin=ORIGIN, first_check=WINDOW, last_minute=LIVE_MINUTES,
        check_every=CHECK_EVERY, capture=capture,
    )  # fmt: skip
    return first, loop.reports


def test_regime_change_retrains_shadow_tests_and_ends_promoted_or_rejected_with_why(
    django_capture_on_commit_callbacks: Any,
) -> None:
    first, reports = _run(REVERSAL, django_capture_on_commit_callbacks)
    change = ORIGIN + timedelta(minutes=CHANGE_AT)
    confirmed = [r for r in reports if r.confirmed]
    assert confirmed, [(r.as_of.isoformat(), r.status, r.kinds) for r in reports]
    assert 0 < (confirmed[0].as_of - change).total_seconds() / 60 <= DETECTION_BOUND_MINUTES
    run = RetrainingRun.objects.get(model=first.model)  # one run: later confirmations joined or were suppressed
    assert run.trigger == "drift"
    assert run.drift_report == confirmed[0]
    assert run.parent == first
    assert run.challenger is not None
    # The window: every sample after the true change (the change point is the last check without drift), and the
    # run waited until the bars after it filled the minimum window; the challenger learnt the new regime.
    assert change <= run.change_point_at <= confirmed[0].as_of
    assert run.data_start == run.change_point_at
    assert run.data_end - run.data_start == timedelta(hours=MIN_WINDOW_HOURS)
    assert run.challenger.data_end == run.data_end
    assert run.challenger.metrics["direction_hit_rate"] > 0.6, run.challenger.metrics
    assert run.experiment_id is not None, run.outcome
    experiment = Experiment.objects.get(pk=run.experiment_id)
    arms = {a.role: a.version_id for a in experiment.arms.all()}
    assert arms == {Arm.Role.CONTROL: first.pk, Arm.Role.TREATMENT: run.challenger_id}
    paired = ExperimentObservation.objects.filter(experiment=experiment, arm__role=Arm.Role.TREATMENT).count()
    assert paired > 100
    if run.status == RetrainingRun.Status.SHADOW:  # not decisive in the fast window: its maximum duration ends it
        experiment_evaluate(experiment_id=experiment.pk, now=timezone.now() + timedelta(hours=169))
        retraining_experiments_advance()
        run.refresh_from_db()
    assert run.status in (RetrainingRun.Status.PROMOTED, RetrainingRun.Status.REJECTED)
    assert run.outcome
    champion = ModelVersion.objects.get(model=first.model, stage=Stage.PRODUCTION)
    assert champion == (run.challenger if run.status == RetrainingRun.Status.PROMOTED else first)
    steps = [e["kind"] for e in lifecycle_timeline(model_name=first.model.name) if e["origin"] == "retraining"]
    expected = ["triggered", "training_started", "challenger_registered", "experiment_started"]
    assert [s for s in steps if s in expected] == expected
    assert steps.index("experiment_started") < steps.index(run.status)
    assert RetrainingTrigger.objects.filter(model=first.model, kind="drift").count() == len(confirmed)


def test_without_a_change_no_retraining_is_triggered(django_capture_on_commit_callbacks: Any) -> None:
    first, reports = _run(SCENARIOS["random_walk"], django_capture_on_commit_callbacks)
    assert len(reports) == (LIVE_MINUTES - WINDOW) // CHECK_EVERY + 1
    assert not [r for r in reports if r.confirmed]
    assert not RetrainingRun.objects.filter(model=first.model).exists()
    assert not RetrainingTrigger.objects.filter(model=first.model).exists()
    assert ModelVersion.objects.get(model=first.model, stage=Stage.PRODUCTION) == first
