"""InfluxDB adapter over the v1 HTTP API (`/write` with line protocol, `/query` with InfluxQL).

InfluxDB 1.8+ serves this API natively; 2.x and 3.x serve it through their v1 compatibility endpoints (with a
DBRP mapping from the database name to a bucket, and a token). Decimal fields are written as float64 text and
read back as Decimal from the exact JSON token; `Point` refuses decimals longer than 15 significant digits, so
the round trip is exact.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from timeseries.base import FieldValue, Point, TimeSeriesError, name_allowed

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _field_text(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, Decimal):
        return format(value, "f")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_nanoseconds(moment: datetime) -> int:
    return ((moment - EPOCH) // _ONE_MICROSECOND) * 1000


def from_nanoseconds(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)


# Hot path (every trade is a line): the escaped series head per (measurement, tags) and the escaped field keys
# are cached; both caches are bounded (a series per symbol and interval, a handful of field names).
_HEADS: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_KEYS: dict[str, str] = {}
_CACHE_LIMIT = 10_000
# Lines encoded between two GIL hand-overs in write_batch (~1 ms of work): a 5,000-point batch would otherwise
# hold the GIL for the interpreter's whole 5 ms switch interval at a time, stalling the ingest event loop.
_ENCODE_CHUNK = 250


def _head(measurement: str, tags: Any) -> str:
    cache_key = (measurement, tuple(tags.items()))  # insertion order: the head itself is built sorted
    head = _HEADS.get(cache_key)
    if head is None:
        head = _escape_measurement(measurement) + "".join(
            f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items())
        )
        if len(_HEADS) < _CACHE_LIMIT:
            _HEADS[cache_key] = head
    return head


def _key(name: str) -> str:
    escaped = _KEYS.get(name)
    if escaped is None:
        escaped = _escape_key(name)
        if len(_KEYS) < _CACHE_LIMIT:
            _KEYS[name] = escaped
    return escaped


def line_protocol(point: Point) -> str:
    """One line of InfluxDB line protocol for the point (tags sorted, as InfluxDB recommends)."""
    parts = []
    for k, v in point.fields.items():
        kind = type(v)
        if kind is Decimal:
            text = format(v, "f")
        elif kind is int:
            text = f"{v}i"
        else:
            text = _field_text(v)
        parts.append(f"{_key(k)}={text}")
    return f"{_head(point.measurement, point.tags)} {','.join(parts)} {to_nanoseconds(point.time)}"


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _time_literal(moment: datetime) -> str:
    return f"{to_nanoseconds(moment)}"


class InfluxStore:
    backend = "influxdb"

    def __init__(
        self,
        *,
        url: str,
        database: str,
        username: str = "",
        password: str = "",
        token: str = "",
        timeout: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        headers = {"User-Agent": "gal-friday"}
        if token:
            headers["Authorization"] = f"Token {token}"
        auth = (username, password) if username else None
        self._client = client or httpx.Client(base_url=self.url, headers=headers, auth=auth, timeout=timeout)
        self._field_types: dict[str, dict[str, str]] = {}
        self._database_ready = False

    def close(self) -> None:
        self._client.close()

    # -- HTTP ------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TimeSeriesError(f"InfluxDB at {self.url} unreachable: {exc!r}") from exc
        if response.status_code >= 400:
            code = response.status_code
            raise TimeSeriesError(
                f"InfluxDB {method} {path} answered {code}: {response.text.strip()[:300]}",
                retryable=code >= 500 or code in (408, 429),
            )
        return response

    def _query(self, statement: str, *, write: bool = False) -> list[dict[str, Any]]:
        params = {"db": self.database, "q": statement, "epoch": "ns"}
        response = self._request("POST" if write else "GET", "/query", params=params)
        body = json.loads(response.text, parse_float=Decimal)
        results = body.get("results", [])
        for result in results:
            if "error" in result:
                raise TimeSeriesError(f"InfluxQL error for {statement!r}: {result['error']}")
        return results

    def ensure_database(self) -> None:
        """Create the database if missing: InfluxDB 1.x (idempotent there). InfluxDB 2.x/3.x refuse CREATE
        DATABASE; there the bucket's (virtual) DBRP mapping makes the database name usable, so a refusal is
        logged and the first real query says whether the database exists."""
        if self._database_ready:
            return
        try:
            self._query(f"CREATE DATABASE {_quote_ident(self.database)}", write=True)
        except TimeSeriesError as exc:
            if "unreachable" in str(exc):
                raise
            logger.info("influxdb refused CREATE DATABASE; relying on a DBRP mapping", extra={"error": str(exc)})
        self._database_ready = True

    # -- interface -------------------------------------------------------------------------------------------
    def ping(self) -> None:
        self._request("GET", "/ping")
        self.ensure_database()
        self._query("SHOW MEASUREMENTS LIMIT 1")

    def write_batch(self, points: Sequence[Point]) -> int:
        if not points:
            return 0
        self.ensure_database()
        lines: list[str] = []
        for start in range(0, len(points), _ENCODE_CHUNK):
            if start:
                time.sleep(0)  # let the event loop's thread have the GIL between chunks (its latency, not ours)
            lines.extend([line_protocol(p) for p in points[start : start + _ENCODE_CHUNK]])
        body = "\n".join(lines).encode()
        self._request("POST", "/write", params={"db": self.database, "precision": "ns"}, content=body)
        if self._field_types:  # a new field may have appeared: re-read the types on the next query
            shapes = {(p.measurement, tuple(p.fields)) for p in points}
            for measurement, names in shapes:
                known = self._field_types.get(measurement)
                if known is not None and not set(names) <= set(known):
                    self._field_types.pop(measurement, None)
        return len(points)

    def _types(self, measurement: str) -> dict[str, str]:
        if measurement not in self._field_types:
            results = self._query(f"SHOW FIELD KEYS FROM {_quote_ident(measurement)}")
            types: dict[str, str] = {}
            for series in results[0].get("series", []) if results else []:
                for name, kind in series["values"]:
                    types[name] = kind
            self._field_types[measurement] = types
        return self._field_types[measurement]

    def _select(self, measurement: str, conditions: list[str], suffix: str) -> list[Point]:
        where = " AND ".join(conditions)
        statement = f"SELECT * FROM {_quote_ident(measurement)}"
        if where:
            statement += f" WHERE {where}"
        statement += f" GROUP BY * {suffix}".rstrip()
        self.ensure_database()
        results = self._query(statement)
        types = self._types(measurement)
        points: list[Point] = []
        for series in results[0].get("series", []) if results else []:
            tags = {k: v for k, v in (series.get("tags") or {}).items() if v != ""}
            columns = series["columns"]
            for row in series["values"]:
                values = dict(zip(columns, row, strict=True))
                ns = values.pop("time")
                fields = {k: self._convert(v, types.get(k)) for k, v in values.items() if v is not None}
                if fields:
                    points.append(Point(measurement, from_nanoseconds(int(ns)), fields, tags))
        points.sort(key=lambda p: p.time)
        return points

    @staticmethod
    def _convert(value: Any, kind: str | None) -> FieldValue:
        if kind == "integer":
            return int(value)
        if kind == "float":
            return Decimal(value) if not isinstance(value, Decimal) else value
        if kind == "boolean":
            return bool(value)
        return str(value)

    @staticmethod
    def _tag_conditions(tags: Mapping[str, str] | None) -> list[str]:
        return [f"{_quote_ident(k)} = {_quote_literal(v)}" for k, v in sorted((tags or {}).items())]

    def query_range(
        self, measurement: str, start: datetime, end: datetime, tags: Mapping[str, str] | None = None
    ) -> list[Point]:
        conditions = [f"time >= {_time_literal(start)}", f"time < {_time_literal(end)}"]
        return self._select(measurement, conditions + self._tag_conditions(tags), "")

    def latest(self, measurement: str, tags: Mapping[str, str] | None = None) -> Point | None:
        points = self._select(measurement, self._tag_conditions(tags), "ORDER BY time DESC LIMIT 1")
        return points[-1] if points else None

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
        """See `timeseries.base.query_fields`. With `require`, InfluxDB is asked for just the wanted fields
        and `require` (``SELECT "close" ...``: a row comes back when one of them is set, so every row that has
        `require` does), and only those values are decoded, into points read back as stored (not validated
        again); when `require` is the only field selected, `last` is a ``LIMIT`` on a newest-first scan.
        Without `require`, InfluxDB would leave out the rows that have none of the wanted fields, which the
        interface keeps (with no fields): those reads go through `query_range`, narrowed."""
        wanted = tuple(dict.fromkeys(fields))
        for name in (*wanted, *([require] if require is not None else [])):
            if not name_allowed(name):
                raise ValueError(f"field name {name!r} is not allowed")
        if require is None:
            narrowed = [
                Point.stored(p.measurement, p.time, {k: p.fields[k] for k in wanted if k in p.fields}, p.tags)
                for p in self.query_range(measurement, start, end, tags)
            ]
            return narrowed[-last:] if last is not None else narrowed
        selected = wanted if require in wanted else (*wanted, require)
        conditions = [f"time >= {_time_literal(start)}", f"time < {_time_literal(end)}", *self._tag_conditions(tags)]
        suffix = f"ORDER BY time DESC LIMIT {int(last)}" if last is not None and selected == (require,) else ""
        statement = (
            f"SELECT {', '.join(_quote_ident(n) for n in selected)} FROM {_quote_ident(measurement)} "
            f"WHERE {' AND '.join(conditions)} GROUP BY * {suffix}"
        ).rstrip()
        self.ensure_database()
        results = self._query(statement)
        types = self._types(measurement)
        convert = self._convert
        points: list[Point] = []
        for series in results[0].get("series", []) if results else []:
            series_tags = {k: v for k, v in (series.get("tags") or {}).items() if v != ""}
            columns = series["columns"]
            if require not in columns[1:]:
                continue
            need = columns.index(require, 1)
            kept = [(i, name, types.get(name)) for i, name in enumerate(columns) if i and name in wanted]
            for row in series["values"]:
                if row[need] is None:
                    continue
                values = {name: convert(row[i], kind) for i, name, kind in kept if row[i] is not None}
                points.append(Point.stored(measurement, from_nanoseconds(int(row[0])), values, series_tags))
        points.sort(key=lambda p: p.time)
        return points[-last:] if last is not None else points
