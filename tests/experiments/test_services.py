"""Experiment services: creation validated before anything is written (clear 400 codes), one running
experiment per model (also a database constraint), audited transitions with actor and reason, and promotion of
a winner only through the registry's gates with the experiment's evidence as one more gate."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import IntegrityError, transaction

from core.errors import ApplicationError, ConflictError
from experiments.intake import experiments_intake
from experiments.models import Arm, Experiment, ExperimentEvent, Status
from experiments.services import (
    experiment_abort,
    experiment_conclude,
    experiment_create,
    experiment_pause,
    experiment_promote_winner,
    experiment_resume,
    experiment_start,
)
from models_registry.models import ModelVersion, Stage, StageEvent
from models_registry.services import PromotionGateFailed, model_version_promote
from tests.experiments.support import cheap_model, shadow_experiment, synthetic_outcomes
from tests.models_registry.factories import registry_settings  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]

ACTOR = "user:tester"


def _create(name: str, **overrides: Any) -> Experiment:
    fields: dict[str, Any] = {
        "model_name": name,
        "name": "v2 vs champion",
        "treatments": [{"version": 2}],
        "actor": ACTOR,
        "reason": "retrained on more data",
        **overrides,
    }
    return experiment_create(**fields)


def test_create_makes_a_draft_whose_control_is_the_champion() -> None:
    model, versions = cheap_model(3)
    experiment = _create(model.name, treatments=[{"version": 2}, {"version": 3, "name": "wide"}])
    assert experiment.status == Status.DRAFT
    arms = list(experiment.arms.order_by("position").values_list("name", "role", "version__version"))
    assert arms == [("control", "control", 1), ("treatment-1", "treatment", 2), ("wide", "treatment", 3)]
    event = ExperimentEvent.objects.get(experiment=experiment)
    assert (event.action, event.to_status, event.actor, event.reason) == (
        "create", "draft", ACTOR, "retrained on more data",
    )  # fmt: skip
    assert experiment.history.first().actor == ACTOR  # type: ignore[attr-defined]


def _other_version_id() -> int:
    _, versions = cheap_model(1)
    return versions[0].pk


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"model_name": "no-such-model"}, "unknown_model"),
        ({"treatments": [{"version": 99}]}, "unknown_version"),
        ({"treatments": [{"version_id": "other"}]}, "version_of_another_model"),
        ({"treatments": [{"version": 2, "model": "another-model"}]}, "version_of_another_model"),
        (
            {
                "mode": "split",
                "control_allocation_percent": "50",
                "treatments": [{"version": 2, "allocation_percent": 40}],
            },
            "allocation_not_100",
        ),
        ({"mode": "split", "treatments": [{"version": 2}]}, "allocation_not_100"),
        ({"alpha": 0.5}, "alpha_out_of_range"),
        ({"alpha": 0.0}, "alpha_out_of_range"),
        ({"alpha": 0.7}, "alpha_out_of_range"),
        ({"treatments": [{"version": 1}]}, "treatment_is_control"),
        ({"treatments": [{"version": 2}, {"version": 2, "name": "again"}]}, "duplicate_version"),
        ({"treatments": []}, "validation_error"),
        ({"reason": "  "}, "validation_error"),
        ({"max_error_rate": 1.5}, "validation_error"),
        ({"maximum_duration": timedelta(0)}, "validation_error"),
    ],
)
def test_bad_input_is_a_clear_400_and_nothing_is_written(overrides, code) -> None:  # type: ignore[no-untyped-def]
    model, _ = cheap_model(3)
    if overrides.get("treatments") == [{"version_id": "other"}]:
        overrides = {"treatments": [{"version_id": _other_version_id()}]}
    with pytest.raises(ApplicationError) as caught:
        _create(model.name, **overrides)
    assert caught.value.code == code
    assert caught.value.http_status == 400
    assert not Experiment.objects.exists()
    assert not Arm.objects.exists()
    assert not ExperimentEvent.objects.exists()


def test_a_model_without_a_champion_cannot_be_tested() -> None:
    model, _ = cheap_model(2, promote=None)
    with pytest.raises(ApplicationError) as caught:
        _create(model.name)
    assert (caught.value.code, caught.value.http_status) == ("no_champion", 400)
    assert not Experiment.objects.exists()


def test_one_running_experiment_per_model() -> None:
    model, _ = cheap_model(3)
    first = _create(model.name)
    draft = _create(model.name, treatments=[{"version": 3}])  # drafts may wait
    experiment_start(experiment_id=first.pk, actor=ACTOR, reason="go")
    with pytest.raises(ApplicationError) as caught:
        _create(model.name, treatments=[{"version": 3}])
    assert (caught.value.code, caught.value.http_status) == ("experiment_already_running", 400)
    with pytest.raises(ApplicationError) as started:
        experiment_start(experiment_id=draft.pk, actor=ACTOR, reason="second")
    assert started.value.code == "experiment_already_running"
    assert Experiment.objects.get(pk=draft.pk).status == Status.DRAFT
    # the database holds the invariant even for a write that skips the services
    with pytest.raises(IntegrityError), transaction.atomic():
        Experiment.objects.filter(pk=draft.pk).update(status=Status.PAUSED, started_at=first.started_at)


def test_transitions_are_audited_with_who_and_why_and_invalid_ones_refused() -> None:
    model, _ = cheap_model(2)
    experiment = _create(model.name)
    with pytest.raises(ConflictError) as caught:
        experiment_resume(experiment_id=experiment.pk, actor=ACTOR, reason="not paused")
    assert (caught.value.code, caught.value.http_status) == ("invalid_transition", 409)
    experiment_start(experiment_id=experiment.pk, actor="user:alice", reason="ready")
    experiment_pause(experiment_id=experiment.pk, actor="user:bob", reason="exchange maintenance")
    experiment_resume(experiment_id=experiment.pk, actor="user:bob", reason="maintenance over")
    done = experiment_abort(experiment_id=experiment.pk, actor="user:carol", reason="wrong treatment")
    assert done.status == Status.ABORTED
    assert done.ended_at is not None
    events = list(experiment.events.values_list("action", "from_status", "to_status", "actor", "reason"))
    assert events == [
        ("create", "", "draft", ACTOR, "retrained on more data"),
        ("start", "draft", "running", "user:alice", "ready"),
        ("pause", "running", "paused", "user:bob", "exchange maintenance"),
        ("resume", "paused", "running", "user:bob", "maintenance over"),
        ("abort", "running", "aborted", "user:carol", "wrong treatment"),
    ]
    history = list(done.history.order_by("history_date").values_list("status", "actor"))  # type: ignore[attr-defined]
    assert history == [
        ("draft", ACTOR), ("running", "user:alice"), ("paused", "user:bob"), ("running", "user:bob"),
        ("aborted", "user:carol"),
    ]  # fmt: skip
    with pytest.raises(ApplicationError):
        experiment_pause(experiment_id=experiment.pk, actor="user:bob", reason="")


def test_start_refuses_when_the_champion_changed_since_the_draft() -> None:
    model, _ = cheap_model(3)
    experiment = _create(model.name)
    model_version_promote(model_name=model.name, version=3, reason="new champion", actor="test")
    with pytest.raises(ConflictError) as caught:
        experiment_start(experiment_id=experiment.pk, actor=ACTOR, reason="go")
    assert caught.value.code == "champion_changed"
    assert Experiment.objects.get(pk=experiment.pk).status == Status.DRAFT


@pytest.fixture
def experiment_gate(settings, registry_settings):  # type: ignore[no-untyped-def]  # noqa: F811
    """The settings' default experiment gate, back on after the registry fixture turned the gates off."""
    settings.MODELS_REGISTRY_EXTRA_GATES = ["experiments.gates.experiment_won_gate"]


def _won(model: Any) -> Experiment:
    """A shadow experiment whose treatment (v2) is clearly better on net return, concluded by the intake."""
    experiment = shadow_experiment(model, [2], minimum_sample=60, burn_in=20)
    control = experiment.arms.get(role="control")
    treatment = experiment.arms.get(role="treatment")
    rng = __import__("numpy").random.default_rng(4)
    base = rng.normal(0.0, 0.01, 300)
    synthetic_outcomes(experiment, control, base.tolist())
    synthetic_outcomes(experiment, treatment, (base + 0.004 + rng.normal(0, 0.002, 300)).tolist())
    experiments_intake()
    experiment.refresh_from_db()
    return experiment


@pytest.mark.usefixtures("experiment_gate")
def test_a_version_that_won_no_experiment_needs_the_registrys_audited_override(staff_user) -> None:  # type: ignore[no-untyped-def]
    model, _ = cheap_model(2)
    with pytest.raises(PromotionGateFailed) as caught:
        model_version_promote(model_name=model.name, version=2, reason="looks better", actor="test")
    assert "has not won a concluded experiment against the champion v1" in caught.value.message
    assert ModelVersion.objects.get(model=model, version=1).stage == Stage.PRODUCTION
    staff_user.user_permissions.add(Permission.objects.get(codename="override_promotion_gate"))
    staff_user = type(staff_user).objects.get(pk=staff_user.pk)
    model_version_promote(
        model_name=model.name, version=2, reason="urgent fix, reviewed by the desk", user=staff_user, override=True
    )
    event = StageEvent.objects.get(model=model, version__version=2, to_stage="production")
    assert event.gate_overridden


@pytest.mark.usefixtures("experiment_gate")
def test_a_winner_is_concluded_by_the_evidence_and_promoted_through_the_gates() -> None:
    model, _ = cheap_model(2)
    experiment = _won(model)
    assert experiment.status == Status.CONCLUDED
    assert experiment.winner is not None
    assert experiment.winner.version.version == 2
    assert experiment.events.get(action="conclude").actor == "experiments:evaluation"
    version = experiment_promote_winner(experiment_id=experiment.pk, actor="user:lead", reason="ship it")
    assert version.stage == Stage.PRODUCTION
    event = StageEvent.objects.get(model=model, version__version=2, to_stage="production")
    gate = next(g for g in event.gate_report if g["name"] == "experiment:won_against_champion")
    assert gate["passed"]
    assert not event.gate_overridden
    assert experiment.events.filter(action="promote", actor="user:lead").exists()
    with pytest.raises(ConflictError):
        experiment_promote_winner(experiment_id=experiment.pk, actor="user:lead", reason="again")


def test_a_named_winner_the_statistics_do_not_support_is_refused() -> None:
    model, _ = cheap_model(2)
    experiment = shadow_experiment(model, [2])
    with pytest.raises(ApplicationError) as caught:
        experiment_conclude(experiment_id=experiment.pk, actor=ACTOR, reason="I like it", winner="treatment-1")
    assert caught.value.code == "not_significant"
    assert Experiment.objects.get(pk=experiment.pk).status == Status.RUNNING
    ended = experiment_conclude(experiment_id=experiment.pk, actor=ACTOR, reason="no time left")
    assert (ended.status, ended.winner) == (Status.CONCLUDED, None)
    with pytest.raises(ConflictError) as promote:
        experiment_promote_winner(experiment_id=experiment.pk, actor=ACTOR, reason="promote anyway")
    assert promote.value.code == "no_winner"
