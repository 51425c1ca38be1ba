"""Reconciliation tasks: thin (primitives in, the service does the work), `acks_late`, safe twice: a run is
single-flight by a database constraint, so a duplicate delivery or an overlapping beat tick just finds the slot
taken and returns. Enqueue with `reconciliation_request` (after commit)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task, signals
from django.conf import settings
from django.db import transaction

from core.audit import audit_actor
from reconciliation.runs import ReconciliationRunning, reconciliation_run, startup_gate_engage

logger = logging.getLogger(__name__)

TASK_NAME = "reconciliation.tasks.reconciliation_run_task"
QUEUE = "reconciliation"


@shared_task(name=TASK_NAME, acks_late=True, ignore_result=False, soft_time_limit=600, time_limit=660)
def reconciliation_run_task(
    trigger: str = "schedule", requested_by: str = "reconciliation", reason: str = ""
) -> dict[str, Any]:
    if not live_trading():
        return {"skipped": True, "reason": "paper trading: the exchange account is not ours to reconcile"}
    with audit_actor(f"celery:{TASK_NAME}"):
        try:
            run = reconciliation_run(trigger=trigger, requested_by=requested_by, reason=reason)
        except ReconciliationRunning as exc:
            logger.info("reconciliation already running: skipped", extra={"trigger": trigger})
            return {"skipped": True, "running_run_id": exc.details.get("run_id")}
    return {"run_id": run.pk, "status": run.status, "discrepancies": run.discrepancy_count}


def live_trading() -> bool:
    """Reconciliation compares our books with the exchange account: only meaningful when we trade on it. In paper
    mode the paper broker makes the fills and the exchange account (the simulator's or a real one) is not ours."""
    return settings.TRADING_MODE == "live"


def reconciliation_request(*, trigger: str, requested_by: str = "reconciliation", reason: str = "") -> None:
    """Ask for a run (the ingest worker after a private sequence gap or a reconnect: trigger "gap" / "reconnect";
    the API and admin: "operator"). Sent after the surrounding transaction commits."""
    kwargs = {"trigger": trigger, "requested_by": requested_by, "reason": reason}
    transaction.on_commit(lambda: reconciliation_run_task.apply_async(kwargs=kwargs, queue=QUEUE), robust=True)


@signals.worker_ready.connect
def _startup_reconciliation(sender: Any = None, **_: Any) -> None:
    """A worker that serves the reconciliation queue starts: trading HALTED until the start-up run is clean or
    corrected, and that run enqueued. `GALFRIDAY_RECONCILIATION_ON_WORKER_START = False` turns it off."""
    if not settings.GALFRIDAY_RECONCILIATION_ON_WORKER_START or not live_trading():
        return
    try:
        queues = {q.name for q in sender.task_consumer.queues}  # type: ignore[union-attr]
    except AttributeError:
        return
    if QUEUE not in queues:
        return
    startup_gate_engage()
    reconciliation_run_task.apply_async(kwargs={"trigger": "startup", "reason": "worker start"}, queue=QUEUE)
