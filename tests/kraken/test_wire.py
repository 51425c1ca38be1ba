"""The wire formats both clients share: RFC 3339 times and JSON request bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ingest.kraken.errors import MalformedMessage
from ingest.kraken.wire import Rfc3339Nanos, encode_json, parse_rfc3339, parse_rfc3339_optional


def test_rfc3339_times_become_aware_utc_datetimes() -> None:
    assert parse_rfc3339("2023-09-21T15:49:29.123456789Z") == datetime(2023, 9, 21, 15, 49, 29, 123456, tzinfo=UTC)
    shifted = parse_rfc3339("2023-09-21T17:49:29+02:00")
    assert shifted == datetime(2023, 9, 21, 15, 49, 29, tzinfo=UTC)
    assert shifted.tzinfo is UTC


@pytest.mark.parametrize("bad", ["yesterday", "2023-09-21T15:49:29", 1695311369, None])
def test_what_is_not_an_rfc3339_time_with_a_zone_is_malformed(bad: object) -> None:
    with pytest.raises(MalformedMessage, match="RFC3339|timezone"):
        parse_rfc3339(bad)


@pytest.mark.parametrize("none", [None, "", "0", 0])
def test_krakens_no_time_is_none_where_it_is_allowed(none: object) -> None:
    assert parse_rfc3339_optional(none) is None
    assert parse_rfc3339_optional("2023-09-21T15:49:29Z") == datetime(2023, 9, 21, 15, 49, 29, tzinfo=UTC)


def test_nanoseconds_on_the_hot_path_agree_with_the_datetime_parser() -> None:
    nanos = Rfc3339Nanos()
    assert nanos("2023-09-21T15:49:29.123456789Z") == 1695311369_123456789
    assert nanos("2023-09-21T15:49:29.5Z") == 1695311369_500000000  # the cached second, another fraction
    assert nanos("2023-09-21T15:49:30Z") == 1695311370_000000000
    with pytest.raises(ValueError, match="Invalid isoformat"):
        nanos("not a time at all")


def test_json_writes_exact_decimals_as_numbers_or_strings() -> None:
    message = {"order_qty": Decimal("1E-8"), "limit_price": Decimal("27500.10"), "symbol": ["BTC/USD"]}
    assert encode_json(message, decimals="number") == (
        '{"order_qty":0.00000001,"limit_price":27500.10,"symbol":["BTC/USD"]}'
    )
    assert encode_json(message, decimals="string") == (
        '{"order_qty":"0.00000001","limit_price":"27500.10","symbol":["BTC/USD"]}'
    )


@pytest.mark.parametrize("decimals", ["number", "string"])
def test_json_refuses_floats_and_non_finite_decimals_in_both_forms(decimals: str) -> None:
    with pytest.raises(TypeError, match="float"):
        encode_json({"params": {"order_qty": 0.1}}, decimals=decimals)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-finite"):
        encode_json({"limit_price": Decimal("Infinity")}, decimals=decimals)  # type: ignore[arg-type]
