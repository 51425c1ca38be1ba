"""The simulator's own record of what traded, and the comparison of a stored bar series with it.

The reference is the simulator's trade tape (what its REST `Trades` serves, every trade it made, whether or not a
socket was there to see it) or its 1-minute candles (its REST `OHLC` and `ohlc` channel). A stored series must
equal it bar for bar: no hole (every interval from the first stored bar to the last has exactly one bar), no
duplicate (one bar per interval, every trade counted once), every traded interval exactly the trades it had."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from timeseries.base import Point, TimeSeriesStore

NS = 1_000_000_000


def tape_by_interval(sim: Any, symbol: str, interval: int) -> dict[datetime, list[tuple[Decimal, Decimal, int, int]]]:
    """Every trade the simulator made for `symbol`, grouped by bar start: (price, qty, ts_ns, trade_id)."""
    out: dict[datetime, list[tuple[Decimal, Decimal, int, int]]] = defaultdict(list)
    for t in sim.exchange.marketdata[symbol].tape:
        seconds = t.ts_ns // NS
        start = datetime.fromtimestamp(seconds - seconds % interval, UTC)
        out[start].append((t.price, t.qty, t.ts_ns, t.trade_id))
    return out


def stored_bars(store: TimeSeriesStore, symbol: str, label: str) -> list[Point]:
    now = datetime.now(UTC)
    return store.query_range(
        "bars", now - timedelta(hours=3), now + timedelta(hours=3), {"symbol": symbol, "interval": label}
    )


def assert_series_equals_tape(
    points: list[Point], tape: dict[datetime, list[tuple[Decimal, Decimal, int, int]]], interval: int
) -> int:
    """The stored bars equal the tape from the first stored bar to the last; returns the traded bars compared."""
    assert points, "no bars stored"
    times = [p.time.astimezone(UTC) for p in points]
    assert len(times) == len(set(times)), "a bar is stored twice"
    step = timedelta(seconds=interval)
    expected = [times[0] + step * i for i in range(int((times[-1] - times[0]) / step) + 1)]
    assert times == expected, f"holes in the series: {sorted(set(expected) - set(times))[:5]}"
    traded = 0
    previous_close: Decimal | None = None
    for point, start in zip(points, times, strict=True):
        fields = point.fields
        trades = sorted(tape.get(start, []), key=lambda t: (t[2], t[3]))
        if trades:
            traded += 1
            assert fields["trades"] == len(trades), (start, fields, len(trades))
            assert fields["volume"] == sum(q for _, q, _, _ in trades), (start, fields)
            assert fields["open"] == trades[0][0], (start, fields)
            assert fields["close"] == trades[-1][0], (start, fields)
            assert fields["high"] == max(p for p, _, _, _ in trades), (start, fields)
            assert fields["low"] == min(p for p, _, _, _ in trades), (start, fields)
        else:
            assert fields["trades"] == 0, (start, fields, "the exchange had no trade in this interval")
            assert fields["volume"] == 0
            if previous_close is not None:
                assert fields["close"] == previous_close, (start, fields)
        previous_close = fields["close"]
    return traded


def tape_within(tape: dict[datetime, list[Any]], first: datetime, last: datetime) -> int:
    """How many trades the tape has in bars [first, last]."""
    return sum(len(v) for k, v in tape.items() if first <= k <= last)
