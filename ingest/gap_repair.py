"""Gap repair: at start-up (from where each series stopped, :class:`~ingest.checkpoint.ResumeState`) and after a
public reconnect (from the last trade seen), fetch what was missed from REST Trades (OHLC for 1-minute bars older
than Trades still serves), in a task of its own. Meanwhile that symbol's live trades are held and its bars do not
close (:class:`~ingest.bar_feed.BarFeed`); then both are merged in exchange order, once each. Every repair is an
``ingest.BackfillRecord``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections

from ingest import gaps, services
from ingest.bar_feed import BarFeed
from ingest.bars import TRADE_MEASUREMENT, Bar
from ingest.checkpoint import ResumeState
from ingest.events import utcnow
from ingest.kraken.errors import KrakenError
from ingest.kraken.messages import Trade
from ingest.kraken.rest import KrakenRestClient
from timeseries.writer import TimeSeriesWriter

__all__ = ["GapRepair", "Repaired", "record_backfill", "rest_retry", "stored_trade_ids"]

logger = logging.getLogger(__name__)

#: Called after each repair with the symbol, the reason and the bars the repair closed.
Repaired = Callable[[str, str, list[Bar]], Awaitable[None]]


async def rest_retry(call: Callable[[], Any]) -> Any:
    """A REST call with a few retries: right after a reconnect the exchange may still be unavailable."""
    delay = 0.5
    for attempt in range(4):
        try:
            return await call()
        except (KrakenError, OSError) as exc:
            if attempt == 3:
                raise
            logger.warning("gap repair REST call failed; retrying", extra={"error": repr(exc), "in_s": delay})
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


async def stored_trade_ids(
    writer: TimeSeriesWriter, symbol: str, since: datetime, until: datetime | None = None
) -> set[int]:
    """Ids of the trades of `symbol` stored in [since, until) (their points are not written again)."""

    def query() -> set[int]:
        try:
            points = writer.store.query_range(
                TRADE_MEASUREMENT, since, until or utcnow() + timedelta(days=1), {"symbol": symbol}
            )
        finally:
            connections.close_all()
        return {int(p.fields["trade_id"]) for p in points if isinstance(p.fields.get("trade_id"), int)}

    try:
        return await asyncio.to_thread(query)
    except Exception as exc:  # unknown: writing a trade twice (another time) beats losing one
        logger.warning("stored trades not readable", extra={"symbol": symbol, "error": repr(exc)})
        return set()


async def record_backfill(worker: str, counters: dict[str, int], **fields: Any) -> None:
    """Save one repair's record; a failure to save it is logged and counted."""
    try:
        await sync_to_async(services.backfill_record_save)(worker=worker, **fields)
    except Exception as exc:  # the repair itself is done; the record is what failed (logged, counted)
        counters["backfill_failures"] += 1
        logger.error("backfill record not saved", extra={"error": repr(exc), "symbol": fields.get("symbol")})
        await sync_to_async(services.close_broken_connections)()


class GapRepair:
    """Repairs of each symbol's gaps, at most one running per symbol (a request during one runs it again)."""

    def __init__(
        self,
        *,
        worker: str,
        rest: KrakenRestClient,
        feed: BarFeed,
        pairs: dict[str, str],
        exchange_now: Callable[[], datetime],
        max_calls: int,
        max_gap_s: float,
        counters: dict[str, int],
    ) -> None:
        self.worker = worker
        self.rest = rest
        self.feed = feed
        self.pairs = pairs  # symbol → REST pair key (filled at start-up)
        self.exchange_now = exchange_now
        self.max_calls = max_calls
        self.max_gap_s = max_gap_s
        self.counters = counters
        #: Symbols whose repair is running.
        self.repairing: set[str] = set()
        self._again: set[str] = set()
        #: Told after each repair (e.g. to decide the bars it closed).
        self.on_repaired: list[Repaired] = []

    async def repair_all(self, symbols: list[str], reason: str, resume: ResumeState) -> None:
        await asyncio.gather(*(self.repair_symbol(s, reason, resume) for s in symbols))

    async def repair_symbol(self, symbol: str, reason: str, resume: ResumeState) -> None:
        if symbol in self.repairing:  # a repair is running: run once more when it ends (it may have missed some)
            self._again.add(symbol)
            return
        self.repairing.add(symbol)
        try:
            while True:
                self.feed.hold(symbol)
                await self._repair_once(symbol, reason, resume)
                if symbol not in self._again:
                    break
                self._again.discard(symbol)
                reason, resume = "reconnect", {}
        finally:
            self.repairing.discard(symbol)
            leftover = self.feed.held.pop(symbol, None)
            for trade in gaps.merge_trades(leftover or []):  # a repair that died must not take live trades with it
                self.feed.feed(trade)

    def _gap_start(self, symbol: str, reason: str, resume: ResumeState) -> datetime:
        now = self.exchange_now()
        builders = self.feed.builders_of(symbol)
        if reason != "startup":
            last = self.feed.last_trade.get(symbol)
            if last is not None:
                return last.timestamp
            return min(b.next_to_close or b.bucket(now) for _, b in builders)
        since: datetime | None = None
        for interval, builder in builders:
            point = resume.get((symbol, interval))
            if point is not None and (now - point.start).total_seconds() <= self.max_gap_s:
                start = point.start + timedelta(seconds=interval)
                builder.resume(next_start=start, last_close=point.close)
            else:  # nothing stored (or too old to fill): the first bar is the current one, complete
                start = builder.bucket(now)
            self.feed.floor[(symbol, interval)] = start
            since = start if since is None else min(since, start)
        assert since is not None
        return since

    async def _repair_once(self, symbol: str, reason: str, resume: ResumeState) -> None:
        started = utcnow()
        pair = self.pairs.get(symbol, symbol)
        gap_start = self._gap_start(symbol, reason, resume)
        held = self.feed.held.get(symbol, [])
        live_from = min((t.trade_id for t in held), default=None)
        fetched = gaps.TradesFetch()
        ohlc_bars: list[Bar] = []
        stored_ids: set[int] = set()
        calls = 0
        error = ""
        try:
            fetched = await rest_retry(
                lambda: gaps.fetch_trades(
                    self.rest,
                    pair=pair,
                    symbol=symbol,
                    since_ns=gaps.to_ns(gap_start) - 1,
                    live_from_id=live_from,
                    max_calls=self.max_calls,
                )
            )
            calls = fetched.calls
            if reason == "startup":
                ohlc_bars, ohlc_calls = await self._ohlc_fallback(symbol, pair, gap_start, fetched.trades)
                calls += ohlc_calls
                stored_ids = await stored_trade_ids(self.feed.writer, symbol, gap_start)
        except Exception as exc:  # the gap stays (recorded as failed); live data must flow again
            error = f"{type(exc).__name__}: {exc}"[:2000]
            logger.error("gap repair failed", extra={"symbol": symbol, "reason": reason, "error": error})
        # From here to the end of the feed nothing awaits: live trades keep queueing in `held` until released.
        held = self.feed.held.pop(symbol, [])
        held_ids = {t.trade_id for t in held}
        last_live = self.feed.last_trade.get(symbol) if reason != "startup" else None
        new = [
            t
            for t in fetched.trades
            if t.trade_id not in held_ids and (last_live is None or t.trade_id > last_live.trade_id)
        ]
        before = self.counters["bars_closed"] + self.counters["bar_revisions"]
        with self.feed.replaying(stored_ids) as replayed:
            for bar in ohlc_bars:
                self.feed.bars_done([bar])
            for trade in gaps.merge_trades(held, new):
                self.feed.feed(trade)
            closed = list(replayed)
        written = self.counters["bars_closed"] + self.counters["bar_revisions"] - before
        await self.feed.enqueue_closed_bars()
        self.counters["backfills"] += 1
        self.counters["backfill_trades_added"] += len(new)
        self.counters["backfill_ohlc_bars"] += sum(1 for b in ohlc_bars if b.trades)
        if error:
            self.counters["backfill_failures"] += 1
        last_times = [t.timestamp for t in fetched.trades] + [b.start for b in ohlc_bars]
        logger.info(
            "gap repaired",
            extra={"symbol": symbol, "reason": reason, "from": gap_start.isoformat(), "trades_added": len(new)},
        )
        await record_backfill(
            self.worker,
            self.counters,
            symbol=symbol,
            reason=reason,
            source="trades+ohlc" if ohlc_bars else "trades",
            gap_start=gap_start,
            gap_end=max(last_times) if last_times else None,
            rest_calls=calls,
            trades_fetched=len(fetched.trades),
            trades_added=len(new),
            ohlc_bars=sum(1 for b in ohlc_bars if b.trades),
            bars_written=written,
            error=error,
            started_at=started,
        )
        for listener in self.on_repaired:
            await listener(symbol, reason, closed)

    async def _ohlc_fallback(
        self, symbol: str, pair: str, gap_start: datetime, trades: list[Trade]
    ) -> tuple[list[Bar], int]:
        """1-minute bars from OHLC for the part of a start-up gap older than the Trades answer reaches.

        Trades answers everything after `since` when the exchange still has it; a committed OHLC bar before the
        first trade returned (or with more trades than were returned for its minute) shows that it did not. Those
        minutes come from OHLC (quiet minutes between them flat), and the 1-minute series resumes after them."""
        builder = self.feed.builders.get((symbol, 60))
        if builder is None:
            return [], 0
        first_minute = builder.bucket(trades[0].timestamp) if trades else builder.bucket(self.exchange_now())
        gap_minute = builder.bucket(gap_start)
        if first_minute <= gap_minute and trades:
            return [], 0
        candles, calls = await rest_retry(
            lambda: gaps.fetch_ohlc(
                self.rest,
                pair=pair,
                since_s=int(gap_minute.timestamp()) - 1,
                end_s=int(first_minute.timestamp()) + 60,
            )
        )
        served = sum(1 for t in trades if builder.bucket(t.timestamp) == first_minute)
        use = [
            c
            for t, c in sorted(candles.items())
            if t < int(first_minute.timestamp()) or (t == int(first_minute.timestamp()) and c.count > served)
        ]
        if not use:
            return [], calls
        bars: list[Bar] = []
        previous_close = builder.last_close
        cursor = gap_minute
        for candle in use:
            start = gaps.EPOCH + timedelta(seconds=candle.time)
            while cursor < start and previous_close is not None:
                bars.append(gaps.flat_bar(symbol, cursor, previous_close))
                cursor += timedelta(seconds=60)
            bars.append(gaps.bar_from_ohlc(symbol, candle))
            previous_close = candle.close
            cursor = start + timedelta(seconds=60)
        builder.skip_to(next_start=cursor, last_close=previous_close)
        self.feed.floor[(symbol, 60)] = cursor
        return bars, calls
