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

The event loop never touches the database: every ORM call runs in a worker thread (`sync_to_async`), so a slow
database never stalls socket reading. The heartbeat row (`IngestStatus`) is written every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections

from ingest import services
from ingest.bars import Bar, BarBuilder
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
from ingest.kraken.messages import BalanceUpdate, ChannelMessage, Execution, Ticker, Trade
from ingest.kraken.rest import KrakenRestClient
from ingest.kraken.ws import (
    BookEvent,
    ConnectionState,
    ExchangeStatus,
    KrakenWsClient,
    ReconcileRequest,
    WsConfig,
    token_provider_from,
)
from ingest.publisher import EventPublisher
from ingest.timeseries.base import TimeSeriesStore
from ingest.timeseries.writer import TimeSeriesWriter

logger = logging.getLogger(__name__)


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
        self._listen()
        await self.ws.subscribe_book(self.config.symbols, depth=self.config.depth, precisions=precisions)
        await self.ws.subscribe_trades(self.config.symbols)
        await self.ws.subscribe_ticker(self.config.symbols)
        if self.config.private:
            await self._apply_journal()  # whatever a previous run journaled but did not apply
            await self.ws.subscribe_executions(snap_orders=True, snap_trades=True)
            await self.ws.subscribe_balances()
            # What happened while nobody listened is only on the exchange: reconcile now.
            if self.config.reconcile_task and self.enqueue is not None:
                self._enqueue(self.config.reconcile_task, ["startup"])
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
        await self.writer.close()
        if self.config.private:
            await self._apply_journal()
        await self._heartbeat()
        await self.rest.aclose()
        await sync_to_async(connections.close_all)()  # the worker thread's database connection
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

    async def _on_trades(self, message: ChannelMessage[Trade]) -> None:
        received = utcnow()
        for trade in message.items:
            self.counters["trades"] += 1
            for interval in self.config.bar_intervals:
                builder = self.builders.get((trade.symbol, interval))
                if builder is not None:
                    self._bars_done(builder.add_trade(trade))
            if message.type == "update":
                await self.publisher.publish(
                    TradeEvent(
                        trade.symbol, trade.side, trade.price, trade.qty, trade.trade_id, trade.timestamp, received
                    )
                )
        await self._enqueue_closed_bars()

    def _bars_done(self, bars: list[Bar]) -> None:
        for bar in bars:
            self.writer.add(bar.to_point())
            if bar.revision:
                self.counters["bar_revisions"] += 1
            else:
                self.counters["bars_closed"] += 1
                self._pending_bars.append(bar)
            self._spawn(self.publisher.publish(BarEvent.from_bar(bar, utcnow())), "publish-bar")

    async def _enqueue_closed_bars(self) -> None:
        """Persist first, then trigger the decision pipeline for each newly closed bar."""
        if not self._pending_bars:
            return
        bars, self._pending_bars = self._pending_bars, []
        await self.writer.flush()
        if not self.config.bar_closed_task or self.enqueue is None:
            return
        for bar in bars:
            if bar.interval_seconds != self.config.bar_intervals[0]:
                continue
            self._enqueue(self.config.bar_closed_task, [bar.symbol, bar.start.isoformat()])
            self.counters["decisions_enqueued"] += 1

    def _enqueue(self, task: str, args: list[Any]) -> None:
        assert self.enqueue is not None
        try:
            self.enqueue(task, args)
        except Exception as exc:  # a broker outage must not stop ingest; counted and logged
            self.counters["enqueue_failures"] += 1
            logger.error("task not enqueued", extra={"task": task, "task_args": args, "error": repr(exc)})

    async def _on_ticker(self, message: ChannelMessage[Ticker]) -> None:
        received = utcnow()
        for t in message.items:
            await self.publisher.publish(
                TickerEvent(t.symbol, t.bid, t.ask, t.last, t.volume, t.vwap, t.timestamp, received)
            )

    async def advance_clock(self, now: datetime) -> None:
        """Close bars for quiet markets: called by the heartbeat with the wall clock."""
        for builder in self.builders.values():
            self._bars_done(builder.advance(now))
        await self._enqueue_closed_bars()

    # -- private channels ----------------------------------------------------------------------------------
    async def _on_executions(self, message: ChannelMessage[Execution]) -> None:
        received = utcnow()
        for execution in message.items:
            record = services.execution_to_record(execution)
            if record is None:
                self.counters["executions_invalid"] += 1
                continue
            await asyncio.to_thread(self.journal.append, record)
            self.counters["executions_journaled"] += 1
        await self._apply_journal()
        for execution in message.items:
            await self.publisher.publish(
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
            self._enqueue(self.config.reconcile_task, [request.reason])

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
        await self.advance_clock(now - timedelta(seconds=1))
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

    def stats(self) -> dict[str, Any]:
        ws = self.ws.stats_snapshot()
        ws.pop("lag", None)
        return {
            "ws": ws,
            "ingest": dict(self.counters),
            "writer": {**asdict(self.writer.stats), "pending": self.writer.pending},
            "spooled_files": len(self.writer.spooled_files()),
            "journal_pending": len(self.journal.pending()),
            "published": dict(self.publisher.published),
            "dropped_events": dict(self.publisher.dropped),
            "bars": {f"{symbol}@{interval}s": asdict(b.stats) for (symbol, interval), b in self.builders.items()},
        }
