"""`GET /metrics`: Prometheus text exposition of what operators alert on.

Read from the database and the services at scrape time (`galfriday_site.metrics.domain`, and the apps' own):

- Ingest: read from the heartbeat rows (`ingest.IngestStatus`), since the worker is another process: messages
  per second and totals per channel, exchange-to-receive lag p50/p99, reconnects, checksum failures, bad frames,
  last message time, queue depths, drops, gap repairs and ohlc checks, and every worker counter.
- Prediction: the web process's prediction service (`models_registry.prediction.prediction_stats()`): cache hit
  rate and models loaded; its counters and latency histogram too when the process's counters are not shared (no
  PROMETHEUS_MULTIPROC_DIR; with it, every process's predictions are in `galfriday_events_total` and
  `galfriday_prediction_seconds`).
- Outcomes: per model version (`models_registry.outcomes.version_outcome_summary()`): matured outcomes, live
  hit rate, net return per prediction (mean, total), pending outcomes and the degraded flag.
- Drift: per model version, from its latest drift report (`models_registry.drift.metrics`): drift share,
  prediction PSI, kinds detected, confirmed, detector states and change points, check age and failure.
- Trading: orders per state, fills, the trading state (active/reducing/halted) and unacknowledged alerts, each
  one cheap aggregate query.
- Reconciliation: runs per outcome, the last finished run (age, duration, outcome, differences found), the age
  of the last agreement with the exchange, and the open discrepancies by kind and severity.
- Experiments (`experiments.metrics`): experiments per status; per running experiment each arm's decisions,
  outcomes and errors, each treatment's always-valid p-values and deltas, guardrail state and SRM.
- Health: each component of `/api/health/` (up, required, check latency) and the overall status.
- Celery (`galfriday_site.metrics.workers`): messages waiting per queue, workers answering a ping.

Counted by every process where it happens (`core.metrics`, `galfriday_site.metrics.processes`): the modules'
event counters (`galfriday_events_total{component,name}`), Celery task outcomes per task, and the latency
histograms (closed bar → exchange ack, execution report → committed, prediction).

Each collector runs behind a guard: its failure costs its own series (logged, `galfriday_metrics_collector_failed`)
and not the scrape. An app adds its own with `register_collector(name, collector)` (from its `AppConfig.ready`).
Access: with `GALFRIDAY_METRICS_TOKEN` set, `Authorization: Bearer <token>` is required from everyone; without it,
only loopback clients are served (a scraper on the same host), everyone else gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from experiments.metrics import ExperimentCollector
from galfriday_site.metrics.domain import (
    HealthCollector,
    IngestCollector,
    OutcomeCollector,
    PredictionCollector,
    ReconciliationCollector,
    TradingCollector,
)
from galfriday_site.metrics.processes import ProcessesCollector
from galfriday_site.metrics.workers import QueueDepthCollector, WorkersCollector
from galfriday_site.watchdog import WatchdogCollector
from models_registry.drift.metrics import DriftCollector

__all__ = ["allowed", "metrics_view", "register_collector", "render"]

logger = logging.getLogger(__name__)
PREFIX = "galfriday"


class _Guarded(Collector):
    """One collector's failure costs its own metrics (logged, and counted as a scrape error), not the scrape."""

    def __init__(self, name: str, inner: Collector, errors: GaugeMetricFamily) -> None:
        self.name = name
        self.inner = inner
        self.errors = errors

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = list(self.inner.collect())
        except Exception as exc:  # a database or service outage: the rest of the scrape still answers
            logger.warning(
                "metrics collector failed: %s: %r", self.name, exc, extra={"collector": self.name, "error": repr(exc)}
            )
            self.errors.add_metric([self.name], 1.0)
            return iter(())
        return iter(metrics)


# Collectors added by apps (`register_collector`), scraped after the built-in ones.
EXTRA_COLLECTORS: dict[str, Collector] = {}


def register_collector(name: str, collector: Collector) -> None:
    """Add an app's collector to `/metrics` (call it once, e.g. from `AppConfig.ready`). `collect()` runs at every
    scrape, behind the same guard as the built-in ones; registering a name again replaces its collector."""
    EXTRA_COLLECTORS[name] = collector


def collectors() -> dict[str, Collector]:
    return {
        "processes": ProcessesCollector(),
        "ingest": IngestCollector(),
        "prediction": PredictionCollector(),
        "outcomes": OutcomeCollector(),
        "drift": DriftCollector(),
        "trading": TradingCollector(),
        "reconciliation": ReconciliationCollector(),
        "experiments": ExperimentCollector(),
        "health": HealthCollector(),
        "celery_queues": QueueDepthCollector(),
        "celery_workers": WorkersCollector(),
        "watchdog": WatchdogCollector(),  # what deploy/prometheus/alerts.yml needs beyond the rest
        **EXTRA_COLLECTORS,
    }


def render() -> bytes:
    errors = GaugeMetricFamily(f"{PREFIX}_metrics_collector_failed", "1 when a collector failed", labels=["collector"])
    registry = CollectorRegistry(auto_describe=False)
    for name, collector in collectors().items():
        registry.register(_Guarded(name, collector, errors))  # type: ignore[arg-type]

    class _Errors(Collector):
        def collect(self) -> Iterator[Metric]:
            yield errors

    registry.register(_Errors())
    return generate_latest(registry)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def allowed(request: HttpRequest) -> bool:
    token = str(settings.GALFRIDAY_METRICS_TOKEN or "")
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    if any(request.META.get(h) for h in FORWARDING_HEADERS):
        return False  # relayed by a proxy: the peer being loopback says nothing about the client
    return _loopback(str(request.META.get("REMOTE_ADDR", "")))


# Headers a proxy adds when it relays a request. Without a token, /metrics trusts only a direct loopback peer: a
# request that came through a proxy on this host (loopback peer, forwarding headers) is not a local scraper, and the
# forwarded address is not trusted either (any client can write the header).
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; see the module doc for who may read it."""
    if not allowed(request):
        return HttpResponse(
            "metrics are served to loopback clients, or with Authorization: Bearer <GALFRIDAY_METRICS_TOKEN>\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
