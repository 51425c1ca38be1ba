"""Property tests of the bar builder (`ingest.bars.BarBuilder`): random trade streams, delivered in any order that
keeps within the lateness rules (each trade at most `late_window - 2` intervals behind the newest one seen) and with
repeats, give the same series as a direct computation from the trades in exchange order.

The series is what a store that replaces a bar by its revision holds: the last bar emitted for each start. For
every interval from the first trade's to the last one's: open and close are the prices of the earliest and latest
trades by (timestamp, trade id), high and low their extremes, the volume the exact Decimal sum of the quantities,
the count of distinct trades, the VWAP sum(price x qty) / volume at the instrument's precision; an interval without
trades is flat at the previous close with zero volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.bars import Bar, BarBuilder
from ingest.kraken.messages import Trade
from tests.properties import examples

INTERVAL = 60
LATE_WINDOW = 5
PRICE_PRECISION = 2
START = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SPAN_SECONDS = 12 * INTERVAL  # trades over twelve intervals (quiet ones included)
MAX_DELAY = (LATE_WINDOW - 2) * INTERVAL  # late by at most this much behind the newest trade seen


@dataclass(frozen=True)
class Drawn:
    trades: list[Trade]  # in exchange order
    arrival: list[Trade]  # as delivered (repeats included)


@st.composite
def streams(draw: st.DrawFn) -> Drawn:
    n = draw(st.integers(min_value=1, max_value=60))
    offsets = sorted(draw(st.lists(st.integers(0, SPAN_SECONDS * 1_000_000), min_size=n, max_size=n)))
    trades = [
        Trade(
            symbol="BTC/USD",
            side=draw(st.sampled_from(["buy", "sell"])),
            price=Decimal(draw(st.integers(9_000_00, 11_000_00))).scaleb(-PRICE_PRECISION),
            qty=Decimal(draw(st.integers(1, 10**9))).scaleb(-8),
            ord_type="limit",
            trade_id=1000 + i,  # Kraken numbers a pair's trades in exchange order
            timestamp=START + timedelta(microseconds=offset),
        )
        for i, offset in enumerate(offsets)
    ]
    # Each trade is delivered at its time plus a random delay of at most MAX_DELAY, so no trade arrives more than
    # MAX_DELAY behind the newest one seen: any order a late-but-not-too-late feed can produce. Some come twice.
    delays = [draw(st.integers(0, MAX_DELAY * 1_000_000)) for _ in trades]
    keyed = [(t.timestamp + timedelta(microseconds=d), t) for t, d in zip(trades, delays, strict=True)]
    repeats = draw(st.lists(st.integers(0, n - 1), max_size=5))
    keyed += [keyed[i] for i in repeats]  # delivered again right after (a replay): a duplicate, not a late trade
    keyed.sort(key=lambda pair: pair[0])
    return Drawn(trades=trades, arrival=[t for _, t in keyed])


def direct(trades: list[Trade]) -> dict[datetime, tuple[Decimal, Decimal, Decimal, Decimal, Decimal, Decimal, int]]:
    quantum = Decimal(1).scaleb(-PRICE_PRECISION)
    first = _bucket(trades[0].timestamp)
    last = _bucket(trades[-1].timestamp)
    series = {}
    close = None
    moment = first
    while moment <= last:
        inside = sorted((t for t in trades if _bucket(t.timestamp) == moment), key=lambda t: (t.timestamp, t.trade_id))
        if inside:
            volume = sum((t.qty for t in inside), Decimal(0))
            notional = sum((t.price * t.qty for t in inside), Decimal(0))
            vwap = (notional / volume).quantize(quantum, rounding=ROUND_HALF_EVEN)
            prices = [t.price for t in inside]
            close = inside[-1].price
            series[moment] = (inside[0].price, max(prices), min(prices), close, volume, vwap, len(inside))
        else:
            assert close is not None
            series[moment] = (close, close, close, close, Decimal(0), close, 0)
        moment += timedelta(seconds=INTERVAL)
    return series


def _bucket(moment: datetime) -> datetime:
    seconds = int((moment - START).total_seconds()) // INTERVAL * INTERVAL
    return START + timedelta(seconds=seconds)


def built(arrival: list[Trade]) -> tuple[dict[datetime, Bar], BarBuilder]:
    builder = BarBuilder("BTC/USD", price_precision=PRICE_PRECISION, interval_seconds=INTERVAL, late_window=LATE_WINDOW)
    emitted: list[Bar] = []
    for trade in arrival:
        emitted.extend(builder.add_trade(trade))
    emitted.extend(builder.advance(START + timedelta(seconds=SPAN_SECONDS + 10 * INTERVAL)))
    series: dict[datetime, Bar] = {}
    for bar in emitted:  # the store replaces a bar by a later revision of it
        assert bar.start not in series or bar.revision >= series[bar.start].revision, bar
        series[bar.start] = bar
    return series, builder


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams())
def test_bars_from_any_arrival_order_equal_a_direct_computation(stream: Drawn) -> None:
    series, builder = built(stream.arrival)
    expected = direct(stream.trades)
    last_trade_bar = max(expected)
    got = {start: bar for start, bar in series.items() if start <= last_trade_bar}
    assert sorted(got) == sorted(expected), "a hole or an extra bar in the series"
    for start, bar in got.items():
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.vwap, bar.trades) == expected[start], start
        assert type(bar.volume) is Decimal
    # after the last trade's bar, only quiet bars at the last close
    last_close = expected[last_trade_bar][3]
    for start, bar in series.items():
        if start > last_trade_bar:
            assert (bar.open, bar.close, bar.volume, bar.trades) == (last_close, last_close, Decimal(0), 0)
    assert builder.stats.late_dropped == 0
    assert builder.stats.trades == len(stream.trades)
    assert builder.stats.duplicates == len(stream.arrival) - len(stream.trades)


@settings(max_examples=examples(60), deadline=None)
@given(stream=streams())
def test_the_volume_is_the_exact_sum_whatever_the_scale(stream: Drawn) -> None:
    series, _ = built(stream.arrival)
    assert sum((bar.volume for bar in series.values()), Decimal(0)) == sum((t.qty for t in stream.trades), Decimal(0))
    assert sum(bar.trades for bar in series.values()) == len(stream.trades)


def test_a_late_trade_that_changes_a_close_revises_the_quiet_bars_after_it() -> None:
    """Found by the property above: minute 0 closed at 100.00, minute 1 closed quiet at 100.00; a late trade of
    minute 0 makes its close 100.01, so minute 1 (flat at the previous close) must be re-emitted at 100.01, and
    the quiet bars to come carry 100.01 too."""

    def at(seconds: float, price: str, trade_id: int) -> Trade:
        moment = START + timedelta(seconds=seconds)
        return Trade("BTC/USD", "buy", Decimal(price), Decimal("0.5"), "limit", trade_id, moment)

    builder = BarBuilder("BTC/USD", price_precision=PRICE_PRECISION, interval_seconds=INTERVAL, late_window=5)
    builder.add_trade(at(10, "100.00", 1))
    closed = builder.add_trade(at(2 * 60 + 5, "100.00", 3))  # minute 0 closes, and minute 1 quiet
    assert [(b.start, b.close, b.trades) for b in closed] == [
        (START, Decimal("100.00"), 1),
        (START + timedelta(minutes=1), Decimal("100.00"), 0),
    ]
    revised = builder.add_trade(at(59, "100.01", 2))
    assert [(b.start, b.close, b.trades, b.revision) for b in revised] == [
        (START, Decimal("100.01"), 2, 1),
        (START + timedelta(minutes=1), Decimal("100.01"), 0, 1),
    ]
    assert builder.last_close == Decimal("100.01")  # minute 2 is still open: nothing after minute 0 has traded
