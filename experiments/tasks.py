"""Experiment tasks (routed to the `lifecycle` queue by `experiments.tasks.*`): thin, ids in, a service called,
safe to run twice."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from core.audit import audit_actor
from experiments.intake import experiments_intake
from experiments.shadow import shadow_predict


@shared_task(name="experiments.tasks.shadow_predict_task", acks_late=True)
def shadow_predict_task(*, experiment_id: int, decision_key: str) -> dict[str, Any]:
    """The treatments' predictions for one decision of a shadow experiment (`experiments.shadow`)."""
    with audit_actor("celery:experiments.tasks.shadow_predict_task"):
        recorded = shadow_predict(experiment_id=experiment_id, decision_key=decision_key)
    return {"experiment": experiment_id, "decision": decision_key, "recorded": recorded}


@shared_task(name="experiments.tasks.experiments_intake_task", acks_late=True)
def experiments_intake_task(*, experiment_id: int | None = None) -> dict[str, Any]:
    """Fold matured outcomes into the active experiments and act on their verdicts (`experiments.intake`)."""
    with audit_actor("celery:experiments.tasks.experiments_intake_task"):
        return experiments_intake(experiment_id=experiment_id).as_dict()
