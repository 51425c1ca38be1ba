from __future__ import annotations

from django.db import models


class IngestStatus(models.Model):
    """The ingest worker's heartbeat: connection and exchange state and its counters, written every few seconds.
    `/api/health/` and the dashboard read it; a stale row means the worker is not running."""

    name = models.CharField(max_length=100, unique=True, help_text="worker name (host and process)")
    connection_state = models.CharField(max_length=20)
    exchange_status = models.CharField(max_length=20)
    symbols = models.JSONField(default=list)
    stats = models.JSONField(default=dict)
    last_message_at = models.DateTimeField(null=True, blank=True)
    disconnected_since = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "ingest status"

    def __str__(self) -> str:
        return f"{self.name}: {self.connection_state}"


class BackfillRecord(models.Model):
    """One gap repair of the ingest worker: which symbol and span were re-fetched from the exchange's REST API
    (Trades, or OHLC where the gap is older than Trades serves), why, and what it changed. Operators read these
    in the admin and in `/api/health/` to see that a restart or a disconnect left no hole."""

    class Reason(models.TextChoices):
        STARTUP = "startup", "start-up"
        RECONNECT = "reconnect", "reconnect"
        OHLC_MISMATCH = "ohlc_mismatch", "bar differs from the exchange's ohlc"

    class Status(models.TextChoices):
        DONE = "done", "done"
        FAILED = "failed", "failed"

    worker = models.CharField(max_length=100)
    symbol = models.CharField(max_length=30)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    source = models.CharField(max_length=20, help_text="trades, ohlc or trades+ohlc")
    gap_start = models.DateTimeField(help_text="exchange time the repair fetched from")
    gap_end = models.DateTimeField(null=True, blank=True, help_text="exchange time of the last trade or bar fetched")
    rest_calls = models.PositiveIntegerField(default=0)
    trades_fetched = models.PositiveIntegerField(default=0)
    trades_added = models.PositiveIntegerField(default=0, help_text="fetched trades the worker had not seen live")
    ohlc_bars = models.PositiveIntegerField(default=0, help_text="bars taken from OHLC (older than Trades served)")
    bars_written = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["symbol", "-started_at"], name="ingest_backfill_symbol_started")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(gap_end__isnull=True) | models.Q(gap_end__gte=models.F("gap_start")),
                name="ingest_backfill_span_ordered",
            )
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.reason} from {self.gap_start.isoformat()} ({self.status})"


class MissedDecision(models.Model):
    """A closed bar that never got a decision: the ingest worker was down, disconnected or the task was lost, and
    when it found the bar (at start or after a reconnect) the bar was older than the decision age limit
    (`GALFRIDAY_DECISION_MAX_AGE_S`), too late to trade on. Bars found within the limit are decided instead."""

    class Reason(models.TextChoices):
        STARTUP = "startup", "start-up"
        RECONNECT = "reconnect", "reconnect"

    worker = models.CharField(max_length=100)
    symbol = models.CharField(max_length=30)
    interval_seconds = models.PositiveIntegerField()
    bar_start = models.DateTimeField()
    bar_end = models.DateTimeField()
    reason = models.CharField(max_length=20, choices=Reason.choices)
    age_seconds = models.DecimalField(max_digits=12, decimal_places=3, help_text="bar end to detection")
    max_age_seconds = models.DecimalField(max_digits=12, decimal_places=3, help_text="the limit in force")
    detected_at = models.DateTimeField()

    class Meta:
        ordering = ["-bar_start", "symbol"]
        constraints = [
            models.UniqueConstraint(
                fields=["symbol", "interval_seconds", "bar_start"], name="ingest_missed_decision_once_per_bar"
            ),
            models.CheckConstraint(condition=models.Q(bar_end__gt=models.F("bar_start")), name="ingest_missed_span"),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} {self.bar_start.isoformat()}: missed ({self.reason})"
