"""The `ohlc` check: each closed 1-minute bar is compared with the exchange's own bar for its minute (the `ohlc`
channel) once that one is final; a difference is counted, published and repaired from REST Trades."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from ingest import gaps
from ingest.bar_feed import BarFeed, Spawn, flush
from ingest.bars import Bar, trade_point
from ingest.events import SystemEvent, utcnow
from ingest.gap_repair import record_backfill, rest_retry, stored_trade_ids
from ingest.kraken.messages import OHLC, ChannelMessage
from ingest.kraken.rest import KrakenRestClient
from ingest.publisher import EventPublisher

__all__ = ["OhlcCheck"]

logger = logging.getLogger(__name__)

# The exchange's bars kept per symbol (two hours of minutes).
_KEPT = 120


class OhlcCheck:
    """Closed 1-minute bars waiting for the exchange's bar of the same minute, and their repairs."""

    def __init__(
        self,
        *,
        worker: str,
        rest: KrakenRestClient,
        feed: BarFeed,
        publisher: EventPublisher,
        pairs: dict[str, str],
        wait_s: float,
        max_calls: int,
        counters: dict[str, int],
        spawn: Spawn,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker = worker
        self.rest = rest
        self.feed = feed
        self.publisher = publisher
        self.pairs = pairs
        self.wait_s = wait_s
        self.max_calls = max_calls
        self.counters = counters
        self.spawn = spawn
        self.clock = clock
        self._exchange_bars: dict[str, dict[datetime, OHLC]] = {}
        self._waiting: list[tuple[Bar, float]] = []

    @property
    def pending(self) -> int:
        """Closed bars still waiting for the exchange's."""
        return len(self._waiting)

    def watch(self, bar: Bar) -> None:
        """A closed bar (BarFeed listener): 1-minute ones wait for the exchange's bar."""
        if bar.interval_seconds == 60:
            self._waiting.append((bar, self.clock()))

    def on_ohlc(self, message: ChannelMessage[OHLC]) -> None:
        """Synchronous (no task per message): keeps the exchange's 1-minute bars and resolves waiting checks."""
        for candle in message.items:
            if candle.interval != 1:
                continue
            bars = self._exchange_bars.setdefault(candle.symbol, {})
            bars[candle.interval_begin] = candle
            if len(bars) > _KEPT:
                for start in sorted(bars)[: len(bars) - _KEPT]:
                    del bars[start]
        self.check()

    def check(self) -> None:
        """Compare closed 1-minute bars with the exchange's bar for the same minute once that one is final (a
        later minute has started on the exchange, or `wait_s` passed). A difference is counted, logged,
        published and repaired from REST."""
        if not self._waiting:
            return
        now = self.clock()
        waiting: list[tuple[Bar, float]] = []
        for bar, closed_at in self._waiting:
            exchange_bars = self._exchange_bars.get(bar.symbol, {})
            theirs = exchange_bars.get(bar.start)
            final = any(start > bar.start for start in exchange_bars)
            if not final and now - closed_at < self.wait_s:
                waiting.append((bar, closed_at))
                continue
            if theirs is None:
                if bar.trades:  # we saw trades in a minute the exchange sent no bar for
                    self.counters["ohlc_unconfirmed"] += 1
                continue
            self.counters["ohlc_checked"] += 1
            diffs = gaps.bar_differences(bar, theirs)
            if not diffs:
                continue
            self.counters["ohlc_mismatches"] += 1
            detail = {
                "symbol": bar.symbol,
                "start": bar.start.isoformat(),
                "diffs": {k: [str(a), str(b)] for k, (a, b) in diffs.items()},
            }
            logger.warning("bar differs from the exchange's ohlc bar; repairing from REST", extra=detail)
            self.spawn(self.publisher.publish(SystemEvent("bar_mismatch", detail, utcnow())), "publish-mismatch")
            self.spawn(self.repair_minute(bar.symbol, bar.start), "repair-minute")
        self._waiting = waiting

    async def repair_minute(self, symbol: str, start: datetime) -> None:
        """Re-fetch one minute's trades from REST and rebuild that bar from them (the exchange's own list)."""
        started = utcnow()
        end = start + timedelta(seconds=60)
        feed = self.feed
        builder = feed.builders[(symbol, 60)]
        error = ""
        fetched = gaps.TradesFetch()
        try:
            fetched = await rest_retry(
                lambda: gaps.fetch_trades(
                    self.rest,
                    pair=self.pairs.get(symbol, symbol),
                    symbol=symbol,
                    since_ns=gaps.to_ns(start) - 1,
                    until=end,
                    max_calls=self.max_calls,
                )
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
        known = builder.trade_ids(start)
        if not known:  # no longer in the builder's memory: what is stored decides what is new
            await flush(feed.writer)
            known = await stored_trade_ids(feed.writer, symbol, start, end)
        new = [t for t in fetched.trades if t.trade_id not in known]
        bar = builder.rebuild(start, fetched.trades) if not error else None
        for trade in new:  # the trade series and the longer intervals get the missing trades too
            feed.writer.add(trade_point(trade))
            for interval, other in feed.builders_of(symbol):
                if interval != 60:
                    feed.bars_done(other.add_trade(trade))
        if bar is not None:
            feed.bars_done([bar])
        await flush(feed.writer)
        self.counters["ohlc_repairs"] += 1
        theirs = self._exchange_bars.get(symbol, {}).get(start)
        if not error and (bar is None or theirs is None or gaps.bar_differences(bar, theirs)):
            error = "the bar rebuilt from REST Trades still differs from the exchange's ohlc bar"
        if error:
            self.counters["backfill_failures"] += 1
            logger.error("bar repair incomplete", extra={"symbol": symbol, "start": start.isoformat(), "error": error})
        await record_backfill(
            self.worker,
            self.counters,
            symbol=symbol,
            reason="ohlc_mismatch",
            source="trades",
            gap_start=start,
            gap_end=max((t.timestamp for t in fetched.trades), default=None),
            rest_calls=fetched.calls,
            trades_fetched=len(fetched.trades),
            trades_added=len(new),
            ohlc_bars=0,
            bars_written=1 if bar is not None else 0,
            error=error,
            started_at=started,
        )
