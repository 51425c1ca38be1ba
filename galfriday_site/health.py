"""Real checks of every backing component, each reported as ok/failing with its latency.

Each check reads settings when it runs (not at import), talks to the component for real, and is bounded by
HEALTH_CHECK_TIMEOUT seconds. Later issues add the ingest worker's own health to the report.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from kombu import Connection

from ingest.timeseries import get_store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    ok: bool
    latency_ms: float
    backend: str
    required: bool
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": "ok" if self.ok else "failing",
            "latency_ms": round(self.latency_ms, 2),
            "backend": self.backend,
            "required": self.required,
        }
        if self.error:
            data["error"] = self.error
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
    from ingest.kraken.rest import KrakenRestClient

    async def status() -> str:
        async with KrakenRestClient(base_url=settings.KRAKEN_REST_URL, timeout=_timeout()) as client:
            return (await client.system_status()).status

    exchange_status = async_to_sync(status)()
    if exchange_status != "online":
        raise RuntimeError(f"exchange status is {exchange_status}")
    return f"{settings.GALFRIDAY_EXCHANGE} ({settings.KRAKEN_REST_URL})"


INGEST_STALE_SECONDS = 30


def check_ingest() -> str:
    from django.utils import timezone

    from ingest.models import IngestStatus

    status = IngestStatus.objects.order_by("-updated_at").first()
    if status is None:
        raise RuntimeError("no ingest worker has reported (python manage.py ingest)")
    age = (timezone.now() - status.updated_at).total_seconds()
    if age > INGEST_STALE_SECONDS:
        raise RuntimeError(f"ingest worker {status.name} last reported {age:.0f} s ago")
    if status.connection_state != "connected":
        raise RuntimeError(f"ingest worker {status.name} is {status.connection_state}")
    return f"{status.name} ({status.exchange_status})"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "broker": check_broker,
    "cache": check_cache,
    "channel_layer": check_channel_layer,
    "timeseries": check_timeseries,
    "exchange": check_exchange,
    "ingest": check_ingest,
}


def run_health_checks() -> list[ComponentHealth]:
    required = set(settings.HEALTH_REQUIRED_COMPONENTS)
    report: list[ComponentHealth] = []
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            backend = check()
        except Exception as exc:  # every failure of a component is reported, never raised to the caller
            elapsed = (time.perf_counter() - started) * 1000
            logger.warning("health check failed", extra={"component": name, "error": repr(exc)})
            report.append(ComponentHealth(name, False, elapsed, "", name in required, f"{type(exc).__name__}: {exc}"))
            continue
        elapsed = (time.perf_counter() - started) * 1000
        report.append(ComponentHealth(name, True, elapsed, backend, name in required))
    return report
