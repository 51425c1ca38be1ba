"""The ingest worker: keeps Kraken's WebSocket connections open and turns the stream into events, bars and time
series, without losing anything silently.

    frames → KrakenWsClient (books verified, reconnects, gaps) → listeners here:
      book    → top of book: an event when it changes; the latest quote flushed to the database every second
      trade   → bar builders → closed bars written (batched, spooled when the store is down) → bar events →
                after the write, the decision task is enqueued (when configured)
      ticker  → event
      executions → journal (fsynced) → applied to orders/fills/positions in a thread → event
      balances   → applied → event
      status, connection state, gaps → system events; reconciliation requested; a disconnection longer than
                five minutes raises an alert
      ohlc    → the exchange's own 1-minute bars: each closed 1-minute bar is compared with the one for its minute;
                a difference is counted, published and repaired from REST Trades (`_repair_minute`)

Gap repair (`ingest.gaps`): at start-up (from the last bar a previous run made durable, `var/ingest-bars.json`, or
the store's latest bar) and after a public reconnect (from the last trade seen), the worker fetches what it missed
from REST Trades (OHLC for 1-minute bars older than Trades still serves) in a task of its own; meanwhile that
symbol's live trades are held and its bars do not close, then both are merged in exchange order, once each. Every
repair is an `ingest.BackfillRecord`.

The event loop never touches the database: every ORM call runs in a worker thread (`sync_to_async`), so a slow
database never stalls socket reading. The heartbeat row (`IngestStatus`) is written every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections

from ingest import gaps, services
from ingest.bars import BAR_MEASUREMENT, TRADE_MEASUREMENT, Bar, BarBuilder, trade_point
from ingest.events import (
    BalanceEvent,
    BarEvent,
    OrderUpdateEvent,
    SystemEvent,
    TickerEvent,
    TopOfBook,
    TradeEvent,
    utcnow,
)
from ingest.journal import Journal
from ingest.kraken.auth import FileLockNonce
from ingest.kraken.book import OrderBook
from ingest.kraken.errors import KrakenError
from ingest.kraken.messages import OHLC, BalanceUpdate, ChannelMessage, Execution, Ticker, Trade
from ingest.kraken.rest import KrakenRestClient
from ingest.kraken.ws.client import KrakenWsClient
from ingest.kraken.ws.types import PUBLIC, BookEvent, ConnectionState, ExchangeStatus, ReconcileRequest, WsConfig
from ingest.kraken.ws.user_stream import token_provider_from
from ingest.publisher import EventPublisher
from timeseries.base import TimeSeriesStore
from timeseries.writer import TimeSeriesWriter

logger = logging.getLogger(__name__)

# At stop, how long to wait for tasks still queued for the broker (Celery's publish retries take a few seconds).
ENQUEUE_DRAIN_S = 10.0


@dataclass
class IngestConfig:
    symbols: list[str]
    rest_url: str
    ws_url: str
    ws_auth_url: str
    var_dir: Path
    nonce_file: Path | None = None
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
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @property
    def private(self) -> bool:
        return bool(self.api_key and self.api_secret)


class IngestWorker:
    def __init__(
        self,
        config: IngestConfig,
        *,
        store: TimeSeriesStore,
        channel_layer: Any,
        enqueue: Callable[[str, list[Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.publisher = EventPublisher(channel_layer)
        self.writer = TimeSeriesWriter(
            store, spool_dir=config.var_dir / "timeseries-spool", on_thread_exit=connections.close_all
        )
        self.journal = Journal(config.var_dir / "journal", name="executions")
        self.enqueue = enqueue
        self._enqueue_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-enqueue")
        self._enqueue_order = asyncio.Lock()
        self._handovers: set[asyncio.Future[None]] = set()
        self.started_at = utcnow()
        self.rest = KrakenRestClient(
            base_url=config.rest_url,
            api_key=config.api_key or None,
            api_secret=config.api_secret or None,
            nonce_source=FileLockNonce(config.nonce_file or config.var_dir / "kraken-nonce")
            if config.private
            else None,
        )
        self.ws = KrakenWsClient(
            WsConfig(public_url=config.ws_url, private_url=config.ws_auth_url),
            token_provider=token_provider_from(self.rest) if config.private else None,
        )
        self.builders: dict[tuple[str, int], BarBuilder] = {}
        self._tops: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self._quotes: dict[str, tuple[Decimal, Decimal, datetime]] = {}
        self._pending_bars: list[Bar] = []
        self._disconnected_since: datetime | None = None
        self._alerted = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._apply_lock = asyncio.Lock()
        self._pairs: dict[str, str] = {}  # symbol → REST pair key
        # Gap repair: while a symbol's gap is being fetched, its live trades wait here (and its bars do not close
        # on the heartbeat clock), so REST and live trades merge in exchange order without holes or duplicates.
        self._held: dict[str, list[Trade]] = {}
        self._repairing: set[str] = set()
        self._repair_again: set[str] = set()
        self._last_trade: dict[str, Trade] = {}
        self._floor: dict[tuple[str, int], datetime] = {}  # per builder: bars before this are stored already
        self._feeding = False
        self._stored_trade_ids: set[int] = set()  # during a start-up feed: trades a previous run stored already
        self._started = False
        self._closing = False
        # Durability checkpoint: the last closed bar per builder known written (or spooled), for restarts.
        self._checkpoint_path = config.var_dir / "ingest-bars.json"
        self._last_closed: dict[str, tuple[str, str]] = {}
        self._checkpointed: dict[str, tuple[str, str]] = {}
        # Bars checked against the exchange's ohlc channel.
        self._exchange_bars: dict[str, dict[datetime, OHLC]] = {}
        self._checks: list[tuple[Bar, float]] = []
        # Health: exchange clock offset (for closing quiet bars on the exchange's clock), lag windows, rates.
        self._clock_offset = timedelta(0)
        self._lags: dict[str, deque[float]] = {"trade": deque(maxlen=2048), "book": deque(maxlen=2048)}
        self._rates: dict[str, float] = {}
        self._rate_base: tuple[float, dict[str, int]] | None = None
        self.counters: dict[str, int] = {
            "trades": 0,
            "bars_closed": 0,
            "bar_revisions": 0,
            "executions_journaled": 0,
            "executions_applied": 0,
            "executions_invalid": 0,
            "execution_apply_failures": 0,
            "balance_updates": 0,
            "balance_failures": 0,
            "decisions_enqueued": 0,
            "reconciliations_requested": 0,
            "enqueue_failures": 0,
            "quote_failures": 0,
            "heartbeat_failures": 0,
            "backfills": 0,
            "backfill_failures": 0,
            "backfill_trades_added": 0,
            "backfill_ohlc_bars": 0,
            "trades_held": 0,
            "ohlc_checked": 0,
            "ohlc_mismatches": 0,
            "ohlc_unconfirmed": 0,
            "ohlc_repairs": 0,
            "checkpoint_failures": 0,
        }

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe, and process until `stop` is set; then flush and close everything."""
        pairs = await self._asset_pairs(stop)
        if pairs is None:  # stopped before the exchange ever answered
            await self.rest.aclose()
            return
        precisions = await sync_to_async(services.instruments_sync)(pairs=pairs.values(), symbols=self.config.symbols)
        for symbol, (price_precision, _) in precisions.items():
            for interval in self.config.bar_intervals:
                self.builders[(symbol, interval)] = BarBuilder(
                    symbol,
                    price_precision=price_precision,
                    interval_seconds=interval,
                    grace=timedelta(seconds=self.config.bar_grace_s),
                )
        self._pairs = {p.wsname: key for key, p in pairs.items() if getattr(p, "wsname", None)}
        resume = await self._resume_points() if self.config.gap_repair else {}
        # Everything loaded so far (Django, models, clients) lives as long as the process: out of the collector's
        # sight, a full collection of the hot path's short-lived objects takes milliseconds instead of ~0.5 s
        # (which stalled socket reading at 20,000 messages/s).
        gc.freeze()
        self._listen()
        if self.config.gap_repair:
            for symbol in self.config.symbols:  # hold live trades until the gap since the last run is fetched
                self._held.setdefault(symbol, [])
        await self.ws.subscribe_book(self.config.symbols, depth=self.config.depth, precisions=precisions)
        await self.ws.subscribe_trades(self.config.symbols)
        await self.ws.subscribe_ticker(self.config.symbols)
        if self._ohlc_check_enabled:
            await self.ws.subscribe_ohlc(self.config.symbols, interval=1)
        if self.config.gap_repair:
            self._spawn(self._repair_all("startup", resume), "gap-repair")
        self._started = True
        if self.config.private:
            await self._apply_journal()  # whatever a previous run journaled but did not apply
            await self.ws.subscribe_executions(snap_orders=True, snap_trades=True)
            await self.ws.subscribe_balances()
            # What happened while nobody listened is only on the exchange: reconcile now.
            if self.config.reconcile_task and self.enqueue is not None:
                self._hand_over(self.config.reconcile_task, ["startup"])
                self.counters["reconciliations_requested"] += 1
        self._spawn(self.writer.run(), "timeseries-writer")
        self._spawn(self._every(self.config.quote_flush_s, self._flush_quotes), "quotes")
        self._spawn(self._every(self.config.heartbeat_s, self._heartbeat), "heartbeat")
        if self.config.private:
            self._spawn(self._every(self.config.heartbeat_s, self._apply_journal), "journal")
        logger.info("ingest running", extra={"symbols": self.config.symbols, "private": self.config.private})
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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._enqueue_closed_bars()
        await self._drain_handovers()
        await self._checkpoint()
        self._closing = True  # from here the writer is closed: the last heartbeat only reports
        await self.writer.close()
        if self.config.private:
            await self._apply_journal()
        await self._heartbeat()
        await self.publisher.close()  # send what is queued (bounded wait)
        await self.rest.aclose()
        await sync_to_async(connections.close_all)()  # the worker thread's database connection
        self._enqueue_thread.shutdown(wait=False)  # drained above (what timed out still leaves, from this thread)
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
        self.ws.add_listener("ohlc", self._on_ohlc)
        self.ws.on_executions(self._on_executions)
        self.ws.on_balances(self._on_balances)
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
            self._lags["book"].append((event.received_ns - event.exchange_ts_ns) / 1e6)
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
        pending = len(self._pending_bars)
        if message.items:  # lag and the exchange clock: one sample per message (its newest trade) is enough
            newest = message.items[-1].timestamp
            self._clock_offset = newest - received
            self._lags["trade"].append(-self._clock_offset.total_seconds() * 1000)
        for trade in message.items:
            self.counters["trades"] += 1
            held = self._held.get(trade.symbol)
            if held is not None:  # a gap repair of this symbol is running: merged in order when it ends
                held.append(trade)
                self.counters["trades_held"] += 1
            else:
                self._feed(trade)
            if message.type == "update":  # queued for the publisher's sender task: never waits on Redis
                self.publisher.submit(
                    TradeEvent(
                        trade.symbol, trade.side, trade.price, trade.qty, trade.trade_id, trade.timestamp, received
                    )
                )
        # Only when this message closed a bar: bars already pending are in a flush that will hand them over (a task
        # per message while a flush runs would pile up behind the enqueue lock).
        return self._enqueue_closed_bars() if len(self._pending_bars) > pending else None

    def _feed(self, trade: Trade) -> None:
        """One trade (live, or fetched by a repair) into the trade series and every bar builder of its symbol."""
        if trade.trade_id not in self._stored_trade_ids:  # REST times are coarser: the same trade, another time
            self.writer.add(trade_point(trade))  # the trade series (source of truth for backfill checks)
        last = self._last_trade.get(trade.symbol)
        if last is None or trade.trade_id > last.trade_id:  # trade ids rise with time on each book
            self._last_trade[trade.symbol] = trade
        for interval in self.config.bar_intervals:
            builder = self.builders.get((trade.symbol, interval))
            if builder is None:
                continue
            floor = self._floor.get((trade.symbol, interval))
            if floor is not None and trade.timestamp < floor:
                continue  # that bar is stored already (complete) from the previous run
            self._bars_done(builder.add_trade(trade))

    def _bars_done(self, bars: list[Bar]) -> None:
        for bar in bars:
            self.writer.add(bar.to_point())
            if bar.revision:
                self.counters["bar_revisions"] += 1
            else:
                self.counters["bars_closed"] += 1
                self._last_closed[f"{bar.symbol}@{bar.interval_seconds}"] = (bar.start.isoformat(), str(bar.close))
                if bar.interval_seconds == 60 and self._ohlc_check_enabled:
                    self._checks.append((bar, time.monotonic()))
                if not self._feeding:  # bars closed while replaying a gap are history, not a live signal
                    self._pending_bars.append(bar)
            self._spawn(self.publisher.publish(BarEvent.from_bar(bar, utcnow())), "publish-bar")

    async def _enqueue_closed_bars(self) -> None:
        """Persist first, then trigger the decision pipeline for each newly closed bar. Batches are flushed and
        handed to the enqueue thread one at a time, in the order their bars closed (a later batch's flush may not
        overtake an earlier one's). A bar leaves the pending list only once it is stored and handed over: a stop
        that cancels this during the flush leaves it for `close()`."""
        async with self._enqueue_order:
            n = len(self._pending_bars)
            if n == 0:
                return
            await self.writer.flush(only={BAR_MEASUREMENT})  # the bars now; the trades queued with them follow
            bars, self._pending_bars = self._pending_bars[:n], self._pending_bars[n:]
            task = self.config.bar_closed_task
            if not task or self.enqueue is None:
                return
            for bar in bars:
                if bar.interval_seconds == self.config.bar_intervals[0]:
                    self._hand_over(task, [bar.symbol, bar.start.isoformat()], counter="decisions_enqueued")

    def _hand_over(self, task: str, args: list[Any], *, counter: str | None = None) -> None:
        """Give a task to the enqueue thread and go on. Publishing blocks (Celery's publish retries wait for
        seconds on a slow or unreachable broker) and the market stream must not wait with it: one thread, off the
        event loop, so tasks leave in the order they were handed over; the outcome is counted (`counter`) or
        logged when it comes, and `close()` waits for what is still queued."""
        assert self.enqueue is not None
        future = asyncio.get_running_loop().run_in_executor(self._enqueue_thread, self.enqueue, task, args)
        self._handovers.add(future)
        future.add_done_callback(partial(self._handed_over, task=task, args=args, counter=counter))

    def _handed_over(self, future: asyncio.Future[None], *, task: str, args: list[Any], counter: str | None) -> None:
        self._handovers.discard(future)
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if error is not None:  # a broker outage must not stop ingest; counted and logged
            self.counters["enqueue_failures"] += 1
            logger.error("task not enqueued", extra={"task": task, "task_args": args, "error": repr(error)})
        elif counter is not None:
            self.counters[counter] += 1

    async def _drain_handovers(self) -> None:
        """At stop: wait (bounded) for the tasks still queued for the broker; what does not leave is logged."""
        if not self._handovers:
            return
        _, pending = await asyncio.wait(set(self._handovers), timeout=ENQUEUE_DRAIN_S)
        if pending:
            logger.error("tasks still waiting for the broker at stop", extra={"tasks": len(pending)})

    async def _on_ticker(self, message: ChannelMessage[Ticker]) -> None:
        received = utcnow()
        for t in message.items:
            await self.publisher.publish(
                TickerEvent(t.symbol, t.bid, t.ask, t.last, t.volume, t.vwap, t.timestamp, received)
            )

    async def advance_clock(self, now: datetime) -> None:
        """Close bars for quiet markets: called by the heartbeat with the exchange clock (estimated). Symbols
        whose gap is being repaired wait: their bars close once the missing trades are in."""
        for builder in self.builders.values():
            if builder.symbol not in self._held:
                self._bars_done(builder.advance(now))
        await self._enqueue_closed_bars()
        self._check_bars()

    def exchange_now(self) -> datetime:
        """The exchange's clock as last seen in its trade timestamps (offset from ours, lag included)."""
        return utcnow() + self._clock_offset

    # -- private channels ----------------------------------------------------------------------------------
    async def _on_executions(self, message: ChannelMessage[Execution]) -> None:
        received = utcnow()
        records = []
        for execution in message.items:
            record = services.execution_to_record(execution)
            if record is None:
                self.counters["executions_invalid"] += 1
                continue
            records.append(record)
        if records and not self._apply_lock.locked():
            # The usual case (no apply pass in flight): journal the message's items (one fsync) and apply them in
            # one hop to the database thread. The lock is free, so taking it does not wait: journaling is never
            # held up by a pass. The events are published after the commit, as below.
            def journal_then_apply() -> services.JournalResult:
                self.journal.append_many(records)
                return services.executions_apply_pending(self.journal)

            async with self._apply_lock:
                result = await sync_to_async(journal_then_apply)()
            self.counters["executions_journaled"] += len(records)
            self.counters["executions_applied"] += result.applied
            self.counters["executions_invalid"] += result.invalid
            self.counters["execution_apply_failures"] += result.failed
        else:
            if records:  # journaled at once (durable), applied after the pass in flight
                await asyncio.to_thread(self.journal.append_many, records)
                self.counters["executions_journaled"] += len(records)
            await self._apply_journal()
        # After the commit, handed to the publisher's sender task (in order, batched): the next message is not
        # held up by the Redis round trip. Lossy like the layer itself (a full queue is counted as dropped).
        for execution in message.items:
            self.publisher.submit(
                OrderUpdateEvent(
                    execution.order_id,
                    execution.cl_ord_id,
                    execution.exec_type,
                    execution.order_status,
                    execution.symbol,
                    execution.last_qty,
                    execution.last_price,
                    execution.timestamp,
                    received,
                )
            )

    async def _apply_journal(self) -> None:
        async with self._apply_lock:
            result = await sync_to_async(services.executions_apply_pending)(self.journal)
        self.counters["executions_applied"] += result.applied
        self.counters["executions_invalid"] += result.invalid
        self.counters["execution_apply_failures"] += result.failed

    async def _on_balances(self, message: ChannelMessage[BalanceUpdate]) -> None:
        received = utcnow()
        try:
            applied = await sync_to_async(services.balances_apply)(message.items, snapshot=message.type == "snapshot")
            self.counters["balance_updates"] += applied
        except Exception as exc:  # the next snapshot or reconciliation restates balances; counted and logged
            self.counters["balance_failures"] += 1
            logger.error("balances not applied", extra={"error": repr(exc)})
        for item in message.items:
            await self.publisher.publish(
                BalanceEvent(item.asset, item.balance, item.amount, item.ledger_id, item.timestamp, received)
            )

    # -- connection and exchange state ---------------------------------------------------------------------
    def _on_exchange_status(self, old: ExchangeStatus, new: ExchangeStatus) -> None:
        logger.warning("exchange status changed", extra={"old": old.value, "new": new.value})
        self._spawn(
            self.publisher.publish(SystemEvent("exchange_status", {"old": old.value, "status": new.value}, utcnow())),
            "publish-status",
        )

    def _on_connection_state(self, endpoint: str, old: ConnectionState, new: ConnectionState) -> None:
        now = utcnow()
        if endpoint == PUBLIC and self._started and self.config.gap_repair and not self.ws.closing:
            if old == ConnectionState.CONNECTED and new != ConnectionState.CONNECTED:
                for symbol in self.config.symbols:  # trades are being missed: freeze bar closing until repaired
                    self._held.setdefault(symbol, [])
            elif new == ConnectionState.CONNECTED and old != ConnectionState.CONNECTED:
                self._spawn(self._repair_all("reconnect", {}), "gap-repair")
        if new == ConnectionState.CONNECTED and self.ws.connection_state == ConnectionState.CONNECTED:
            self._disconnected_since = None
            self._alerted = False
        elif new != ConnectionState.CONNECTED and self._disconnected_since is None and not self.ws.closing:
            self._disconnected_since = now
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
        if self.config.reconcile_task and self.enqueue is not None:
            self._hand_over(self.config.reconcile_task, [request.reason])

    # -- timers ------------------------------------------------------------------------------------------------
    async def _flush_quotes(self) -> None:
        if not self._quotes:
            return
        quotes, self._quotes = self._quotes, {}
        try:
            await sync_to_async(services.quotes_flush)(quotes)
        except Exception as exc:  # stale quotes make the risk manager refuse orders: visible, not fatal
            self.counters["quote_failures"] += 1
            logger.warning("quotes not written", extra={"error": repr(exc)})

    async def _heartbeat(self) -> None:
        now = utcnow()
        if not self._closing:
            await self.advance_clock(self.exchange_now() - timedelta(seconds=1))
            await self._checkpoint()
        self._update_rates()
        stats = self.stats()
        last_ns = self.ws.stats.last_message_ns
        try:
            await sync_to_async(services.status_save)(
                name=self.config.name,
                connection_state=self.ws.connection_state.value,
                exchange_status=self.ws.exchange_status.value,
                symbols=self.config.symbols,
                stats=stats,
                last_message_at=datetime.fromtimestamp(last_ns / 1e9, UTC) if last_ns else None,
                disconnected_since=self._disconnected_since,
                started_at=self.started_at,
                now=now,
            )
            since = self._disconnected_since
            if (
                since is not None
                and not self._alerted
                and (now - since).total_seconds() >= self.config.disconnect_alert_s
            ):
                await sync_to_async(services.disconnection_alert)(name=self.config.name, since=since, now=now)
                self._alerted = True
        except Exception as exc:  # the heartbeat is best effort: a database outage shows as a stale row
            self.counters["heartbeat_failures"] += 1
            logger.warning("heartbeat not written", extra={"error": repr(exc)})
            # A restarted database leaves this thread's connection broken: drop it so the next beat reconnects.
            await sync_to_async(services.close_broken_connections)()

    def stats(self) -> dict[str, Any]:
        ws = self.ws.stats_snapshot()
        ws.pop("lag", None)
        return {
            "health": self.health(ws),
            "ws": ws,
            "ingest": dict(self.counters),
            "writer": {**asdict(self.writer.stats), "pending": self.writer.pending},
            "spooled_files": len(self.writer.spooled_files()),
            "journal_pending": len(self.journal.pending()),
            "published": dict(self.publisher.published),
            "dropped_events": dict(self.publisher.dropped),
            "bars": {f"{symbol}@{interval}s": asdict(b.stats) for (symbol, interval), b in self.builders.items()},
        }

    # -- health --------------------------------------------------------------------------------------------------
    def _update_rates(self) -> None:
        """Messages per second per channel since the previous heartbeat."""
        now = time.monotonic()
        counts = dict(self.ws.stats.messages)
        if self._rate_base is not None:
            elapsed = now - self._rate_base[0]
            if elapsed > 0:
                base = self._rate_base[1]
                self._rates = {k: round((v - base.get(k, 0)) / elapsed, 3) for k, v in counts.items()}
        self._rate_base = (now, counts)

    def health(self, ws: dict[str, Any] | None = None) -> dict[str, Any]:
        """What an operator watches (heartbeat row, `/api/health/` details, `/metrics`): rates, exchange-to-receive
        lag percentiles over the last ~2000 messages, reconnects, checksum failures, queue depths, drops, repairs."""
        ws = ws if ws is not None else self.ws.stats_snapshot()
        lag: dict[str, dict[str, float | int]] = {}
        for channel, window in self._lags.items():
            if window:
                ordered = sorted(window)
                lag[channel] = {
                    "p50": round(ordered[(len(ordered) - 1) // 2], 3),
                    "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
                    "samples": len(ordered),
                }
        return {
            "messages_per_s": dict(self._rates),
            "lag_ms": lag,
            "reconnects": ws.get("reconnects", 0),
            "checksum_failures": ws.get("checksum_failures", 0),
            "malformed_messages": sum(ws.get("malformed", {}).values()),
            "unknown_messages": sum(ws.get("unknown", {}).values()),
            "last_message_at": ws.get("last_message_at"),
            "queues": {
                "timeseries_pending": self.writer.pending,
                "timeseries_spooled_files": len(self.writer.spooled_files()),
                "held_trades": sum(len(v) for v in self._held.values()),
                "ohlc_checks_pending": len(self._checks),
                "events_pending": getattr(self.publisher, "pending", 0),
                "listener_tasks": self.ws.listener_tasks,
                "tasks": len(self._tasks),
            },
            "dropped": {
                "events": sum(self.publisher.dropped.values()),
                "late_trades": sum(b.stats.late_dropped for b in self.builders.values()),
                "timeseries_dead_lettered": self.writer.stats.points_dead_lettered,
            },
            "gaps": {
                "backfills": self.counters["backfills"],
                "backfill_failures": self.counters["backfill_failures"],
                "trades_added": self.counters["backfill_trades_added"],
                "ohlc_bars": self.counters["backfill_ohlc_bars"],
                "repairing": sorted(self._repairing),
            },
            "ohlc_check": {
                "checked": self.counters["ohlc_checked"],
                "mismatches": self.counters["ohlc_mismatches"],
                "unconfirmed": self.counters["ohlc_unconfirmed"],
                "repairs": self.counters["ohlc_repairs"],
            },
        }

    # -- gap repair ----------------------------------------------------------------------------------------------
    @property
    def _ohlc_check_enabled(self) -> bool:
        return self.config.ohlc_check and 60 in self.config.bar_intervals

    @staticmethod
    def _interval_label(interval: int) -> str:
        return f"{interval // 60}m" if interval % 60 == 0 else f"{interval}s"

    def _read_checkpoint(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self._checkpoint_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a damaged checkpoint: fall back to the store's latest bars
            logger.warning("bar checkpoint unreadable", extra={"error": repr(exc)})
            return {}
        return data if isinstance(data, dict) else {}

    def _write_checkpoint(self, data: dict[str, tuple[str, str]]) -> None:
        tmp = self._checkpoint_path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._checkpoint_path)

    async def _checkpoint(self) -> None:
        """Record the last closed bar per series once it is written or spooled (durable), for the next start."""
        snapshot = dict(self._last_closed)
        if all(self._checkpointed.get(k) == v for k, v in snapshot.items()):
            return
        await self.writer.flush()  # every bar in `snapshot` was added before: now written or spooled
        merged = {**self._checkpointed, **snapshot}
        try:
            await asyncio.to_thread(self._write_checkpoint, merged)
        except OSError as exc:
            self.counters["checkpoint_failures"] += 1
            logger.warning("bar checkpoint not written", extra={"error": repr(exc)})
            return
        self._checkpointed = merged

    def _store_latest(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[datetime, Decimal]]:
        found: dict[tuple[str, int], tuple[datetime, Decimal]] = {}
        try:
            for symbol, interval in keys:
                point = self.writer.store.latest(
                    BAR_MEASUREMENT, {"symbol": symbol, "interval": self._interval_label(interval)}
                )
                if point is not None and isinstance(point.fields.get("close"), Decimal):
                    found[(symbol, interval)] = (point.time.astimezone(UTC), Decimal(point.fields["close"]))
        finally:
            connections.close_all()  # this thread's connection (relational store)
        return found

    async def _resume_points(self) -> dict[tuple[str, int], tuple[datetime, Decimal]]:
        """Where each series stopped in a previous run: the checkpoint file, else the store's latest bar."""
        checkpoint = await asyncio.to_thread(self._read_checkpoint)
        points: dict[tuple[str, int], tuple[datetime, Decimal]] = {}
        missing: list[tuple[str, int]] = []
        for symbol, interval in self.builders:
            entry = checkpoint.get(f"{symbol}@{interval}")
            try:
                points[(symbol, interval)] = (datetime.fromisoformat(entry[0]), Decimal(entry[1]))  # type: ignore[index]
            except (TypeError, ValueError, ArithmeticError, IndexError):
                missing.append((symbol, interval))
        if missing:
            try:
                points.update(await asyncio.to_thread(self._store_latest, missing))
            except Exception as exc:  # store down at start-up: repair from the current bar only (logged, recorded)
                logger.warning("latest stored bars not readable", extra={"error": repr(exc)})
        self._checkpointed = {f"{s}@{i}": (t.isoformat(), str(c)) for (s, i), (t, c) in points.items()}
        return points

    async def _repair_all(self, reason: str, resume: dict[tuple[str, int], tuple[datetime, Decimal]]) -> None:
        await asyncio.gather(*(self._repair_symbol(s, reason, resume) for s in self.config.symbols))

    async def _repair_symbol(
        self, symbol: str, reason: str, resume: dict[tuple[str, int], tuple[datetime, Decimal]]
    ) -> None:
        if symbol in self._repairing:  # a repair is running: run once more when it ends (it may have missed some)
            self._repair_again.add(symbol)
            return
        self._repairing.add(symbol)
        try:
            while True:
                self._held.setdefault(symbol, [])
                await self._repair_once(symbol, reason, resume)
                if symbol not in self._repair_again:
                    break
                self._repair_again.discard(symbol)
                reason, resume = "reconnect", {}
        finally:
            self._repairing.discard(symbol)
            leftover = self._held.pop(symbol, None)
            for trade in gaps.merge_trades(leftover or []):  # a repair that died must not take live trades with it
                self._feed(trade)

    async def _rest_retry(self, call: Callable[[], Any]) -> Any:
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

    def _gap_start(self, symbol: str, reason: str, resume: dict[tuple[str, int], tuple[datetime, Decimal]]) -> datetime:
        now = self.exchange_now()
        builders = [(i, b) for (s, i), b in self.builders.items() if s == symbol]
        if reason != "startup":
            last = self._last_trade.get(symbol)
            if last is not None:
                return last.timestamp
            return min(b.next_to_close or b.bucket(now) for _, b in builders)
        since: datetime | None = None
        for interval, builder in builders:
            point = resume.get((symbol, interval))
            if point is not None and (now - point[0]).total_seconds() <= self.config.gap_max_s:
                start, close = point
                start = start + timedelta(seconds=interval)
                builder.resume(next_start=start, last_close=close)
            else:  # nothing stored (or too old to fill): the first bar is the current one, complete
                start = builder.bucket(now)
            self._floor[(symbol, interval)] = start
            since = start if since is None else min(since, start)
        assert since is not None
        return since

    async def _repair_once(
        self, symbol: str, reason: str, resume: dict[tuple[str, int], tuple[datetime, Decimal]]
    ) -> None:
        started = utcnow()
        pair = self._pairs.get(symbol, symbol)
        gap_start = self._gap_start(symbol, reason, resume)
        held = self._held.get(symbol, [])
        live_from = min((t.trade_id for t in held), default=None)
        fetched = gaps.TradesFetch()
        ohlc_bars: list[Bar] = []
        stored_ids: set[int] = set()
        calls = 0
        error = ""
        try:
            fetched = await self._rest_retry(
                lambda: gaps.fetch_trades(
                    self.rest,
                    pair=pair,
                    symbol=symbol,
                    since_ns=gaps.to_ns(gap_start) - 1,
                    live_from_id=live_from,
                    max_calls=self.config.gap_max_calls,
                )
            )
            calls = fetched.calls
            if reason == "startup":
                ohlc_bars, ohlc_calls = await self._ohlc_fallback(symbol, pair, gap_start, fetched.trades)
                calls += ohlc_calls
                stored_ids = await self._stored_trades(symbol, gap_start)
        except Exception as exc:  # the gap stays (recorded as failed); live data must flow again
            error = f"{type(exc).__name__}: {exc}"[:2000]
            logger.error("gap repair failed", extra={"symbol": symbol, "reason": reason, "error": error})
        # From here to the end of the feed nothing awaits: live trades keep queueing in `held` until released.
        held = self._held.pop(symbol, [])
        held_ids = {t.trade_id for t in held}
        last_live = self._last_trade.get(symbol) if reason != "startup" else None
        new = [
            t
            for t in fetched.trades
            if t.trade_id not in held_ids and (last_live is None or t.trade_id > last_live.trade_id)
        ]
        before = self.counters["bars_closed"] + self.counters["bar_revisions"]
        self._feeding = True
        self._stored_trade_ids = stored_ids
        try:
            for bar in ohlc_bars:
                self._bars_done([bar])
            for trade in gaps.merge_trades(held, new):
                self._feed(trade)
        finally:
            self._feeding = False
            self._stored_trade_ids = set()
        written = self.counters["bars_closed"] + self.counters["bar_revisions"] - before
        await self._enqueue_closed_bars()
        self.counters["backfills"] += 1
        self.counters["backfill_trades_added"] += len(new)
        self.counters["backfill_ohlc_bars"] += sum(1 for b in ohlc_bars if b.trades)
        if error:
            self.counters["backfill_failures"] += 1
        last_times = [t.timestamp for t in fetched.trades] + [b.start for b in ohlc_bars]
        source = "trades+ohlc" if ohlc_bars else "trades"
        logger.info(
            "gap repaired",
            extra={"symbol": symbol, "reason": reason, "from": gap_start.isoformat(), "trades_added": len(new)},
        )
        await self._record_backfill(
            symbol=symbol,
            reason=reason,
            source=source,
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

    async def _ohlc_fallback(
        self, symbol: str, pair: str, gap_start: datetime, trades: list[Trade]
    ) -> tuple[list[Bar], int]:
        """1-minute bars from OHLC for the part of a start-up gap older than the Trades answer reaches.

        Trades answers everything after `since` when the exchange still has it; a committed OHLC bar before the
        first trade returned (or with more trades than were returned for its minute) shows that it did not. Those
        minutes come from OHLC (quiet minutes between them flat), and the 1-minute series resumes after them."""
        builder = self.builders.get((symbol, 60))
        if builder is None:
            return [], 0
        first_minute = builder.bucket(trades[0].timestamp) if trades else builder.bucket(self.exchange_now())
        gap_minute = builder.bucket(gap_start)
        if first_minute <= gap_minute and trades:
            return [], 0
        candles, calls = await self._rest_retry(
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
        self._floor[(symbol, 60)] = cursor
        return bars, calls

    async def _stored_trades(self, symbol: str, since: datetime, until: datetime | None = None) -> set[int]:
        """Ids of the trades of `symbol` stored in [since, until) (their points are not written again)."""

        def query() -> set[int]:
            try:
                points = self.writer.store.query_range(
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

    async def _record_backfill(self, **fields: Any) -> None:
        try:
            await sync_to_async(services.backfill_record_save)(worker=self.config.name, **fields)
        except Exception as exc:  # the repair itself is done; the record is what failed (logged, counted)
            self.counters["backfill_failures"] += 1
            logger.error("backfill record not saved", extra={"error": repr(exc), "symbol": fields.get("symbol")})
            await sync_to_async(services.close_broken_connections)()

    # -- checks against the exchange's ohlc channel --------------------------------------------------------------
    def _on_ohlc(self, message: ChannelMessage[OHLC]) -> None:
        """Synchronous (no task per message): keeps the exchange's 1-minute bars and resolves waiting checks."""
        for candle in message.items:
            if candle.interval != 1:
                continue
            bars = self._exchange_bars.setdefault(candle.symbol, {})
            bars[candle.interval_begin] = candle
            if len(bars) > 120:
                for start in sorted(bars)[: len(bars) - 120]:
                    del bars[start]
        self._check_bars()

    def _check_bars(self) -> None:
        """Compare closed 1-minute bars with the exchange's bar for the same minute once that one is final (a
        later minute has started on the exchange, or `ohlc_wait_s` passed). A difference is counted, logged,
        published and repaired from REST."""
        if not self._checks:
            return
        now = time.monotonic()
        waiting: list[tuple[Bar, float]] = []
        for bar, closed_at in self._checks:
            exchange_bars = self._exchange_bars.get(bar.symbol, {})
            theirs = exchange_bars.get(bar.start)
            final = any(start > bar.start for start in exchange_bars)
            if not final and now - closed_at < self.config.ohlc_wait_s:
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
            self._spawn(self.publisher.publish(SystemEvent("bar_mismatch", detail, utcnow())), "publish-mismatch")
            self._spawn(self._repair_minute(bar.symbol, bar.start), "repair-minute")
        self._checks = waiting

    async def _repair_minute(self, symbol: str, start: datetime) -> None:
        """Re-fetch one minute's trades from REST and rebuild that bar from them (the exchange's own list)."""
        started = utcnow()
        end = start + timedelta(seconds=60)
        builder = self.builders[(symbol, 60)]
        error = ""
        fetched = gaps.TradesFetch()
        try:
            fetched = await self._rest_retry(
                lambda: gaps.fetch_trades(
                    self.rest,
                    pair=self._pairs.get(symbol, symbol),
                    symbol=symbol,
                    since_ns=gaps.to_ns(start) - 1,
                    until=end,
                    max_calls=self.config.gap_max_calls,
                )
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
        known = builder.trade_ids(start)
        if not known:  # no longer in the builder's memory: what is stored decides what is new
            await self.writer.flush()
            known = await self._stored_trades(symbol, start, end)
        new = [t for t in fetched.trades if t.trade_id not in known]
        bar = builder.rebuild(start, fetched.trades) if not error else None
        for trade in new:  # the trade series and the longer intervals get the missing trades too
            self.writer.add(trade_point(trade))
            for (s, interval), other in self.builders.items():
                if s == symbol and interval != 60:
                    self._bars_done(other.add_trade(trade))
        if bar is not None:
            self._bars_done([bar])
        await self.writer.flush()
        self.counters["ohlc_repairs"] += 1
        theirs = self._exchange_bars.get(symbol, {}).get(start)
        if not error and (bar is None or theirs is None or gaps.bar_differences(bar, theirs)):
            error = "the bar rebuilt from REST Trades still differs from the exchange's ohlc bar"
        if error:
            self.counters["backfill_failures"] += 1
            logger.error("bar repair incomplete", extra={"symbol": symbol, "start": start.isoformat(), "error": error})
        await self._record_backfill(
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
