"""The two WebSocket v2 servers (PROTOCOL.md §2): the public host (market data) and the private host (account
feeds and trading), each on its own port at path ``/v2``, as Kraken separates ``ws`` and ``ws-auth``.

The hub accepts connections, reads requests and routes them: subscriptions to the public or private feeds (with
the wrong-host and session checks), trading methods to ``TradingRequests``. It is the exchange's ``EventSink``
and the ``FaultTarget`` of fault injection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from kraken_sim import errors as E
from kraken_sim import messages as M
from kraken_sim.accounts import LedgerEntry
from kraken_sim.auth import TokenStore
from kraken_sim.config import SimConfig
from kraken_sim.exchange import Exchange, ExecEvent
from kraken_sim.faults import Faults
from kraken_sim.ids import IdGenerator
from kraken_sim.marketdata import Candle, PublicTrade
from kraken_sim.wire import Clock, dumps
from kraken_sim.ws.connection import Connection, Subscription, Subscriptions
from kraken_sim.ws.private import PrivateFeeds
from kraken_sim.ws.public import PublicFeeds, channel_result, public_options
from kraken_sim.ws.trading import TRADING_METHODS, TradingRequests

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0  # seconds to wait for a client's close frame


class WsHub:
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
        self.tokens = tokens
        self.faults = faults
        self.ids = ids
        self.clock = clock
        self.connections: dict[int, Connection] = {}
        self.subscriptions = Subscriptions(config, clock)
        self.public = PublicFeeds(self.subscriptions, exchange, faults, clock)
        self.private = PrivateFeeds(self.subscriptions, exchange, faults, config)
        self.trading = TradingRequests(self.subscriptions, exchange, self.private)
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def recorded(self) -> list[dict[str, Any]]:
        """Every public message sent, when ``record_messages`` is on."""
        return self.subscriptions.recorded

    # -- servers --------------------------------------------------------------------------------------
    def public_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2", self.handle_public)
        return app

    def private_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2", self.handle_private)
        return app

    async def handle_public(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, private=False)

    async def handle_private(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, private=True)

    async def _serve(self, request: web.Request, private: bool) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20, timeout=CLOSE_TIMEOUT, compress=self.config.ws_compression)
        await ws.prepare(request)
        conn = Connection(
            ws,
            request,
            private=private,
            connection_id=self.ids.connection_id(),
            config=self.config,
            faults=self.faults,
        )
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
                    now = self.clock.now_ns()
                    self.subscriptions.send(conn, M.error("", E.INTERNAL_ERROR, None, now, now))
        finally:
            await self._disconnect(conn)
        return ws

    async def _disconnect(self, conn: Connection) -> None:
        conn.closed = True
        self.connections.pop(conn.connection_id, None)
        for sub in list(conn.subs.values()):
            self._remove(conn, sub)
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
        await asyncio.gather(*(c.close(1001, b"server shutdown") for c in list(self.connections.values())))

    def _in_scope(self, conn: Connection, scope: str) -> bool:
        return not (scope == "public" and conn.private or scope == "private" and not conn.private)

    # -- fault injection (the FaultTarget of kraken_sim.faults) ------------------------------------------
    def drop(self, *, scope: str, connection_id: int | None, mode: str) -> int:
        dropped = 0
        for conn in list(self.connections.values()):
            if connection_id is not None and conn.connection_id != connection_id:
                continue
            if not self._in_scope(conn, scope):
                continue
            dropped += 1
            log.info("fault: dropping connection %s (%s)", conn.connection_id, mode)
            if mode == "abort":
                conn.abort()
            else:
                conn.closed = True
                task = asyncio.get_running_loop().create_task(conn.close(1001, b"dropped"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        return dropped

    def skip_sequence(self, channel: str, count: int) -> int:
        return self.private.skip_sequence(channel, count)

    def clear_skips(self) -> None:
        self.private.clear_skips(list(self.connections.values()))

    def send_raw(self, *, scope: str, frames: list[str]) -> int:
        """Send ``frames`` verbatim to every connection in ``scope`` (not recorded)."""
        sent = 0
        for conn in list(self.connections.values()):
            if not self._in_scope(conn, scope):
                continue
            for frame in frames:
                conn.send(frame)
            sent += 1
        return sent

    def burst(self, symbol: str, frames: list[str], repeat: int) -> int:
        """Send recorded book frames verbatim, ``repeat`` times, as fast as each socket takes them, to every
        connection subscribed to ``symbol``'s book at depth 10 (the depth the recordings have): a throughput test
        of the receiving side. The frames carry their own checksums; pause the market first so that nothing
        else is interleaved. Returns how many connections it started on."""
        members = list(self.subscriptions.members(("book", symbol, 10)))

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

    def publish_trade_text(self, symbol: str, text: str) -> int:
        """Send an already-encoded ``trade`` message to the symbol's trade subscribers (the trade flood's path:
        no encoding per message). Returns how many connections it went to."""
        return self.subscriptions.publish_text(("trade", symbol), text)

    # -- the exchange's events (EventSink) --------------------------------------------------------------
    def book_changed(self, symbol: str) -> None:
        self.public.book_changed(symbol)

    def public_trades(self, symbol: str, trades: list[PublicTrade], candles: list[Candle]) -> None:
        self.public.public_trades(symbol, trades, candles)

    def bbo_changed(self, symbol: str) -> None:
        self.public.bbo_changed(symbol)

    def status_changed(self, status: str) -> None:
        for conn in list(self.connections.values()):
            conn.send(dumps(M.status(status, conn.connection_id)))
        self.public.status_changed(status)

    def execution(self, event: ExecEvent) -> None:
        self.private.execution(event)

    def ledger(self, entry: LedgerEntry) -> None:
        self.private.ledger(entry)

    # -- requests -------------------------------------------------------------------------------------
    def _on_text(self, conn: Connection, text: str) -> None:
        time_in = self.clock.now_ns()
        conn.last_received = time.monotonic()
        try:
            msg = json.loads(text, parse_float=Decimal)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self.subscriptions.error(conn, "", E.INVALID_ARGUMENTS, None, time_in)
            return
        method = msg.get("method")
        req_id = msg.get("req_id")
        params = msg.get("params") or {}
        if not isinstance(params, dict) or not isinstance(method, str):
            self.subscriptions.error(conn, str(method or ""), E.INVALID_ARGUMENTS, req_id, time_in)
            return
        if method == "ping":
            self.subscriptions.send(conn, M.pong(req_id, time_in, self.clock.now_ns()))
        elif method in ("subscribe", "unsubscribe"):
            self._subscription(conn, method, params, req_id, time_in)
        elif method in TRADING_METHODS:
            if not conn.private:
                self.subscriptions.error(conn, method, M.PRIVATE_ON_PUBLIC, req_id, time_in)
            elif not self.tokens.check(params.get("token"), conn.connection_id):
                self.subscriptions.error(conn, method, M.INVALID_SESSION, req_id, time_in, status_error=True)
            else:
                self.trading.handle(conn, method, params, req_id, time_in)
        else:
            self.subscriptions.error(conn, method, E.UNKNOWN_METHOD, req_id, time_in)

    def _subscription(self, conn: Connection, method: str, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        channel = params.get("channel")
        if channel == "heartbeat":
            self.subscriptions.ack(conn, method, req_id, {"channel": "heartbeat"}, time_in)
            return
        if channel in M.PRIVATE_CHANNELS:
            if not conn.private:
                self.subscriptions.error(conn, method, M.PRIVATE_ON_PUBLIC, req_id, time_in)
            elif not self.tokens.check(params.get("token"), conn.connection_id):
                self.subscriptions.error(
                    conn, method, M.INVALID_SESSION, req_id, time_in, channel=channel, status_error=True
                )
            elif method == "subscribe":
                self.private.subscribe(conn, channel, params, req_id, time_in)
            else:
                self._unsubscribe(conn, channel, [None], req_id, time_in)
            return
        if channel not in M.PUBLIC_CHANNELS:
            self.subscriptions.error(conn, method, E.INVALID_ARGUMENTS, req_id, time_in)
            return
        if conn.private:
            self.subscriptions.error(conn, method, M.PUBLIC_ON_PRIVATE, req_id, time_in)
            return
        symbols: list[Any] = [None]
        if channel != "instrument":
            symbols = params.get("symbol")  # type: ignore[assignment]
            if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols):
                self.subscriptions.error(conn, method, E.INVALID_ARGUMENTS, req_id, time_in)
                return
        if method == "unsubscribe":
            self._unsubscribe(conn, channel, symbols, req_id, time_in)
            return
        try:
            options = public_options(channel, params)
        except ValueError as exc:
            self.subscriptions.error(conn, method, f"{E.INVALID_ARGUMENTS}:{exc}", req_id, time_in)
            return
        for symbol in symbols:
            self.public.subscribe(conn, channel, symbol, options, req_id, time_in)

    def _unsubscribe(self, conn: Connection, channel: str, symbols: list[Any], req_id: Any, time_in: int) -> None:
        for symbol in symbols:
            sub = conn.subs.get((channel, symbol))
            if sub is None:
                # Kraken answers an unknown unsubscribe with method "subscribe" (recorded, PROTOCOL.md §2.1).
                self.subscriptions.error(conn, "subscribe", M.NOT_FOUND, req_id, time_in, symbol=symbol)
                continue
            self._remove(conn, sub)
            result = channel_result(sub)
            if symbol is not None:
                result["symbol"] = symbol
            self.subscriptions.ack(conn, "unsubscribe", req_id, result, time_in)

    def _remove(self, conn: Connection, sub: Subscription) -> None:
        if self.subscriptions.remove(conn, sub):
            self.public.released(sub)

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
                        **({"sequence": s.sequence} if s.channel in M.PRIVATE_CHANNELS else {}),
                    }
                    for s in c.subs.values()
                ],
            }
            for c in self.connections.values()
        ]
