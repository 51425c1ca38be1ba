"""Probation and rollback: a promoted version doing worse live than its validation (or than the previous
champion's live record) is rolled back to the previous champion through the registry's audited stage moves, a
critical `model_rollback` alert is raised, and a serving process follows through the generation counter (a
process that did not receive the signal: its next generation check, at most the check interval later, within a
second); a version doing as validated passes its probation when the window ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from models_registry.models import ModelVersion, Stage, StageEvent
from models_registry.prediction import PredictionService
from models_registry.retraining.models import Probation, RetrainingEvent
from models_registry.retraining.probation import probation_check, probation_rollback, probation_start
from models_registry.services import model_version_promote
from tests.models_registry.factories import make_model, make_version, registry_settings  # noqa: F401
from tests.models_registry.retraining.support import matured_outcomes
from trading.models import Alert

pytestmark = [
    pytest.mark.usefixtures("registry_settings"),
    pytest.mark.django_db,
    pytest.mark.services("postgres", "redis"),
]

VALIDATED = {"sharpe": 1.4, "max_drawdown": 0.08, "net_return_per_prediction": 0.001, "direction_hit_rate": 0.55}


@pytest.fixture
def swapped(settings: Any) -> tuple[ModelVersion, ModelVersion]:
    """v1 was the champion; v2 replaced it and is on probation."""
    settings.MODELS_REGISTRY_RETRAINING_PROBATION_HOURS = 1.0
    settings.MODELS_REGISTRY_DEGRADATION_MIN_OUTCOMES = 100
    settings.MODELS_REGISTRY_DEGRADATION_WINDOW = 400
    model = make_model()
    v1 = make_version(model, metrics=VALIDATED, hyperparameters={"horizon": 15})
    v2 = make_version(model, metrics=VALIDATED, hyperparameters={"horizon": 15}, parent_version=v1.version)
    model_version_promote(model_name=model.name, version=v1.version, reason="first champion", actor="test")
    model_version_promote(model_name=model.name, version=v2.version, reason="retrained", actor="test")
    probation_start(version=v2, previous=v1)
    return v1, v2


def _stage(version: ModelVersion) -> str:
    version.refresh_from_db(fields=["stage"])
    return version.stage


def test_rollback_restores_the_previous_champion_and_serving_follows(
    swapped: tuple[ModelVersion, ModelVersion], django_capture_on_commit_callbacks: Any
) -> None:
    v1, v2 = swapped
    name = v1.model.name
    clock = [1000.0]
    serving = PredictionService(listen=False, check_interval_ms=200, resolve_ttl_s=3600, clock=lambda: clock[0])
    assert serving.resolve(name).version == v2.version
    probation = Probation.objects.get(version=v2)
    with django_capture_on_commit_callbacks(execute=True):
        assert probation_rollback(probation_id=probation.pk, reasons=["live net return below validation"])
    assert _stage(v1) == Stage.PRODUCTION
    assert _stage(v2) == Stage.ARCHIVED
    moves = list(StageEvent.objects.filter(model=v1.model).order_by("-id")[:2].values_list("version", "to_stage"))
    assert moves == [(v1.pk, Stage.PRODUCTION), (v2.pk, Stage.ARCHIVED)]
    clock[0] += 0.1  # before its next generation check the process still serves v2 (it got no signal) ...
    assert serving.resolve(name).version == v2.version
    clock[0] += 0.9  # ... and follows by the check after, within a second of the rollback
    assert serving.resolve(name).version == v1.version
    alert = Alert.objects.get(kind="model_rollback")
    assert alert.severity == "critical"
    assert alert.context["restored_version"] == v1.version
    assert alert.fingerprint == f"model_rollback:{name}:v{v2.version}"  # one alert per rolled-back version
    probation.refresh_from_db()
    assert probation.status == Probation.Status.ROLLED_BACK
    assert RetrainingEvent.objects.filter(model=v1.model, step="rolled_back", version=v1).exists()
    assert probation_check()["started"] == []  # the restored champion is not put on probation against v2
    assert not Probation.objects.filter(version=v1).exists()


def test_version_worse_than_its_validation_is_rolled_back_by_the_check(
    swapped: tuple[ModelVersion, ModelVersion],
) -> None:
    v1, v2 = swapped
    rng = np.random.default_rng(5)
    matured_outcomes(v1, rng.normal(0.001, 0.002, 300))
    matured_outcomes(v2, rng.normal(-0.003, 0.002, 300))  # validation said +0.001 per prediction
    done = probation_check()
    assert done["rolled_back"] == [Probation.objects.get(version=v2).pk]
    assert _stage(v1) == Stage.PRODUCTION
    assert _stage(v2) == Stage.ARCHIVED
    reasons = Probation.objects.get(version=v2).last_report["reasons"]
    assert any("below validation" in r for r in reasons), reasons


def test_version_worse_than_the_previous_champion_live_is_rolled_back(
    swapped: tuple[ModelVersion, ModelVersion], settings: Any
) -> None:
    v1, v2 = swapped
    ModelVersion.objects.filter(pk=v2.pk).update(metrics={**VALIDATED, "net_return_per_prediction": 0.0002})
    rng = np.random.default_rng(9)
    matured_outcomes(v1, rng.normal(0.003, 0.001, 300))
    matured_outcomes(v2, rng.normal(0.0003, 0.001, 300))  # as validated, but far below v1's live record
    done = probation_check()
    assert len(done["rolled_back"]) == 1
    report = Probation.objects.get(version=v2).last_report
    assert report["vs_previous"]["worse"] is True
    assert _stage(v1) == Stage.PRODUCTION


def test_version_doing_as_validated_passes_probation_when_the_window_ends(
    swapped: tuple[ModelVersion, ModelVersion],
) -> None:
    v1, v2 = swapped
    rng = np.random.default_rng(11)
    matured_outcomes(v1, rng.normal(0.001, 0.002, 300))
    matured_outcomes(v2, rng.normal(0.0012, 0.002, 300))
    assert probation_check()["passed"] == []  # still inside the window
    done = probation_check(now=timezone.now() + timedelta(hours=2))
    assert done["passed"] == [Probation.objects.get(version=v2).pk]
    assert _stage(v2) == Stage.PRODUCTION
    assert not Alert.objects.filter(kind="model_rollback").exists()


def test_an_operator_promotion_is_put_on_probation_too(settings: Any) -> None:
    settings.MODELS_REGISTRY_RETRAINING_PROBATION_HOURS = 1.0
    model = make_model()
    v1 = make_version(model)
    v2 = make_version(model)
    model_version_promote(model_name=model.name, version=v1.version, reason="first", actor="test")
    model_version_promote(model_name=model.name, version=v2.version, reason="operator's choice", actor="user:ops")
    done = probation_check()
    probation = Probation.objects.get(version=v2)
    assert done["started"] == [probation.pk]
    assert probation.previous == v1
    assert not Probation.objects.filter(version=v1).exists()  # a first champion has nothing to roll back to
