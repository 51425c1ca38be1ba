"""Reads of the Reconciliation and System pages: reconciliation runs and open discrepancies (through
`reconciliation.selectors`), the ingest worker's heartbeat rows (`ingest.IngestStatus`, what `ingest.health`
writes), the health checks (`galfriday_site.health`), Celery's queues, workers and task outcomes (read as
`/metrics` reads them) and the newest alerts. Bounded lists and indexed reads only; the slow probes (health checks,
the worker ping) are fetched by the page after it loads, never while it renders."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from prometheus_client.registry import Collector

from alerting.selectors import alert_list
from dashboard.formatting import DASH, format_decimal, instrument_places, money_places
from galfriday_site.health import INGEST_STALE_SECONDS, run_health_checks
from galfriday_site.metrics.processes import ProcessesCollector, multiprocess_dir
from galfriday_site.metrics.workers import QueueDepthCollector, WorkersCollector
from ingest.models import BackfillRecord, IngestStatus
from reconciliation import selectors as reconciliation_selectors
from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.tasks import live_trading
from trading.models import Alert

logger = logging.getLogger(__name__)

RUN_LIMIT = 20  # newest reconciliation runs shown
DISCREPANCY_LIMIT = 50  # open discrepancies shown (most severe first)
WORKER_LIMIT = 20  # ingest heartbeat rows shown
BACKFILL_LIMIT = 10  # newest gap repairs shown
ALERT_LIMIT = 25  # newest alerts shown
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


# --- reconciliation -------------------------------------------------------------------------------------------


def reconciliation_overview() -> dict[str, Any]:
    """Trading mode (paper: no exchange account to reconcile), the newest runs, the last good one, and the open
    or acknowledged discrepancies, most severe first, with counts by severity."""
    runs = list(reconciliation_selectors.run_list().defer("counts").order_by("-started_at", "-id")[:RUN_LIMIT])
    open_qs = reconciliation_selectors.discrepancy_list(filters={"open": True})
    counts = Counter(dict(open_qs.order_by().values("severity").annotate(n=Count("id")).values_list("severity", "n")))
    discrepancies = sorted(
        open_qs.defer("evidence", "action_detail").order_by("-created_at", "-id")[:DISCREPANCY_LIMIT],
        key=lambda d: (SEVERITY_ORDER.get(d.severity, 9), -d.pk),
    )
    rows = []
    for d in discrepancies:
        places = discrepancy_places(d)
        rows.append(
            {
                "d": d,
                "places": places,
                "ours": _value(d.local_value, places),
                "theirs": _value(d.exchange_value, places),
            }
        )
    return {
        "live": live_trading(),
        "trading_mode": settings.TRADING_MODE,
        "runs": runs,
        "running": next((r for r in runs if r.status == ReconciliationRun.Status.RUNNING), None),
        "last_good": reconciliation_selectors.last_good_run(),
        "discrepancies": rows,
        "open_counts": {s: counts.get(s, 0) for s in ("critical", "warning", "info")},
        "open_total": sum(counts.values()),
        "cooldown_s": int(settings.GALFRIDAY_RECONCILIATION_TRIGGER_COOLDOWN_S),
        "statuses": Discrepancy.Status,
    }


QUANTITY_KINDS = {
    Discrepancy.Kind.QUANTITY_MISMATCH,
    Discrepancy.Kind.POSITION_MISMATCH,
    Discrepancy.Kind.MISSING_FILL,
    Discrepancy.Kind.UNKNOWN_LOCAL_FILL,
}


def discrepancy_places(d: Discrepancy) -> int:
    """Decimal places of a discrepancy's values: the lot precision for quantities, the quote currency's for fees,
    the asset's for balances (dashboard.formatting's rules), 8 otherwise."""
    instrument = d.instrument
    if d.kind == Discrepancy.Kind.BALANCE_MISMATCH and d.asset:
        return money_places(d.asset, fallback=8)
    if instrument is None:
        return 8
    if d.kind in QUANTITY_KINDS:
        return int(instrument.qty_precision)
    return int(instrument_places(instrument)["money"])


def _value(text: str, places: int) -> str:
    """A value the engine recorded as text: a number to `places`, anything else (a state name) as it is."""
    if not text:
        return DASH
    try:
        Decimal(text)
    except InvalidOperation:
        return text
    return format_decimal(text, places, group=False)


# --- system ---------------------------------------------------------------------------------------------------


def _age_s(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else max(0.0, (now - at).total_seconds())


def ingest_workers(now: datetime | None = None) -> list[dict[str, Any]]:
    """Each ingest worker's heartbeat (newest first): connection and exchange state, heartbeat age (stale after
    INGEST_STALE_SECONDS, as the health check says), and the health section `ingest.health` writes: messages per
    second and exchange-to-receive lag (p50/p99) per channel, reconnects, checksum failures, queues and drops."""
    now = now or timezone.now()
    rows = []
    for status in IngestStatus.objects.order_by("-updated_at")[:WORKER_LIMIT]:
        health = dict((status.stats or {}).get("health") or {})
        age = _age_s(status.updated_at, now) or 0.0
        rates = health.get("messages_per_s") or {}
        lags = health.get("lag_ms") or {}
        channels = sorted(set(rates) | set(lags))
        rows.append(
            {
                "status": status,
                "age_s": age,
                "stale": age > INGEST_STALE_SECONDS,
                "channels": [{"name": c, "rate": rates.get(c), "lag": lags.get(c) or {}} for c in channels],
                "reconnects": health.get("reconnects", 0),
                "checksum_failures": health.get("checksum_failures", 0),
                "malformed": health.get("malformed_messages", 0),
                "unknown": health.get("unknown_messages", 0),
                "queues": health.get("queues") or {},
                "dropped": health.get("dropped") or {},
            }
        )
    return rows


def recent_backfills() -> list[BackfillRecord]:
    return list(BackfillRecord.objects.order_by("-started_at", "-id")[:BACKFILL_LIMIT])


def recent_alerts() -> list[Alert]:
    return list(alert_list()[:ALERT_LIMIT])


def system_overview() -> dict[str, Any]:
    """What the System page renders at once (database reads only)."""
    now = timezone.now()
    return {
        "now": now,
        "workers": ingest_workers(now),
        "backfills": recent_backfills(),
        "alerts": recent_alerts(),
        "open_alerts": alert_list(filters={"open": True}).count(),
        "stale_after_s": INGEST_STALE_SECONDS,
        "queues": list(settings.GALFRIDAY_CELERY_QUEUES),
    }


def health_components(*, details: bool) -> dict[str, Any]:
    """Every component's health check (`galfriday_site.health`, run for real). `details` (staff): the backend,
    the error text and the ingest details, as `/api/health/` shows them to staff."""
    report = run_health_checks()
    components = {}
    for c in report:
        entry = {"status": "ok" if c.ok else "failing", "latency_ms": round(c.latency_ms, 2), "required": c.required}
        if details:
            entry.update(backend=c.backend, error=c.error)
        components[c.name] = entry
    ok = all(c.ok for c in report if c.required)
    return {"status": "ok" if ok else "failing", "checked_at": timezone.now().isoformat(), "components": components}


def _samples(collector: Collector, name: str) -> list[Any]:
    return [sample for family in collector.collect() for sample in family.samples if sample.name == name]


def celery_queue_depths() -> dict[str, int]:
    """Messages waiting per Celery queue: `/metrics`' own reading of the broker (`QueueDepthCollector`)."""
    return {s.labels["queue"]: int(s.value) for s in _samples(QueueDepthCollector(), "galfriday_celery_queue_depth")}


def celery_workers() -> list[str]:
    """The workers that answered a ping (`/metrics`' `WorkersCollector`: it waits the whole ping timeout)."""
    return sorted(s.labels["worker"] for s in _samples(WorkersCollector(), "galfriday_celery_worker_up"))


def celery_task_outcomes() -> dict[str, Any]:
    """Task outcomes per task as the workers counted them (`core.metrics.TASK_OUTCOMES`, read like `/metrics`
    reads every process's counters: all of them with PROMETHEUS_MULTIPROC_DIR, else this process's own)."""
    per_task: dict[str, dict[str, int]] = {}
    for s in _samples(ProcessesCollector(), "galfriday_celery_tasks_total"):
        per_task.setdefault(s.labels["task"], {})[s.labels["outcome"]] = int(s.value)
    failures = {t: sum(v for k, v in o.items() if k != "success") for t, o in per_task.items()}
    return {
        "shared": bool(multiprocess_dir()),
        "failed_total": sum(failures.values()),
        "tasks": [
            {"task": t, "outcomes": per_task[t], "failed": failures[t]}
            for t in sorted(per_task, key=lambda t: (-failures[t], t))
        ],
    }


def celery_overview() -> dict[str, Any]:
    """Queue depths, workers online and task outcomes; a broker that cannot be reached is reported, never
    raised."""
    out: dict[str, Any] = {"checked_at": timezone.now().isoformat(), "error": "", "queues": {}, "workers": []}
    try:
        out["queues"] = celery_queue_depths()
        out["workers"] = celery_workers()
    except Exception as exc:  # the page shows why; the broker's own health check says the same
        logger.warning("celery overview unavailable", extra={"error": repr(exc)})
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["outcomes"] = celery_task_outcomes()
    return out
