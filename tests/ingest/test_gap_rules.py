"""The rules gap repair relies on, without I/O: a builder resumed after a restart fills the quiet intervals
since the last stored bar, a bar rebuilt from the exchange's list replaces what was built, merged REST and live
trades keep each trade once in exchange order, and a bar is compared with the exchange's field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ingest import gaps
from ingest.bars import BarBuilder
from ingest.kraken.messages import OHLC, Trade
from ingest.kraken.rest_types import PublicTrade

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def trade(seconds: float, price: str, qty: str, trade_id: int) -> Trade:
    return Trade("BTC/USD", "buy", Decimal(price), Decimal(qty), "limit", trade_id, T0 + timedelta(seconds=seconds))


def builder() -> BarBuilder:
    return BarBuilder("BTC/USD", price_precision=1, grace=timedelta(seconds=2))


def test_a_resumed_builder_fills_the_quiet_minutes_since_the_last_stored_bar() -> None:
    b = builder()
    b.resume(next_start=T0, last_close=Decimal("100.0"))
    bars = b.add_trade(trade(185, "101.0", "1", 1))  # first trade three minutes later
    assert [(bar.start, bar.trades, bar.close) for bar in bars] == [
        (T0, 0, Decimal("100.0")),
        (T0 + timedelta(minutes=1), 0, Decimal("100.0")),
        (T0 + timedelta(minutes=2), 0, Decimal("100.0")),
    ]
    with pytest.raises(ValueError, match="fresh builder"):
        b.resume(next_start=T0, last_close=Decimal("1"))


def test_skip_to_refuses_to_lose_open_bars() -> None:
    b = builder()
    b.add_trade(trade(5, "100.0", "1", 1))
    with pytest.raises(ValueError, match="open bars"):
        b.skip_to(next_start=T0 + timedelta(minutes=5), last_close=None)


def test_rebuild_replaces_a_closed_bar_with_the_exchange_trades_as_a_revision() -> None:
    b = builder()
    b.add_trade(trade(1, "100.0", "1", 1))
    b.add_trade(trade(30, "103.0", "1", 3))
    [closed] = b.add_trade(trade(63, "104.0", "1", 4))
    assert closed.trades == 2
    exchange = [trade(1, "100.0", "1", 1), trade(20, "99.0", "2", 2), trade(30, "103.0", "1", 3)]
    rebuilt = b.rebuild(T0, exchange)
    assert rebuilt is not None
    assert (rebuilt.trades, rebuilt.low, rebuilt.volume, rebuilt.revision) == (3, Decimal("99.0"), Decimal(4), 1)
    assert b.trade_ids(T0) == {1, 2, 3}
    # Still open: replaced in place, emitted when it closes.
    assert b.rebuild(T0 + timedelta(minutes=1), [trade(61, "104.0", "1", 4), trade(62, "90.0", "1", 5)]) is None
    [next_bar] = b.advance(T0 + timedelta(minutes=2, seconds=3))
    assert (next_bar.trades, next_bar.low) == (2, Decimal("90.0"))


def test_merged_trades_keep_each_trade_once_in_exchange_order() -> None:
    live = [trade(10, "1", "1", 7), trade(11, "1", "1", 8)]
    rest = [trade(9, "1", "1", 6), trade(10.00001, "1", "1", 7)]  # REST's coarser time for the same trade 7
    merged = gaps.merge_trades(live, rest)
    assert [t.trade_id for t in merged] == [6, 7, 8]
    assert merged[1].timestamp == live[0].timestamp  # the live (finer) time wins


def test_rest_trade_conversion_and_bar_comparison() -> None:
    row = PublicTrade(Decimal("100.5"), Decimal("0.25"), Decimal("1763805600.1234"), "s", "m", "", 42)
    converted = gaps.trade_from_rest("BTC/USD", row)
    assert converted is not None
    assert (converted.side, converted.ord_type, converted.trade_id) == ("sell", "market", 42)
    assert converted.timestamp == datetime(2025, 11, 22, 10, 0, 0, 123400, tzinfo=UTC)
    assert gaps.trade_from_rest("BTC/USD", PublicTrade(Decimal(1), Decimal(1), Decimal(1), "b", "l", "", None)) is None

    b = builder()
    b.add_trade(trade(1, "100.0", "1", 1))
    [bar] = b.add_trade(trade(63, "101.0", "1", 2))
    same = OHLC(
        "BTC/USD",
        Decimal("100.0"),
        Decimal("100.0"),
        Decimal("100.0"),
        Decimal("100.0"),
        Decimal("99"),
        Decimal("1"),
        1,
        T0,
        1,
    )
    assert gaps.bar_differences(bar, same) == {}
    more = OHLC(
        "BTC/USD",
        Decimal("100.0"),
        Decimal("100.5"),
        Decimal("100.0"),
        Decimal("100.5"),
        Decimal("100.2"),
        Decimal("1.5"),
        2,
        T0,
        1,
    )
    assert gaps.bar_differences(bar, more) == {
        "high": (Decimal("100.0"), Decimal("100.5")),
        "close": (Decimal("100.0"), Decimal("100.5")),
        "volume": (Decimal("1"), Decimal("1.5")),
        "trades": (1, 2),
    }
