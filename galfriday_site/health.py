"""Real checks of every backing component, each reported as ok/failing with its latency.

Each check reads settings when it runs (not at import), talks to the component for real, and is bounded by
HEALTH_CHECK_TIMEOUT seconds. A check returns its backend's name, or the name and a dict of details (the ingest
worker's rates, lag, queues and repairs from its heartbeat row), reported under `details`.

`run_health_checks` is what every caller uses (`/api/health/`, `/metrics`, the dashboard's health strip, the
heartbeat): it reuses the latest run for HEALTH_CHECK_CACHE_S seconds (the web process: 1 s; elsewhere 0, every
call checks), one run at a time per process, so callers polling often (a load balancer, Prometheus, every open
dashboard) cost the components one round of checks a second instead of one each. Each component says when it was
checked (`checked_at`). A settings change (`override_settings`) forgets the latest run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import connections
from django.utils import timezone
from kombu import Connection

from ingest.kraken.rest import KrakenRestClient
from ingest.models import BackfillRecord, IngestStatus
from timeseries import get_store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    ok: bool
    latency_ms: float
    backend: str
    required: bool
    error: str = ""
    details: dict[str, Any] | None = None
    checked_at: datetime | None = None  # when this round of checks started

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": "ok" if self.ok else "failing",
            "latency_ms": round(self.latency_ms, 2),
            "backend": self.backend,
            "required": self.required,
        }
        if self.error:
            data["error"] = self.error
        if self.details is not None:
            data["details"] = self.details
        return data


def _timeout() -> float:
    return float(settings.HEALTH_CHECK_TIMEOUT)


def check_database() -> str:
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def check_broker() -> str:
    url = settings.CELERY_BROKER_URL
    with Connection(url, connect_timeout=_timeout(), transport_options={"socket_timeout": _timeout()}) as conn:
        conn.ensure_connection(max_retries=1, timeout=_timeout())
        channel = conn.default_channel  # the Redis transport pings the server when it opens a channel
        channel.close()
        return str(conn.transport.driver_type)


def check_cache() -> str:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=30)
    value = cache.get(key)
    cache.delete(key)
    if value != "ok":
        raise RuntimeError("cache did not return the value just written")
    return settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]


def check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    async def round_trip() -> None:
        channel = await layer.new_channel("health.")
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "health.ping", "token": token})
        message = await layer.receive(channel)
        if message.get("token") != token:
            raise RuntimeError("channel layer returned another message")

    async def bounded() -> None:
        await asyncio.wait_for(round_trip(), timeout=_timeout())

    async_to_sync(bounded)()
    return type(layer).__name__


def check_timeseries() -> str:
    store = get_store()
    try:
        store.ping()
    finally:
        close = getattr(store, "close", None)
        if close:
            close()
    return store.backend


def check_exchange() -> str:
    async def status() -> str:
        async with KrakenRestClient(base_url=settings.KRAKEN_REST_URL, timeout=_timeout()) as client:
            return (await client.system_status()).status

    exchange_status = async_to_sync(status)()
    if exchange_status != "online":
        raise RuntimeError(f"exchange status is {exchange_status}")
    return f"{settings.GALFRIDAY_EXCHANGE} ({settings.KRAKEN_REST_URL})"


INGEST_STALE_SECONDS = 30


class ComponentFailing(RuntimeError):
    """A failing component that still has details to show (the ingest worker's last heartbeat)."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def ingest_details(status: Any, age_s: float) -> dict[str, Any]:
    """What `/api/health/` shows of the ingest worker: its heartbeat's health section and its latest repairs."""
    health = dict((status.stats or {}).get("health") or {})
    recent = BackfillRecord.objects.order_by("-started_at")[:5]
    return {
        "worker": status.name,
        "connection_state": status.connection_state,
        "exchange_status": status.exchange_status,
        "heartbeat_age_s": round(age_s, 1),
        "last_message_at": status.last_message_at.isoformat() if status.last_message_at else None,
        "disconnected_since": status.disconnected_since.isoformat() if status.disconnected_since else None,
        **health,
        "recent_backfills": [
            {
                "symbol": r.symbol,
                "reason": r.reason,
                "source": r.source,
                "from": r.gap_start.isoformat(),
                "to": r.gap_end.isoformat() if r.gap_end else None,
                "trades_added": r.trades_added,
                "status": r.status,
                "at": r.finished_at.isoformat(),
            }
            for r in recent
        ],
    }


def check_ingest() -> tuple[str, dict[str, Any]]:
    status = IngestStatus.objects.order_by("-updated_at").first()
    if status is None:
        raise RuntimeError("no ingest worker has reported (python manage.py ingest)")
    age = (timezone.now() - status.updated_at).total_seconds()
    details = ingest_details(status, age)
    if age > INGEST_STALE_SECONDS:
        raise ComponentFailing(f"ingest worker {status.name} last reported {age:.0f} s ago", details)
    if status.connection_state != "connected":
        raise ComponentFailing(f"ingest worker {status.name} is {status.connection_state}", details)
    return f"{status.name} ({status.exchange_status})", details


CHECKS: dict[str, Callable[[], str | tuple[str, dict[str, Any]]]] = {
    "database": check_database,
    "broker": check_broker,
    "cache": check_cache,
    "channel_layer": check_channel_layer,
    "timeseries": check_timeseries,
    "exchange": check_exchange,
    "ingest": check_ingest,
}


_clock = time.monotonic
_round = threading.Condition()
_latest: tuple[float, list[ComponentHealth]] | None = None  # (_clock() when the round ended, its report)
_running = False  # a round is being checked (outside the lock)
_epoch = 0  # moved by forget_latest_health: a round that started before it is not kept


def run_health_checks() -> list[ComponentHealth]:
    """Every component's health: the latest round when it ended less than HEALTH_CHECK_CACHE_S seconds ago,
    otherwise a new one. One round at a time, checked without holding the lock: callers that arrive while it runs
    wait for it and take its report (however long a slow check makes it), so a slow component costs every caller
    one round, never a queue of rounds."""
    global _latest, _running
    max_age = float(settings.HEALTH_CHECK_CACHE_S)
    if max_age <= 0:
        return _check_every_component()
    with _round:
        while _running:
            seen = _latest
            _round.wait_for(lambda: not _running)
            if _latest is not None and _latest is not seen:
                return list(_latest[1])  # the round that ran while this caller waited
            # that round failed or was forgotten: another waiter may have started one already (the loop waits)
        if _latest is not None and _clock() - _latest[0] < max_age:
            return list(_latest[1])
        _running, epoch = True, _epoch
    report: list[ComponentHealth] | None = None
    try:
        report = _check_every_component()
        return list(report)
    finally:
        with _round:
            _running = False
            if report is not None and epoch == _epoch:
                _latest = (_clock(), report)
            _round.notify_all()


def forget_latest_health(**_: Any) -> None:
    """The next `run_health_checks` checks for real (connected to `setting_changed`: an overridden setting may
    point a check elsewhere); a round running meanwhile is not kept."""
    global _latest, _epoch
    with _round:
        _latest = None
        _epoch += 1


setting_changed.connect(forget_latest_health, dispatch_uid="galfriday_site.health.forget_latest_health")


def _check_every_component() -> list[ComponentHealth]:
    required = set(settings.HEALTH_REQUIRED_COMPONENTS)
    checked_at = timezone.now()
    report: list[ComponentHealth] = []
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            outcome = check()
        except Exception as exc:  # every failure of a component is reported, never raised to the caller
            elapsed = (time.perf_counter() - started) * 1000
            error = f"{type(exc).__name__}: {exc}"
            # The component in the message itself: the line says what failed without its fields.
            logger.warning("health check failed: %s: %s", name, error, extra={"component": name, "error": repr(exc)})
            details = exc.details if isinstance(exc, ComponentFailing) else None
            report.append(ComponentHealth(name, False, elapsed, "", name in required, error, details, checked_at))
            continue
        elapsed = (time.perf_counter() - started) * 1000
        backend, details = outcome if isinstance(outcome, tuple) else (outcome, None)
        report.append(
            ComponentHealth(name, True, elapsed, backend, name in required, details=details, checked_at=checked_at)
        )
    return report
