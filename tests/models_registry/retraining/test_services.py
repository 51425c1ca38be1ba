"""Retraining, registry side: triggers (single-flight, joined and suppressed triggers recorded), the run (the
champion's configuration on a recent window, a challenger with its lineage), a challenger failing the gates
(rejected, archived, never promoted) and crashes (nothing half-registered; the next trigger works)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from models_registry import services as registry_services
from models_registry.models import ModelAlias, ModelVersion, Stage, TrainingRun
from models_registry.retraining import services
from models_registry.retraining.models import RetrainingEvent, RetrainingRun, RetrainingTrigger
from tests.models_registry.factories import registry_settings  # noqa: F401
from tests.models_registry.retraining.support import (
    fast_retraining_settings,
    market_end,
    stored_market,
    trained_champion,
)

pytestmark = [
    pytest.mark.usefixtures("registry_settings"),
    pytest.mark.django_db,
    pytest.mark.services("postgres", "redis", "influxdb"),
]


@pytest.fixture
def champion(settings: Any) -> tuple[ModelVersion, Any]:
    fast_retraining_settings(settings)
    symbol, bars = stored_market()
    return trained_champion(symbol, bars), bars


def _operator_trigger(model_name: str, reason: str = "operator asked") -> services.TriggerResult:
    return services.retraining_trigger(model_name=model_name, kind="operator", reason=reason, actor="user:ops")


def test_second_trigger_while_a_run_is_active_joins_it(champion: tuple[ModelVersion, Any]) -> None:
    version, _ = champion
    first = _operator_trigger(version.model.name)
    second = services.retraining_trigger(
        model_name=version.model.name, kind="schedule", reason="scheduled", actor="retraining:scan"
    )
    assert first.started
    assert first.run is not None
    assert first.run.status == RetrainingRun.Status.QUEUED
    assert not second.started
    assert second.trigger.joined
    assert second.run == first.run
    assert RetrainingRun.objects.filter(model=version.model).count() == 1
    assert RetrainingTrigger.objects.filter(run=first.run).count() == 2
    steps = list(RetrainingEvent.objects.filter(model=version.model).values_list("step", flat=True))
    assert steps == ["triggered", "joined"]
    assert first.run.parent == version


def test_the_database_refuses_a_second_active_run(champion: tuple[ModelVersion, Any]) -> None:
    version, _ = champion
    RetrainingRun.objects.create(model=version.model, trigger="operator", reason="a", actor="t")
    with pytest.raises(IntegrityError), transaction.atomic():
        RetrainingRun.objects.create(model=version.model, trigger="operator", reason="b", actor="t", status="training")
    RetrainingRun.objects.create(model=version.model, trigger="operator", reason="c", actor="t", status="failed")


def test_bad_trigger_input_is_refused_and_changes_nothing(champion: tuple[ModelVersion, Any]) -> None:
    version, _ = champion
    with pytest.raises(services.RetrainingInvalid):
        services.retraining_trigger(model_name=version.model.name, kind="operator", reason=" ", actor="user:ops")
    with pytest.raises(services.RetrainingInvalid):
        services.retraining_trigger(model_name=version.model.name, kind="whim", reason="x", actor="user:ops")
    assert not RetrainingRun.objects.exists()
    assert not RetrainingTrigger.objects.exists()


def test_drift_trigger_in_the_cooldown_is_recorded_as_suppressed(
    champion: tuple[ModelVersion, Any], settings: Any
) -> None:
    version, _ = champion
    settings.MODELS_REGISTRY_RETRAINING_COOLDOWN_HOURS = 6.0
    first = _operator_trigger(version.model.name)
    RetrainingRun.objects.filter(pk=first.run.pk).update(status="failed")  # type: ignore[union-attr]
    drift = services.retraining_trigger(model_name=version.model.name, kind="drift", reason="drift", actor="scan")
    assert drift.run is None
    assert "cooldown" in drift.trigger.suppressed
    assert RetrainingRun.objects.filter(model=version.model).count() == 1


def test_run_trains_a_challenger_with_its_lineage_on_the_recent_window(champion: tuple[ModelVersion, Any]) -> None:
    version, bars = champion
    started = _operator_trigger(version.model.name)
    assert started.run is not None
    end = market_end(bars)
    run = services.retraining_run(run_id=started.run.pk, now=end)
    assert run is not None
    assert run.status == RetrainingRun.Status.SHADOW, run.outcome
    challenger = run.challenger
    assert challenger is not None
    assert challenger.parent == version
    assert challenger.stage == Stage.NONE
    assert (run.data_start, run.data_end) == (end - timedelta(hours=24), end)
    assert (challenger.data_start, challenger.data_end) == (run.data_start, run.data_end)
    assert challenger.hyperparameters["model"] == version.hyperparameters["model"] == "logreg"
    assert challenger.hyperparameters["cv"] == version.hyperparameters["cv"]
    assert TrainingRun.objects.get(request_id=run.training_request_id).version == challenger
    assert ModelAlias.objects.get(model=version.model, name="challenger").version == challenger
    lineage = RetrainingEvent.objects.get(run=run, step="challenger_registered").data
    assert lineage == {
        "parent": version.version,
        "trigger": "operator",
        "drift_report": None,
        "run": run.pk,
        "training_request_id": run.training_request_id,
    }
    again = services.retraining_run(run_id=run.pk, now=end)  # a redelivered task changes nothing
    assert again is not None
    assert again.status == RetrainingRun.Status.SHADOW
    assert ModelVersion.objects.filter(model=version.model).count() == 2


def test_training_window_starts_after_a_known_change_point_but_keeps_its_floor() -> None:
    policy = services.Policy(True, True, 0.0, 24.0, 6.0, 0.0, 1.0)
    end = datetime(2025, 1, 2, 12, tzinfo=UTC)
    assert services.training_window(policy=policy, end=end, change_point_at=None) == (end - timedelta(hours=24), end)
    change = end - timedelta(hours=10)
    assert services.training_window(policy=policy, end=end, change_point_at=change)[0] == change + timedelta(minutes=1)
    recent = end - timedelta(hours=2)
    assert services.training_window(policy=policy, end=end, change_point_at=recent)[0] == end - timedelta(hours=6)


def test_challenger_failing_the_gates_is_rejected_archived_and_never_promoted(
    champion: tuple[ModelVersion, Any], settings: Any
) -> None:
    version, bars = champion
    settings.MODELS_REGISTRY_PROMOTION_GATES = {"production": {"psr": {"min": 0.9999}, "sharpe": {"min": 50.0}}}
    started = _operator_trigger(version.model.name)
    run = services.retraining_run(run_id=started.run.pk, now=market_end(bars))  # type: ignore[union-attr]
    assert run is not None
    assert run.status == RetrainingRun.Status.REJECTED
    assert "fails its promotion gates" in run.outcome
    assert "sharpe" in run.outcome
    assert run.challenger is not None
    run.challenger.refresh_from_db()
    assert run.challenger.stage == Stage.ARCHIVED
    assert run.experiment_id is None
    assert not ModelAlias.objects.filter(model=version.model, name="challenger").exists()
    version.refresh_from_db()
    assert version.stage == Stage.PRODUCTION
    with pytest.raises(registry_services.PromotionGateFailed):
        registry_services.model_version_promote(
            model_name=version.model.name, version=run.challenger.version, reason="try anyway", actor="test"
        )
    assert ModelVersion.objects.get(model=version.model, stage=Stage.PRODUCTION) == version
    assert list(RetrainingEvent.objects.filter(run=run).values_list("step", flat=True))[-1] == "rejected"


def test_crash_inside_registration_leaves_nothing_and_the_next_trigger_works(
    champion: tuple[ModelVersion, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    version, bars = champion
    end = market_end(bars)

    def crash(**_: Any) -> None:
        raise RuntimeError("disk full while recording the gates")

    monkeypatch.setattr(registry_services, "model_version_gates_record", crash)
    first = _operator_trigger(version.model.name)
    run = services.retraining_run(run_id=first.run.pk, now=end)  # type: ignore[union-attr]
    assert run is not None
    assert run.status == RetrainingRun.Status.FAILED
    assert "disk full" in run.outcome
    assert ModelVersion.objects.filter(model=version.model).count() == 1  # the registration rolled back
    assert TrainingRun.objects.get(request_id=run.training_request_id).status == TrainingRun.Status.FAILED
    assert not ModelAlias.objects.filter(model=version.model).exists()

    monkeypatch.undo()
    second = _operator_trigger(version.model.name, "again after the crash")
    assert second.started
    assert second.run is not None
    assert second.run.pk != run.pk
    done = services.retraining_run(run_id=second.run.pk, now=end)
    assert done is not None
    assert done.status == RetrainingRun.Status.SHADOW, done.outcome
    assert ModelVersion.objects.filter(model=version.model).count() == 2


def test_crash_between_registration_and_linking_is_finished_by_the_redelivered_task(
    champion: tuple[ModelVersion, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    version, bars = champion
    end = market_end(bars)

    def crash(**_: Any) -> None:
        raise KeyboardInterrupt  # the worker dies: nothing after train_model's commit runs

    monkeypatch.setattr(services, "challenger_adopt", crash)
    first = _operator_trigger(version.model.name)
    with pytest.raises(KeyboardInterrupt):
        services.retraining_run(run_id=first.run.pk, now=end)  # type: ignore[union-attr]
    monkeypatch.undo()
    assert RetrainingRun.objects.get(pk=first.run.pk).status == RetrainingRun.Status.TRAINING  # type: ignore[union-attr]
    run = services.retraining_run(run_id=first.run.pk, now=end)  # type: ignore[union-attr]
    assert run is not None
    assert run.status == RetrainingRun.Status.SHADOW
    assert run.attempts == 2
    assert ModelVersion.objects.filter(model=version.model).count() == 2  # one challenger, not two


def test_an_abandoned_run_archives_what_it_registered_and_the_next_trigger_starts_again(
    champion: tuple[ModelVersion, Any], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    version, bars = champion

    def crash(**_: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(services, "challenger_adopt", crash)
    first = _operator_trigger(version.model.name)
    with pytest.raises(KeyboardInterrupt):
        services.retraining_run(run_id=first.run.pk, now=market_end(bars))  # type: ignore[union-attr]
    monkeypatch.undo()
    orphan = ModelVersion.objects.filter(model=version.model).exclude(pk=version.pk).get()
    RetrainingRun.objects.filter(pk=first.run.pk).update(  # type: ignore[union-attr]
        started_at=first.run.created_at - timedelta(hours=2)  # type: ignore[union-attr]
    )
    second = _operator_trigger(version.model.name, "the worker died")
    assert second.started
    assert second.run is not None
    assert second.run.pk != first.run.pk
    abandoned = RetrainingRun.objects.get(pk=first.run.pk)  # type: ignore[union-attr]
    assert abandoned.status == RetrainingRun.Status.FAILED
    assert "abandoned" in abandoned.outcome
    orphan.refresh_from_db()
    assert orphan.stage == Stage.ARCHIVED
