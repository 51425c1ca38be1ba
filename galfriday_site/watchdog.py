"""The gauges the outside watchdog's rules need (`deploy/prometheus/alerts.yml`) that the rest of `/metrics` does not
already carry, each one cheap aggregate query:

- `galfriday_ingest_exchange_status{worker,status}`: 1 for the exchange status each ingest worker last reported
  (online, maintenance, cancel_only, post_only, unknown). "The market is open" in the rules is `status="online"`
  (Kraken trades around the clock: closed means maintenance or a restricted mode, not a time of day).
- `galfriday_trading_last_decision_timestamp_seconds{symbol}`: Unix time of the latest decision per symbol, for
  the symbols an ingest worker subscribes to (a symbol nobody ingests is expected to be silent). A symbol with no
  decision yet has no sample: the rule judges silence, not a deployment whose pipeline never ran.

`galfriday_site.metrics.render` registers `WatchdogCollector` beside the other collectors (behind the same guard: a
failure costs these series and shows in `galfriday_metrics_collector_failed{collector="watchdog"}`).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Max
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.kraken.ws.types import ExchangeStatus
from ingest.models import IngestStatus
from trading.models import Decision

PREFIX = "galfriday"
EXCHANGE_STATUSES = [s.value for s in ExchangeStatus]


class WatchdogCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            f"{PREFIX}_ingest_exchange_status",
            "1 for the exchange status the ingest worker last reported (online = the market is open)",
            labels=["worker", "status"],
        )
        subscribed: set[str] = set()
        for worker, current, symbols in IngestStatus.objects.order_by("name").values_list(
            "name", "exchange_status", "symbols"
        ):
            known = EXCHANGE_STATUSES if current in EXCHANGE_STATUSES else [*EXCHANGE_STATUSES, current]
            for choice in known:
                status.add_metric([worker, choice], 1.0 if current == choice else 0.0)
            subscribed.update(str(s) for s in symbols or [])
        yield status

        last = GaugeMetricFamily(
            f"{PREFIX}_trading_last_decision_timestamp_seconds",
            "Unix time of the latest decision per ingested symbol",
            labels=["symbol"],
        )
        rows = (
            Decision.objects.filter(instrument__symbol__in=sorted(subscribed))
            .values_list("instrument__symbol")
            .annotate(at=Max("created_at"))
            .order_by()
        )
        for symbol, at in rows:
            last.add_metric([symbol], at.timestamp())
        yield last
