"""Heartbeat pings to an outside service (healthchecks.io, Uptime Kuma's push monitor, Cronitor, ...): while the
system is healthy, beat's `galfriday_site.heartbeat_ping` task GETs `GALFRIDAY_HEARTBEAT_URL` every minute; the
service alerts when the pings stop. It hears the silence of everything that has to work for the ping to go out:
beat, the broker, a worker on the `default` queue, the database, and the checks below. Empty URL: off.

Healthy means what an operator would call "Gal-Friday is working":
- every required component of `/api/health/` passes (HEALTH_REQUIRED_COMPONENTS: database, broker, cache, channel
  layer, time-series store by default), and
- an ingest worker is reporting: its heartbeat row is at most `INGEST_STALE_SECONDS` old. Its connection to the
  exchange is not required: Kraken being down is Kraken's outage (ExchangeDown in deploy/prometheus/alerts.yml),
  not a reason to claim Gal-Friday is dead.

The ping never raises into beat or the worker: every outcome (off, unhealthy, sent, failed) is returned, logged and
counted (`galfriday_events_total{component="galfriday_site.heartbeat"}`); the request has a short timeout and
follows no redirect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.utils import timezone

from core.metrics import ProcessCounters
from galfriday_site.health import INGEST_STALE_SECONDS, run_health_checks
from ingest.models import IngestStatus

logger = logging.getLogger(__name__)
TIMEOUT_S = 5.0
counters = ProcessCounters("galfriday_site.heartbeat")  # galfriday_events_total{component, name}: sent/failed/unhealthy


@dataclass(frozen=True)
class Health:
    healthy: bool
    problems: tuple[str, ...]


def system_health() -> Health:
    """Healthy as the module doc defines it, with the reasons when not."""
    problems = [
        f"{c.name}: {c.error}"
        for c in run_health_checks()
        if c.required and not c.ok and c.name != "ingest"  # ingest is judged below, by its heartbeat alone
    ]
    status = IngestStatus.objects.order_by("-updated_at").values_list("name", "updated_at").first()
    if status is None:
        problems.append("ingest: no worker has reported")
    else:
        age = (timezone.now() - status[1]).total_seconds()
        if age > INGEST_STALE_SECONDS:
            problems.append(f"ingest: worker {status[0]} last reported {age:.0f} s ago")
    return Health(not problems, tuple(problems))


def heartbeat_ping(url: str | None = None, timeout: float = TIMEOUT_S) -> str:
    """Ping `url` (default GALFRIDAY_HEARTBEAT_URL) if the system is healthy. Returns the outcome: "off", "unhealthy",
    "sent" or "failed"; never raises."""
    target = (settings.GALFRIDAY_HEARTBEAT_URL if url is None else url).strip()
    if not target:
        return "off"
    try:
        health = system_health()
    except Exception as exc:  # a check that itself breaks: not healthy, and beat carries on
        health = Health(False, (f"health check error: {exc!r}",))
    if not health.healthy:
        counters["unhealthy"] += 1
        logger.warning("heartbeat withheld: system unhealthy", extra={"problems": list(health.problems)})
        return "unhealthy"
    try:
        response = httpx.get(target, timeout=timeout, follow_redirects=False)
        response.raise_for_status()
    except Exception as exc:  # the outside service down or slow: its own alarm is what follows
        counters["failed"] += 1
        logger.warning("heartbeat ping failed", extra={"error": repr(exc)})
        return "failed"
    counters["sent"] += 1
    return "sent"
