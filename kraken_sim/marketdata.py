"""Public market statistics derived from trades: the trade tape, rolling 24 h ticker figures, OHLC candles."""

from __future__ import annotations

import bisect
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import orjson

from kraken_sim.engine import Side
from kraken_sim.instruments import Instrument
from kraken_sim.wire import fixed

ZERO = Decimal(0)
NS = 1_000_000_000
DAY_NS = 86_400 * NS
OHLC_INTERVALS: tuple[int, ...] = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)  # minutes
MAX_CANDLES = 720
TAPE_SIZE = 1000
SPREAD_SIZE = 200  # REST Spread: the recent best bid/ask changes kept per symbol


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


_BUY = 1
_MARKET = 2


class TradeArchive:
    """Every public trade of one symbol since the start of its back-dated history, oldest first, in compact
    parallel columns (integer ticks and lots, 33 bytes a trade), so REST ``Trades`` can page through days of
    history. Timestamps are strictly increasing (the simulator's clock is, and the history makes them so)."""

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self._tick = instrument.tick_size
        self._lot_scale = Decimal(10) ** instrument.lot_decimals
        self.ts = array("q")
        self.price_ticks = array("q")
        self.qty_lots = array("q")
        self.flags = array("b")
        self.trade_ids = array("q")

    def __len__(self) -> int:
        return len(self.ts)

    def extend(
        self,
        ts_ns: np.ndarray,
        price_ticks: np.ndarray,
        qty_lots: np.ndarray,
        buy: np.ndarray,
        market: np.ndarray,
        first_trade_id: int,
    ) -> None:
        """Append a block of trades (numpy columns) older than none already kept, ids from ``first_trade_id``."""
        if len(ts_ns) and self.ts and int(ts_ns[0]) <= self.ts[-1]:
            raise ValueError("history trades must be newer than the archive's last trade")
        self.ts.frombytes(np.ascontiguousarray(ts_ns, dtype=np.int64).tobytes())
        self.price_ticks.frombytes(np.ascontiguousarray(price_ticks, dtype=np.int64).tobytes())
        self.qty_lots.frombytes(np.ascontiguousarray(qty_lots, dtype=np.int64).tobytes())
        flags = buy.astype(np.int8) * _BUY + market.astype(np.int8) * _MARKET
        self.flags.frombytes(flags.astype(np.int8).tobytes())
        ids = np.arange(first_trade_id, first_trade_id + len(ts_ns), dtype=np.int64)
        self.trade_ids.frombytes(ids.tobytes())

    def append(self, trade: PublicTrade) -> None:
        self.ts.append(trade.ts_ns)
        self.price_ticks.append(int(trade.price / self._tick))
        self.qty_lots.append(int(trade.qty * self._lot_scale))
        self.flags.append((_BUY if trade.side is Side.BUY else 0) | (_MARKET if trade.ord_type == "market" else 0))
        self.trade_ids.append(trade.trade_id)

    def trade(self, i: int) -> PublicTrade:
        flags = self.flags[i]
        return PublicTrade(
            self.instrument.symbol,
            Decimal(self.price_ticks[i]) * self._tick,
            Decimal(self.qty_lots[i]) / self._lot_scale,
            Side.BUY if flags & _BUY else Side.SELL,
            "market" if flags & _MARKET else "limit",
            self.trade_ids[i],
            self.ts[i],
        )

    def after(self, since_ns: int, count: int) -> range:
        """Indices of up to ``count`` trades newer than ``since_ns``, oldest first (Kraken's ``since`` paging)."""
        start = bisect.bisect_right(self.ts, since_ns)
        return range(start, min(start + count, len(self.ts)))

    def latest(self, count: int) -> range:
        """Indices of the most recent ``count`` trades, oldest first."""
        n = len(self.ts)
        return range(max(0, n - count), n)

    def rest_rows(self, indices: range, price_places: int) -> list[list[Any]]:
        """REST ``Trades`` rows (price, volume, time, side, order type, misc, trade_id), formatted from the
        integer columns (a page of 1000 is formatted in a few milliseconds)."""
        price_text = _scaled_formatter(self._tick, price_places)
        qty_text = _scaled_formatter(Decimal(1) / self._lot_scale, self.instrument.lot_decimals)
        ts, prices, qtys, flags, ids = self.ts, self.price_ticks, self.qty_lots, self.flags, self.trade_ids
        rows = []
        for i in indices:
            t = ts[i]
            f = flags[i]
            rows.append(
                [
                    price_text(prices[i]),
                    qty_text(qtys[i]),
                    orjson.Fragment(f"{t // NS}.{t % NS // 100_000:04d}"),
                    "b" if f & _BUY else "s",
                    "m" if f & _MARKET else "l",
                    "",
                    ids[i],
                ]
            )
        return rows


def _scaled_formatter(unit: Decimal, places: int) -> Callable[[int], str]:
    """``n`` → the text of ``n * unit`` at ``places`` decimals, by integer arithmetic when ``unit`` is a power of
    ten no finer than ``places`` (every listed tick and lot), else through Decimal."""
    sign, digits, exponent = unit.as_tuple()
    if sign == 0 and digits == (1,) and isinstance(exponent, int) and -places <= exponent <= 0:
        k = -exponent
        if k == 0:
            zeros = "." + "0" * places if places else ""
            return lambda n: f"{n}{zeros}"
        div = 10**k
        pad = "0" * (places - k)
        return lambda n: f"{n // div}.{n % div:0{k}d}{pad}" if n >= 0 else fixed(n * unit, places)
    return lambda n: fixed(n * unit, places)


class SymbolMarketData:
    def __init__(self, instrument: Instrument, tape_size: int = TAPE_SIZE) -> None:
        self.instrument = instrument
        self.tape: deque[PublicTrade] = deque(maxlen=tape_size)
        # With a back-dated history (scenario markets), every trade is also kept here and REST Trades pages it.
        self.archive: TradeArchive | None = None
        self.last_price: Decimal = instrument.initial_price
        self.last_qty: Decimal = ZERO
        self.rolling = _Window()
        self.today = _Window()
        self._today_start_ns = 0
        self.today_open: Decimal = instrument.initial_price
        self.total_trades = 0
        self.candles: dict[int, deque[Candle]] = {i: deque(maxlen=MAX_CANDLES) for i in OHLC_INTERVALS}
        self.spreads: deque[tuple[int, Decimal, Decimal]] = deque(maxlen=SPREAD_SIZE)  # (ts_ns, bid, ask)

    def record_spread(self, ts_ns: int, bid: Decimal, ask: Decimal) -> None:
        """A new best bid/ask (REST ``Spread``)."""
        self.spreads.append((ts_ns, bid, ask))

    def set_reference_price(self, price: Decimal) -> None:
        """Before any trade, the price the ticker reports (e.g. a replayed book's touch)."""
        if self.total_trades == 0:
            self.last_price = price
            self.today_open = price

    def record(self, trade: PublicTrade) -> list[Candle]:
        """Add a trade; returns the candles (one per interval) it updated."""
        self.tape.append(trade)
        if self.archive is not None:
            self.archive.append(trade)
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

    def load_history(
        self,
        *,
        ts_ns: np.ndarray,
        price_ticks: np.ndarray,
        qty_lots: np.ndarray,
        buy: np.ndarray,
        market: np.ndarray,
        minute_begin_ns: np.ndarray,
        minute_count: np.ndarray,
        first_trade_id: int = 1,
    ) -> None:
        """Install back-dated trades (sorted; ``minute_count`` trades in each 1-minute bar starting at
        ``minute_begin_ns``; every bar has at least one) before any live trade: the archive, the last
        ``MAX_CANDLES`` candles of every interval, the rolling 24 h and today's ticker windows, the last price
        and the WS trade snapshot tape."""
        if self.total_trades:
            raise ValueError("history must be loaded before any trade")
        n = len(ts_ns)
        if n == 0:
            return
        inst = self.instrument
        tick = inst.tick_size
        lot_scale = Decimal(10) ** inst.lot_decimals
        self.archive = archive = TradeArchive(inst)
        archive.extend(ts_ns, price_ticks, qty_lots, buy, market, first_trade_id)
        # Per-minute aggregates (int64 is safe within a minute), then candles of every interval from them.
        counts = np.asarray(minute_count, dtype=np.int64)
        starts = np.cumsum(counts) - counts
        ends = starts + counts - 1
        m_open, m_close = price_ticks[starts], price_ticks[ends]
        m_high = np.maximum.reduceat(price_ticks, starts)
        m_low = np.minimum.reduceat(price_ticks, starts)
        m_volume = np.add.reduceat(qty_lots, starts)
        m_cost = np.add.reduceat(price_ticks * qty_lots, starts).tolist()  # Python ints from here on
        begins = np.asarray(minute_begin_ns, dtype=np.int64)
        for interval in OHLC_INTERVALS:
            span = interval * 60 * NS
            group_begin = begins - begins % span
            cuts = np.concatenate(([0], np.flatnonzero(np.diff(group_begin)) + 1))
            cuts = cuts[-MAX_CANDLES:]
            bounds = np.concatenate((cuts, [len(begins)]))
            highs = np.maximum.reduceat(m_high[cuts[0] :], cuts - cuts[0]).tolist()
            lows = np.minimum.reduceat(m_low[cuts[0] :], cuts - cuts[0]).tolist()
            volumes = np.add.reduceat(m_volume[cuts[0] :], cuts - cuts[0]).tolist()
            trades = np.add.reduceat(counts[cuts[0] :], cuts - cuts[0]).tolist()
            series = self.candles[interval]
            series.clear()
            for g, (a, b) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
                series.append(
                    Candle(
                        int(group_begin[a]),
                        interval,
                        Decimal(int(m_open[a])) * tick,
                        Decimal(highs[g]) * tick,
                        Decimal(lows[g]) * tick,
                        Decimal(int(m_close[b - 1])) * tick,
                        Decimal(volumes[g]) / lot_scale,
                        Decimal(sum(m_cost[a:b])) * tick / lot_scale,
                        trades[g],
                    )
                )
        # The ticker's windows and the last trade.
        last_ts = int(ts_ns[-1])
        self._today_start_ns = last_ts - last_ts % DAY_NS
        first_rolling = int(np.searchsorted(ts_ns, last_ts - DAY_NS, side="left"))
        first_today = int(np.searchsorted(ts_ns, self._today_start_ns, side="left"))
        for i in range(first_rolling, n):
            ts, price, qty = archive.ts[i], Decimal(archive.price_ticks[i]) * tick, archive.qty_lots[i]
            qty_dec = Decimal(qty) / lot_scale
            self.rolling.add(ts, price, qty_dec)
            if i >= first_today:
                if i == first_today:
                    self.today_open = price
                self.today.add(ts, price, qty_dec)
        if first_today >= n:
            self.today_open = Decimal(int(price_ticks[-1])) * tick
        for i in range(max(0, n - (self.tape.maxlen or 0)), n):
            self.tape.append(archive.trade(i))
        last = archive.trade(n - 1)
        self.last_price, self.last_qty = last.price, last.qty
        self.total_trades = n

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
