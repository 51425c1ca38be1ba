"""Relational adapter: the embedded default, one row per point in `ingest.TimeSeriesPoint`.

Field values are stored with their type (`["d", "29430.2"]` for a Decimal) so that they come back exactly as
written. Writing a point whose series and time already exist replaces its fields, like InfluxDB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from django.db import DatabaseError, connection, transaction

from ingest.models import TimeSeriesPoint
from ingest.timeseries.base import Point, TimeSeriesError
from ingest.timeseries.relational_codec import decode_fields, encode_fields


class RelationalStore:
    backend = "relational"

    def close(self) -> None:
        """Nothing to release: the store holds no resource of its own. Database connections belong to the
        thread that used them (Django's), so whoever owns a thread closes its connection (see
        `TimeSeriesWriter(on_thread_exit=...)`)."""

    def ping(self) -> None:
        try:
            TimeSeriesPoint.objects.exists()
        except DatabaseError as exc:
            raise TimeSeriesError(f"time-series table unreachable: {exc}") from exc

    def write_batch(self, points: Sequence[Point]) -> int:
        if not points:
            return 0
        rows = {
            (p.series_key, p.time): TimeSeriesPoint(
                measurement=p.measurement,
                series_key=p.series_key,
                tags=dict(p.tags),
                fields=encode_fields(p.fields),
                time=p.time,
            )
            for p in points
        }  # the last write of an identity within one batch wins, as in InfluxDB
        try:
            with transaction.atomic():
                TimeSeriesPoint.objects.bulk_create(
                    list(rows.values()),
                    update_conflicts=True,
                    unique_fields=["series_key", "time"],
                    update_fields=["fields", "tags", "measurement"],
                    batch_size=500 if connection.vendor == "sqlite" else 5000,
                )
        except DatabaseError as exc:
            raise TimeSeriesError(f"writing {len(points)} points failed: {exc}") from exc
        return len(points)

    def _filtered(self, measurement: str, tags: Mapping[str, str] | None):  # type: ignore[no-untyped-def]
        query = TimeSeriesPoint.objects.filter(measurement=measurement)
        for key, value in (tags or {}).items():
            query = query.filter(**{f"tags__{key}": value})
        return query

    @staticmethod
    def _point(row: TimeSeriesPoint) -> Point:
        return Point(row.measurement, row.time, decode_fields(row.fields), dict(row.tags))

    def query_range(
        self, measurement: str, start: datetime, end: datetime, tags: Mapping[str, str] | None = None
    ) -> list[Point]:
        rows = self._filtered(measurement, tags).filter(time__gte=start, time__lt=end).order_by("time", "pk")
        return [self._point(row) for row in rows]

    def latest(self, measurement: str, tags: Mapping[str, str] | None = None) -> Point | None:
        row = self._filtered(measurement, tags).order_by("-time", "-pk").first()
        return self._point(row) if row else None
