"""Retraining tasks (named `models_registry.tasks.*`, so routed to the `lifecycle` queue; registered with Celery
by `models_registry.tasks`, which imports this module): thin, ids in, a service called, safe to run twice."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from core.audit import audit_actor
from models_registry.retraining.probation import probation_check
from models_registry.retraining.scan import retraining_scan
from models_registry.retraining.services import retraining_run


@shared_task(name="models_registry.tasks.retraining_run_task", acks_late=True)
def retraining_run_task(*, run_id: int) -> dict[str, Any]:
    """Train one retraining run's challenger and hand it to the shadow test (`retraining.services`)."""
    with audit_actor("celery:models_registry.tasks.retraining_run_task"):
        run = retraining_run(run_id=run_id)
    return {"run": run_id, "status": run.status if run else None, "outcome": run.outcome if run else ""}


@shared_task(name="models_registry.tasks.retraining_scan_task", acks_late=True)
def retraining_scan_task() -> dict[str, Any]:
    """Confirmed drift reports and due schedules become triggers; stale runs are abandoned (`retraining.scan`)."""
    with audit_actor("celery:models_registry.tasks.retraining_scan_task"):
        return retraining_scan()


@shared_task(name="models_registry.tasks.probation_check_task", acks_late=True)
def probation_check_task() -> dict[str, Any]:
    """Promoted versions on probation: passed, still watched, or rolled back (`retraining.probation`)."""
    with audit_actor("celery:models_registry.tasks.probation_check_task"):
        return probation_check()
