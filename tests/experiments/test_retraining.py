"""The experiments side of retraining: a registered challenger starts a shadow experiment against the champion
(through the registry's `challenger_registered` signal); its win promotes it only through the registry's gates
(the experiment's win among them), anything else rejects the run with why; a shadow test that cannot start
rejects the run at once."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from experiments.models import Arm, Experiment, Mode, Status
from experiments.retraining import retraining_experiments_advance
from experiments.services import experiment_create, experiment_start
from models_registry.models import ModelAlias, ModelVersion, Stage
from models_registry.retraining.models import Probation, RetrainingEvent, RetrainingRun
from models_registry.retraining.services import challenger_adopt
from tests.experiments.support import cheap_model
from tests.models_registry.factories import registry_settings  # noqa: F401

pytestmark = [
    pytest.mark.usefixtures("registry_settings"),
    pytest.mark.django_db,
    pytest.mark.services("postgres", "redis"),
]


@pytest.fixture
def gated(settings: Any) -> None:
    """The production setting: a champion is replaced only by a version that won an experiment against it."""
    settings.MODELS_REGISTRY_EXTRA_GATES = ["experiments.gates.experiment_won_gate"]
    settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_MINIMUM_SAMPLE = 50
    settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_BURN_IN = 10


def _trained_run(champion: ModelVersion, challenger: ModelVersion, capture: Any) -> RetrainingRun:
    """A run whose training registered `challenger`, adopted as the task does (with the commit's callbacks)."""
    run = RetrainingRun.objects.create(
        model=champion.model,
        trigger="drift",
        reason="drift confirmed",
        actor="retraining:scan",
        parent=champion,
        status=RetrainingRun.Status.TRAINING,
        training_request_id="retraining-test",
    )
    with capture(execute=True):
        challenger_adopt(run_id=run.pk, version_id=challenger.pk, actor="retraining:test")
    run.refresh_from_db()
    return run


def _conclude(experiment_id: int, winner: str | None) -> None:
    """The experiment's verdict as its evaluation would write it (the statistics are tested elsewhere)."""
    experiment = Experiment.objects.get(pk=experiment_id)
    arm = experiment.arms.get(name=winner) if winner else None
    Experiment.objects.filter(pk=experiment_id).update(
        status=Status.CONCLUDED, winner=arm, ended_at=timezone.now(), status_reason="sequential test decisive"
    )


def test_challenger_registered_starts_a_shadow_experiment_against_the_champion(
    gated: None, django_capture_on_commit_callbacks: Any
) -> None:
    model, (v1, v2, _) = cheap_model()
    run = _trained_run(v1, v2, django_capture_on_commit_callbacks)
    assert run.status == RetrainingRun.Status.SHADOW
    experiment = Experiment.objects.get(pk=run.experiment_id)
    assert experiment.mode == Mode.SHADOW
    assert experiment.status == Status.RUNNING
    assert experiment.minimum_sample == 50
    arms = {a.role: a.version for a in experiment.arms.all()}
    assert arms == {Arm.Role.CONTROL: v1, Arm.Role.TREATMENT: v2}
    assert ModelAlias.objects.get(model=model, name="challenger").version == v2
    assert RetrainingEvent.objects.filter(run=run, step="experiment_started").exists()
    assert retraining_experiments_advance() == {"promoted": [], "rejected": []}  # still running


def test_a_won_shadow_test_promotes_through_the_gates_and_starts_probation(
    gated: None, django_capture_on_commit_callbacks: Any
) -> None:
    model, (v1, v2, _) = cheap_model()
    run = _trained_run(v1, v2, django_capture_on_commit_callbacks)
    _conclude(run.experiment_id, "challenger")  # type: ignore[arg-type]
    with django_capture_on_commit_callbacks(execute=True):
        assert retraining_experiments_advance() == {"promoted": [run.pk], "rejected": []}
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.stage, v2.stage) == (Stage.ARCHIVED, Stage.PRODUCTION)
    run.refresh_from_db()
    assert run.status == RetrainingRun.Status.PROMOTED
    assert Experiment.objects.get(pk=run.experiment_id).promoted_at is not None
    assert Probation.objects.get(version=v2).previous == v1
    assert not ModelAlias.objects.filter(model=model, name="challenger").exists()
    steps = list(RetrainingEvent.objects.filter(run=run).values_list("step", flat=True))
    assert steps == ["challenger_registered", "experiment_started", "promoted", "probation_started"]


def test_a_won_shadow_test_the_gates_refuse_rejects_the_run_and_keeps_the_champion(
    gated: None, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    model, (v1, v2, _) = cheap_model()
    run = _trained_run(v1, v2, django_capture_on_commit_callbacks)
    settings.MODELS_REGISTRY_PROMOTION_GATES = {"production": {"sharpe": {"min": 5.0}}}  # tightened meanwhile
    _conclude(run.experiment_id, "challenger")  # type: ignore[arg-type]
    assert retraining_experiments_advance() == {"promoted": [], "rejected": [run.pk]}
    run.refresh_from_db()
    assert run.status == RetrainingRun.Status.REJECTED
    assert "promotion was refused" in run.outcome
    assert "sharpe" in run.outcome
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.stage, v2.stage) == (Stage.PRODUCTION, Stage.ARCHIVED)


@pytest.mark.parametrize(("winner", "why"), [(None, "without a winner"), ("control", "the champion won")])
def test_a_shadow_test_the_challenger_did_not_win_rejects_the_run(
    gated: None, winner: str | None, why: str, django_capture_on_commit_callbacks: Any
) -> None:
    model, (v1, v2, _) = cheap_model()
    run = _trained_run(v1, v2, django_capture_on_commit_callbacks)
    _conclude(run.experiment_id, winner)  # type: ignore[arg-type]
    assert retraining_experiments_advance()["rejected"] == [run.pk]
    run.refresh_from_db()
    assert why in run.outcome
    v1.refresh_from_db()
    assert v1.stage == Stage.PRODUCTION


def test_a_shadow_test_that_cannot_start_rejects_the_run_with_why(
    gated: None, django_capture_on_commit_callbacks: Any
) -> None:
    model, (v1, v2, v3) = cheap_model()
    other = experiment_create(
        model_name=model.name, name="operator's test", treatments=[{"version": v3.version}], actor="user:ops"
    )
    experiment_start(experiment_id=other.pk, actor="user:ops", reason="testing v3")
    run = _trained_run(v1, v2, django_capture_on_commit_callbacks)
    assert run.status == RetrainingRun.Status.REJECTED
    assert "could not start" in run.outcome
    assert "already has a running experiment" in run.outcome
    v2.refresh_from_db()
    assert v2.stage == Stage.ARCHIVED


def test_a_promoted_challenger_that_fails_probation_is_rolled_back_with_the_experiment_gate_on(
    gated: None, django_capture_on_commit_callbacks: Any
) -> None:
    from models_registry.retraining.probation import probation_rollback  # reason: only this test rolls back

    model, (v1, v2, _) = cheap_model()
    run = _trained_run(v1, v2, django_capture_on_commit_callbacks)
    _conclude(run.experiment_id, "challenger")  # type: ignore[arg-type]
    retraining_experiments_advance()
    probation = Probation.objects.get(version=v2)
    assert probation_rollback(probation_id=probation.pk, reasons=["worse than validation"])
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.stage, v2.stage) == (Stage.PRODUCTION, Stage.ARCHIVED)  # v1 never won against v2: no gate refuses it
    steps = list(RetrainingEvent.objects.filter(model=model).values_list("step", flat=True))
    assert steps[-1] == "rolled_back"
