"""Trading tasks: thin (ids and primitives in, state re-read, a service called), idempotent, `acks_late`."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from galfriday_site.audit import audit_actor


@shared_task(name="trading.tasks.risk_monitor_run", acks_late=True, expires=10, ignore_result=True)
def risk_monitor_run() -> dict[str, Any]:
    """The continuous risk check (every 10 s from beat): equity snapshot, halt on a breached loss limit."""
    from trading.risk_services import risk_monitor_check

    with audit_actor("celery:trading.tasks.risk_monitor_run"):
        return risk_monitor_check().to_json()
