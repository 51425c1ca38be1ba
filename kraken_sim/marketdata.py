"""Public market statistics derived from trades: the trade tape, rolling 24 h ticker figures, OHLC candles."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from kraken_sim.engine import Side
from kraken_sim.instruments import Instrument

ZERO = Decimal(0)
NS = 1_000_000_000
DAY_NS = 86_400 * NS
OHLC_INTERVALS: tuple[int, ...] = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)  # minutes
MAX_CANDLES = 720
TAPE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class PublicTrade:
    symbol: str
    price: Decimal
    qty: Decimal
    side: Side  # taker side
    ord_type: str  # taker order type
    trade_id: int
    ts_ns: int


@dataclass(slots=True)
class Candle:
    begin_ns: int
    interval: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    cost: Decimal
    count: int

    @property
    def vwap(self) -> Decimal:
        return self.cost / self.volume if self.volume else self.close

    @property
    def end_ns(self) -> int:
        return self.begin_ns + self.interval * 60 * NS


class _Window:
    """Sums, low and high over trades newer than a cut-off (monotonic deques for the extremes)."""

    def __init__(self) -> None:
        self.trades: deque[tuple[int, Decimal, Decimal]] = deque()
        self.volume = ZERO
        self.cost = ZERO
        self._min: deque[tuple[int, Decimal]] = deque()
        self._max: deque[tuple[int, Decimal]] = deque()

    @property
    def count(self) -> int:
        return len(self.trades)

    def add(self, ts_ns: int, price: Decimal, qty: Decimal) -> None:
        self.trades.append((ts_ns, price, qty))
        self.volume += qty
        self.cost += price * qty
        while self._min and self._min[-1][1] >= price:
            self._min.pop()
        self._min.append((ts_ns, price))
        while self._max and self._max[-1][1] <= price:
            self._max.pop()
        self._max.append((ts_ns, price))

    def evict_before(self, cutoff_ns: int) -> None:
        while self.trades and self.trades[0][0] < cutoff_ns:
            _, price, qty = self.trades.popleft()
            self.volume -= qty
            self.cost -= price * qty
        while self._min and self._min[0][0] < cutoff_ns:
            self._min.popleft()
        while self._max and self._max[0][0] < cutoff_ns:
            self._max.popleft()

    def clear(self) -> None:
        self.trades.clear()
        self._min.clear()
        self._max.clear()
        self.volume = ZERO
        self.cost = ZERO

    def low(self, default: Decimal) -> Decimal:
        return self._min[0][1] if self._min else default

    def high(self, default: Decimal) -> Decimal:
        return self._max[0][1] if self._max else default

    def vwap(self, default: Decimal) -> Decimal:
        return self.cost / self.volume if self.volume else default

    def first_price(self, default: Decimal) -> Decimal:
        return self.trades[0][1] if self.trades else default


class SymbolMarketData:
    def __init__(self, instrument: Instrument, tape_size: int = TAPE_SIZE) -> None:
        self.instrument = instrument
        self.tape: deque[PublicTrade] = deque(maxlen=tape_size)
        self.last_price: Decimal = instrument.initial_price
        self.last_qty: Decimal = ZERO
        self.rolling = _Window()
        self.today = _Window()
        self._today_start_ns = 0
        self.today_open: Decimal = instrument.initial_price
        self.total_trades = 0
        self.candles: dict[int, deque[Candle]] = {i: deque(maxlen=MAX_CANDLES) for i in OHLC_INTERVALS}

    def set_reference_price(self, price: Decimal) -> None:
        """Before any trade, the price the ticker reports (e.g. a replayed book's touch)."""
        if self.total_trades == 0:
            self.last_price = price
            self.today_open = price

    def record(self, trade: PublicTrade) -> list[Candle]:
        """Add a trade; returns the candles (one per interval) it updated."""
        self.tape.append(trade)
        self.last_price = trade.price
        self.last_qty = trade.qty
        self.total_trades += 1
        self.rolling.add(trade.ts_ns, trade.price, trade.qty)
        self.rolling.evict_before(trade.ts_ns - DAY_NS)
        day_start = trade.ts_ns - trade.ts_ns % DAY_NS
        if day_start != self._today_start_ns:
            self._today_start_ns = day_start
            self.today.clear()
            self.today_open = trade.price
        self.today.add(trade.ts_ns, trade.price, trade.qty)
        touched: list[Candle] = []
        for interval, series in self.candles.items():
            span = interval * 60 * NS
            begin = trade.ts_ns - trade.ts_ns % span
            candle = series[-1] if series else None
            if candle is None or candle.begin_ns < begin:
                candle = Candle(begin, interval, trade.price, trade.price, trade.price, trade.price, ZERO, ZERO, 0)
                series.append(candle)
            elif candle.begin_ns > begin:  # a back-dated trade older than the current candle: ignore for bars
                continue
            candle.high = max(candle.high, trade.price)
            candle.low = min(candle.low, trade.price)
            candle.close = trade.price
            candle.volume += trade.qty
            candle.cost += trade.price * trade.qty
            candle.count += 1
            touched.append(candle)
        return touched

    def change(self) -> tuple[Decimal, Decimal]:
        """(change, change %) of the last price over the rolling 24 h window."""
        first = self.rolling.first_price(self.last_price)
        change = self.last_price - first
        pct = (change / first * 100) if first else ZERO
        return change, pct


class MarketData:
    def __init__(self, instruments: list[Instrument], tape_size: int = TAPE_SIZE) -> None:
        self.symbols: dict[str, SymbolMarketData] = {i.symbol: SymbolMarketData(i, tape_size) for i in instruments}

    def __getitem__(self, symbol: str) -> SymbolMarketData:
        return self.symbols[symbol]
