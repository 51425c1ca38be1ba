"""One WebSocket endpoint (public or private): its connection loop with the reconnect policy, the watchdog and
keepalive pings, sending, and the subscriptions it holds.

The loop connects (the private endpoint asks its token provider for a FRESH token before every connection),
runs one session per connection and reconnects after the policy's delay. What a session does with frames, and
what happens when it starts and ends, belongs to the client that owns the endpoint: it passes
:class:`EndpointHooks`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from ingest.kraken.errors import KrakenError, MalformedMessage, NotConnected
from ingest.kraken.messages import ChannelMessage, Status, parse_message
from ingest.kraken.wire import encode_json
from ingest.kraken.ws.context import WsContext
from ingest.kraken.ws.types import PRIVATE, ConnectionState, ExchangeStatus, TokenProvider

__all__ = ["Endpoint", "EndpointHooks", "Subscription", "encode"]

logger = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Subscription:
    """One registered subscription of an endpoint, and where it stands on the current connection."""

    channel: str
    symbol: str | None
    params: dict[str, Any]
    state: str = "new"  # new | pending | active | failed
    session: int = -1  # the endpoint session the subscribe was sent on
    confirmed_once: bool = False
    error: KrakenError | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    resyncing: bool = False
    # private channels
    last_seq: int | None = None
    reconcile_on_snapshot: bool = False
    acked_at: datetime | None = None  # the exchange's time_in of the last subscribe ack (what a snapshot includes)

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.channel, self.symbol)


@dataclass(frozen=True, slots=True)
class EndpointHooks:
    """What the owner of an endpoint does with its sessions: each frame (on the hot path), a new session (e.g.
    subscribe everything again) and a lost one (e.g. fail pending requests)."""

    on_frame: Callable[[Endpoint, str | bytes], None]
    on_session_start: Callable[[Endpoint, bool], None]
    on_session_end: Callable[[Endpoint], None]


def encode(message: Mapping[str, Any]) -> str:
    """A request as compact JSON; Decimals become raw number tokens in plain notation (exact, never a float)."""
    return encode_json(message, decimals="number")


class Endpoint:
    """One WebSocket endpoint: its connection loop, its subscriptions and its state."""

    def __init__(
        self,
        ctx: WsContext,
        name: str,
        url: str,
        hooks: EndpointHooks,
        *,
        token_provider: TokenProvider | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.url = url
        self.private = name == PRIVATE
        self.hooks = hooks
        self.token_provider = token_provider
        self.subs: dict[tuple[str, str | None], Subscription] = {}
        self.state = ConnectionState.CLOSED
        self.ws: ClientConnection | None = None
        self.session = 0
        self.token: str | None = None
        self.connection_id: int | None = None
        self.failures = 0
        self.last_recv = 0.0
        self.last_send = 0.0
        self.last_idle_ping = 0.0
        self._idle_pings: dict[int, float] = {}
        self.connected = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.session_tasks: set[asyncio.Task[Any]] = set()

    @property
    def started(self) -> bool:
        return self.task is not None

    def start(self) -> None:
        if self.task is None:
            self._set_state(ConnectionState.CONNECTING)
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"kraken-ws-{self.name}")

    def _set_state(self, state: ConnectionState) -> None:
        old = self.state
        if old is state:
            return
        self.state = state
        logger.info("kraken ws %s: %s -> %s", self.name, old.value, state.value)
        self.ctx.emit(self.ctx.state_listeners, self.name, old, state)

    def require_token_provider(self) -> None:
        if self.token_provider is None:
            raise ValueError("the private endpoint needs a token_provider")

    async def fetch_token(self) -> str:
        if self.token_provider is None:
            raise ValueError("the private endpoint needs a token_provider")
        token = await self.token_provider()
        if not isinstance(token, str) or not token:
            raise TypeError("token_provider must return a non-empty string")
        return token

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        """A task tied to the current session (cancelled when the connection ends)."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"kraken-ws-{self.name}-{name}")
        self.session_tasks.add(task)
        task.add_done_callback(self._session_task_done)

    def _session_task_done(self, task: asyncio.Task[Any]) -> None:
        self.session_tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self.ctx.stats.task_errors += 1
        if isinstance(exc, KrakenError | ConnectionClosed):
            logger.warning("kraken ws %s: task %s failed: %r", self.name, task.get_name(), exc)
        else:
            logger.error("kraken ws %s: task %s failed", self.name, task.get_name(), exc_info=exc)

    def cancel_session_tasks(self) -> None:
        for task in list(self.session_tasks):
            task.cancel()

    def abort(self, why: str) -> None:
        """Cut the current connection (no close handshake); the loop reconnects and resubscribes everything."""
        ws = self.ws
        if ws is None:
            return
        logger.warning("kraken ws %s: dropping the connection: %s", self.name, why)
        transport = ws.transport
        if transport is not None:
            transport.abort()

    async def send(self, message: Mapping[str, Any]) -> None:
        ws = self.ws
        if ws is None or not self.connected.is_set():
            raise NotConnected(f"kraken ws {self.name}: not connected")
        await ws.send(encode(message))
        self.last_send = time.monotonic()

    def take_idle_ping(self, req_id: int) -> float | None:
        """When the watchdog's ping ``req_id`` was sent (monotonic), if it is one of them; forgets it."""
        return self._idle_pings.pop(req_id, None)

    def forget_idle_pings(self) -> None:
        self._idle_pings.clear()

    def status_message(self, msg: dict[str, Any]) -> None:
        """A ``status`` message: this connection's id, and the exchange's status (listeners told of a change)."""
        ctx = self.ctx
        try:
            parsed = parse_message(msg)
        except MalformedMessage as exc:
            ctx.note_malformed("status", exc)
            return
        assert isinstance(parsed, ChannelMessage)
        for item in parsed.items:
            if not isinstance(item, Status):
                continue
            self.connection_id = item.connection_id
            try:
                status = ExchangeStatus(item.system)
            except ValueError:
                ctx.note_unknown("status_value", f"system status {item.system!r}")
                continue
            if status is not ctx.exchange_status:
                old = ctx.exchange_status
                ctx.exchange_status = status
                log = logger.info if status is ExchangeStatus.ONLINE else logger.warning
                log("kraken exchange status: %s -> %s", old.value, status.value)
                ctx.emit(ctx.status_listeners, old, status)
        ctx.emit(ctx.channel_listeners.get("status", ()), parsed)

    # --- the connection loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        ctx = self.ctx
        policy = ctx.config.reconnect
        attempt = 0
        try:
            while not ctx.closing:
                if attempt:
                    maintenance = ctx.exchange_status is ExchangeStatus.MAINTENANCE
                    delay = policy.delay(self.failures, maintenance=maintenance, rng=ctx.rng)
                    ctx.stats.last_reconnect_delay_s = delay
                    self._set_state(ConnectionState.RECONNECTING)
                    logger.info("kraken ws %s: reconnecting in %.3f s (failures %d)", self.name, delay, self.failures)
                    await asyncio.sleep(delay)
                attempt += 1
                await ctx.attempt_limiter.acquire()
                ctx.stats.connection_attempts += 1
                ws = await self._connect()
                if ws is None:
                    self.failures += 1
                    ctx.stats.connect_failures += 1
                    continue
                started = time.monotonic()
                await self._session(ws)
                if ctx.closing:
                    break
                lasted = time.monotonic() - started
                self.failures = 0 if lasted >= policy.stable_after_s else self.failures + 1
                ctx.stats.reconnects += 1
        finally:
            self._set_state(ConnectionState.CLOSED)

    async def _connect(self) -> ClientConnection | None:
        config = self.ctx.config
        if self.private:
            try:
                self.token = await self.fetch_token()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the injected provider may fail in any way: log, count, back off
                logger.warning("kraken ws private: token provider failed: %r", exc)
                return None
        try:
            return await connect(
                self.url,
                compression=config.compression,
                open_timeout=config.open_timeout_s,
                close_timeout=config.close_timeout_s,
                max_size=config.max_frame_bytes,
                max_queue=config.max_queue,
                proxy=config.proxy,
                user_agent_header=config.user_agent,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            logger.warning("kraken ws %s: connect to %s failed: %r", self.name, self.url, exc)
            return None

    async def _session(self, ws: ClientConnection) -> None:
        ctx = self.ctx
        self.session += 1
        self.ws = ws
        self.connection_id = None
        now = time.monotonic()
        self.last_recv = self.last_send = self.last_idle_ping = now
        ctx.stats.connections += 1
        self.connected.set()
        self._set_state(ConnectionState.CONNECTED)
        self.spawn(self._watchdog(), "watchdog")
        self.hooks.on_session_start(self, self.session > 1)
        on_frame = self.hooks.on_frame
        reason = "closed"
        try:
            async for raw in ws:
                self.last_recv = time.monotonic()
                try:
                    on_frame(self, raw)
                except Exception:  # a bug in handling one frame must not stop the stream: log and count
                    ctx.stats.handler_errors += 1
                    logger.exception("kraken ws %s: failed to handle frame %r", self.name, raw[:300])
        except ConnectionClosed as exc:
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.clear()
            self.ws = None
            self.cancel_session_tasks()
            transport = ws.transport
            if transport is not None:
                transport.abort()
            self.hooks.on_session_end(self)
        if not ctx.closing:
            logger.warning("kraken ws %s: connection lost (%s)", self.name, reason)

    async def _watchdog(self) -> None:
        config = self.ctx.config
        stats = self.ctx.stats
        tick = max(0.02, min(config.watchdog_timeout_s, config.idle_ping_after_s, config.keepalive_s) / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            silent = now - self.last_recv
            if silent >= config.watchdog_timeout_s:
                stats.watchdog_reconnects += 1
                self.abort(f"nothing received for {silent:.2f} s (watchdog)")
                return
            idle = silent >= config.idle_ping_after_s and now - self.last_idle_ping >= config.idle_ping_after_s
            if idle or now - self.last_send >= config.keepalive_s:
                self.last_idle_ping = now
                stats.idle_pings += 1
                req_id = self.ctx.next_req_id()
                self._idle_pings[req_id] = now
                try:
                    await self.send({"method": "ping", "req_id": req_id})
                except (ConnectionClosed, NotConnected):
                    return
