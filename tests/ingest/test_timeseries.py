"""Both time-series adapters behind one interface: exact Decimal round trips, idempotent writes, filters.

The InfluxDB tests talk to the real server (Debian's InfluxDB 1.x in CI) through its v1 HTTP API, each in a
database of its own that is dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from tests.conftest import free_port
from timeseries import InvalidPoint, Point, TimeSeriesError
from timeseries.influx import InfluxStore, line_protocol
from timeseries.relational import RelationalStore

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def bar(minute: int, close: str, symbol: str = "BTC/USD", trades: int = 3) -> Point:
    return Point(
        "bars_1m",
        T0 + timedelta(minutes=minute),
        {"close": Decimal(close), "volume": Decimal("0.00044780"), "trades": trades, "final": True},
        {"symbol": symbol, "exchange": "kraken"},
    )


@pytest.fixture
def influx() -> Iterator[InfluxStore]:
    database = f"galfriday_test_{uuid.uuid4().hex[:10]}"
    store = InfluxStore(url=os.environ["INFLUXDB_URL"], database=database, timeout=5)
    yield store
    httpx.post(f"{store.url}/query", params={"q": f'DROP DATABASE "{database}"'}, timeout=5)
    store.close()


@pytest.fixture(params=["relational", pytest.param("influx", marks=pytest.mark.services("influxdb"))])
def store(request, db):  # type: ignore[no-untyped-def]
    # `db` is requested statically for both: pytest-django sets the test database up only for fixtures it sees
    # at collection, and the relational adapter needs it.
    if request.param == "relational":
        return RelationalStore()
    return request.getfixturevalue("influx")


def test_round_trip_keeps_decimals_ints_bools_exactly(store) -> None:  # type: ignore[no-untyped-def]
    store.ping()
    store.write_batch([bar(0, "29430.2"), bar(1, "29431.0")])
    points = store.query_range("bars_1m", T0, T0 + timedelta(hours=1), {"symbol": "BTC/USD"})
    assert [p.time for p in points] == [T0, T0 + timedelta(minutes=1)]
    assert points[0].fields == {"close": Decimal("29430.2"), "volume": Decimal("0.0004478"), "trades": 3, "final": True}
    assert isinstance(points[1].fields["close"], Decimal)
    assert points[1].fields["close"] == Decimal("29431")
    assert points[0].tags == {"symbol": "BTC/USD", "exchange": "kraken"}


def test_writing_the_same_point_again_replaces_it(store) -> None:  # type: ignore[no-untyped-def]
    store.write_batch([bar(0, "100.5")])
    store.write_batch([bar(0, "101.5", trades=9)])
    points = store.query_range("bars_1m", T0, T0 + timedelta(minutes=1))
    assert len(points) == 1
    assert points[0].fields["close"] == Decimal("101.5")
    assert points[0].fields["trades"] == 9


def test_range_is_half_open_and_filtered_by_tags(store) -> None:  # type: ignore[no-untyped-def]
    store.write_batch([bar(m, f"{100 + m}.1") for m in range(5)] + [bar(2, "7.7", symbol="ETH/USD")])
    points = store.query_range("bars_1m", T0 + timedelta(minutes=1), T0 + timedelta(minutes=3), {"symbol": "BTC/USD"})
    assert [p.fields["close"] for p in points] == [Decimal("101.1"), Decimal("102.1")]
    eth = store.query_range("bars_1m", T0, T0 + timedelta(hours=1), {"symbol": "ETH/USD"})
    assert [p.fields["close"] for p in eth] == [Decimal("7.7")]


def test_latest_returns_the_newest_matching_point(store) -> None:  # type: ignore[no-untyped-def]
    assert store.latest("bars_1m") is None
    store.write_batch([bar(3, "3.3"), bar(1, "1.1"), bar(9, "9.9", symbol="ETH/USD")])
    latest = store.latest("bars_1m", {"symbol": "BTC/USD"})
    assert latest is not None
    assert latest.time == T0 + timedelta(minutes=3)
    assert latest.fields["close"] == Decimal("3.3")


def test_strings_with_quotes_and_tags_with_spaces_survive(store) -> None:  # type: ignore[no-untyped-def]
    point = Point("events", T0, {"note": 'say "hi", ok\\'}, {"source": "web site,main=1"})
    store.write_batch([point])
    [back] = store.query_range("events", T0, T0 + timedelta(seconds=1))
    assert back.fields["note"] == 'say "hi", ok\\'
    assert back.tags == {"source": "web site,main=1"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time": datetime(2026, 1, 1)}, "timezone-aware"),  # noqa: DTZ001 - the naive time is the bad input
        ({"fields": {"close": 1.5}}, "float"),
        ({"fields": {"close": Decimal("1.23456789012345678")}}, "significant digits"),
        ({"fields": {"close": Decimal("NaN")}}, "not finite"),
        ({"fields": {}}, "no fields"),
        ({"measurement": "bad name"}, "not allowed"),
        ({"tags": {"symbol": ""}}, "non-empty"),
    ],
)
def test_invalid_points_are_refused_with_a_clear_error(kwargs, message) -> None:  # type: ignore[no-untyped-def]
    values = {"measurement": "bars_1m", "time": T0, "fields": {"close": Decimal("1")}, "tags": {}} | kwargs
    with pytest.raises(InvalidPoint, match=message):
        Point(**values)


def test_line_protocol_escapes_and_types() -> None:
    point = Point("m", T0, {"price": Decimal("1E+3"), "n": 5, "ok": False, "s": 'a"b'}, {"k": "a b,c=d"})
    assert line_protocol(point) == 'm,k=a\\ b\\,c\\=d price=1000,n=5i,ok=false,s="a\\"b" 1795341600000000000'


def test_unreachable_influxdb_raises_timeseries_error() -> None:
    store = InfluxStore(url=f"http://127.0.0.1:{free_port()}", database="x", timeout=1)
    with pytest.raises(TimeSeriesError, match="unreachable"):
        store.ping()
    with pytest.raises(TimeSeriesError):
        store.write_batch([bar(0, "1")])
