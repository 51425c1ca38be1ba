"""Rules on the machinery: Celery queue backlog, a queue no worker consumes, PostgreSQL connections near
max_connections and the connection pool exhausted, and the last reconciliation run failing."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection

from alerting.rules.base import Finding, Verdict, by_kind
from reconciliation.models import ReconciliationRun
from trading.models import Alert

logger = logging.getLogger(__name__)
K = Alert.Kind
INSPECT_TIMEOUT_S = 1.0  # how long the consumers of the queues get to answer a broadcast


def celery_app() -> Any:
    # reason: galfriday_site.celery builds the app from settings; importing it at module level would make alerting's
    # import order depend on the composition root's.
    from galfriday_site.celery import app

    return app


def queue_backlog_rule(now: datetime) -> Verdict:
    """A Celery queue holding more than GALFRIDAY_ALERT_QUEUE_BACKLOG waiting messages (passive declare: the
    broker's own count). The broker unreachable: cannot tell (the health check and the watchdog say it)."""
    threshold = int(settings.GALFRIDAY_ALERT_QUEUE_BACKLOG)
    sizes: dict[str, int] = {}
    try:
        with celery_app().connection_for_read() as conn:
            channel = conn.default_channel
            for name in settings.GALFRIDAY_CELERY_QUEUES:
                try:
                    sizes[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
                except Exception:  # a queue not declared yet holds nothing
                    sizes[name] = 0
    except Exception:  # the broker is down: cannot tell
        logger.warning("queue backlog rule: broker unreachable", exc_info=True)
        return {K.QUEUE_BACKLOG: None}
    findings = [
        Finding(K.QUEUE_BACKLOG, "warning", f"Celery queue {name} holds {size} waiting tasks (limit {threshold})",
                fingerprint=f"{K.QUEUE_BACKLOG}:{name}", context={"queue": name, "waiting": size, "limit": threshold})
        for name, size in sorted(sizes.items())
        if size > threshold
    ]  # fmt: skip
    return by_kind((K.QUEUE_BACKLOG,), findings)


def consumed_queues() -> set[str] | None:
    """The queues some worker consumes (a broadcast to the workers), or None when the broker cannot broadcast
    (the embedded SQLAlchemy transport) or does not answer."""
    app = celery_app()
    try:
        with app.connection_for_read() as conn:
            if "fanout" not in conn.transport.implements.exchange_type:
                return None
        replies = app.control.inspect(timeout=INSPECT_TIMEOUT_S).active_queues() or {}
    except Exception:
        logger.warning("no-worker rule: broadcast failed", exc_info=True)
        return None
    return {str(q.get("name")) for queues in replies.values() for q in (queues or [])}


def no_worker_rule(now: datetime) -> Verdict:
    """A queue of GALFRIDAY_ALERT_QUEUES_REQUIRED that no running worker consumes: its tasks wait forever."""
    consumed = consumed_queues()
    if consumed is None:
        return {K.QUEUE_NO_WORKER: None}
    findings = [
        Finding(K.QUEUE_NO_WORKER, "critical", f"no Celery worker consumes the queue {name}",
                fingerprint=f"{K.QUEUE_NO_WORKER}:{name}", context={"queue": name, "consumed": sorted(consumed)})
        for name in sorted(set(settings.GALFRIDAY_ALERT_QUEUES_REQUIRED) - consumed)
    ]  # fmt: skip
    return by_kind((K.QUEUE_NO_WORKER,), findings)


def pg_connection_usage() -> tuple[int, int] | None:
    """(connections open on the server, connections usable by clients: max_connections less the reserved ones), or
    None on another database."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
            " current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int,"
            " coalesce(current_setting('reserved_connections', true), '0')::int"
        )
        used, maximum, superuser_reserved, reserved = cursor.fetchone()
    return int(used), int(maximum) - int(superuser_reserved) - int(reserved)


def db_connections_rule(now: datetime) -> Verdict:
    """PostgreSQL's client connections against the usable ones: at GALFRIDAY_ALERT_DB_CONNECTIONS_FRACTION a warning
    (near max_connections), at GALFRIDAY_ALERT_DB_POOL_EXHAUSTED_FRACTION pool exhaustion (new connections are about
    to be refused: too many clients). Not PostgreSQL: nothing to watch."""
    usage = pg_connection_usage()
    if usage is None:
        return {K.DB_CONNECTIONS_HIGH: [], K.DB_POOL_EXHAUSTED: []}
    used, usable = usage
    share = used / usable if usable > 0 else 1.0
    context = {"connections": used, "usable": usable, "share": round(share, 4)}
    findings = []
    if share >= float(settings.GALFRIDAY_ALERT_DB_POOL_EXHAUSTED_FRACTION):
        findings.append(Finding(K.DB_POOL_EXHAUSTED, "warning",
                                f"database connection pool exhausted: {used} of {usable} usable connections open",
                                context=context))  # fmt: skip
    elif share >= float(settings.GALFRIDAY_ALERT_DB_CONNECTIONS_FRACTION):
        findings.append(Finding(K.DB_CONNECTIONS_HIGH, "warning",
                                f"database connections near max_connections: {used} of {usable} usable open "
                                f"({share:.0%})", context=context))  # fmt: skip
    return by_kind((K.DB_CONNECTIONS_HIGH, K.DB_POOL_EXHAUSTED), findings)


def reconciliation_rule(now: datetime) -> Verdict:
    """The latest finished reconciliation run failed (the run raises the alert itself; this also covers a run the
    sweeper marked failed, and resolves once a run succeeds)."""
    run = (
        ReconciliationRun.objects.exclude(status=ReconciliationRun.Status.RUNNING)
        .order_by("-started_at", "-id")
        .first()
    )
    if run is None:
        return {K.RECONCILIATION_FAILED: None}
    findings = []
    if run.status == ReconciliationRun.Status.FAILED:
        findings.append(Finding(K.RECONCILIATION_FAILED, "critical",
                                f"Reconciliation run {run.pk} ({run.trigger}) failed: {run.error}",
                                context={"run_id": run.pk}))  # fmt: skip
    return by_kind((K.RECONCILIATION_FAILED,), findings)
