"""The Celery app: Redis broker in production and under `manage.py standalone` (its embedded Redis); kombu's
SQLAlchemy transport on SQLite for a process started alone without REDIS_URL.

Queues by kind of work: `trading` (latency-sensitive), `ingest`, `lifecycle` (training, drift, experiments),
`reconciliation`, and `default` for the rest. Configuration lives in Django settings under `CELERY_`.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals
from prometheus_client import multiprocess

from core.metrics import TASK_OUTCOMES, process_identifier

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")


def make_celery_app(main: str = "galfriday_site", **overrides: Any) -> Celery:
    """Build a Celery app configured from Django settings; `overrides` replace settings (tests use this to
    point a second app at another broker)."""
    celery_app = Celery(main)
    celery_app.config_from_object("django.conf:settings", namespace="CELERY")
    if overrides:
        if "broker_url" in overrides and not str(overrides["broker_url"]).startswith(("redis://", "rediss://")):
            overrides.setdefault("broker_transport_options", {})  # the Redis socket options mean nothing there
        celery_app.conf.update(**overrides)

    @celery_app.on_after_configure.connect(weak=False)
    def _redis_transport(sender: Celery, **_: Any) -> None:
        # kombu's Redis transport with the fix of galfriday_site.broker: a worker whose Redis restarts while it
        # holds an unacknowledged message keeps running. Not for rediss://, whose TLS default kombu derives from
        # the scheme's transport name. Decided when the configuration loads, not here: reading `conf` at import
        # loads Django's settings while `galfriday_site` itself is imported, before galfriday_site.asgi has said
        # it is the web process (GALFRIDAY_PROCESS), and the web would keep a database connection per thread.
        if str(sender.conf.broker_url).startswith("redis://") and not sender.conf.broker_transport:
            sender.conf.broker_transport = "galfriday_site.broker:Transport"

    celery_app.autodiscover_tasks()
    return celery_app


app = make_celery_app()


@signals.task_prerun.connect
def _reuse_healthy_db_connections(task: Any = None, **_: Any) -> None:
    """Django's connection rules before each task, as before each web request: a connection older than
    CONN_MAX_AGE or failing its health check (CONN_HEALTH_CHECKS) is replaced, a healthy one is kept. Celery's
    Django fixup would otherwise close every connection around every task (CELERY_DB_REUSE_MAX turns that off):
    a new PostgreSQL connection per task, twice on the closed-bar → order path. Not for eager runs (tests), whose
    connection belongs to the caller's transaction."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@signals.worker_init.connect
@signals.beat_init.connect
def _refuse_unsafe_production_start(**_: Any) -> None:
    """Run the project's system checks when a worker or beat starts, as `manage.py` does for its commands:
    a production worker must not start on SQLite or without a SECRET_KEY any more than the web process."""
    import django
    from django.core import checks

    django.setup()
    errors = [m for m in checks.run_checks(tags=["galfriday"]) if m.is_serious()]
    if errors:
        raise SystemExit("Refusing to start:\n" + "\n".join(str(e) for e in errors))


@signals.worker_process_init.connect
@signals.worker_ready.connect
def _freeze_startup_objects(**_: Any) -> None:
    """Move everything alive after start-up (Django, the models, numpy/scikit-learn, the loaded model) out of the
    garbage collector's reach (`gc.freeze`): a full collection then walks only what the tasks made, instead of
    stalling a task for tens of milliseconds every so often (prefork children: once each, after the fork; the
    solo pool: when the worker is ready)."""
    import gc

    gc.collect()
    gc.freeze()


def _count_outcome(outcome: str) -> Any:
    def count(sender: Any = None, **_: Any) -> None:
        TASK_OUTCOMES.labels(str(getattr(sender, "name", None) or "unknown"), outcome).inc()

    count.__name__ = f"_count_task_{outcome}"
    return count


# Task outcomes per task, counted in the worker that ran it (`galfriday_celery_tasks_total`, every worker's in
# /metrics); the handlers are kept here, as Celery holds its receivers weakly.
_OUTCOME_RECEIVERS = {
    outcome: _count_outcome(outcome) for outcome in ("success", "failure", "retry", "revoked", "internal_error")
}
signals.task_success.connect(_OUTCOME_RECEIVERS["success"], weak=False)
signals.task_failure.connect(_OUTCOME_RECEIVERS["failure"], weak=False)
signals.task_retry.connect(_OUTCOME_RECEIVERS["retry"], weak=False)
signals.task_revoked.connect(_OUTCOME_RECEIVERS["revoked"], weak=False)
signals.task_internal_error.connect(_OUTCOME_RECEIVERS["internal_error"], weak=False)


@signals.task_rejected.connect
def _count_rejected(**_: Any) -> None:
    """A message no task of this worker knows (or a malformed one): rejected, counted under `unknown`."""
    TASK_OUTCOMES.labels("unknown", "rejected").inc()


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _metrics_process_dead(**_: Any) -> None:
    """prometheus_client's multiprocess mode: a worker process that exits takes its live gauges with it (its
    counters and histograms stay counted). Nothing to do without PROMETHEUS_MULTIPROC_DIR."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(process_identifier())
