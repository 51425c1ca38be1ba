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
        db_table = "ingest_timeseriespoint"  # created by the ingest app before the store became its own package
        constraints = [models.UniqueConstraint(fields=["series_key", "time"], name="ts_point_unique_series_time")]
        indexes = [models.Index(fields=["measurement", "time"], name="ts_point_measurement_time")]

    def __str__(self) -> str:
        return f"{self.series_key} @ {self.time.isoformat()}"
