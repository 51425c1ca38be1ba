"""Kraken WebSocket v2 client (PROTOCOL.md §2 and §4): the one object callers use. It owns two endpoints, public
(``wss://ws.kraken.com/v2``) and private (``wss://ws-auth.kraken.com/v2``), each with its own connection loop
(:mod:`~ingest.kraken.ws.connection`), started when first used, and routes their frames to the market data
(:mod:`~ingest.kraken.ws.market`), the user stream (:mod:`~ingest.kraken.ws.user_stream`) and the answers to
requests (:mod:`~ingest.kraken.ws.requests`); orders go through :mod:`~ingest.kraken.ws.trading`.

* Watchdog: when nothing at all has arrived for ``idle_ping_after_s`` an application ``ping`` is sent; when
  nothing has arrived for ``watchdog_timeout_s`` the socket is aborted and the endpoint reconnects (policy:
  :mod:`~ingest.kraken.ws.reconnect`). A ping is also sent when nothing was sent for ``keepalive_s``.
* ``status`` channel: :attr:`KrakenWsClient.exchange_status` (online / maintenance / cancel_only / post_only),
  with listeners; :attr:`KrakenWsClient.connection_state` (connecting / connected / reconnecting / closed), per
  endpoint and aggregated, with listeners.
* Malformed and unknown messages are counted per kind (``stats.malformed``, ``stats.unknown``) and logged (the
  first few of each kind, then every 1000th); they are never fatal. Listener exceptions are logged and counted
  (``stats.callback_errors``).

Use as ``async with KrakenWsClient(...) as client:`` or call :meth:`KrakenWsClient.close`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from websockets.exceptions import ConnectionClosed

from ingest.kraken import constants
from ingest.kraken.book import OrderBook
from ingest.kraken.errors import KrakenError, MalformedMessage
from ingest.kraken.messages import BalanceUpdate, ChannelMessage, Execution, decode
from ingest.kraken.ratelimit import TradingEngineLimiter
from ingest.kraken.ws.connection import Endpoint, EndpointHooks
from ingest.kraken.ws.context import WsContext, register, wait_or_timeout
from ingest.kraken.ws.market import BookStream, MarketData
from ingest.kraken.ws.reconnect import ConnectionAttemptLimiter
from ingest.kraken.ws.requests import Requests
from ingest.kraken.ws.subscriptions import Subscriptions
from ingest.kraken.ws.trading import TradingRequests
from ingest.kraken.ws.types import (
    PRIVATE,
    PRIVATE_CHANNELS,
    PUBLIC,
    PUBLIC_DATA_CHANNELS,
    AddOrderAck,
    BookListener,
    CancelAfterAck,
    CancelOrderAck,
    ChannelListener,
    ConnectionState,
    ExchangeStatus,
    GapListener,
    ReconcileListener,
    StateListener,
    StatusListener,
    TokenProvider,
    WsConfig,
    WsStats,
)
from ingest.kraken.ws.user_stream import UserStream

__all__ = ["KrakenWsClient"]

logger = logging.getLogger(__name__)


class KrakenWsClient:
    """Kraken WebSocket v2 client. See the module docstring."""

    def __init__(
        self,
        config: WsConfig | None = None,
        *,
        token_provider: TokenProvider | None = None,
        attempt_limiter: ConnectionAttemptLimiter | None = None,
        engine_limiter: TradingEngineLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._ctx = ctx = WsContext(config or WsConfig(), attempt_limiter=attempt_limiter, rng=rng)
        self._requests = Requests(ctx)
        self._subscriptions = Subscriptions(ctx, self._requests)
        hooks = EndpointHooks(self._on_frame, self._subscriptions.session_started, self._on_session_end)
        self._public = Endpoint(ctx, PUBLIC, ctx.config.public_url, hooks)
        self._private = Endpoint(ctx, PRIVATE, ctx.config.private_url, hooks, token_provider=token_provider)
        self._market = MarketData(ctx, self._public, self._subscriptions)
        self._user = UserStream(ctx, self._private, self._subscriptions)
        self._trading = TradingRequests(ctx, self._private, self._requests, engine_limiter)

    async def __aenter__(self) -> KrakenWsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- state ---------------------------------------------------------------------------------------------

    @property
    def config(self) -> WsConfig:
        return self._ctx.config

    @property
    def stats(self) -> WsStats:
        return self._ctx.stats

    @property
    def rng(self) -> random.Random:
        return self._ctx.rng

    @property
    def attempt_limiter(self) -> ConnectionAttemptLimiter:
        return self._ctx.attempt_limiter

    @property
    def engine_limiter(self) -> TradingEngineLimiter | None:
        return self._trading.engine_limiter

    @property
    def exchange_status(self) -> ExchangeStatus:
        return self._ctx.exchange_status

    @property
    def closing(self) -> bool:
        return self._ctx.closing

    @property
    def connection_state(self) -> ConnectionState:
        """Aggregated over the endpoints in use: CLOSED if none runs; CONNECTED when all are; RECONNECTING if
        any is; else CONNECTING."""
        states = [e.state for e in (self._public, self._private) if e.started]
        if self._ctx.closing or not states:
            return ConnectionState.CLOSED
        if all(s is ConnectionState.CONNECTED for s in states):
            return ConnectionState.CONNECTED
        if ConnectionState.RECONNECTING in states:
            return ConnectionState.RECONNECTING
        return ConnectionState.CONNECTING

    @property
    def public_state(self) -> ConnectionState:
        return self._public.state

    @property
    def private_state(self) -> ConnectionState:
        return self._private.state

    @property
    def listener_tasks(self) -> int:
        """Async listeners still running (a queue depth for health reports)."""
        return len(self._ctx.callback_tasks)

    def connection_id(self, endpoint: str = PUBLIC) -> int | None:
        """The exchange's ``connection_id`` of the current connection (from its ``status`` message)."""
        return self._endpoint(endpoint).connection_id

    def book(self, symbol: str) -> OrderBook | None:
        return self._market.book(symbol)

    @property
    def books(self) -> dict[str, OrderBook]:
        return self._market.books

    def instrument_precisions(self, symbol: str) -> tuple[int, int] | None:
        """``(price_precision, qty_precision)`` from the instrument channel, if seen."""
        return self._market.instrument_precisions(symbol)

    def stats_snapshot(self) -> dict[str, Any]:
        """``stats`` as a dict, plus the books' counters (per symbol and totals)."""
        out = self._ctx.stats.as_dict()
        out["books"], out["book_totals"] = self._market.book_stats()
        out["exchange_status"] = self._ctx.exchange_status.value
        out["connection_state"] = self.connection_state.value
        out["public_state"] = self._public.state.value
        out["private_state"] = self._private.state.value
        out["pending_requests"] = len(self._requests)
        out["attempts_in_window"] = self._ctx.attempt_limiter.attempts_in_window()
        return out

    # --- listeners -------------------------------------------------------------------------------------------

    def on_book(self, callback: BookListener) -> Callable[[], None]:
        """``callback(book, event)`` after every verified book message, on the hot path: keep it short and
        synchronous (use :meth:`book_stream` for async consumers). Returns a function that removes it."""
        return register(self._market.book_listeners, callback)

    def add_listener(self, channel: str, callback: ChannelListener) -> Callable[[], None]:
        """``callback(ChannelMessage)`` for ``trade``, ``ticker``, ``ohlc``, ``instrument``, ``executions``,
        ``balances`` or ``status``. Sync or async (an async one runs as a task)."""
        return register(self._ctx.channel_listeners.setdefault(channel, []), callback)

    def on_executions(self, callback: Callable[[ChannelMessage[Execution]], object]) -> Callable[[], None]:
        return self.add_listener("executions", callback)

    def on_balances(self, callback: Callable[[ChannelMessage[BalanceUpdate]], object]) -> Callable[[], None]:
        return self.add_listener("balances", callback)

    def on_gap(self, callback: GapListener) -> Callable[[], None]:
        """``callback(channel, expected, got)`` on a private sequence gap (the channel is resubscribed)."""
        return register(self._user.gap_listeners, callback)

    def on_reconcile(self, callback: ReconcileListener) -> Callable[[], None]:
        """``callback(ReconcileRequest)`` after a gap or a private reconnect: reconcile over REST."""
        return register(self._user.reconcile_listeners, callback)

    def on_exchange_status(self, callback: StatusListener) -> Callable[[], None]:
        """``callback(old, new)`` when the ``status`` channel reports a change."""
        return register(self._ctx.status_listeners, callback)

    def on_connection_state(self, callback: StateListener) -> Callable[[], None]:
        """``callback(endpoint, old, new)``; ``endpoint`` is ``"public"`` or ``"private"``."""
        return register(self._ctx.state_listeners, callback)

    def book_stream(self, symbols: Iterable[str] | None = None) -> BookStream:
        """An async iterator of :class:`~ingest.kraken.ws.types.BookTop` for ``symbols`` (all when None),
        conflated per symbol: a slow consumer gets the latest top of each book, never a backlog (conflations are
        counted)."""
        self._ctx.ensure_open()
        return self._market.book_stream(symbols)

    # --- lifecycle --------------------------------------------------------------------------------------------

    def _endpoint(self, name: str) -> Endpoint:
        if name == PUBLIC:
            return self._public
        if name == PRIVATE:
            return self._private
        raise ValueError(f"endpoint must be {PUBLIC!r} or {PRIVATE!r}")

    def start(self, *, public: bool = True, private: bool = False) -> None:
        """Start the endpoints' connection loops without waiting (endpoints also start on first use)."""
        self._ctx.ensure_open()
        if private:
            self._private.require_token_provider()
        if public:
            self._public.start()
        if private:
            self._private.start()

    async def connect(self, *, public: bool = True, private: bool = False, timeout: float | None = None) -> None:
        """Start endpoints and wait until they are connected."""
        self.start(public=public, private=private)
        waits = [e.connected.wait() for wanted, e in ((public, self._public), (private, self._private)) if wanted]
        await wait_or_timeout(asyncio.gather(*waits), timeout or self.config.request_timeout_s, "connect")

    async def fetch_token(self) -> str:
        """A fresh token from the token provider (what the private endpoint does before each connection)."""
        return await self._private.fetch_token()

    async def close(self) -> None:
        """Cancel every task, close the sockets, fail pending requests, end book streams."""
        ctx = self._ctx
        if ctx.closing:
            return
        ctx.closing = True
        endpoints = (self._public, self._private)
        for endpoint in endpoints:
            ws = endpoint.ws
            if ws is not None:
                try:
                    await asyncio.wait_for(ws.close(), ctx.config.close_timeout_s)
                except (TimeoutError, ConnectionClosed, OSError) as exc:  # closing anyway: the loop aborts it
                    logger.info("kraken ws %s: close handshake incomplete: %r", endpoint.name, exc)
        tasks = [e.task for e in endpoints if e.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # the loop should never fail; if it did, say so instead of raising from close()
                ctx.stats.task_errors += 1
                logger.exception("kraken ws: connection loop %s had failed", task.get_name())
        for endpoint in endpoints:
            endpoint.task = None
            endpoint.cancel_session_tasks()
            self._requests.fail_pending(endpoint, "the client was closed")
            self._subscriptions.release_waiters(endpoint)
        ctx.cancel_callbacks()
        self._market.finish_streams()
        logger.info("kraken ws client closed", extra={"stats": ctx.stats.as_dict()})

    def next_req_id(self) -> int:
        return self._ctx.next_req_id()

    def reconnect(self, endpoint: str = PRIVATE, why: str = "requested by the caller") -> None:
        """Drop the endpoint's current connection; its loop reconnects (with a fresh token on the private one)
        and subscribes everything again. E.g. after ``ESession:Invalid session`` on a trading request."""
        self._endpoint(endpoint).abort(why)

    async def ping(self, *, endpoint: str = PUBLIC, timeout: float | None = None) -> float:
        """Application-level ping; returns the round trip in seconds. Every message the endpoint received
        before the pong has been processed when this returns (a barrier)."""
        self._ctx.ensure_open()
        target = self._endpoint(endpoint)
        target.start()
        wait = timeout or self.config.request_timeout_s
        await wait_or_timeout(target.connected.wait(), wait, "connect")
        started = time.monotonic()
        ack = await self._requests.send(target, "ping", None, wait)
        if ack.method != "pong":
            raise KrakenError(f"ping answered by {ack.method!r}: {ack.error}")
        rtt = time.monotonic() - started
        self._ctx.stats.last_ping_rtt_s = rtt
        return rtt

    # --- subscriptions ------------------------------------------------------------------------------------------

    async def subscribe_book(
        self,
        symbols: Iterable[str],
        *,
        depth: int = 10,
        precisions: Mapping[str, tuple[int, int]] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Subscribe to ``book`` at ``depth`` for ``symbols``. ``precisions`` maps a symbol to
        ``(price_precision, qty_precision)``; a symbol missing there takes them from the ``instrument`` channel
        (subscribed for the purpose)."""
        await self._market.subscribe_book(symbols, depth=depth, precisions=precisions, timeout=timeout)

    async def unsubscribe_book(self, symbols: Iterable[str]) -> None:
        await self._market.unsubscribe_book(symbols)

    async def subscribe_trades(
        self, symbols: Iterable[str], *, snapshot: bool = False, timeout: float | None = None
    ) -> None:
        await self._market.subscribe_many("trade", symbols, {"snapshot": snapshot}, timeout)

    async def subscribe_ticker(
        self,
        symbols: Iterable[str],
        *,
        event_trigger: str = "trades",
        snapshot: bool = True,
        timeout: float | None = None,
    ) -> None:
        if event_trigger not in ("trades", "bbo"):
            raise ValueError("event_trigger is 'trades' or 'bbo'")
        params = {"event_trigger": event_trigger, "snapshot": snapshot}
        await self._market.subscribe_many("ticker", symbols, params, timeout)

    async def subscribe_ohlc(
        self, symbols: Iterable[str], *, interval: int = 1, snapshot: bool = True, timeout: float | None = None
    ) -> None:
        if interval not in constants.OHLC_INTERVALS:
            raise ValueError(f"interval must be one of {constants.OHLC_INTERVALS}")
        await self._market.subscribe_many("ohlc", symbols, {"interval": interval, "snapshot": snapshot}, timeout)

    async def subscribe_instrument(self, *, snapshot: bool = True, timeout: float | None = None) -> None:
        await self._market.subscribe_instrument(snapshot=snapshot, timeout=timeout)

    async def unsubscribe(self, channel: str, symbols: Iterable[str | None] = (None,)) -> None:
        """Unsubscribe (and forget) ``channel`` for ``symbols`` (``None`` for channels without symbols)."""
        if channel == "book":
            await self._market.unsubscribe_book(s for s in symbols if s is not None)
            return
        endpoint = self._private if channel in PRIVATE_CHANNELS else self._public
        for symbol in symbols:
            await self._subscriptions.unsubscribe(endpoint, channel, symbol)

    async def subscribe_executions(
        self,
        *,
        snap_orders: bool = True,
        snap_trades: bool = False,
        order_status: bool = True,
        ratecounter: bool = False,
        timeout: float | None = None,
    ) -> None:
        await self._user.subscribe_executions(
            snap_orders=snap_orders,
            snap_trades=snap_trades,
            order_status=order_status,
            ratecounter=ratecounter,
            timeout=timeout,
        )

    async def subscribe_balances(self, *, snapshot: bool = True, timeout: float | None = None) -> None:
        await self._user.subscribe_balances(snapshot=snapshot, timeout=timeout)

    # --- trading ------------------------------------------------------------------------------------------------

    async def add_order(
        self,
        *,
        symbol: str,
        side: str,
        order_type: str,
        order_qty: Decimal,
        limit_price: Decimal | None = None,
        cl_ord_id: str | None = None,
        order_userref: int | None = None,
        time_in_force: str | None = None,
        post_only: bool | None = None,
        reduce_only: bool | None = None,
        validate: bool = False,
        deadline: str | None = None,
        extra: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> AddOrderAck:
        """Place an order over the private socket and return Kraken's ack (fills come on ``executions``).

        Raises the typed exception for Kraken's error string; :class:`~ingest.kraken.errors.OrderOutcomeUnknown`
        (with ``cl_ord_id``) when the ack never came; :class:`~ingest.kraken.errors.NotConnected` when nothing
        was sent."""
        return await self._trading.add_order(
            symbol=symbol,
            side=side,
            order_type=order_type,
            order_qty=order_qty,
            limit_price=limit_price,
            cl_ord_id=cl_ord_id,
            order_userref=order_userref,
            time_in_force=time_in_force,
            post_only=post_only,
            reduce_only=reduce_only,
            validate=validate,
            deadline=deadline,
            extra=extra,
            timeout=timeout,
        )

    async def cancel_order(
        self,
        *,
        order_id: str | None = None,
        cl_ord_id: str | None = None,
        symbol: str | None = None,
        timeout: float | None = None,
    ) -> CancelOrderAck:
        """Cancel one order by ``order_id`` or ``cl_ord_id``. ``symbol`` prices the cancel on the engine
        limiter when the order was not placed through this client. Kraken's errors become typed exceptions
        (``EOrder:Unknown order`` → :class:`~ingest.kraken.errors.UnknownOrder`)."""
        return await self._trading.cancel_order(order_id=order_id, cl_ord_id=cl_ord_id, symbol=symbol, timeout=timeout)

    async def cancel_all(self, *, timeout: float | None = None) -> int:
        """Cancel every open order of the account (``cancel_all``); returns how many."""
        return await self._trading.cancel_all(timeout=timeout)

    async def cancel_all_orders_after(self, seconds: int, *, timeout: float | None = None) -> CancelAfterAck:
        """Kraken's dead man's switch over the private socket: every open order of the account is canceled
        ``seconds`` from now unless this is sent again before; ``seconds=0`` disables it. Kraken recommends a
        call every 15-30 s with 60 s. Raises :class:`~ingest.kraken.errors.NotConnected` when nothing was
        sent."""
        return await self._trading.cancel_all_orders_after(seconds, timeout=timeout)

    # --- frame handling (the hot path) ---------------------------------------------------------------------

    def _on_frame(self, endpoint: Endpoint, raw: str | bytes) -> None:
        received_ns = time.time_ns()
        ctx = self._ctx
        stats = ctx.stats
        stats.last_message_ns = received_ns
        stats.last_message_monotonic = endpoint.last_recv
        try:
            msg = decode(raw)
        except MalformedMessage as exc:
            ctx.note_malformed("frame", exc, raw)
            return
        channel = msg.get("channel")
        counts = stats.messages
        if channel == "book":
            counts["book"] = counts.get("book", 0) + 1
            self._market.book_message(msg, received_ns)
        elif "method" in msg:
            counts["ack"] = counts.get("ack", 0) + 1
            self._requests.answer_received(endpoint, msg)
        elif channel == "heartbeat":
            counts["heartbeat"] = counts.get("heartbeat", 0) + 1
        elif channel in PRIVATE_CHANNELS:
            counts[channel] = counts.get(channel, 0) + 1
            self._user.message(msg, received_ns)
        elif channel == "status":
            counts["status"] = counts.get("status", 0) + 1
            endpoint.status_message(msg)
        elif channel in PUBLIC_DATA_CHANNELS:
            counts[channel] = counts.get(channel, 0) + 1
            self._market.data_message(msg, received_ns)
        else:
            ctx.note_unknown(f"channel:{channel}", "unknown channel", raw)

    def _on_session_end(self, endpoint: Endpoint) -> None:
        self._requests.fail_pending(endpoint, "connection lost")
        self._subscriptions.session_ended(endpoint)
        if not endpoint.private:
            self._market.invalidate_books()
