"""Bars from trades: OHLCV and VWAP exact, quiet minutes, out-of-order, duplicate and late trades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ingest.bars import BarBuilder
from ingest.kraken.messages import Trade

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def trade(seconds: float, price: str, qty: str, trade_id: int, symbol: str = "BTC/USD") -> Trade:
    return Trade(symbol, "buy", Decimal(price), Decimal(qty), "limit", trade_id, T0 + timedelta(seconds=seconds))


def builder(**kwargs) -> BarBuilder:  # type: ignore[no-untyped-def]
    return BarBuilder("BTC/USD", price_precision=1, **kwargs)


def test_bar_has_exact_ohlcv_vwap_and_closes_after_grace() -> None:
    b = builder()
    assert b.add_trade(trade(1, "100.0", "0.5", 1)) == []
    assert b.add_trade(trade(20, "102.5", "0.25", 2)) == []
    assert b.add_trade(trade(40, "99.5", "0.25", 3)) == []
    assert b.add_trade(trade(59, "101.0", "1.0", 4)) == []
    assert b.add_trade(trade(61, "101.5", "0.1", 5)) == []  # within the grace period: not closed yet
    [bar] = b.add_trade(trade(62, "101.4", "0.1", 6))
    assert (bar.start, bar.open, bar.high, bar.low, bar.close) == (
        T0,
        Decimal("100.0"),
        Decimal("102.5"),
        Decimal("99.5"),
        Decimal("101.0"),
    )
    assert bar.volume == Decimal("2.0")
    # (100*0.5 + 102.5*0.25 + 99.5*0.25 + 101*1) / 2 = 100.75 -> 100.8 at price precision 1 (half even)
    assert bar.vwap == Decimal("100.8")
    assert bar.trades == 4
    assert bar.revision == 0


def test_out_of_order_trades_within_a_bar_keep_time_ordered_open_and_close() -> None:
    b = builder()
    b.add_trade(trade(30, "105", "1", 2))
    b.add_trade(trade(10, "100", "1", 1))  # earlier trade arrives later: it is the open
    b.add_trade(trade(50, "103", "1", 3))
    [bar] = b.advance(T0 + timedelta(seconds=62))
    assert (bar.open, bar.close) == (Decimal("100"), Decimal("103"))


def test_quiet_minutes_become_flat_bars_at_the_previous_close() -> None:
    b = builder()
    b.add_trade(trade(5, "100.0", "1", 1))
    bars = b.add_trade(trade(3 * 60 + 5, "110.0", "1", 2))  # minutes 1 and 2 had no trades
    assert [bar.start for bar in bars] == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    quiet = bars[1:]
    for bar in quiet:
        assert (bar.open, bar.high, bar.low, bar.close, bar.vwap) == (Decimal("100.0"),) * 5
        assert (bar.volume, bar.trades) == (Decimal(0), 0)
    assert b.stats.quiet_bars == 2


def test_duplicate_trades_are_ignored_and_counted() -> None:
    b = builder()
    b.add_trade(trade(5, "100", "1", 1))
    b.add_trade(trade(5, "100", "1", 1))
    [bar] = b.advance(T0 + timedelta(minutes=2))[:1]
    assert bar.volume == Decimal("1")
    assert b.stats.duplicates == 1


def test_late_trade_revises_a_closed_bar() -> None:
    b = builder()
    b.add_trade(trade(5, "100", "1", 1))
    [closed] = b.add_trade(trade(65, "101", "1", 2))[:1]
    assert closed.revision == 0
    [revised] = b.add_trade(trade(58, "99", "1", 3))  # belongs to minute 0, which already closed
    assert revised.start == T0
    assert revised.revision == 1
    assert (revised.low, revised.close, revised.volume, revised.trades) == (Decimal("99"), Decimal("99"), Decimal(2), 2)
    assert b.stats.late_revisions == 1
    # Re-delivering the same late trade changes nothing.
    assert b.add_trade(trade(58, "99", "1", 3)) == []


def test_late_trade_in_a_quiet_bar_turns_it_into_a_real_bar() -> None:
    b = builder()
    b.add_trade(trade(5, "100", "1", 1))
    b.add_trade(trade(2 * 60 + 5, "101", "1", 2))  # minute 1 closes quiet
    [revised] = b.add_trade(trade(70, "150", "2", 3))
    assert (revised.start, revised.open, revised.volume, revised.revision) == (
        T0 + timedelta(minutes=1),
        Decimal("150"),
        Decimal("2"),
        1,
    )


def test_late_trade_older_than_the_first_bar_extends_the_series_without_a_hole() -> None:
    """The series began with a trade in minute 3; a late trade from minute 1 arrives (within the late window):
    minute 1 becomes a bar, and minute 2, empty, a quiet bar at its close, so the stored series has no hole
    (found as "holes in the series" by the ingest gap tests, about one run in ten)."""
    b = builder()
    b.add_trade(trade(3 * 60 + 5, "101", "1", 10))
    late = b.add_trade(trade(60 + 30, "99.5", "2", 3))
    assert [(x.start, x.trades, x.close, x.revision) for x in late] == [
        (T0 + timedelta(minutes=1), 1, Decimal("99.5"), 1),
        (T0 + timedelta(minutes=2), 0, Decimal("99.5"), 1),  # quiet, at the late bar's close
    ]
    # Earlier still: minute 0 fills only up to the new first bar (minute 1), once.
    earlier = b.add_trade(trade(10, "98", "1", 1))
    assert [(x.start, x.trades) for x in earlier] == [(T0, 1)]
    # A late trade in the quiet minute 2 turns it into a real bar, as for any quiet bar.
    [real] = b.add_trade(trade(2 * 60 + 1, "100", "1", 5))
    assert (real.start, real.trades, real.revision) == (T0 + timedelta(minutes=2), 1, 1)
    # The live series goes on: minute 3 closes as usual (not a revision).
    [closed] = b.add_trade(trade(4 * 60 + 5, "102", "1", 11))
    assert (closed.start, closed.trades, closed.revision) == (T0 + timedelta(minutes=3), 1, 0)


def test_trades_older_than_the_late_window_are_dropped_and_counted() -> None:
    b = builder(late_window=2)
    b.add_trade(trade(5, "100", "1", 1))
    b.add_trade(trade(10 * 60 + 5, "101", "1", 2))
    assert b.add_trade(trade(30, "99", "1", 3)) == []
    assert b.stats.late_dropped == 1


def test_five_minute_bars_and_points() -> None:
    b = builder(interval_seconds=300)
    b.add_trade(trade(10, "100.0", "0.5", 1))
    b.add_trade(trade(299, "100.2", "0.5", 2))
    [bar] = b.advance(T0 + timedelta(minutes=5, seconds=3))
    point = bar.to_point()
    assert point.tags == {"symbol": "BTC/USD", "interval": "5m"}
    assert point.time == T0
    assert point.fields["vwap"] == Decimal("100.1")
    assert point.fields["trades"] == 2


def test_trade_for_another_symbol_is_refused() -> None:
    with pytest.raises(ValueError, match="ETH/USD"):
        builder().add_trade(trade(1, "1", "1", 1, symbol="ETH/USD"))
