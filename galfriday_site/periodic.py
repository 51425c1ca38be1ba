"""The periodic tasks the system runs, in one place; `manage.py setup_periodic_tasks` writes them to
django-celery-beat's database schedule (idempotently). Later issues add reconciliation, drift checks and
retraining here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

MANAGED_PREFIX = "galfriday: "


@dataclass(frozen=True)
class PeriodicTaskSpec:
    name: str
    task: str
    every_seconds: int
    queue: str = "default"
    kwargs: dict[str, Any] = field(default_factory=dict)
    expires_seconds: int | None = None

    @property
    def full_name(self) -> str:
        return MANAGED_PREFIX + self.name


PERIODIC_TASKS: list[PeriodicTaskSpec] = [
    # Deletes expired task results (the embedded result backend is a SQLite file that would otherwise grow).
    PeriodicTaskSpec("clean up expired task results", "celery.backend_cleanup", every_seconds=3600),
    # Equity snapshot + drawdown / daily-loss check; halts trading on a breach (trading.risk_monitor).
    PeriodicTaskSpec(
        "risk monitor", "trading.tasks.risk_monitor_run", every_seconds=10, queue="trading", expires_seconds=10
    ),
    # Paper mode: fill resting paper limit orders the market traded through (a no-op in live mode).
    PeriodicTaskSpec(
        "paper broker sweep", "trading.tasks.paper_broker_sweep", every_seconds=5, queue="trading", expires_seconds=5
    ),
    # Books against Kraken (reconciliation.runs); single-flight, so an overlapping tick just skips.
    PeriodicTaskSpec(
        "reconciliation",
        "reconciliation.tasks.reconciliation_run_task",
        every_seconds=60,
        queue="reconciliation",
        kwargs={"trigger": "schedule"},
        expires_seconds=60,
    ),
    # Outcomes of predictions whose horizon passed, recent ones re-checked, degradation alerts
    # (models_registry.outcomes); single-flight, a replay writes nothing.
    PeriodicTaskSpec(
        "prediction outcomes",
        "models_registry.tasks.outcomes_mature_task",
        every_seconds=60,
        queue="lifecycle",
        expires_seconds=60,
    ),
    # The alert rules (alerting.rules): fire what holds, resolve what cleared; idempotent. The database's every 2 s
    # (a few indexed reads each; condition -> notification delivered p99 < 5 s, BENCHMARKS.md), the broker's (queue
    # lengths, a broadcast to the workers) every 30 s.
    PeriodicTaskSpec(
        "alert rules",
        "alerting.tasks.alert_rules_evaluate",
        every_seconds=2,
        kwargs={"group": "database"},
        expires_seconds=4,
    ),
    PeriodicTaskSpec(
        "alert rules (broker)",
        "alerting.tasks.alert_rules_evaluate",
        every_seconds=30,
        kwargs={"group": "broker"},
        expires_seconds=30,
    ),
    # Notifications (notifications.delivery): enqueue pending messages that are due and whose own task is late or
    # lost (a channel down for long, a broker restart, quiet hours ending).
    PeriodicTaskSpec(
        "notifications re-drive", "notifications.tasks.notifications_redrive_task", every_seconds=15, expires_seconds=15
    ),
    # Reminders for firing alerts not notified within NOTIFY_REPEAT_INTERVAL_S (notifications.grouping).
    PeriodicTaskSpec(
        "notification reminders", "notifications.tasks.notifications_remind_task", every_seconds=60, expires_seconds=60
    ),
    # Drift checks of every production and staging version (models_registry.drift.checks): one DriftReport each,
    # a drift alert when confirmed; single-flight per version.
    PeriodicTaskSpec(
        "drift checks",
        "models_registry.tasks.drift_check_task",
        every_seconds=900,
        queue="lifecycle",
        kwargs={"trigger": "schedule"},
        expires_seconds=900,
    ),
    # Retraining (models_registry.retraining): confirmed drift and due schedules become triggers (single-flight
    # per model), stuck runs are abandoned; ended shadow tests of challengers promote (gated) or reject
    # (experiments.retraining); versions on probation pass or are rolled back.
    PeriodicTaskSpec(
        "retraining triggers",
        "models_registry.tasks.retraining_scan_task",
        every_seconds=60,
        queue="lifecycle",
        expires_seconds=60,
    ),
    PeriodicTaskSpec(
        "retraining shadow tests",
        "experiments.tasks.retraining_advance_task",
        every_seconds=60,
        queue="lifecycle",
        expires_seconds=60,
    ),
    PeriodicTaskSpec(
        "probation",
        "models_registry.tasks.probation_check_task",
        every_seconds=60,
        queue="lifecycle",
        expires_seconds=60,
    ),
    # The heartbeat to GALFRIDAY_HEARTBEAT_URL while the system is healthy (galfriday_site.heartbeat; off when empty),
    # so an outside service notices when Gal-Friday goes silent.
    PeriodicTaskSpec(
        "heartbeat ping", "galfriday_site.heartbeat_ping", every_seconds=60, queue="default", expires_seconds=60
    ),
]


@transaction.atomic
def sync_periodic_tasks(specs: list[PeriodicTaskSpec] | None = None) -> tuple[int, int, int]:
    """Write `specs` (default: PERIODIC_TASKS) to the beat schedule; returns (created, updated, disabled)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    specs = PERIODIC_TASKS if specs is None else specs
    created = updated = 0
    for spec in specs:
        interval, _ = IntervalSchedule.objects.get_or_create(every=spec.every_seconds, period=IntervalSchedule.SECONDS)
        wanted = {
            "task": spec.task,
            "interval": interval,
            "queue": spec.queue,
            "kwargs": json.dumps(spec.kwargs, sort_keys=True),
            "expire_seconds": spec.expires_seconds,
        }
        task = PeriodicTask.objects.filter(name=spec.full_name).first()
        if task is None:
            PeriodicTask.objects.create(name=spec.full_name, enabled=True, **wanted)
            created += 1
            continue
        if any(getattr(task, key) != value for key, value in wanted.items()):
            for key, value in wanted.items():
                setattr(task, key, value)
            task.save()
            updated += 1
    stale = PeriodicTask.objects.filter(name__startswith=MANAGED_PREFIX, enabled=True).exclude(
        name__in=[s.full_name for s in specs]
    )
    disabled = 0
    for task in stale:
        task.enabled = False
        task.save(update_fields=["enabled"])
        disabled += 1
    return created, updated, disabled
