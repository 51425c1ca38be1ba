"""Relational adapter: the embedded default, one row per point in `timeseries.TimeSeriesPoint`.

Field values are stored with their type (`["d", "29430.2"]` for a Decimal) so that they come back exactly as
written. Writing a point whose series and time already exist replaces its fields, like InfluxDB.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models.fields.json import KT

from timeseries.base import FieldValue, Point, TimeSeriesError, name_allowed
from timeseries.models import TimeSeriesPoint
from timeseries.relational_codec import decode_fields, encode_fields


def _bool_text(value: Any) -> bool:
    """A boolean field read as text: PostgreSQL gives "true"/"false", SQLite's json_extract 1/0."""
    return value in (True, 1, "true", "1")


# Field values read back as text by `query_fields`, by their stored type (see relational_codec).
_DECODE_TEXT: dict[str, Callable[[Any], FieldValue]] = {
    "b": _bool_text,
    "i": int,
    "d": lambda v: Decimal(str(v)),
    "s": str,
}


def _drop_broken_connection() -> None:
    """After a database restart (or a terminated backend) this thread's connection stays broken: close it so the
    writer's next attempt (the spool replay) reconnects instead of failing forever."""
    connection.close_if_unusable_or_obsolete()


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
            _drop_broken_connection()
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
            _drop_broken_connection()
            raise TimeSeriesError(f"writing {len(points)} points failed: {exc}") from exc
        return len(points)

    def _filtered(self, measurement: str, tags: Mapping[str, str] | None):  # type: ignore[no-untyped-def]
        query = TimeSeriesPoint.objects.filter(measurement=measurement)
        for key, value in (tags or {}).items():
            query = query.filter(**{f"tags__{key}": value})
        return query

    @staticmethod
    def _point(row: TimeSeriesPoint) -> Point:
        return Point.stored(row.measurement, row.time, decode_fields(row.fields), dict(row.tags))

    def query_range(
        self, measurement: str, start: datetime, end: datetime, tags: Mapping[str, str] | None = None
    ) -> list[Point]:
        # Only the columns a point needs, as tuples: building model instances cost more than the query on the
        # decision path (a few hundred bars per closed bar).
        rows = (
            self._filtered(measurement, tags)
            .filter(time__gte=start, time__lt=end)
            .order_by("time", "pk")
            .values_list("time", "fields", "tags")
        )
        return [Point.stored(measurement, time, decode_fields(fields), tags) for time, fields, tags in rows]

    def query_fields(
        self,
        measurement: str,
        start: datetime,
        end: datetime,
        tags: Mapping[str, str] | None,
        fields: Sequence[str],
        *,
        require: str | None = None,
        last: int | None = None,
    ) -> list[Point]:
        """See `timeseries.base.query_fields`. Reads each wanted field's type and value as text from the
        JSON column (`KT`), so nothing else of the row is transferred or decoded, and a Decimal comes back from
        its stored text exactly; `last` becomes a LIMIT on a newest-first scan of the (measurement, time) index."""
        wanted = tuple(dict.fromkeys(fields))
        for name in (*wanted, *(tags or {})):
            if not name_allowed(name):
                raise ValueError(f"field or tag name {name!r} is not allowed")
        if connection.vendor == "postgresql":
            return self._query_fields_postgresql(measurement, start, end, tags or {}, wanted, require, last)
        columns: dict[str, Any] = {}
        for i, name in enumerate(wanted):
            columns[f"k{i}"] = KT(f"fields__{name}__0")
            columns[f"v{i}"] = KT(f"fields__{name}__1")
        query = self._filtered(measurement, tags).filter(time__gte=start, time__lt=end)
        if require is not None:
            query = query.filter(fields__has_key=require)
        names = list(columns)
        rows = query.annotate(**columns).values_list("time", "tags", *names)
        if last is not None:
            rows = rows.order_by("-time", "-pk")[:last]
            ordered = list(rows)[::-1]
        else:
            ordered = list(rows.order_by("time", "pk"))
        points = []
        for time, row_tags, *values in ordered:
            decoded: dict[str, FieldValue] = {}
            for i, name in enumerate(wanted):
                kind = values[2 * i]
                if kind is not None:
                    decoded[name] = _DECODE_TEXT[kind](values[2 * i + 1])
            points.append(Point.stored(measurement, time, decoded, row_tags))
        return points

    def _query_fields_postgresql(
        self,
        measurement: str,
        start: datetime,
        end: datetime,
        tags: Mapping[str, str],
        wanted: tuple[str, ...],
        require: str | None,
        last: int | None,
    ) -> list[Point]:
        """`query_fields` as one plain statement: on the decision path the ORM's compilation of this query cost
        more than running it. The same filters as `_filtered` (tags compared as JSON values), the same order; each
        field's type and value come back as text (a Decimal from its stored text, exactly)."""
        columns = "".join(", fields -> %s ->> 0, fields -> %s ->> 1" for _ in wanted)
        where = ["measurement = %s", *("tags -> %s = %s::jsonb" for _ in tags), '"time" >= %s', '"time" < %s']
        params: list[Any] = [p for name in wanted for p in (name, name)]
        params += [measurement, *(p for key, value in tags.items() for p in (key, json.dumps(value))), start, end]
        if require is not None:
            where.append("fields ? %s")
            params.append(require)
        order = 'ORDER BY "time" ASC, id ASC'
        if last is not None:
            order = 'ORDER BY "time" DESC, id DESC LIMIT %s'
            params.append(last)
        table = TimeSeriesPoint._meta.db_table
        sql = f'SELECT "time", tags::text{columns} FROM {table} WHERE {" AND ".join(where)} {order}'
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
        except DatabaseError as exc:
            _drop_broken_connection()
            raise TimeSeriesError(f"reading {measurement} failed: {exc}") from exc
        if last is not None:
            rows.reverse()
        points = []
        tag_sets: dict[str, Any] = {}  # a series' rows share their tags: each distinct text is decoded once
        for time, row_tags, *values in rows:
            decoded: dict[str, FieldValue] = {}
            for i, name in enumerate(wanted):
                kind = values[2 * i]
                if kind is not None:
                    decoded[name] = _DECODE_TEXT[kind](values[2 * i + 1])
            point_tags = tag_sets.get(row_tags)
            if point_tags is None:
                point_tags = tag_sets[row_tags] = json.loads(row_tags)
            points.append(Point.stored(measurement, time, decoded, dict(point_tags)))
        return points

    def latest(self, measurement: str, tags: Mapping[str, str] | None = None) -> Point | None:
        row = self._filtered(measurement, tags).order_by("-time", "-pk").first()
        return self._point(row) if row else None
