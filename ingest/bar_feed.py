"""Trades into bars: each trade goes to the trade series and to every bar builder of its symbol; each closed bar is
written, published and (live bars of the first interval) handed over to the decision pipeline after the write.

While a symbol's gap is being repaired its live trades are held here (and its bars do not close on the clock), so
the repair can merge REST and live trades in exchange order, once each (:mod:`ingest.gap_repair`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from ingest.bars import BAR_MEASUREMENT, Bar, BarBuilder, trade_point
from ingest.events import BarEvent, utcnow
from ingest.handover import HandOver
from ingest.kraken.messages import Trade
from ingest.publisher import EventPublisher
from timeseries.writer import TimeSeriesWriter

__all__ = ["BarFeed", "flush"]

Spawn = Callable[[Coroutine[Any, Any, Any], str], None]


async def flush(writer: TimeSeriesWriter, *, only: Collection[str] | None = None) -> None:
    """Flush ``writer``, to the end even if the caller is cancelled meanwhile.

    The writer takes a batch out of its queue before writing it; a flush cancelled before the write began in the
    writer's thread would drop that batch (a stop right after a bar closed lost the bar: the heartbeat that closed
    it was cancelled in its flush). Shielded, the flush finishes on its own and holds the writer's lock until then,
    so the next flush (the worker's close) waits for it."""
    await asyncio.shield(writer.flush(only=only))


class BarFeed:
    """The bar builders of every (symbol, interval) and what happens to the bars they close."""

    def __init__(
        self,
        *,
        intervals: tuple[int, ...],
        grace_s: float,
        writer: TimeSeriesWriter,
        publisher: EventPublisher,
        handover: HandOver,
        decision_task: str,
        counters: dict[str, int],
        spawn: Spawn,
    ) -> None:
        self.intervals = intervals
        self.grace_s = grace_s
        self.writer = writer
        self.publisher = publisher
        self.handover = handover
        self.decision_task = decision_task
        self.counters = counters
        self.spawn = spawn
        self.builders: dict[tuple[str, int], BarBuilder] = {}
        #: Per symbol under repair: the live trades waiting for the repair to merge them.
        self.held: dict[str, list[Trade]] = {}
        #: Per symbol: the newest trade fed (trade ids rise with time on each book).
        self.last_trade: dict[str, Trade] = {}
        #: Per builder: bars before this start are stored already (complete) from a previous run.
        self.floor: dict[tuple[str, int], datetime] = {}
        #: The last closed bar per series (`symbol@interval` → start, close), for the checkpoint.
        self.last_closed: dict[str, tuple[str, str]] = {}
        #: Called with each closed bar (not revisions), e.g. to check it against the exchange's own bar.
        self.on_closed: list[Callable[[Bar], None]] = []
        self._pending: list[Bar] = []
        self._order = asyncio.Lock()
        self._replaying = False
        self._stored_trade_ids: set[int] = set()
        self._replayed: list[Bar] = []

    def add_symbol(self, symbol: str, price_precision: int) -> None:
        for interval in self.intervals:
            self.builders[(symbol, interval)] = BarBuilder(
                symbol,
                price_precision=price_precision,
                interval_seconds=interval,
                grace=timedelta(seconds=self.grace_s),
            )

    def builders_of(self, symbol: str) -> list[tuple[int, BarBuilder]]:
        return [(i, b) for (s, i), b in self.builders.items() if s == symbol]

    @property
    def pending_bars(self) -> int:
        return len(self._pending)

    @property
    def held_trades(self) -> int:
        return sum(len(v) for v in self.held.values())

    def hold(self, symbol: str) -> None:
        """Hold the symbol's live trades (and its bars on the clock) until a repair releases them."""
        self.held.setdefault(symbol, [])

    def trades(self, trades: Iterable[Trade]) -> Coroutine[Any, Any, None] | None:
        """Live trades: held for a symbol under repair, else fed. Returns the flush-then-hand-over of the bars
        they closed, only when one closed (bars already pending are in a flush that will hand them over)."""
        pending = len(self._pending)
        for trade in trades:
            held = self.held.get(trade.symbol)
            if held is not None:  # a gap repair of this symbol is running: merged in order when it ends
                held.append(trade)
                self.counters["trades_held"] += 1
            else:
                self.feed(trade)
        return self.enqueue_closed_bars() if len(self._pending) > pending else None

    def feed(self, trade: Trade) -> None:
        """One trade (live, or fetched by a repair) into the trade series and every bar builder of its symbol."""
        if trade.trade_id not in self._stored_trade_ids:  # REST times are coarser: the same trade, another time
            self.writer.add(trade_point(trade))  # the trade series (source of truth for backfill checks)
        last = self.last_trade.get(trade.symbol)
        if last is None or trade.trade_id > last.trade_id:
            self.last_trade[trade.symbol] = trade
        for interval in self.intervals:
            builder = self.builders.get((trade.symbol, interval))
            if builder is None:
                continue
            floor = self.floor.get((trade.symbol, interval))
            if floor is not None and trade.timestamp < floor:
                continue  # that bar is stored already (complete) from the previous run
            self.bars_done(builder.add_trade(trade))

    def bars_done(self, bars: list[Bar]) -> None:
        """Closed (or revised) bars: written, published; live closed bars wait for their hand-over."""
        for bar in bars:
            self.writer.add(bar.to_point())
            if bar.revision:
                self.counters["bar_revisions"] += 1
            else:
                self.counters["bars_closed"] += 1
                self.last_closed[f"{bar.symbol}@{bar.interval_seconds}"] = (bar.start.isoformat(), str(bar.close))
                for listener in self.on_closed:
                    listener(bar)
                if self._replaying:  # bars closed while replaying a gap are history, not a live signal
                    self._replayed.append(bar)
                else:
                    self._pending.append(bar)
            self.spawn(self.publisher.publish(BarEvent.from_bar(bar, utcnow())), "publish-bar")

    @contextlib.contextmanager
    def replaying(self, stored_trade_ids: set[int]) -> Iterator[list[Bar]]:
        """Feed a repair's trades and bars: closed bars are not handed over live; they are collected in the
        list yielded. Trades in ``stored_trade_ids`` are not written to the trade series again."""
        self._replaying = True
        self._stored_trade_ids = stored_trade_ids
        replayed: list[Bar] = []
        self._replayed = replayed
        try:
            yield replayed
        finally:
            self._replaying = False
            self._stored_trade_ids = set()
            self._replayed = []

    async def enqueue_closed_bars(self) -> None:
        """Persist first, then trigger the decision pipeline for each newly closed bar. Batches are flushed and
        handed to the enqueue thread one at a time, in the order their bars closed (a later batch's flush may not
        overtake an earlier one's). A bar leaves the pending list only once it is stored and handed over: a stop
        that cancels this during the flush leaves it for the worker's close."""
        async with self._order:
            n = len(self._pending)
            if n == 0:
                return
            await flush(self.writer, only={BAR_MEASUREMENT})  # the bars now; the trades queued with them follow
            bars, self._pending = self._pending[:n], self._pending[n:]
            if not self.decision_task or not self.handover.enabled:
                return
            for bar in bars:
                if bar.interval_seconds == self.intervals[0]:
                    self.decide(bar.symbol, bar.start)

    def decide(self, symbol: str, start: datetime) -> None:
        """Hand the decision task over for a stored bar (by name, with the symbol and the bar's start)."""
        self.handover.hand_over(self.decision_task, [symbol, start.isoformat()], counter="decisions_enqueued")

    def advance(self, now: datetime) -> None:
        """Close bars for quiet markets on the exchange clock ``now``; symbols under repair wait."""
        for builder in self.builders.values():
            if builder.symbol not in self.held:
                self.bars_done(builder.advance(now))
