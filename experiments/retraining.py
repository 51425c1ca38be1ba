"""The experiments side of the retraining loop (`models_registry.retraining`; the registry never imports this).

- On `challenger_registered` a shadow experiment of the challenger against the champion is created and started
  (`experiments.services`, with the MODELS_REGISTRY_RETRAINING_EXPERIMENT_* parameters) and its id recorded on
  the run. A failure (another experiment of the model running, no champion) propagates: the registry rejects
  the run with that reason.
- When the experiment ends (`retraining_experiments_advance`, after each outcome intake and every minute from
  beat): a concluded experiment whose winner is the challenger is promoted through `experiment_promote_winner`
  (the registry's gates, the experiment's win among them), and the run is marked promoted (its probation
  starts); a gate refusal, a champion win, no decisive winner by the maximum duration, a guardrail stop or an
  abort rejects the run with why, and the challenger is archived.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction

from core.audit import audit_actor
from core.errors import ApplicationError
from experiments import services
from experiments.models import ACTIVE_STATUSES, Arm, Experiment, Mode, Status
from models_registry.retraining.models import RetrainingRun
from models_registry.retraining.services import (
    retraining_experiment_record,
    retraining_promoted,
    retraining_reject,
)

logger = logging.getLogger(__name__)

ACTOR = "experiments:retraining"


def retraining_experiment_start(*, model_name: str, run_id: int, challenger: int, champion: int) -> Experiment:
    """Create and start the shadow experiment of a retraining's challenger and record it on the run (one
    transaction: no draft is left behind when starting fails)."""
    reason = f"shadow test of retraining run {run_id}: challenger v{challenger} against champion v{champion}"
    with transaction.atomic():
        experiment = services.experiment_create(
            model_name=model_name,
            name=f"retraining {run_id}: v{challenger} vs v{champion}",
            treatments=[{"version": challenger, "name": "challenger"}],
            mode=Mode.SHADOW,
            alpha=float(settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_ALPHA),
            minimum_sample=int(settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_MINIMUM_SAMPLE),
            burn_in=int(settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_BURN_IN),
            maximum_duration=timedelta(hours=float(settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_MAX_HOURS)),
            description=f"Started automatically by retraining run {run_id}.",
            actor=ACTOR,
            reason=reason,
        )
        services.experiment_start(experiment_id=experiment.pk, actor=ACTOR, reason=reason)
        retraining_experiment_record(
            run_id=run_id,
            experiment_id=experiment.pk,
            actor=ACTOR,
            detail=f"shadow experiment {experiment.pk} started: v{challenger} (challenger) vs v{champion} (champion)",
        )
    return experiment


def on_challenger_registered(
    sender: Any = None, *, model_name: str, run_id: int, challenger: int, champion: int, **_: Any
) -> int:
    """Receiver of `models_registry.signals.challenger_registered`; returns the experiment id."""
    with audit_actor(ACTOR):
        return retraining_experiment_start(
            model_name=model_name, run_id=run_id, challenger=challenger, champion=champion
        ).pk


def _rejection(experiment: Experiment, run: RetrainingRun) -> str | None:
    """Why an ended experiment does not promote the run's challenger (None when its challenger won)."""
    prefix = f"shadow experiment {experiment.pk}"
    if experiment.status == Status.STOPPED:
        return f"{prefix} stopped by its {experiment.stopped_guardrail} guardrail: {experiment.status_reason}"
    if experiment.status == Status.ABORTED:
        return f"{prefix} aborted: {experiment.status_reason}"
    winner = experiment.winner
    if winner is None:
        return f"{prefix} concluded without a winner: {experiment.status_reason}"
    if winner.role != Arm.Role.TREATMENT or winner.version_id != run.challenger_id:
        return f"{prefix}: the champion won ({experiment.status_reason})"
    return None


def retraining_run_advance(*, run: RetrainingRun) -> str | None:
    """Act on the run's ended experiment: 'promoted', 'rejected', or None while it runs."""
    experiment = (
        Experiment.objects.select_related("winner", "model").filter(pk=run.experiment_id).first()
        if run.experiment_id is not None
        else None
    )
    if experiment is None:
        retraining_reject(run_id=run.pk, reason=f"shadow experiment {run.experiment_id} no longer exists", actor=ACTOR)
        return "rejected"
    if experiment.status in ACTIVE_STATUSES or experiment.status == Status.DRAFT:
        return None
    why = _rejection(experiment, run)
    if why is not None:
        retraining_reject(run_id=run.pk, reason=why, actor=ACTOR, data={"experiment_id": experiment.pk})
        return "rejected"
    if experiment.promoted_at is None:
        try:
            services.experiment_promote_winner(
                experiment_id=experiment.pk,
                actor=ACTOR,
                reason=f"retraining run {run.pk}: the challenger won its shadow test",
            )
        except ApplicationError as exc:  # the gates refused it, or the champion changed meanwhile
            retraining_reject(
                run_id=run.pk,
                reason=f"won shadow experiment {experiment.pk} but the promotion was refused: {exc.message}",
                actor=ACTOR,
                data={"experiment_id": experiment.pk, "error": exc.code, "details": exc.details or {}},
            )
            return "rejected"
    retraining_promoted(
        run_id=run.pk,
        actor=ACTOR,
        detail=f"won shadow experiment {experiment.pk} ({experiment.status_reason}); promoted through the gates",
    )
    return "promoted"


def retraining_experiments_advance() -> dict[str, Any]:
    """Every run in its shadow test whose experiment ended: promoted or rejected (see the module doc)."""
    done: dict[str, Any] = {"promoted": [], "rejected": []}
    runs = RetrainingRun.objects.select_related("model").filter(
        status=RetrainingRun.Status.SHADOW, experiment_id__isnull=False
    )
    for run in runs.order_by("pk"):
        try:
            result = retraining_run_advance(run=run)
        except Exception:  # one run's failure must not stop the others; logged, retried on the next pass
            logger.exception("retraining advance failed", extra={"run": run.pk})
            continue
        if result is not None:
            done[result].append(run.pk)
    return done


def on_outcomes_matured(sender: Any = None, **_: Any) -> None:
    """After the experiments' intake (connected after it) may have concluded a retraining's experiment."""
    if RetrainingRun.objects.filter(status=RetrainingRun.Status.SHADOW, experiment_id__isnull=False).exists():
        with audit_actor(ACTOR):
            retraining_experiments_advance()


@shared_task(name="experiments.tasks.retraining_advance_task", acks_late=True)
def retraining_advance_task() -> dict[str, Any]:
    """Beat's safety net for `retraining_experiments_advance` (an experiment concluded by an operator, or a pass
    that failed)."""
    with audit_actor("celery:experiments.tasks.retraining_advance_task"):
        return retraining_experiments_advance()
