from __future__ import annotations

from django.db import models


class TimeSeriesPoint(models.Model):
    """One point of a market series in the relational time-series store (the embedded default)."""

    measurement = models.CharField(max_length=100)
    series_key = models.CharField(max_length=500, help_text="Measurement and sorted tags: the series identity.")
    tags = models.JSONField(default=dict)
    fields = models.JSONField(help_text='Typed values, e.g. {"close": ["d", "29430.2"], "trades": ["i", 12]}.')
    time = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series_key", "time"], name="ts_point_unique_series_time")]
        indexes = [models.Index(fields=["measurement", "time"], name="ts_point_measurement_time")]

    def __str__(self) -> str:
        return f"{self.series_key} @ {self.time.isoformat()}"


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
