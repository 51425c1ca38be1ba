"""The domain's figures in `/metrics`, read from the database and the health checks at scrape time (they are the
same whichever process serves the scrape): ingest heartbeats, prediction service, outcomes, trading, reconciliation
and health. See the package doc for the list."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Count, QuerySet
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from galfriday_site.health import run_health_checks
from galfriday_site.metrics.processes import multiprocess_dir
from ingest.models import BackfillRecord, IngestStatus
from models_registry import prediction
from models_registry.outcomes import version_outcome_summary
from reconciliation.models import Discrepancy, ReconciliationRun
from trading.models import Alert, Fill, Order, TradingState

PREFIX = "galfriday"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class IngestCollector(Collector):
    """The ingest workers' heartbeat rows as metrics, labelled by worker."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        up = GaugeMetricFamily(
            f"{PREFIX}_ingest_up", "1 when the worker's heartbeat is fresh and connected", labels=["worker"]
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_ingest_heartbeat_age_seconds", "Seconds since the heartbeat", labels=["worker"]
        )
        last = GaugeMetricFamily(
            f"{PREFIX}_ingest_last_message_timestamp_seconds", "Unix time of the last frame received", labels=["worker"]
        )
        rate = GaugeMetricFamily(
            f"{PREFIX}_ingest_messages_per_second", "Frames per second per channel", labels=["worker", "channel"]
        )
        messages = CounterMetricFamily(
            f"{PREFIX}_ingest_messages", "Frames received per channel", labels=["worker", "channel"]
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}_ingest_lag_milliseconds",
            "Exchange timestamp to receive time over the last ~2000 messages (clock skew included)",
            labels=["worker", "channel", "quantile"],
        )
        queues = GaugeMetricFamily(
            f"{PREFIX}_ingest_queue_depth", "Items waiting per queue", labels=["worker", "queue"]
        )
        dropped = CounterMetricFamily(
            f"{PREFIX}_ingest_dropped", "Items dropped (counted, never silent)", labels=["worker", "what"]
        )
        simple = {
            "reconnects": CounterMetricFamily(f"{PREFIX}_ingest_reconnects", "WebSocket reconnects", labels=["worker"]),
            "checksum_failures": CounterMetricFamily(
                f"{PREFIX}_ingest_checksum_failures", "Book checksum mismatches", labels=["worker"]
            ),
            "malformed_messages": CounterMetricFamily(
                f"{PREFIX}_ingest_malformed_messages", "Frames that could not be parsed", labels=["worker"]
            ),
            "unknown_messages": CounterMetricFamily(
                f"{PREFIX}_ingest_unknown_messages", "Frames of unknown channels", labels=["worker"]
            ),
        }
        counters = CounterMetricFamily(
            f"{PREFIX}_ingest_events",
            "The worker's own counters (trades, bars, repairs, ...)",
            labels=["worker", "name"],
        )
        for status in IngestStatus.objects.order_by("name"):
            worker = status.name
            stats = status.stats or {}
            health = stats.get("health") or {}
            heartbeat_age = (now - status.updated_at).total_seconds()
            fresh = heartbeat_age <= 30 and status.connection_state == "connected"
            up.add_metric([worker], 1.0 if fresh else 0.0)
            age.add_metric([worker], heartbeat_age)
            if status.last_message_at is not None:
                last.add_metric([worker], status.last_message_at.timestamp())
            for channel, value in (health.get("messages_per_s") or {}).items():
                if (number := _number(value)) is not None:
                    rate.add_metric([worker, channel], number)
            for channel, value in ((stats.get("ws") or {}).get("messages") or {}).items():
                if (number := _number(value)) is not None:
                    messages.add_metric([worker, channel], number)
            for channel, window in (health.get("lag_ms") or {}).items():
                for quantile, key in (("0.5", "p50"), ("0.99", "p99")):
                    if (number := _number(window.get(key))) is not None:
                        lag.add_metric([worker, channel, quantile], number)
            for queue, value in (health.get("queues") or {}).items():
                if (number := _number(value)) is not None:
                    queues.add_metric([worker, queue], number)
            for what, value in (health.get("dropped") or {}).items():
                if (number := _number(value)) is not None:
                    dropped.add_metric([worker, what], number)
            for key, family in simple.items():
                if (number := _number(health.get(key))) is not None:
                    family.add_metric([worker], number)
            for name, value in (stats.get("ingest") or {}).items():
                if (number := _number(value)) is not None:
                    counters.add_metric([worker, name], number)
        yield from (up, age, last, rate, messages, lag, queues, dropped, *simple.values(), counters)

        backfills = CounterMetricFamily(
            f"{PREFIX}_ingest_backfills", "Recorded gap repairs", labels=["reason", "status"]
        )
        for row in BackfillRecord.objects.values("reason", "status").annotate(n=Count("id")).order_by():
            backfills.add_metric([row["reason"], row["status"]], row["n"])
        yield backfills


class PredictionCollector(Collector):
    """This process's prediction service: its cache. Its counters and latency only when the processes' counters are
    not shared; with PROMETHEUS_MULTIPROC_DIR every process's are in `galfriday_events_total{component="prediction"}`
    and `galfriday_prediction_seconds` (the web process predicts nothing: its own would read 0)."""

    def collect(self) -> Iterator[Metric]:
        stats = prediction.prediction_stats()
        shared = bool(multiprocess_dir())
        if not shared:
            counters = CounterMetricFamily(
                f"{PREFIX}_prediction_events", "Prediction service counters", labels=["name"]
            )
            for name, value in stats.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    counters.add_metric([name], value)
            yield counters
        hit_rate = _number(stats.get("hit_rate"))
        if hit_rate is not None:
            yield GaugeMetricFamily(f"{PREFIX}_prediction_cache_hit_rate", "Model cache hits / lookups", value=hit_rate)
        if (loaded := _number(stats.get("models_loaded"))) is not None:
            yield GaugeMetricFamily(f"{PREFIX}_prediction_models_loaded", "Model versions held in memory", value=loaded)
        latency = stats.get("latency_seconds") or {}
        buckets = latency.get("buckets") or {}
        if buckets and not shared:
            yield HistogramMetricFamily(
                f"{PREFIX}_prediction_latency_seconds",
                "Prediction latency",
                buckets=[(bound, float(count)) for bound, count in buckets.items()],
                sum_value=float(latency.get("sum") or 0.0),
            )


class OutcomeCollector(Collector):
    """Per model version with outcomes or serving: matured outcomes, direction hit rate, mean and total net return
    per prediction, pending outcomes and whether a `model_degraded` alert is open (grouped aggregates)."""

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "version", "stage"]
        n = GaugeMetricFamily(f"{PREFIX}_model_outcomes", "Matured prediction outcomes", labels=labels)
        pending = GaugeMetricFamily(
            f"{PREFIX}_model_outcomes_pending", "Predictions without a matured outcome yet", labels=labels
        )
        hit = GaugeMetricFamily(
            f"{PREFIX}_model_hit_rate", "Live direction hit rate over all matured outcomes", labels=labels
        )
        net_mean = GaugeMetricFamily(
            f"{PREFIX}_model_net_return_mean", "Mean net return per prediction after costs", labels=labels
        )
        net_total = GaugeMetricFamily(
            f"{PREFIX}_model_net_return_total", "Sum of net returns per prediction after costs", labels=labels
        )
        degraded = GaugeMetricFamily(
            f"{PREFIX}_model_degraded", "1 while a model_degraded alert of the version is open", labels=labels
        )
        for row in version_outcome_summary():
            key = [row["model"], str(row["version"]), row["stage"]]
            n.add_metric(key, row["n_outcomes"])
            pending.add_metric(key, row["pending_outcomes"])
            if row["hit_rate"] is not None:
                hit.add_metric(key, row["hit_rate"])
            if row["net_return_mean"] is not None:
                net_mean.add_metric(key, row["net_return_mean"])
            net_total.add_metric(key, row["net_return_total"])
            degraded.add_metric(key, 1.0 if row["degraded"] else 0.0)
        yield from (n, pending, hit, net_mean, net_total, degraded)


def _counts(name: str, documentation: str, rows: QuerySet[Any], fields: list[str]) -> GaugeMetricFamily:
    """A gauge of how many of `rows` there are per value of `fields` (one grouped query; labels named as the
    fields)."""
    family = GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=fields)
    for *values, n in rows.values_list(*fields).annotate(n=Count("id")).order_by():
        family.add_metric([str(v) for v in values], n)
    return family


class TradingCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield _counts("trading_orders", "Orders per state", Order.objects.all(), ["state"])
        yield CounterMetricFamily(f"{PREFIX}_trading_fills", "Fills recorded", value=Fill.objects.count())
        state = TradingState.objects.filter(pk=TradingState.SINGLETON_ID).values_list("state", flat=True).first()
        current = GaugeMetricFamily(f"{PREFIX}_trading_state", "1 for the current trading state", labels=["state"])
        for choice in TradingState.State.values:
            current.add_metric([choice], 1.0 if (state or TradingState.State.ACTIVE) == choice else 0.0)
        yield current
        yield _counts(
            "alerts_unacknowledged",
            "Alerts firing (nobody acknowledged them and their condition has not cleared)",
            Alert.objects.filter(state=Alert.State.FIRING),
            ["severity", "kind"],
        )


class ReconciliationCollector(Collector):
    """Whether the books agree with the exchange: runs per outcome, the last finished run (how long ago, how long
    it took, its outcome, the differences it found), how long since a run last found the books equal (clean or
    safely corrected), and the discrepancies still open by kind and severity."""

    def collect(self) -> Iterator[Metric]:
        Status = ReconciliationRun.Status
        now = timezone.now()
        runs = CounterMetricFamily(f"{PREFIX}_reconciliation_runs", "Reconciliation runs by outcome", labels=["status"])
        for status, n in ReconciliationRun.objects.values_list("status").annotate(n=Count("id")).order_by():
            runs.add_metric([status], n)
        yield runs
        finished = ReconciliationRun.objects.exclude(status=Status.RUNNING).filter(finished_at__isnull=False)
        last = (
            finished.order_by("-finished_at", "-id")
            .values("status", "finished_at", "duration_ms", "discrepancy_count")
            .first()
        )
        outcome = GaugeMetricFamily(
            f"{PREFIX}_reconciliation_last_run_status", "1 for the outcome of the last finished run", labels=["status"]
        )
        age = GaugeMetricFamily(f"{PREFIX}_reconciliation_last_run_age_seconds", "Seconds since the last run finished")
        took = GaugeMetricFamily(f"{PREFIX}_reconciliation_last_run_duration_seconds", "How long the last run took")
        found = GaugeMetricFamily(
            f"{PREFIX}_reconciliation_last_run_discrepancies", "Differences the last finished run found"
        )
        if last is not None:
            for choice in Status.values:
                if choice != Status.RUNNING:
                    outcome.add_metric([choice], 1.0 if last["status"] == choice else 0.0)
            if last["finished_at"] is not None:  # filtered on: always set
                age.add_metric([], (now - last["finished_at"]).total_seconds())
            if last["duration_ms"] is not None:
                took.add_metric([], last["duration_ms"] / 1000)
            found.add_metric([], last["discrepancy_count"])
        yield from (outcome, age, took, found)
        agreed = (
            finished.filter(status__in=[Status.CLEAN, Status.CORRECTED])
            .order_by("-finished_at")
            .values_list("finished_at", flat=True)
            .first()
        )
        agreement = GaugeMetricFamily(
            f"{PREFIX}_reconciliation_last_agreement_age_seconds",
            "Seconds since a run last found the books equal to the exchange (clean or safely corrected)",
        )
        if agreed is not None:
            agreement.add_metric([], (now - agreed).total_seconds())
        yield agreement
        yield _counts(
            "reconciliation_discrepancies_open",
            "Discrepancies nobody resolved or acknowledged",
            Discrepancy.objects.filter(status=Discrepancy.Status.OPEN),
            ["kind", "severity"],
        )


class HealthCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        report = run_health_checks()
        component_up = GaugeMetricFamily(
            f"{PREFIX}_health_component_up", "1 when the component's check passed", labels=["component", "required"]
        )
        latency = GaugeMetricFamily(
            f"{PREFIX}_health_check_latency_milliseconds", "How long the check took", labels=["component"]
        )
        for c in report:
            component_up.add_metric([c.name, "true" if c.required else "false"], 1.0 if c.ok else 0.0)
            latency.add_metric([c.name], c.latency_ms)
        yield component_up
        yield latency
        healthy = all(c.ok for c in report if c.required)
        yield GaugeMetricFamily(
            f"{PREFIX}_health_up", "1 when every required component is ok", value=1.0 if healthy else 0.0
        )
