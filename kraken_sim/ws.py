"""WebSocket v2 endpoints (PROTOCOL.md §2): the public host (market data) and the private host (executions,
balances, trading), each on its own port at path ``/v2``, as Kraken separates ``ws`` and ``ws-auth``.

Each connection has a send queue and a writer task, so the exchange (synchronous) only enqueues. Public
messages are serialised once and fanned out; private ones carry a per-subscription ``sequence``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import WSMsgType, web

from kraken_sim import errors as E
from kraken_sim import messages as M
from kraken_sim.accounts import LedgerEntry
from kraken_sim.auth import TokenStore
from kraken_sim.config import SimConfig
from kraken_sim.engine import OrderType, Side, TimeInForce
from kraken_sim.errors import KrakenError
from kraken_sim.exchange import Exchange, ExecEvent, OrderRequest
from kraken_sim.faults import Faults
from kraken_sim.feeds import BOOK_DEPTHS, BookFeed
from kraken_sim.ids import IdGenerator
from kraken_sim.marketdata import OHLC_INTERVALS, Candle, PublicTrade
from kraken_sim.wire import Clock, dumps, rfc3339_seconds

log = logging.getLogger(__name__)

PUBLIC_CHANNELS = ("book", "ticker", "trade", "ohlc", "instrument")
PRIVATE_CHANNELS = ("executions", "balances")
TRADING_METHODS = ("add_order", "cancel_order", "cancel_all", "cancel_all_orders_after")
TRADE_SNAPSHOT_SIZE = 50
CLOSE_TIMEOUT = 2.0  # seconds to wait for a client's close frame
CL_ORD_ID_RE = re.compile(r"^([0-9a-fA-F]{32}|[0-9a-fA-F-]{36}|.{1,18})$")
# Constructed error texts (no recording of these cases was available).
ALREADY_SUBSCRIBED = "Already subscribed"
INVALID_REQUEST = "EGeneral:Invalid arguments"

Key = tuple[Any, ...]


@dataclass(slots=True)
class Subscription:
    channel: str
    symbol: str | None
    key: Key
    params: dict[str, Any] = field(default_factory=dict)
    sequence: int = 0
    skip: int = 0


class Connection:
    def __init__(
        self, hub: WsHub, ws: web.WebSocketResponse, request: web.Request, private: bool, connection_id: int
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.request = request
        self.private = private
        self.connection_id = connection_id
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.subs: dict[tuple[str, str | None], Subscription] = {}
        self.last_sent = time.monotonic()
        self.last_received = time.monotonic()
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []

    def send(self, text: str) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= self.hub.config.ws_queue_limit:
            log.warning("connection %s: send queue full, dropping the slow consumer", self.connection_id)
            self.abort()
            return
        self.queue.put_nowait(text)

    def abort(self) -> None:
        """Cut the TCP connection without a close frame (what a network failure looks like)."""
        self.closed = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self.queue.put_nowait(None)

    async def writer(self) -> None:
        faults = self.hub.faults
        while True:
            text = await self.queue.get()
            if text is None:
                return
            while True:
                left, mode = faults.silence_state(self)
                if left <= 0:
                    break
                if mode == "drop":
                    text = None
                    break
                await asyncio.sleep(left)
            if text is None or self.closed:
                continue
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                log.info("connection %s: send failed (%s), closing", self.connection_id, exc)
                self.closed = True
                return
            self.last_sent = time.monotonic()

    async def heartbeats(self) -> None:
        """Heartbeats when idle; and Kraken's idle rule: a connection that subscribes to nothing and sends
        nothing for about a minute is closed."""
        interval = self.hub.config.heartbeat_interval
        idle_timeout = self.hub.config.idle_timeout
        while not self.closed:
            await asyncio.sleep(min(interval, idle_timeout or interval) / 4)
            if idle_timeout and not self.subs and time.monotonic() - self.last_received > idle_timeout:
                log.info("connection %s: idle for %.0f s, closing", self.connection_id, idle_timeout)
                self.closed = True
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self.ws.close(code=1000, message=b"idle")
                return
            idle = time.monotonic() - self.last_sent
            if self.subs and idle >= interval and self.queue.empty() and self.hub.faults.silence_state(self)[0] <= 0:
                self.send(M.HEARTBEAT)
                self.last_sent = time.monotonic()


class WsHub:
    """Connections, subscriptions and the exchange's events turned into v2 messages (an ``EventSink``)."""

    def __init__(
        self,
        config: SimConfig,
        exchange: Exchange,
        tokens: TokenStore,
        faults: Faults,
        ids: IdGenerator,
        clock: Clock,
    ) -> None:
        self.config = config
        self.exchange = exchange
        self.registry = exchange.registry
        self.tokens = tokens
        self.faults = faults
        self.ids = ids
        self.clock = clock
        self.connections: dict[int, Connection] = {}
        self.index: dict[Key, set[Connection]] = {}
        self.feeds = {symbol: BookFeed(book) for symbol, book in exchange.books.items()}
        self.recorded: list[dict[str, Any]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._deferred: list[tuple[str, Any]] | None = None

    # -- servers --------------------------------------------------------------------------------------
    def public_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2", self._handle_public)
        return app

    def private_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2", self._handle_private)
        return app

    async def _handle_public(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, private=False)

    async def _handle_private(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, private=True)

    async def _serve(self, request: web.Request, private: bool) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20, timeout=CLOSE_TIMEOUT, compress=self.config.ws_compression)
        await ws.prepare(request)
        conn = Connection(self, ws, request, private, self.ids.connection_id())
        self.connections[conn.connection_id] = conn
        log.info("ws %s connection %s opened", "private" if private else "public", conn.connection_id)
        conn.tasks = [asyncio.create_task(conn.writer()), asyncio.create_task(conn.heartbeats())]
        conn.send(dumps(M.status(self.exchange.status, conn.connection_id)))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                text = msg.data if msg.type == WSMsgType.TEXT else msg.data.decode(errors="replace")
                try:
                    self._on_text(conn, text)
                except Exception:
                    # A simulator bug answers like Kraken's internal error instead of killing the socket.
                    log.exception("connection %s: internal error on %r", conn.connection_id, text[:200])
                    self._send_direct(
                        conn, M.error("", E.INTERNAL_ERROR, None, self.clock.now_ns(), self.clock.now_ns())
                    )
        finally:
            await self._disconnect(conn)
        return ws

    async def _disconnect(self, conn: Connection) -> None:
        conn.closed = True
        self.connections.pop(conn.connection_id, None)
        for sub in list(conn.subs.values()):
            self._remove_sub(conn, sub)
        self.tokens.forget_connection(conn.connection_id)
        conn.queue.put_nowait(None)
        for task in conn.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for task in conn.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log.info("ws connection %s closed", conn.connection_id)

    async def close_all(self) -> None:
        async def close(conn: Connection) -> None:
            conn.closed = True
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.close(code=1001, message=b"server shutdown")

        await asyncio.gather(*(close(c) for c in list(self.connections.values())))

    @staticmethod
    async def _close(conn: Connection) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.ws.close(code=1001, message=b"dropped")

    def drop(self, *, scope: str, connection_id: int | None, mode: str) -> int:
        dropped = 0
        for conn in list(self.connections.values()):
            if connection_id is not None and conn.connection_id != connection_id:
                continue
            if scope == "public" and conn.private or scope == "private" and not conn.private:
                continue
            dropped += 1
            log.info("fault: dropping connection %s (%s)", conn.connection_id, mode)
            if mode == "abort":
                conn.abort()
            else:
                conn.closed = True
                task = asyncio.get_running_loop().create_task(self._close(conn))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        return dropped

    # -- subscriptions --------------------------------------------------------------------------------
    def _add_sub(self, conn: Connection, sub: Subscription) -> None:
        conn.subs[(sub.channel, sub.symbol)] = sub
        self.index.setdefault(sub.key, set()).add(conn)
        if sub.channel == "book":
            assert sub.symbol is not None
            self.feeds[sub.symbol].activate(sub.params["depth"])

    def _remove_sub(self, conn: Connection, sub: Subscription) -> None:
        conn.subs.pop((sub.channel, sub.symbol), None)
        members = self.index.get(sub.key)
        if members is not None:
            members.discard(conn)
            if not members:
                del self.index[sub.key]
                if sub.channel == "book":
                    assert sub.symbol is not None
                    self.feeds[sub.symbol].deactivate(sub.params["depth"])

    def skip_sequence(self, channel: str, count: int) -> int:
        affected = 0
        for conn in self.index.get((channel,), set()):
            sub = conn.subs.get((channel, None))
            if sub is not None:
                sub.skip += count
                affected += 1
        return affected

    def send_raw(self, *, scope: str, frames: list[str]) -> int:
        """Fault injection: send `frames` verbatim to every connection in `scope` (not recorded)."""
        sent = 0
        for conn in list(self.connections.values()):
            if scope == "public" and conn.private or scope == "private" and not conn.private:
                continue
            for frame in frames:
                conn.send(frame)
            sent += 1
        return sent

    def clear_skips(self) -> None:
        for conn in self.connections.values():
            for sub in conn.subs.values():
                sub.skip = 0

    def burst(self, symbol: str, frames: list[str], repeat: int) -> int:
        """Send recorded book frames verbatim, `repeat` times, as fast as each socket takes them, to every
        connection subscribed to `symbol`'s book at depth 10 (the depth the recordings have): a throughput test
        of the receiving side. The frames carry their own checksums; pause the market first so that nothing
        else is interleaved. Returns how many connections it started on."""
        members = list(self.index.get(("book", symbol, 10), set()))

        async def blast(conn: Connection) -> None:
            try:
                for _ in range(repeat):
                    for frame in frames:
                        if conn.closed:
                            return
                        await conn.ws.send_str(frame)
            except (ConnectionError, RuntimeError) as exc:
                log.info("connection %s: burst stopped (%s)", conn.connection_id, exc)

        for conn in members:
            task = asyncio.get_running_loop().create_task(blast(conn))
            conn.tasks.append(task)
        return len(members)

    # -- publication ----------------------------------------------------------------------------------
    def _publish(self, key: Key, message: dict[str, Any]) -> None:
        members = self.index.get(key)
        if not members:
            return
        text = dumps(message)
        if self.config.record_messages:
            self.recorded.append({"key": list(key), "message": text})
        for conn in members:
            conn.send(text)

    def publish_trade_text(self, symbol: str, text: str) -> int:
        """Send an already-encoded `trade` message to the symbol's trade subscribers (the trade flood's path:
        no encoding per message). Returns how many connections it went to."""
        key = ("trade", symbol)
        members = self.index.get(key)
        if not members:
            return 0
        if self.config.record_messages:
            self.recorded.append({"key": list(key), "message": text})
        for conn in members:
            conn.send(text)
        return len(members)

    def _send_direct(self, conn: Connection, message: dict[str, Any], record_key: Key | None = None) -> None:
        text = dumps(message)
        if record_key is not None and self.config.record_messages:
            self.recorded.append({"key": list(record_key), "connection_id": conn.connection_id, "message": text})
        conn.send(text)

    def book_changed(self, symbol: str) -> None:
        feed = self.feeds[symbol]
        if not feed.active_depths:
            return
        updates = feed.advance()
        if not updates:
            return
        checksum = feed.checksum()
        if self.faults.take_corrupt_checksum(symbol):
            log.info("fault: corrupting the checksum of the next %s book update", symbol)
            checksum = (checksum + 1) & 0xFFFFFFFF
        inst = feed.book.instrument
        ts = self.clock.now_ns()
        for update in updates:
            self._publish(("book", symbol, update.depth), M.book_update(inst, update.bids, update.asks, checksum, ts))

    def public_trades(self, symbol: str, trades: list[PublicTrade], candles: list[Candle]) -> None:
        inst = self.exchange.books[symbol].instrument
        if ("trade", symbol) in self.index:
            if self.faults.take_withhold_market("trade", symbol):
                log.info("fault: withholding a %s trade message (%d trades)", symbol, len(trades))
            else:
                self._publish(("trade", symbol), M.trades(inst, trades, "update"))
        ts = self.clock.now_ns()
        key = ("ticker", symbol, "trades")
        if key in self.index:
            self._publish(
                key,
                M.ticker(inst, self.exchange.books[symbol], self.exchange.marketdata[symbol], "update", ts),
            )
        for candle in candles:
            if ("ohlc", symbol, candle.interval) in self.index:
                if self.faults.take_withhold_market("ohlc", symbol):
                    log.info("fault: withholding a %s ohlc message", symbol)
                    continue
                self._publish(("ohlc", symbol, candle.interval), M.ohlc(inst, [candle], "update", ts))

    def bbo_changed(self, symbol: str) -> None:
        key = ("ticker", symbol, "bbo")
        if key in self.index:
            inst = self.exchange.books[symbol].instrument
            self._publish(
                key,
                M.ticker(
                    inst,
                    self.exchange.books[symbol],
                    self.exchange.marketdata[symbol],
                    "update",
                    self.clock.now_ns(),
                ),
            )

    def status_changed(self, status: str) -> None:
        for conn in list(self.connections.values()):
            conn.send(dumps(M.status(status, conn.connection_id)))
        self._publish(("instrument",), M.instrument(self.registry, status, "update"))

    def execution(self, event: ExecEvent) -> None:
        if self._deferred is not None:
            self._deferred.append(("executions", event))
            return
        withheld, consume = self.faults.take_withhold()
        if withheld:
            log.info("fault: withholding %s for %s", event.exec_type, event.order.order_id)
            if consume:
                for conn in self.index.get(("executions",), set()):
                    sub = conn.subs.get(("executions", None))
                    if sub is not None:
                        sub.sequence += 1
            return
        data = dumps([M.execution(event)])
        self._send_private("executions", data)

    def ledger(self, entry: LedgerEntry) -> None:
        if self._deferred is not None:
            self._deferred.append(("balances", entry))
            return
        self._send_private("balances", dumps([M.ledger_entry(entry)]))

    def _send_private(self, channel: str, data_json: str) -> None:
        for conn in self.index.get((channel,), set()):
            sub = conn.subs.get((channel, None))
            if sub is None:
                continue
            sub.sequence += 1 + sub.skip
            sub.skip = 0
            conn.send(f'{{"channel":"{channel}","type":"update","data":{data_json},"sequence":{sub.sequence}}}')

    @contextlib.contextmanager
    def _defer_private(self) -> Iterator[None]:
        """Hold private events raised while a WS trading request runs, so its response goes first."""
        outer = self._deferred
        self._deferred = [] if outer is None else outer
        try:
            yield
        finally:
            pending = self._deferred
            self._deferred = outer
            if outer is None and pending:
                for channel, item in pending:
                    if channel == "executions":
                        self.execution(item)
                    else:
                        self.ledger(item)

    # -- requests -------------------------------------------------------------------------------------
    def _on_text(self, conn: Connection, text: str) -> None:
        time_in = self.clock.now_ns()
        conn.last_received = time.monotonic()
        try:
            msg = json.loads(text, parse_float=Decimal)
        except ValueError:
            self._send_direct(conn, M.error("", INVALID_REQUEST, None, time_in, self.clock.now_ns()))
            return
        if not isinstance(msg, dict):
            self._send_direct(conn, M.error("", INVALID_REQUEST, None, time_in, self.clock.now_ns()))
            return
        method = msg.get("method")
        req_id = msg.get("req_id")
        params = msg.get("params") or {}
        if not isinstance(params, dict) or not isinstance(method, str):
            self._send_direct(conn, M.error(str(method or ""), INVALID_REQUEST, req_id, time_in, self.clock.now_ns()))
            return
        if method == "ping":
            self._send_direct(conn, M.pong(req_id, time_in, self.clock.now_ns()))
        elif method in ("subscribe", "unsubscribe"):
            self._subscription(conn, method, params, req_id, time_in)
        elif method in TRADING_METHODS:
            self._trading(conn, method, params, req_id, time_in)
        else:
            self._send_direct(conn, M.error(method, E.UNKNOWN_METHOD, req_id, time_in, self.clock.now_ns()))

    def _err(self, conn: Connection, method: str, text: str, req_id: Any, time_in: int, **kw: Any) -> None:
        self._send_direct(conn, M.error(method, text, req_id, time_in, self.clock.now_ns(), **kw))

    def _subscription(self, conn: Connection, method: str, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        channel = params.get("channel")
        if channel == "heartbeat":
            self._send_direct(conn, M.ack(method, req_id, {"channel": "heartbeat"}, time_in, self.clock.now_ns()))
            return
        if channel in PRIVATE_CHANNELS:
            if not conn.private:
                self._err(conn, method, M.PRIVATE_ON_PUBLIC, req_id, time_in)
                return
            if not self.tokens.check(params.get("token"), conn.connection_id):
                self._err(conn, method, M.INVALID_SESSION, req_id, time_in, channel=channel, status_error=True)
                return
            if method == "subscribe":
                self._subscribe_private(conn, channel, params, req_id, time_in)
            else:
                self._unsubscribe(conn, channel, [None], params, req_id, time_in)
            return
        if channel not in PUBLIC_CHANNELS:
            self._err(conn, method, INVALID_REQUEST, req_id, time_in)
            return
        if conn.private:
            self._err(conn, method, M.PUBLIC_ON_PRIVATE, req_id, time_in)
            return
        if channel == "instrument":
            symbols: list[Any] = [None]
        else:
            symbols = params.get("symbol")  # type: ignore[assignment]
            if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
                self._err(conn, method, INVALID_REQUEST, req_id, time_in)
                return
        if method == "unsubscribe":
            self._unsubscribe(conn, channel, symbols, params, req_id, time_in)
            return
        try:
            options = self._public_options(channel, params)
        except ValueError as exc:
            self._err(conn, method, f"{INVALID_REQUEST}:{exc}", req_id, time_in)
            return
        for symbol in symbols:
            self._subscribe_public(conn, channel, symbol, options, req_id, time_in)

    @staticmethod
    def _public_options(channel: str, params: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {}
        snapshot_default = channel != "trade"
        snapshot = params.get("snapshot", snapshot_default)
        if not isinstance(snapshot, bool):
            raise ValueError("snapshot")
        options["snapshot"] = snapshot
        if channel == "book":
            depth = params.get("depth", 10)
            if depth not in BOOK_DEPTHS or isinstance(depth, bool):
                raise ValueError("depth")
            options["depth"] = depth
        elif channel == "ohlc":
            interval = params.get("interval", 1)
            if interval not in OHLC_INTERVALS or isinstance(interval, bool):
                raise ValueError("interval")
            options["interval"] = interval
        elif channel == "ticker":
            trigger = params.get("event_trigger", "trades")
            if trigger not in ("trades", "bbo"):
                raise ValueError("event_trigger")
            options["event_trigger"] = trigger
        return options

    def _subscribe_public(
        self,
        conn: Connection,
        channel: str,
        symbol: str | None,
        options: dict[str, Any],
        req_id: Any,
        time_in: int,
    ) -> None:
        method = "subscribe"
        inst = self.registry.by_symbol(symbol) if symbol is not None else None
        if symbol is not None and inst is None:
            self._err(conn, method, f"Currency pair not supported {symbol}", req_id, time_in, symbol=symbol)
            return
        if (channel, symbol) in conn.subs:
            self._err(conn, method, ALREADY_SUBSCRIBED, req_id, time_in, symbol=symbol)
            return
        result: dict[str, Any] = {"channel": channel}
        if channel == "book":
            key: Key = ("book", symbol, options["depth"])
            result["depth"] = options["depth"]
        elif channel == "ticker":
            key = ("ticker", symbol, options["event_trigger"])
            result["event_trigger"] = options["event_trigger"]
        elif channel == "ohlc":
            key = ("ohlc", symbol, options["interval"])
            result["interval"] = options["interval"]
        elif channel == "trade":
            key = ("trade", symbol)
        else:
            key = ("instrument",)
        result["snapshot"] = options["snapshot"]
        if symbol is not None:
            result["symbol"] = symbol
        if channel == "ohlc":
            result["warnings"] = M.OHLC_WARNINGS
        elif channel == "instrument":
            result["warnings"] = M.INSTRUMENT_WARNINGS
        sub = Subscription(channel, symbol, key, options)
        self._add_sub(conn, sub)
        self._send_direct(conn, M.ack(method, req_id, result, time_in, self.clock.now_ns()))
        if options["snapshot"]:
            self._public_snapshot(conn, sub)

    def _public_snapshot(self, conn: Connection, sub: Subscription) -> None:
        now = self.clock.now_ns()
        if sub.channel == "instrument":
            self._send_direct(conn, M.instrument(self.registry, self.exchange.status, "snapshot"), sub.key)
            return
        assert sub.symbol is not None
        book = self.exchange.books[sub.symbol]
        inst = book.instrument
        md = self.exchange.marketdata[sub.symbol]
        if sub.channel == "book":
            feed = self.feeds[sub.symbol]
            bids, asks = feed.snapshot(sub.params["depth"])
            self._send_direct(conn, M.book_snapshot(inst, bids, asks, feed.checksum()), sub.key)
        elif sub.channel == "trade":
            recent = list(md.tape)[-TRADE_SNAPSHOT_SIZE:]
            self._send_direct(conn, M.trades(inst, recent, "snapshot"), sub.key)
        elif sub.channel == "ticker":
            self._send_direct(conn, M.ticker(inst, book, md, "snapshot", now), sub.key)
        elif sub.channel == "ohlc":
            candles = list(md.candles[sub.params["interval"]])
            self._send_direct(conn, M.ohlc(inst, candles, "snapshot", now), sub.key)

    def _unsubscribe(
        self,
        conn: Connection,
        channel: str,
        symbols: list[Any],
        params: dict[str, Any],
        req_id: Any,
        time_in: int,
    ) -> None:
        for symbol in symbols:
            sub = conn.subs.get((channel, symbol))
            if sub is None:
                # Kraken answers an unknown unsubscribe with method "subscribe" (recorded, PROTOCOL.md §2.1).
                self._err(conn, "subscribe", M.NOT_FOUND, req_id, time_in, symbol=symbol)
                continue
            self._remove_sub(conn, sub)
            result: dict[str, Any] = {"channel": channel}
            if channel == "book":
                result["depth"] = sub.params["depth"]
            elif channel == "ticker":
                result["event_trigger"] = sub.params["event_trigger"]
            elif channel == "ohlc":
                result["interval"] = sub.params["interval"]
            if symbol is not None:
                result["symbol"] = symbol
            self._send_direct(conn, M.ack("unsubscribe", req_id, result, time_in, self.clock.now_ns()))

    def _subscribe_private(
        self, conn: Connection, channel: str, params: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        if (channel, None) in conn.subs:
            self._err(conn, "subscribe", ALREADY_SUBSCRIBED, req_id, time_in, channel=channel)
            return
        sub = Subscription(channel, None, (channel,))
        if channel == "executions":
            snap_orders = params.get("snap_orders", True)
            snap_trades = params.get("snap_trades", False)
            if not isinstance(snap_orders, bool) or not isinstance(snap_trades, bool):
                self._err(conn, "subscribe", INVALID_REQUEST, req_id, time_in, channel=channel)
                return
            result: dict[str, Any] = {
                "channel": channel,
                "maxratecount": int(self.config.tier.trade_threshold),
                "snap_orders": snap_orders,
                "snap_trades": snap_trades,
            }
            sub.params = {"snap_orders": snap_orders, "snap_trades": snap_trades}
        else:
            result = {"channel": channel, "snapshot": True}
        self._add_sub(conn, sub)
        self._send_direct(conn, M.ack("subscribe", req_id, result, time_in, self.clock.now_ns()))
        sub.sequence = 1
        if channel == "executions":
            data: list[dict[str, Any]] = []
            now = self.clock.now_ns()
            if sub.params["snap_orders"]:
                data += [M.open_order_snapshot(o, now) for o in self.exchange.open_orders()]
            if sub.params["snap_trades"]:
                data += [M.trade_snapshot(t) for t in self.exchange.account.trades[-TRADE_SNAPSHOT_SIZE:]]
            conn.send(dumps({"channel": "executions", "type": "snapshot", "data": data, "sequence": 1}))
        else:
            account = self.exchange.account
            data = [M.balance_snapshot_entry(a, account.balances[a.code]) for a in self.registry.assets]
            conn.send(dumps({"channel": "balances", "data": data, "type": "snapshot", "sequence": 1}))

    # -- trading --------------------------------------------------------------------------------------
    def _trading(self, conn: Connection, method: str, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        if not conn.private:
            self._err(conn, method, M.PRIVATE_ON_PUBLIC, req_id, time_in)
            return
        if not self.tokens.check(params.get("token"), conn.connection_id):
            self._err(conn, method, M.INVALID_SESSION, req_id, time_in, status_error=True)
            return
        with self._defer_private():
            if method == "add_order":
                self._add_order(conn, params, req_id, time_in)
            elif method == "cancel_order":
                self._cancel_order(conn, params, req_id, time_in)
            elif method == "cancel_all_orders_after":
                self._cancel_all_orders_after(conn, params, req_id, time_in)
            else:
                try:
                    count = self.exchange.cancel_all(source="ws")
                except KrakenError as exc:
                    self._err(conn, method, exc.code, req_id, time_in)
                    return
                self._send_direct(conn, M.ack(method, req_id, {"count": count}, time_in, self.clock.now_ns()))

    def _cancel_all_orders_after(self, conn: Connection, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        timeout = params.get("timeout")
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            self._err(conn, "cancel_all_orders_after", INVALID_REQUEST, req_id, time_in)
            return
        try:
            now, trigger = self.exchange.cancel_all_after(timeout)
        except KrakenError as exc:
            self._err(conn, "cancel_all_orders_after", exc.code, req_id, time_in)
            return
        result = {"currentTime": rfc3339_seconds(now), "triggerTime": rfc3339_seconds(trigger) if trigger else "0"}
        self._send_direct(conn, M.ack("cancel_all_orders_after", req_id, result, time_in, self.clock.now_ns()))

    def _order_request(self, params: dict[str, Any]) -> OrderRequest:
        symbol = params.get("symbol")
        inst = self.registry.by_symbol(symbol) if isinstance(symbol, str) else None
        if inst is None:
            raise KrakenError(E.UNKNOWN_PAIR)
        try:
            order_type = OrderType(str(params.get("order_type")))
            side = Side(str(params.get("side")))
            tif_text = str(params.get("time_in_force", "gtc")).upper()
            tif = TimeInForce(tif_text)
        except ValueError as exc:
            raise KrakenError(INVALID_REQUEST) from exc
        qty = _decimal(params.get("order_qty"))
        price = _decimal(params.get("limit_price")) if "limit_price" in params else None
        if qty is None or ("limit_price" in params and price is None):
            raise KrakenError(INVALID_REQUEST)
        if order_type is OrderType.MARKET and price is not None:
            raise KrakenError(INVALID_REQUEST)
        post_only = params.get("post_only", False)
        validate = params.get("validate", False)
        cl_ord_id = params.get("cl_ord_id")
        userref = params.get("order_userref", 0)
        if not isinstance(post_only, bool) or not isinstance(validate, bool):
            raise KrakenError(INVALID_REQUEST)
        if isinstance(userref, bool) or not isinstance(userref, int) or not -(2**31) <= userref < 2**31:
            raise KrakenError(INVALID_REQUEST)
        if cl_ord_id is not None:
            if not isinstance(cl_ord_id, str) or not CL_ORD_ID_RE.match(cl_ord_id):
                raise KrakenError(INVALID_REQUEST)
            if "order_userref" in params:
                raise KrakenError(INVALID_REQUEST)
        return OrderRequest(
            instrument=inst,
            side=side,
            order_type=order_type,
            qty=qty,
            limit_price=price,
            time_in_force=tif,
            post_only=post_only,
            cl_ord_id=cl_ord_id,
            userref=userref,
            validate=validate,
        )

    def _add_order(self, conn: Connection, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        try:
            req = self._order_request(params)
            order = self.exchange.place_order(req, source="ws")
        except KrakenError as exc:
            self._err(conn, "add_order", exc.code, req_id, time_in)
            return
        result: dict[str, Any] = {}
        if not req.validate:
            result["order_id"] = order.order_id
        if order.cl_ord_id is not None:
            result["cl_ord_id"] = order.cl_ord_id
        else:
            result["order_userref"] = order.userref
        self._send_direct(conn, M.ack("add_order", req_id, result, time_in, self.clock.now_ns()))

    def _cancel_order(self, conn: Connection, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        refs: list[tuple[str, Any]] = []
        for field_name in ("order_id", "cl_ord_id", "order_userref"):
            values = params.get(field_name)
            if values is None:
                continue
            if not isinstance(values, list) or not values:
                self._err(conn, "cancel_order", INVALID_REQUEST, req_id, time_in)
                return
            refs += [(field_name, v) for v in values]
        if not refs:
            self._err(conn, "cancel_order", INVALID_REQUEST, req_id, time_in)
            return
        for field_name, value in refs:
            if field_name == "order_id":
                orders = self.exchange.find_open(txid=str(value))
            elif field_name == "cl_ord_id":
                orders = self.exchange.find_open(cl_ord_id=str(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                orders = self.exchange.find_open(userref=value)
            else:
                orders = []
            if not orders:
                self._err(conn, "cancel_order", E.UNKNOWN_ORDER, req_id, time_in)
                continue
            for order in orders:
                try:
                    self.exchange.cancel_orders([order], source="ws")
                except KrakenError as exc:
                    self._err(conn, "cancel_order", exc.code, req_id, time_in)
                    continue
                result: dict[str, Any] = {"order_id": order.order_id}
                if order.cl_ord_id is not None:
                    result["cl_ord_id"] = order.cl_ord_id
                self._send_direct(conn, M.ack("cancel_order", req_id, result, time_in, self.clock.now_ns()))

    # -- state ----------------------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "connection_id": c.connection_id,
                "private": c.private,
                "subscriptions": [
                    {
                        "channel": s.channel,
                        "symbol": s.symbol,
                        **s.params,
                        **({"sequence": s.sequence} if s.channel in PRIVATE_CHANNELS else {}),
                    }
                    for s in c.subs.values()
                ],
            }
            for c in self.connections.values()
        ]


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            return None
    else:
        return None
    return result if result.is_finite() else None
