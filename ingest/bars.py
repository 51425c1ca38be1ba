"""OHLCV bars built from trades: exact Decimals, quiet intervals, duplicates and late trades.

`BarBuilder` turns one symbol's trade stream into bars of a fixed interval (1 minute by default; any multiple
of a second). It is plain Python (no Django, no I/O) so the ingest worker's hot path stays cheap.

Rules:
- A trade belongs to the bar whose interval contains its exchange timestamp. Open and close are the earliest and
  latest trades by (timestamp, trade_id), whatever order they arrived in.
- A bar closes once the exchange clock (the newest trade timestamp seen, or `advance(now)`) passes its end plus
  a grace period, so trades that arrive slightly out of order still land in the right bar before it closes.
- An interval without trades still closes, as a flat bar at the previous close with zero volume and zero
  trades, so the series has no holes (nothing is emitted before the first trade).
- A trade for a bar already closed, within `late_window` bars, re-emits that bar with `revision` + 1 (the
  time-series store replaces it; the decision pipeline is not triggered again). Older trades are counted as
  `late_dropped` and left to the REST backfill.
- A trade id seen before (per bar) is a duplicate: counted, ignored.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from ingest.kraken.messages import Trade
from ingest.timeseries.base import Point

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BAR_MEASUREMENT = "bars"


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    interval_seconds: int
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    vwap: Decimal
    trades: int
    revision: int = 0

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.interval_seconds)

    @property
    def interval_label(self) -> str:
        seconds = self.interval_seconds
        return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"

    def to_point(self) -> Point:
        """The bar as a time-series point (measurement `bars`, tags symbol and interval, time = bar start)."""
        return Point(
            BAR_MEASUREMENT,
            self.start,
            {
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
                "vwap": self.vwap,
                "trades": self.trades,
                "revision": self.revision,
            },
            {"symbol": self.symbol, "interval": self.interval_label},
        )


@dataclass(slots=True)
class BarStats:
    trades: int = 0
    duplicates: int = 0
    late_revisions: int = 0
    late_dropped: int = 0
    bars_closed: int = 0
    quiet_bars: int = 0


@dataclass(slots=True)
class _Accumulator:
    first: tuple[datetime, int]
    last: tuple[datetime, int]
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    trades: int = 0
    revision: int = 0
    trade_ids: set[int] = field(default_factory=set)

    @classmethod
    def from_trade(cls, trade: Trade) -> _Accumulator:
        key = (trade.timestamp, trade.trade_id)
        acc = cls(key, key, trade.price, trade.price, trade.price, trade.price)
        acc.add(trade)
        return acc

    def add(self, trade: Trade) -> None:
        key = (trade.timestamp, trade.trade_id)
        if key < self.first:
            self.first, self.open = key, trade.price
        if key >= self.last:
            self.last, self.close = key, trade.price
        if trade.price > self.high:
            self.high = trade.price
        if trade.price < self.low:
            self.low = trade.price
        self.volume += trade.qty
        self.notional += trade.price * trade.qty
        self.trades += 1
        self.trade_ids.add(trade.trade_id)


class BarBuilder:
    def __init__(
        self,
        symbol: str,
        *,
        price_precision: int,
        interval_seconds: int = 60,
        grace: timedelta = timedelta(seconds=2),
        late_window: int = 5,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        self.symbol = symbol
        self.interval_seconds = interval_seconds
        self._interval = timedelta(seconds=interval_seconds)
        self._grace = grace
        self._late_window = late_window
        self._quantum = Decimal(1).scaleb(-price_precision)
        self._open: dict[datetime, _Accumulator] = {}
        self._recent: OrderedDict[datetime, _Accumulator] = OrderedDict()  # closed bars still revisable
        self._next_to_close: datetime | None = None
        self._last_close: Decimal | None = None
        self.stats = BarStats()

    def bucket(self, moment: datetime) -> datetime:
        seconds = (moment - EPOCH) // timedelta(seconds=1)
        return EPOCH + timedelta(seconds=seconds - seconds % self.interval_seconds)

    def add_trade(self, trade: Trade) -> list[Bar]:
        """Add a trade; returns the bars this closed (in time order) and any revised bar."""
        if trade.symbol != self.symbol:
            raise ValueError(f"trade for {trade.symbol} given to the {self.symbol} bar builder")
        start = self.bucket(trade.timestamp)
        emitted: list[Bar] = []
        if self._next_to_close is not None and start < self._next_to_close:
            emitted.extend(self._add_late(start, trade))
        else:
            acc = self._open.get(start)
            if acc is None:
                self._open[start] = _Accumulator.from_trade(trade)
                self.stats.trades += 1
                if self._next_to_close is None:
                    self._next_to_close = start
            elif trade.trade_id in acc.trade_ids:
                self.stats.duplicates += 1
            else:
                acc.add(trade)
                self.stats.trades += 1
        emitted.extend(self.advance(trade.timestamp))
        return emitted

    def advance(self, now: datetime) -> list[Bar]:
        """Close every bar whose end plus grace is at or before `now` (the exchange clock)."""
        closed: list[Bar] = []
        while self._next_to_close is not None and self._next_to_close + self._interval + self._grace <= now:
            start = self._next_to_close
            acc = self._open.pop(start, None)
            if acc is None:
                if self._last_close is None:  # nothing traded yet: nothing to carry forward
                    break
                closed.append(self._quiet_bar(start))
            else:
                closed.append(self._bar(start, acc))
                self._remember(start, acc)
                self._last_close = acc.close
            self.stats.bars_closed += 1
            self._next_to_close = start + self._interval
        self._forget_old()
        return closed

    def _add_late(self, start: datetime, trade: Trade) -> list[Bar]:
        if not self._within_window(start):
            self.stats.late_dropped += 1
            return []
        acc = self._recent.get(start)
        if acc is None:  # a quiet bar that now has a trade: it becomes a real bar
            acc = _Accumulator.from_trade(trade)
            acc.revision = 1
            self._remember(start, acc)
            self.stats.trades += 1
            self.stats.late_revisions += 1
            return [self._bar(start, acc)]
        if trade.trade_id in acc.trade_ids:
            self.stats.duplicates += 1
            return []
        acc.add(trade)
        acc.revision += 1
        self.stats.trades += 1
        self.stats.late_revisions += 1
        return [self._bar(start, acc)]

    def _within_window(self, start: datetime) -> bool:
        assert self._next_to_close is not None
        return start >= self._next_to_close - self._interval * self._late_window

    def _remember(self, start: datetime, acc: _Accumulator) -> None:
        self._recent[start] = acc
        self._recent.move_to_end(start)
        self._forget_old()

    def _forget_old(self) -> None:
        while self._recent and not self._within_window(next(iter(self._recent))):
            self._recent.popitem(last=False)

    def _bar(self, start: datetime, acc: _Accumulator) -> Bar:
        vwap = (
            (acc.notional / acc.volume).quantize(self._quantum, rounding=ROUND_HALF_EVEN) if acc.volume else acc.close
        )
        return Bar(
            self.symbol,
            self.interval_seconds,
            start,
            acc.open,
            acc.high,
            acc.low,
            acc.close,
            acc.volume,
            vwap,
            acc.trades,
            acc.revision,
        )

    def _quiet_bar(self, start: datetime) -> Bar:
        assert self._last_close is not None
        self.stats.quiet_bars += 1
        price = self._last_close
        return Bar(self.symbol, self.interval_seconds, start, price, price, price, price, Decimal(0), price, 0)
