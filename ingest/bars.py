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

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from ingest.kraken.messages import Trade
from timeseries.base import MAX_DECIMAL_DIGITS, FieldValue, Point

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BAR_MEASUREMENT = "bars"
TRADE_MEASUREMENT = "trades"
# Kraken stamps trades to the microsecond and one taker order's fills share a timestamp; a point is identified by
# measurement, tags and time, so trades carry `slot` = trade_id mod TRADE_SLOTS as a tag (low cardinality) and
# two trades collide only if more than TRADE_SLOTS of them share one microsecond.
TRADE_SLOTS = 64
_SLOT_TEXT = [str(n) for n in range(TRADE_SLOTS)]


def trade_point(trade: Trade) -> Point:
    """The trade as a time-series point (measurement `trades`, tags symbol and slot, time = exchange time).
    Writing it again (a replay or a REST backfill) replaces it: idempotent by (symbol, time, trade id).

    Hot path (one per trade): when the values are of the shape `Point` accepts (checked here, cheaply: exact
    types, finite Decimals of at most 15 digits, a one-line symbol, a UTC time) the point is built without
    `Point`'s generic validation, whose names part was done once at import (`_TRADE_SHAPE`); anything else goes
    through `Point` and gets its error."""
    price, qty, symbol, moment = trade.price, trade.qty, trade.symbol, trade.timestamp
    fields: dict[str, FieldValue] = {
        "price": price,
        "qty": qty,
        "side": trade.side,
        "ord_type": trade.ord_type,
        "trade_id": trade.trade_id,
    }
    tags = {"symbol": symbol, "slot": _SLOT_TEXT[trade.trade_id % TRADE_SLOTS]}
    if (
        type(price) is Decimal
        and type(qty) is Decimal
        and price.is_finite()
        and qty.is_finite()
        and len(price.as_tuple().digits) <= MAX_DECIMAL_DIGITS
        and len(qty.as_tuple().digits) <= MAX_DECIMAL_DIGITS
        and type(trade.side) is str
        and type(trade.ord_type) is str
        and type(trade.trade_id) is int
        and type(symbol) is str
        and symbol
        and "\n" not in symbol
        and moment.tzinfo is UTC
    ):
        point = object.__new__(Point)
        _set(point, "measurement", TRADE_MEASUREMENT)
        _set(point, "time", moment)
        _set(point, "fields", fields)
        _set(point, "tags", tags)
        return point
    return Point(TRADE_MEASUREMENT, moment, fields, tags)


_set = object.__setattr__  # Point is a frozen dataclass
# The names of a trade point, validated once by Point itself.
_TRADE_SHAPE = Point(
    TRADE_MEASUREMENT,
    EPOCH,
    {"price": Decimal(1), "qty": Decimal(1), "side": "buy", "ord_type": "limit", "trade_id": 0},
    {"symbol": "BTC/USD", "slot": "0"},
)


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


class TradeIds:
    """A set of trade ids kept as sorted, disjoint, inclusive ranges. Kraken numbers a pair's trades
    consecutively, so a bar's ids are one range: constant memory where a `set` held every id (at 10,000 trades a
    second, 600,000 ids per 1-minute bar, for the open bar and the closed bars still revisable). Out-of-order
    ids split and merge ranges; membership is a bisection."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for trade_id in ids:
            self.add(trade_id)

    def __contains__(self, trade_id: object) -> bool:
        ends = self._ends
        if not isinstance(trade_id, int) or not ends or trade_id > ends[-1]:
            return False
        i = bisect_left(ends, trade_id)  # the first range ending at or after trade_id
        return self._starts[i] <= trade_id

    def add(self, trade_id: int) -> None:
        starts, ends = self._starts, self._ends
        if ends and trade_id == ends[-1] + 1:  # the next id: the common case
            ends[-1] = trade_id
            return
        if not ends or trade_id > ends[-1] + 1:
            starts.append(trade_id)
            ends.append(trade_id)
            return
        i = bisect_left(ends, trade_id)
        if starts[i] <= trade_id:
            return  # present already
        joins_next = trade_id == starts[i] - 1
        joins_previous = i > 0 and ends[i - 1] == trade_id - 1
        if joins_previous and joins_next:
            ends[i - 1] = ends[i]
            del starts[i], ends[i]
        elif joins_previous:
            ends[i - 1] = trade_id
        elif joins_next:
            starts[i] = trade_id
        else:
            starts.insert(i, trade_id)
            ends.insert(i, trade_id)

    def __iter__(self) -> Iterator[int]:
        for start, end in zip(self._starts, self._ends, strict=True):
            yield from range(start, end + 1)

    def __len__(self) -> int:
        return sum(end - start + 1 for start, end in zip(self._starts, self._ends, strict=True))

    @property
    def ranges(self) -> int:
        return len(self._starts)


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
    trade_ids: TradeIds = field(default_factory=TradeIds)

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
        self._first_start: datetime | None = None  # the series' first bar, when it began with a trade here
        self._last_close: Decimal | None = None
        self._quiet_revisions: dict[datetime, int] = {}  # quiet bars re-emitted at a revised close: last revision
        self.stats = BarStats()
        self._last_bucket = (EPOCH, EPOCH)  # (start, end) of the last bucket computed
        self._close_at: tuple[datetime | None, datetime | None] = (None, None)  # (next_to_close, when it closes)

    def bucket(self, moment: datetime) -> datetime:
        start, end = self._last_bucket  # hot path: consecutive trades fall in the same bucket
        if start <= moment < end:
            return start
        seconds = (moment - EPOCH) // timedelta(seconds=1)
        start = EPOCH + timedelta(seconds=seconds - seconds % self.interval_seconds)
        self._last_bucket = (start, start + self._interval)
        return start

    def _closes_at(self, start: datetime) -> datetime:
        """When the bar at `start` closes (end + grace); remembered for the bar next to close (checked per trade)."""
        known, at = self._close_at
        if known != start or at is None:
            at = start + self._interval + self._grace
            self._close_at = (start, at)
        return at

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
                    self._first_start = start
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
        while self._next_to_close is not None and self._closes_at(self._next_to_close) <= now:
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
        if closed:  # the revisable window moves only when a bar closes (hot path: advance runs per trade)
            self._forget_old()
        return closed

    def resume(self, *, next_start: datetime, last_close: Decimal) -> None:
        """Continue a stored series after a restart: the next bar to close is `next_start` and quiet bars carry
        `last_close` forward, so the minutes between the last stored bar and the first new trade are not holes.
        Only for a builder that has seen no trade yet."""
        if self._next_to_close is not None:
            raise ValueError("resume() is only for a fresh builder")
        self._next_to_close = self.bucket(next_start)
        self._last_close = last_close
        self._first_start = None  # the series goes on from stored bars (the worker's floor keeps older trades out)

    def skip_to(self, *, next_start: datetime, last_close: Decimal | None) -> None:
        """Move on to `next_start`: the bars before it were written from elsewhere (OHLC). Only while no bar is
        open (before any trade is added)."""
        if self._open:
            raise ValueError("skip_to() with open bars would lose their trades")
        self._next_to_close = self.bucket(next_start)
        self._first_start = None  # the bars before `next_start` were written from elsewhere
        if last_close is not None:
            self._last_close = last_close

    @property
    def next_to_close(self) -> datetime | None:
        return self._next_to_close

    @property
    def last_close(self) -> Decimal | None:
        return self._last_close

    def trade_ids(self, start: datetime) -> set[int]:
        """Trade ids in the bar at `start` while it is open or still revisable (empty otherwise)."""
        acc = self._open.get(start) or self._recent.get(start)
        return set(acc.trade_ids) if acc is not None else set()

    def rebuild(self, start: datetime, trades: list[Trade]) -> Bar | None:
        """Replace the bar at `start` by one built from exactly `trades` (the exchange's own list, from a repair).
        Returns the revised bar when that bar is already closed (to be written); None while it is still open (it
        will close with the corrected contents) or when `trades` is empty."""
        start = self.bucket(start)
        acc: _Accumulator | None = None
        for trade in sorted(trades, key=lambda t: (t.timestamp, t.trade_id)):
            if self.bucket(trade.timestamp) != start:
                continue
            if acc is None:
                acc = _Accumulator.from_trade(trade)
            elif trade.trade_id not in acc.trade_ids:
                acc.add(trade)
        if acc is None:
            return None
        if start in self._open:
            self._open[start] = acc
            return None
        old = self._recent.get(start)
        acc.revision = (old.revision if old is not None else 0) + 1
        if old is not None:
            self._recent[start] = acc
        return self._bar(start, acc)

    def _add_late(self, start: datetime, trade: Trade) -> list[Bar]:
        if not self._within_window(start):
            self.stats.late_dropped += 1
            return []
        acc = self._recent.get(start)
        if acc is None:  # a quiet bar that now has a trade, or a bar before the series' first one: a real bar
            acc = _Accumulator.from_trade(trade)
            acc.revision = self._quiet_revisions.pop(start, 0) + 1
            self._remember(start, acc)
            self.stats.trades += 1
            self.stats.late_revisions += 1
            before = self._fill_before_first(start, acc.close)
            return [self._bar(start, acc), *(before or self._quiet_after(start, acc.close))]
        if trade.trade_id in acc.trade_ids:
            self.stats.duplicates += 1
            return []
        acc.add(trade)
        acc.revision += 1
        self.stats.trades += 1
        self.stats.late_revisions += 1
        return [self._bar(start, acc), *self._quiet_after(start, acc.close)]

    def _quiet_after(self, start: datetime, close: Decimal) -> list[Bar]:
        """A late trade may change a closed bar's close: the quiet bars closed after it, up to the next bar with
        trades, were flat at the old close and are re-emitted at the new one (as revisions), and when no bar with
        trades has closed since, quiet bars to come carry the new close."""
        assert self._next_to_close is not None
        bars = []
        moment = start + self._interval
        while moment < self._next_to_close and moment not in self._recent:
            revision = self._quiet_revisions.get(moment, 0) + 1
            self._quiet_revisions[moment] = revision
            bars.append(
                Bar(
                    self.symbol,
                    self.interval_seconds,
                    moment,
                    close,
                    close,
                    close,
                    close,
                    Decimal(0),
                    close,
                    0,
                    revision,
                )
            )
            moment += self._interval
        if moment >= self._next_to_close:
            self._last_close = close
        return bars

    def _fill_before_first(self, start: datetime, close: Decimal) -> list[Bar]:
        """A late trade older than the series' first bar starts the series earlier: the empty intervals between
        its bar and the old first bar are quiet bars at its close (as revisions: history, not a live close), so
        the series has no hole. Nothing when the bar is inside the series already."""
        if self._first_start is None or start >= self._first_start:
            return []
        quiet = []
        moment = start + self._interval
        while moment < self._first_start:
            quiet.append(self._quiet_bar(moment, price=close, revision=1))
            moment += self._interval
        self._first_start = start
        return quiet

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
        for start in [s for s in self._quiet_revisions if not self._within_window(s)]:
            del self._quiet_revisions[start]

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

    def _quiet_bar(self, start: datetime, *, price: Decimal | None = None, revision: int = 0) -> Bar:
        """An interval without trades: flat at `price` (default: the last close carried forward)."""
        price = price if price is not None else self._last_close
        assert price is not None
        self.stats.quiet_bars += 1
        return Bar(
            self.symbol, self.interval_seconds, start, price, price, price, price, Decimal(0), price, 0, revision
        )
