"""The ingest worker: keeps Kraken's WebSocket connections open and turns the stream into events, bars and time
series, without losing anything silently.

    frames → KrakenWsClient (books verified, reconnects, gaps) → listeners here:
      book    → top of book: an event when it changes; the latest quote flushed to the database every second
      trade   → bar builders (`ingest.bar_feed`) → closed bars written (batched, spooled when the store is down)
                → bar events → after the write, the decision task is handed over (`ingest.handover`)
      ticker  → event
      executions → journal (fsynced) → applied to orders/fills/positions in a thread → event
      balances   → applied → event
      status, connection state, gaps → system events; reconciliation requested; a disconnection longer than
                five minutes raises an alert (`ingest.health`)
      ohlc    → the exchange's own 1-minute bars: each closed 1-minute bar is compared with the one for its minute;
                a difference is counted, published and repaired from REST Trades (`ingest.ohlc_check`)

Gap repair (`ingest.gap_repair`): at start-up (from where each series stopped, `ingest.checkpoint`) and after a
public reconnect, the worker fetches what it missed from REST; meanwhile that symbol's live trades are held.
Every repair is an `ingest.BackfillRecord`.

The event loop never touches the database: every ORM call runs in a worker thread (`sync_to_async`), so a slow
database never stalls socket reading. The heartbeat row (`IngestStatus`) is written every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections

from ingest import services
from ingest.bar_feed import BarFeed
from ingest.bars import BarBuilder
from ingest.checkpoint import BarCheckpoint
from ingest.events import SystemEvent, TickerEvent, TopOfBook, TradeEvent, utcnow
from ingest.gap_repair import GapRepair
from ingest.handover import Enqueue, HandOver
from ingest.health import Health
from ingest.journal import Journal
from ingest.kraken.book import OrderBook
from ingest.kraken.errors import KrakenError
from ingest.kraken.messages import ChannelMessage, Ticker, Trade
from ingest.kraken.rest import KrakenRestClient
from ingest.kraken.ws.client import KrakenWsClient
from ingest.kraken.ws.types import PUBLIC, BookEvent, ConnectionState, ExchangeStatus, ReconcileRequest, WsConfig
from ingest.kraken.ws.user_stream import token_provider_from
from ingest.missed_decisions import MissedDecisions
from ingest.ohlc_check import OhlcCheck
from ingest.private_stream import PrivateStream
from ingest.publisher import EventPublisher
from timeseries.base import TimeSeriesStore
from timeseries.writer import TimeSeriesWriter
from trading.kraken_clients import kraken_nonce_source

logger = logging.getLogger(__name__)


# The error of the worker's estimate of the exchange's clock (lag, jitter): how late a bar's trade may arrive by
# that estimate. A bar's grace already waits that long for its late trades, so the bar clock waits only for the part
# of the margin the grace does not cover (`clock_margin`).
CLOCK_MARGIN = timedelta(seconds=1)


def clock_margin(grace: timedelta) -> timedelta:
    """How far behind its estimate of the exchange's clock the bar clock closes bars with this grace: what
    CLOCK_MARGIN exceeds the grace by (none with the default grace of 2 s: a quiet market's bar closes at its end
    plus the grace, as a trade after the grace would close it)."""
    return max(timedelta(0), CLOCK_MARGIN - grace)


def next_bar_close(now: datetime, intervals: Sequence[int], *, grace: timedelta, margin: timedelta) -> datetime:
    """The first instant after `now` (exchange clock) at which a bar of one of `intervals` (seconds) is past its
    end, its grace and the clock margin: when the bar clock closes bars in a quiet market."""
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    due: datetime | None = None
    for interval in intervals:
        elapsed = (now - grace - margin - epoch).total_seconds()
        end = epoch + timedelta(seconds=(elapsed // interval + 1) * interval)
        candidate = end + grace + margin
        due = candidate if due is None or candidate < due else due
    return due if due is not None else now + timedelta(seconds=60)


@dataclass
class IngestConfig:
    symbols: list[str]
    rest_url: str
    ws_url: str
    ws_auth_url: str
    var_dir: Path
    depth: int = 10
    api_key: str = ""
    api_secret: str = ""
    bar_intervals: tuple[int, ...] = (60,)
    #: Celery task enqueued (by name, with symbol and bar start) after a closed bar of the first interval is written.
    bar_closed_task: str = ""
    #: Celery task enqueued (by name, with the trigger) after a private sequence gap or a private reconnect.
    reconcile_task: str = ""
    #: How long after a bar's end trades may still arrive before it closes (exchange clock).
    bar_grace_s: float = 2.0
    heartbeat_s: float = 5.0
    quote_flush_s: float = 1.0
    disconnect_alert_s: float = 300.0
    #: Gap repair from REST after a start or a public reconnect (Trades; OHLC where Trades no longer reaches).
    gap_repair: bool = True
    #: REST calls one repair may make per symbol (1000 trades per Trades call).
    gap_max_calls: int = 50
    #: A series stopped longer ago than this is not filled (a flat bar per interval since then would be noise).
    gap_max_s: float = 12 * 3600.0
    #: Compare each closed 1-minute bar with the exchange's `ohlc` channel (only when 60 is a bar interval).
    ohlc_check: bool = True
    #: How long a closed bar waits for the exchange's ohlc bar of the same minute before it is left unconfirmed.
    ohlc_wait_s: float = 10.0
    #: A bar found without a decision after a repair is decided if it ended at most this long ago, else recorded
    #: as missed (GALFRIDAY_DECISION_MAX_AGE_S, the pipeline's own limit).
    decision_max_age_s: float = 30.0
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @property
    def private(self) -> bool:
        return bool(self.api_key and self.api_secret)


COUNTERS = (
    "trades",
    "bars_closed",
    "bar_revisions",
    "executions_journaled",
    "executions_applied",
    "executions_invalid",
    "execution_apply_failures",
    "balance_updates",
    "balance_failures",
    "decisions_enqueued",
    "decisions_recovered",
    "decisions_missed",
    "decision_check_failures",
    "reconciliations_requested",
    "enqueue_failures",
    "quote_failures",
    "heartbeat_failures",
    "backfills",
    "backfill_failures",
    "backfill_trades_added",
    "backfill_ohlc_bars",
    "trades_held",
    "ohlc_checked",
    "ohlc_mismatches",
    "ohlc_unconfirmed",
    "ohlc_repairs",
    "checkpoint_failures",
)


class IngestWorker:
    def __init__(
        self,
        config: IngestConfig,
        *,
        store: TimeSeriesStore,
        channel_layer: Any,
        enqueue: Enqueue | None = None,
    ) -> None:
        self.config = config
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.publisher = EventPublisher(channel_layer)
        self.writer = TimeSeriesWriter(
            store, spool_dir=config.var_dir / "timeseries-spool", on_thread_exit=connections.close_all
        )
        self.journal = Journal(config.var_dir / "journal", name="executions")
        self.handover = HandOver(enqueue, self.counters)
        self.private_stream = PrivateStream(self.journal, self.publisher, self.counters)
        self.rest = KrakenRestClient(
            base_url=config.rest_url,
            api_key=config.api_key or None,
            api_secret=config.api_secret or None,
            nonce_source=kraken_nonce_source(config.api_key) if config.private else None,
        )
        self.ws = KrakenWsClient(
            WsConfig(public_url=config.ws_url, private_url=config.ws_auth_url),
            token_provider=token_provider_from(self.rest) if config.private else None,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pairs: dict[str, str] = {}  # symbol → REST pair key
        self.feed = BarFeed(
            intervals=config.bar_intervals,
            grace_s=config.bar_grace_s,
            writer=self.writer,
            publisher=self.publisher,
            handover=self.handover,
            decision_task=config.bar_closed_task,
            counters=self.counters,
            spawn=self._spawn,
        )
        self.checkpoint = BarCheckpoint(config.var_dir / "ingest-bars.json", self.writer, self.counters)
        self.gap_repair = GapRepair(
            worker=config.name,
            rest=self.rest,
            feed=self.feed,
            pairs=self._pairs,
            exchange_now=self.exchange_now,
            max_calls=config.gap_max_calls,
            max_gap_s=config.gap_max_s,
            counters=self.counters,
        )
        self.ohlc_check = OhlcCheck(
            worker=config.name,
            rest=self.rest,
            feed=self.feed,
            publisher=self.publisher,
            pairs=self._pairs,
            wait_s=config.ohlc_wait_s,
            max_calls=config.gap_max_calls,
            counters=self.counters,
            spawn=self._spawn,
        )
        if self._ohlc_check_enabled:
            self.feed.on_closed.append(self.ohlc_check.watch)
        self.missed_decisions = MissedDecisions(
            worker=config.name,
            feed=self.feed,
            max_age_s=config.decision_max_age_s,
            counters=self.counters,
            clock=self.exchange_now,
        )
        self.gap_repair.on_repaired.append(self.missed_decisions.after_repair)
        self.health_monitor = Health(
            name=config.name,
            symbols=config.symbols,
            ws=self.ws,
            writer=self.writer,
            publisher=self.publisher,
            journal=self.journal,
            feed=self.feed,
            counters=self.counters,
            disconnect_alert_s=config.disconnect_alert_s,
            sections=self._health_sections,
        )
        self._tops: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self._quotes: dict[str, tuple[Decimal, Decimal, datetime]] = {}
        # Exchange clock offset (for closing quiet bars on the exchange's clock).
        self._clock_offset = timedelta(0)
        self.started = False
        self._closing = False

    @property
    def builders(self) -> dict[tuple[str, int], BarBuilder]:
        return self.feed.builders

    @property
    def started_at(self) -> datetime:
        return self.health_monitor.started_at

    @property
    def _ohlc_check_enabled(self) -> bool:
        return self.config.ohlc_check and 60 in self.config.bar_intervals

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe, and process until `stop` is set; then flush and close everything."""
        config = self.config
        pairs = await self._asset_pairs(stop)
        if pairs is None:  # stopped before the exchange ever answered
            await self.rest.aclose()
            return
        precisions = await sync_to_async(services.instruments_sync)(pairs=pairs.values(), symbols=config.symbols)
        for symbol, (price_precision, _) in precisions.items():
            self.feed.add_symbol(symbol, price_precision)
        self._pairs.update({p.wsname: key for key, p in pairs.items() if getattr(p, "wsname", None)})
        resume = await self.checkpoint.resume_points(list(self.feed.builders)) if config.gap_repair else {}
        self.missed_decisions.resume_from(resume)
        # Everything loaded so far (Django, models, clients) lives as long as the process: out of the collector's
        # sight, a full collection of the hot path's short-lived objects takes milliseconds instead of ~0.5 s
        # (which stalled socket reading at 20,000 messages/s).
        gc.freeze()
        self._listen()
        if config.gap_repair:
            for symbol in config.symbols:  # hold live trades until the gap since the last run is fetched
                self.feed.hold(symbol)
        await self.ws.subscribe_book(config.symbols, depth=config.depth, precisions=precisions)
        await self.ws.subscribe_trades(config.symbols)
        await self.ws.subscribe_ticker(config.symbols)
        if self._ohlc_check_enabled:
            await self.ws.subscribe_ohlc(config.symbols, interval=1)
        if config.gap_repair:
            self._spawn(self.gap_repair.repair_all(config.symbols, "startup", resume), "gap-repair")
        self.started = True
        if config.private:
            await self.private_stream.apply_journal()  # whatever a previous run journaled but did not apply
            await self.ws.subscribe_executions(snap_orders=True, snap_trades=True)
            await self.ws.subscribe_balances()
            # What happened while nobody listened is only on the exchange: reconcile now.
            if config.reconcile_task and self.handover.enabled:
                self.handover.hand_over(config.reconcile_task, ["startup"])
                self.counters["reconciliations_requested"] += 1
        self._spawn(self.writer.run(), "timeseries-writer")
        self._spawn(self._every(config.quote_flush_s, self._flush_quotes), "quotes")
        self._spawn(self._every(config.heartbeat_s, self._heartbeat), "heartbeat")
        self._spawn(self._bar_clock(), "bar-clock")
        if config.private:
            self._spawn(self._every(config.heartbeat_s, self.private_stream.apply_journal), "journal")
        logger.info("ingest running", extra={"symbols": config.symbols, "private": config.private})
        await stop.wait()
        await self.close()

    async def _asset_pairs(self, stop: asyncio.Event) -> dict[str, Any] | None:
        """The exchange's instruments; waits (with backoff, up to 30 s apart) while the exchange is unreachable."""
        delay = 0.5
        while not stop.is_set():
            try:
                return dict(await self.rest.asset_pairs())
            except (KrakenError, OSError) as exc:
                logger.warning("exchange not reachable yet", extra={"error": repr(exc), "retry_in_s": delay})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 30.0)
        return None

    async def close(self) -> None:
        await self.ws.close()
        # No task may be cancelled inside a flush (a cancelled flush drops the batch it took): the worker's own
        # flushes are shielded (`bar_feed.flush`), and the writer's loop is idle once this flush (in this task, not
        # shielded) has waited for any flush in progress: nothing runs between its end and the cancellations.
        await self.writer.flush()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.feed.enqueue_closed_bars()
        await self.handover.drain()
        await self.checkpoint.save(self.feed.last_closed)
        self._closing = True  # from here the writer is closed: the last heartbeat only reports
        await self.writer.close()
        if self.config.private:
            await self.private_stream.apply_journal()
        await self._heartbeat()
        await self.publisher.close()  # send what is queued (bounded wait)
        await self.rest.aclose()
        await sync_to_async(connections.close_all)()  # the worker thread's database connection
        self.handover.shutdown()  # drained above (what timed out still leaves, from this thread)
        logger.info("ingest stopped", extra={"counters": self.counters})

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every(self, seconds: float, action: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            await action()

    def _listen(self) -> None:
        self.ws.on_book(self._on_book)
        self.ws.add_listener("trade", self._on_trades)
        self.ws.add_listener("ticker", self._on_ticker)
        self.ws.add_listener("ohlc", self.ohlc_check.on_ohlc)
        self.ws.on_executions(self.private_stream.on_executions)
        self.ws.on_balances(self.private_stream.on_balances)
        self.ws.on_exchange_status(self._on_exchange_status)
        self.ws.on_connection_state(self._on_connection_state)
        self.ws.on_reconcile(self._on_reconcile)

    # -- market data (hot path: no I/O but the lossy publish) -----------------------------------------------
    def _on_book(self, book: OrderBook, event: BookEvent) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        top = (bid[0] if bid else None, ask[0] if ask else None)
        if self._tops.get(book.symbol) == top:
            return
        self._tops[book.symbol] = top
        exchange_time = datetime.fromtimestamp(event.exchange_ts_ns / 1e9, UTC) if event.exchange_ts_ns else None
        if event.exchange_ts_ns and event.received_ns:
            self.health_monitor.lag("book", (event.received_ns - event.exchange_ts_ns) / 1e6)
        received = datetime.fromtimestamp(event.received_ns / 1e9, UTC) if event.received_ns else utcnow()
        if bid and ask:
            self._quotes[book.symbol] = (bid[0], ask[0], exchange_time or received)
        self._spawn(
            self.publisher.publish(
                TopOfBook(
                    book.symbol,
                    bid[0] if bid else None,
                    bid[1] if bid else None,
                    ask[0] if ask else None,
                    ask[1] if ask else None,
                    exchange_time,
                    received,
                )
            ),
            "publish-top",
        )

    def _on_trades(self, message: ChannelMessage[Trade]) -> Any:
        """Synchronous, so the client does not make a task per message (the hot path at tens of thousands of
        messages a second); returns the closed bars' flush-then-enqueue coroutine (the client runs it as a task)
        only when a bar closed."""
        received = utcnow()
        if message.items:  # lag and the exchange clock: one sample per message (its newest trade) is enough
            newest = message.items[-1].timestamp
            self._clock_offset = newest - received
            self.health_monitor.lag("trade", -self._clock_offset.total_seconds() * 1000)
        self.counters["trades"] += len(message.items)
        flush = self.feed.trades(message.items)
        if message.type == "update":  # queued for the publisher's sender task: never waits on Redis
            for trade in message.items:
                self.publisher.submit(
                    TradeEvent(
                        trade.symbol, trade.side, trade.price, trade.qty, trade.trade_id, trade.timestamp, received
                    )
                )
        return flush

    async def _on_ticker(self, message: ChannelMessage[Ticker]) -> None:
        received = utcnow()
        for t in message.items:
            await self.publisher.publish(
                TickerEvent(t.symbol, t.bid, t.ask, t.last, t.volume, t.vwap, t.timestamp, received)
            )

    async def advance_clock(self, now: datetime) -> None:
        """Close bars for quiet markets: called by the heartbeat with the exchange clock (estimated). Symbols
        whose gap is being repaired wait: their bars close once the missing trades are in."""
        self.feed.advance(now)
        await self.feed.enqueue_closed_bars()
        self.ohlc_check.check()

    def exchange_now(self) -> datetime:
        """The exchange's clock as last seen in its trade timestamps (offset from ours, lag included)."""
        return utcnow() + self._clock_offset

    # -- connection and exchange state ---------------------------------------------------------------------
    def _on_exchange_status(self, old: ExchangeStatus, new: ExchangeStatus) -> None:
        logger.warning("exchange status changed", extra={"old": old.value, "new": new.value})
        self._spawn(
            self.publisher.publish(SystemEvent("exchange_status", {"old": old.value, "status": new.value}, utcnow())),
            "publish-status",
        )

    def _on_connection_state(self, endpoint: str, old: ConnectionState, new: ConnectionState) -> None:
        now = utcnow()
        if endpoint == PUBLIC and self.started and self.config.gap_repair and not self.ws.closing:
            if old == ConnectionState.CONNECTED and new != ConnectionState.CONNECTED:
                for symbol in self.config.symbols:  # trades are being missed: freeze bar closing until repaired
                    self.feed.hold(symbol)
            elif new == ConnectionState.CONNECTED and old != ConnectionState.CONNECTED:
                self._spawn(self.gap_repair.repair_all(self.config.symbols, "reconnect", {}), "gap-repair")
        self.health_monitor.connection_changed(new, now)
        detail = {"endpoint": endpoint, "old": old.value, "state": new.value}
        self._spawn(self.publisher.publish(SystemEvent("connection", detail, now)), "publish-connection")

    def _on_reconcile(self, request: ReconcileRequest) -> None:
        self.counters["reconciliations_requested"] += 1
        detail = {
            "reason": request.reason,
            "channel": request.channel,
            "expected": request.expected,
            "got": request.got,
        }
        self._spawn(self.publisher.publish(SystemEvent("reconcile_requested", detail, utcnow())), "publish-reconcile")
        if self.config.reconcile_task and self.handover.enabled:
            self.handover.hand_over(self.config.reconcile_task, [request.reason])

    # -- timers and health ---------------------------------------------------------------------------------------
    async def _flush_quotes(self) -> None:
        if not self._quotes:
            return
        quotes, self._quotes = self._quotes, {}
        try:
            await sync_to_async(services.quotes_flush)(quotes)
        except Exception as exc:  # stale quotes make the risk manager refuse orders: visible, not fatal
            self.counters["quote_failures"] += 1
            logger.warning("quotes not written", extra={"error": repr(exc)})

    async def _bar_clock(self) -> None:
        """Close a quiet market's bars as soon as their grace has passed on the exchange clock, instead of at the
        next heartbeat (up to `heartbeat_s` later): the decision of a bar waits for its close."""
        grace = timedelta(seconds=self.config.bar_grace_s)
        margin = clock_margin(grace)
        while not self._closing:
            now = self.exchange_now()
            due = next_bar_close(now, self.config.bar_intervals, grace=grace, margin=margin)
            await asyncio.sleep(max(0.0, (due - now).total_seconds()))
            if not self._closing:
                await self.advance_clock(self.exchange_now() - margin)

    async def _heartbeat(self) -> None:
        if not self._closing:
            await self.advance_clock(self.exchange_now() - clock_margin(timedelta(seconds=self.config.bar_grace_s)))
            await self.checkpoint.save(self.feed.last_closed)
        await self.health_monitor.beat()

    def stats(self) -> dict[str, Any]:
        """Everything the heartbeat row carries (`ingest.health`)."""
        return self.health_monitor.stats()

    def health(self, ws: dict[str, Any] | None = None) -> dict[str, Any]:
        """What an operator watches: rates, lag, reconnects, queues, drops, repairs and checks (`ingest.health`)."""
        return self.health_monitor.health(ws)

    def _health_sections(self) -> dict[str, Any]:
        counters = self.counters
        return {
            "queues": {"ohlc_checks_pending": self.ohlc_check.pending, "tasks": len(self._tasks)},
            "gaps": {
                "backfills": counters["backfills"],
                "backfill_failures": counters["backfill_failures"],
                "trades_added": counters["backfill_trades_added"],
                "ohlc_bars": counters["backfill_ohlc_bars"],
                "repairing": sorted(self.gap_repair.repairing),
            },
            "decisions": {
                "enqueued": counters["decisions_enqueued"],
                "recovered": counters["decisions_recovered"],
                "missed": counters["decisions_missed"],
                "check_failures": counters["decision_check_failures"],
            },
            "ohlc_check": {
                "checked": counters["ohlc_checked"],
                "mismatches": counters["ohlc_mismatches"],
                "unconfirmed": counters["ohlc_unconfirmed"],
                "repairs": counters["ohlc_repairs"],
            },
        }
