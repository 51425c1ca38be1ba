"""A trade as a time-series point: the hot path's shortcut builds exactly what `Point` would, and refuses what
`Point` refuses (with its error)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ingest.bars import trade_point
from ingest.kraken.messages import Trade
from timeseries.base import InvalidPoint, Point
from timeseries.influx import line_protocol

AT = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)


def trade(**overrides: object) -> Trade:
    values: dict[str, object] = {
        "symbol": "BTC/USD", "side": "sell", "price": Decimal("60000.1"), "qty": Decimal("0.00044780"),
        "ord_type": "limit", "trade_id": 130, "timestamp": AT,
    }  # fmt: skip
    values.update(overrides)
    return Trade(**values)  # type: ignore[arg-type]


def test_the_shortcut_builds_the_validated_point() -> None:
    point = trade_point(trade())
    validated = Point(point.measurement, point.time, dict(point.fields), dict(point.tags))
    assert point == validated
    assert point.tags == {"symbol": "BTC/USD", "slot": str(130 % 64)}
    assert line_protocol(point) == (
        'trades,slot=2,symbol=BTC/USD price=60000.1,qty=0.00044780,side="sell",ord_type="limit",trade_id=130i '
        "1795341600123456000"
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"price": Decimal("1234567890.1234567")},  # 17 significant digits: InfluxDB's float64 would round it
        {"qty": Decimal("NaN")},
        {"symbol": ""},
        {"symbol": "BTC/USD\nX"},
    ],
)
def test_what_point_refuses_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidPoint):
        trade_point(trade(**overrides))


def test_another_utc_tzinfo_goes_through_point() -> None:
    point = trade_point(trade(timestamp=AT.astimezone(timezone(timedelta(0)))))
    assert point.time == AT
