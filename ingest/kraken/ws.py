"""Kraken WebSocket v2 client (PROTOCOL.md §2 and §4): public market data, the private ``executions`` and
``balances`` channels, and trading (``add_order`` / ``cancel_order`` / ``cancel_all``, and the dead man's switch
``cancel_all_orders_after``) over the private socket.

Plain Python, asyncio and ``websockets``; nothing of the project outside ``ingest/kraken/``.

Design
------
* Two endpoints, public (``wss://ws.kraken.com/v2``) and private (``wss://ws-auth.kraken.com/v2``), each with
  its own connection loop. An endpoint starts when it is first used (a subscription or an order). The private
  endpoint asks the injected async ``token_provider`` for a FRESH token before every connection.
* Subscriptions are state the client owns. ``subscribe_*`` registers them; every (re)connection sends every
  registered subscription again (Kraken does not restore them). ``unsubscribe`` removes them.
* Reconnect (:class:`ReconnectPolicy`): a quick retry or two after a random drop, then exponential backoff
  with jitter (1 s → 60 s by default), at least 5 s between attempts while the exchange is in maintenance,
  and never more than ``max_attempts`` connection attempts (both endpoints together, or every client sharing
  one :class:`ConnectionAttemptLimiter`) in a rolling window: Kraken's edge bans an IP for 10 minutes after
  ~150 attempts in 10 minutes, so the limiter WAITS instead.
* Watchdog: when nothing at all has arrived for ``idle_ping_after_s`` an application ``ping`` is sent; when
  nothing has arrived for ``watchdog_timeout_s`` the socket is aborted and the endpoint reconnects. A ping is
  also sent when nothing was sent for ``keepalive_s`` (Kraken closes a socket after ~60 s without client
  activity).
* ``status`` channel: :attr:`KrakenWsClient.exchange_status` (online / maintenance / cancel_only /
  post_only), with listeners; :attr:`KrakenWsClient.connection_state` (connecting / connected / reconnecting
  / closed), per endpoint and aggregated, with listeners.
* Books: one :class:`~ingest.kraken.book.OrderBook` per subscribed symbol (precisions from the caller or from
  the ``instrument`` channel). Every message's checksum is verified by the book; on
  :class:`~ingest.kraken.errors.ChecksumMismatch` or :class:`~ingest.kraken.errors.BookNotSynced` the symbol
  is unsubscribed and subscribed again for a fresh snapshot (counted in ``stats.book_resyncs``). Consumers get
  the whole book through :meth:`KrakenWsClient.on_book` (a sync callback, called on the hot path) or top of
  book through :meth:`KrakenWsClient.book_stream` (an async iterator, conflated per symbol).
* Private channels: ``sequence`` is tracked per subscription. A gap (next != last + 1) resubscribes the
  channel (a fresh snapshot) and calls the ``on_gap(channel, expected, got)`` listeners and the
  ``on_reconcile`` listeners (reason ``"gap"``): the caller should reconcile over REST. After a reconnect of
  the private endpoint the ``on_reconcile`` listeners are called again (reason ``"reconnect"``) once each
  channel's new snapshot has arrived.
* Requests carry a ``req_id``; the response resolves a future; every request has a timeout. An ``add_order``
  whose response never comes (timeout, or the connection lost after sending) raises
  :class:`~ingest.kraken.errors.OrderOutcomeUnknown` carrying the ``cl_ord_id``: query by client order id
  (REST OpenOrders/ClosedOrders, or the executions snapshot) before resubmitting. Kraken's error strings
  become the typed exceptions of :mod:`ingest.kraken.errors`.
* Malformed and unknown messages are counted per kind (``stats.malformed``, ``stats.unknown``) and logged
  (the first few of each kind, then every 1000th); they are never fatal. Listener exceptions are logged and
  counted (``stats.callback_errors``).
* Hot path (frame → :func:`~ingest.kraken.messages.decode` → ``OrderBook.apply`` → callback): one decoded dict
  per frame, no typed message objects for books, a reused :class:`BookEvent` per symbol, and no blocking call.

Use as ``async with KrakenWsClient(...) as client:`` or call :meth:`KrakenWsClient.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from ingest.kraken import constants
from ingest.kraken.book import OrderBook
from ingest.kraken.errors import (
    AuthenticationError,
    BookNotSynced,
    ChecksumMismatch,
    InternalError,
    KrakenError,
    MalformedMessage,
    OrderOutcomeUnknown,
    TradingRateLimitExceeded,
    TransportError,
    error_from_string,
)
from ingest.kraken.messages import Ack, BalanceUpdate, ChannelMessage, Execution, Status, decode, parse_message
from ingest.kraken.ratelimit import TradingEngineLimiter, add_order_cost, cancel_order_cost

__all__ = [
    "AddOrderAck",
    "BookEvent",
    "BookStream",
    "BookTop",
    "CancelAfterAck",
    "CancelOrderAck",
    "ConnectionAttemptLimiter",
    "ConnectionState",
    "ExchangeStatus",
    "KrakenWsClient",
    "LagStats",
    "NotConnected",
    "ReconcileRequest",
    "ReconnectPolicy",
    "RequestTimeout",
    "WsConfig",
    "WsStats",
    "token_provider_from",
]

logger = logging.getLogger(__name__)

PUBLIC = "public"
PRIVATE = "private"
PRIVATE_CHANNELS = frozenset({"executions", "balances"})
PUBLIC_DATA_CHANNELS = frozenset({"trade", "ticker", "ohlc", "instrument"})
_LOG_FIRST = 10  # per kind of malformed/unknown message: log the first N, then every _LOG_EVERY-th
_LOG_EVERY = 1000
_TRACKED_ORDERS = 10_000
_NS = 1_000_000_000


# --- errors ------------------------------------------------------------------------------------------------


class NotConnected(TransportError):
    """The socket is not connected (or the client is closed): the request was NOT sent; safe to retry."""


class RequestTimeout(TransportError):
    """No response to a request within its timeout. Not used for ``add_order`` (that raises
    :class:`~ingest.kraken.errors.OrderOutcomeUnknown`)."""


# --- states and configuration ------------------------------------------------------------------------------


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class ExchangeStatus(StrEnum):
    """The ``status`` channel's ``system`` value (``UNKNOWN`` until the first status message)."""

    UNKNOWN = "unknown"
    ONLINE = "online"
    MAINTENANCE = "maintenance"
    CANCEL_ONLY = "cancel_only"
    POST_ONLY = "post_only"


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """When to reconnect (PROTOCOL.md §4).

    ``failures`` counts consecutive attempts that failed or connections that lasted less than
    ``stable_after_s``. The first ``quick_retries`` retries wait a random ``[0, quick_retry_max_delay_s]`` (a
    random drop); then ``initial_delay_s * multiplier**k`` capped at ``max_delay_s``, times a random factor in
    ``[1 - jitter, 1 + jitter]``. While the exchange is in maintenance, at least ``after_maintenance_delay_s``.
    At most ``max_attempts`` connection attempts per ``attempt_window_s`` (Kraken: ~150 per 10 minutes).
    """

    initial_delay_s: float = 1.0
    max_delay_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.25
    quick_retries: int = 2
    quick_retry_max_delay_s: float = 0.25
    after_maintenance_delay_s: float = 5.0
    stable_after_s: float = 30.0
    max_attempts: int = 140
    attempt_window_s: float = 600.0

    def __post_init__(self) -> None:
        if self.initial_delay_s < 0 or self.max_delay_s < self.initial_delay_s or self.multiplier < 1:
            raise ValueError("need 0 <= initial_delay_s <= max_delay_s and multiplier >= 1")
        if not 0 <= self.jitter < 1 or self.quick_retries < 0 or self.max_attempts < 1:
            raise ValueError("need 0 <= jitter < 1, quick_retries >= 0, max_attempts >= 1")

    def delay(self, failures: int, *, maintenance: bool = False, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next attempt after ``failures`` consecutive failures."""
        draw = (rng or random).random
        if failures < self.quick_retries:
            delay = draw() * self.quick_retry_max_delay_s
        else:
            base = self.initial_delay_s * self.multiplier ** min(failures - self.quick_retries, 64)
            delay = min(self.max_delay_s, base) * (1.0 + self.jitter * (2.0 * draw() - 1.0))
            delay = min(self.max_delay_s, max(0.0, delay))
        if maintenance:
            delay = max(delay, self.after_maintenance_delay_s)
        return delay


class ConnectionAttemptLimiter:
    """At most ``max_attempts`` connection attempts per rolling ``window_s``: :meth:`acquire` waits for the
    oldest attempt to leave the window. Share one instance between every client of a process (Kraken's limit
    is per IP address)."""

    def __init__(
        self,
        max_attempts: int = 140,
        window_s: float = 600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_attempts < 1 or window_s <= 0:
            raise ValueError("max_attempts >= 1 and window_s > 0")
        self.max_attempts = max_attempts
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._log: list[float] = []
        self._lock = asyncio.Lock()
        #: Number of times an attempt had to wait, and the seconds waited in total.
        self.waits = 0
        self.waited_s = 0.0

    def attempts_in_window(self) -> int:
        self._prune(self._clock())
        return len(self._log)

    def _prune(self, now: float) -> None:
        cutoff = now - self.window_s
        drop = 0
        for at in self._log:
            if at > cutoff:
                break
            drop += 1
        if drop:
            del self._log[:drop]

    async def acquire(self) -> float:
        """Wait until an attempt is allowed, then record it. Returns the seconds waited."""
        async with self._lock:
            waited = 0.0
            while True:
                now = self._clock()
                self._prune(now)
                if len(self._log) < self.max_attempts:
                    self._log.append(now)
                    break
                delay = self._log[0] + self.window_s - now
                if waited == 0.0:
                    logger.warning(
                        "connection attempt limit reached, waiting",
                        extra={"attempts": len(self._log), "window_s": self.window_s, "wait_s": round(delay, 3)},
                    )
                await self._sleep(max(delay, 0.001))
                waited += max(delay, 0.001)
            if waited:
                self.waits += 1
                self.waited_s += waited
            return waited


@dataclass(frozen=True, slots=True)
class WsConfig:
    public_url: str = constants.WS_PUBLIC_URL
    private_url: str = constants.WS_PRIVATE_URL
    #: Timeout of subscribe/unsubscribe/ping and of waiting for a subscription to become active.
    request_timeout_s: float = 10.0
    #: Timeout of add_order / cancel_order acks (after which add_order raises OrderOutcomeUnknown).
    order_timeout_s: float = 5.0
    watchdog_timeout_s: float = 5.0
    idle_ping_after_s: float = 2.5
    keepalive_s: float = 30.0
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    max_frame_bytes: int = 16 * 1024 * 1024
    #: Frames buffered by websockets before it stops reading the socket.
    max_queue: int = 256
    #: permessage-deflate ("deflate") or None; off by default (CPU on the hot path).
    compression: str | None = None
    #: Proxy for websockets (a URL, True for the environment's proxy settings, None for a direct connection).
    proxy: str | Literal[True] | None = None
    user_agent: str = constants.USER_AGENT.replace("python-httpx", "python-websockets")
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)


# --- events and results -------------------------------------------------------------------------------------


class BookEvent:
    """What the last book message did. ONE instance per symbol, reused for every message (no allocation on the
    hot path): read it inside the callback, copy what you keep."""

    __slots__ = ("symbol", "snapshot", "checksum", "timestamp", "exchange_ts_ns", "received_ns")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.snapshot = False
        self.checksum = 0
        #: The message's RFC3339 ``timestamp`` (updates only) and the same in ns since the epoch (0 if none).
        self.timestamp: str | None = None
        self.exchange_ts_ns = 0
        #: Wall clock (``time.time_ns``) when the frame was taken from the socket.
        self.received_ns = 0


@dataclass(frozen=True, slots=True)
class BookTop:
    """Top of book after a verified message (what :class:`BookStream` yields)."""

    symbol: str
    bid: tuple[Decimal, Decimal] | None
    ask: tuple[Decimal, Decimal] | None
    checksum: int
    snapshot: bool
    exchange_ts_ns: int
    received_ns: int


@dataclass(frozen=True, slots=True)
class AddOrderAck:
    order_id: str | None  # None for validate=True
    cl_ord_id: str | None
    order_userref: int | None
    time_in: datetime | None
    time_out: datetime | None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CancelOrderAck:
    order_id: str | None
    cl_ord_id: str | None
    time_in: datetime | None
    time_out: datetime | None


@dataclass(frozen=True, slots=True)
class CancelAfterAck:
    """``cancel_all_orders_after``'s answer: the exchange's time and when it will cancel everything (None:
    the switch is off)."""

    current_time: datetime | None
    trigger_time: datetime | None
    time_in: datetime | None
    time_out: datetime | None


@dataclass(frozen=True, slots=True)
class ReconcileRequest:
    """Ask the caller to reconcile ``channel`` over REST: after a sequence gap (``reason="gap"``, with the
    expected and received sequence numbers) or after the private socket reconnected (``reason="reconnect"``)."""

    reason: str
    channel: str
    expected: int | None = None
    got: int | None = None


@dataclass(slots=True)
class LagStats:
    """Wall-clock lag between the exchange's message timestamp and reception (clock skew included)."""

    count: int = 0
    last_s: float = 0.0
    max_s: float = 0.0
    total_s: float = 0.0

    def add(self, lag_ns: int) -> None:
        lag = lag_ns / _NS
        self.count += 1
        self.last_s = lag
        self.total_s += lag
        if lag > self.max_s:
            self.max_s = lag

    @property
    def mean_s(self) -> float:
        return self.total_s / self.count if self.count else 0.0


@dataclass(slots=True)
class WsStats:
    """Counters for logs and metrics (:meth:`KrakenWsClient.stats_snapshot` adds the books' counters)."""

    messages: dict[str, int] = field(default_factory=dict)
    connection_attempts: int = 0
    connections: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    last_reconnect_delay_s: float = 0.0
    watchdog_reconnects: int = 0
    idle_pings: int = 0
    checksum_failures: int = 0
    books_not_synced: int = 0
    book_resyncs: int = 0
    gaps: int = 0
    private_resyncs: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    callback_errors: int = 0
    handler_errors: int = 0
    task_errors: int = 0
    forced_reconnects: int = 0
    late_acks: int = 0
    request_timeouts: int = 0
    outcome_unknown: int = 0
    subscribe_errors: int = 0
    conflated_book_tops: int = 0
    last_message_ns: int = 0  # wall clock (time.time_ns) of the last frame; as_dict() adds seconds
    last_message_monotonic: float = 0.0
    last_ping_rtt_s: float | None = None
    lag: dict[str, LagStats] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in fields(self):
            name = item.name
            value = getattr(self, name)
            if name == "lag":
                value = {
                    k: {"count": v.count, "last_s": v.last_s, "max_s": v.max_s, "mean_s": v.mean_s}
                    for k, v in value.items()
                }
            elif isinstance(value, dict):
                value = dict(value)
            out[name] = value
        out["last_message_at"] = self.last_message_ns / _NS if self.last_message_ns else None
        return out


# --- listener types ------------------------------------------------------------------------------------------

BookListener = Callable[[OrderBook, BookEvent], None]
ChannelListener = Callable[[ChannelMessage[Any]], object]
GapListener = Callable[[str, int, int], object]
ReconcileListener = Callable[[ReconcileRequest], object]
StatusListener = Callable[[ExchangeStatus, ExchangeStatus], object]
StateListener = Callable[[str, ConnectionState, ConnectionState], object]
TokenProvider = Callable[[], Awaitable[str]]


class _TokenResult(Protocol):
    @property
    def token(self) -> str: ...


class _TokenSource(Protocol):
    def websockets_token(self) -> Awaitable[_TokenResult]: ...


def token_provider_from(rest: _TokenSource) -> TokenProvider:
    """A token provider calling ``GetWebSocketsToken`` through a REST client (``KrakenRestClient``)."""

    async def provide() -> str:
        return (await rest.websockets_token()).token

    return provide


# --- internals ------------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Sub:
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

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.channel, self.symbol)


@dataclass(slots=True, eq=False)
class _BookSlot:
    book: OrderBook
    sub: _Sub
    event: BookEvent


@dataclass(slots=True, eq=False)
class _Pending:
    method: str
    future: asyncio.Future[Ack]
    endpoint: _Endpoint
    sub: _Sub | None = None
    order_context: dict[str, Any] | None = None
    sent_at: float = 0.0


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError("non-finite Decimal in a request")
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} in a request")


def _encode(message: Mapping[str, Any]) -> str:
    """Compact JSON; Decimals become raw number tokens in plain notation (exact, never a float)."""
    return orjson.dumps(message, default=_json_default).decode()


class _Endpoint:
    """One WebSocket endpoint: its connection loop, its subscriptions and its state."""

    def __init__(self, client: KrakenWsClient, name: str, url: str) -> None:
        self.client = client
        self.name = name
        self.url = url
        self.private = name == PRIVATE
        self.subs: dict[tuple[str, str | None], _Sub] = {}
        self.state = ConnectionState.CLOSED
        self.ws: ClientConnection | None = None
        self.session = 0
        self.token: str | None = None
        self.connection_id: int | None = None
        self.failures = 0
        self.last_recv = 0.0
        self.last_send = 0.0
        self.last_idle_ping = 0.0
        self.idle_pings: dict[int, float] = {}
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
        self.client._state_changed(self.name, old, state)

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
        self.client.stats.task_errors += 1
        if isinstance(exc, KrakenError | ConnectionClosed):
            logger.warning("kraken ws %s: task %s failed: %r", self.name, task.get_name(), exc)
        else:
            logger.error("kraken ws %s: task %s failed", self.name, task.get_name(), exc_info=exc)

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
        await ws.send(_encode(message))
        self.last_send = time.monotonic()

    # --- the connection loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        client = self.client
        policy = client.config.reconnect
        attempt = 0
        try:
            while not client.closing:
                if attempt:
                    maintenance = client.exchange_status is ExchangeStatus.MAINTENANCE
                    delay = policy.delay(self.failures, maintenance=maintenance, rng=client.rng)
                    client.stats.last_reconnect_delay_s = delay
                    self._set_state(ConnectionState.RECONNECTING)
                    logger.info("kraken ws %s: reconnecting in %.3f s (failures %d)", self.name, delay, self.failures)
                    await asyncio.sleep(delay)
                attempt += 1
                await client.attempt_limiter.acquire()
                client.stats.connection_attempts += 1
                ws = await self._connect()
                if ws is None:
                    self.failures += 1
                    client.stats.connect_failures += 1
                    continue
                started = time.monotonic()
                await self._session(ws)
                if client.closing:
                    break
                lasted = time.monotonic() - started
                self.failures = 0 if lasted >= policy.stable_after_s else self.failures + 1
                client.stats.reconnects += 1
        finally:
            self._set_state(ConnectionState.CLOSED)

    async def _connect(self) -> ClientConnection | None:
        client = self.client
        config = client.config
        if self.private:
            try:
                self.token = await client.fetch_token()
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
        client = self.client
        self.session += 1
        self.ws = ws
        self.connection_id = None
        now = time.monotonic()
        self.last_recv = self.last_send = self.last_idle_ping = now
        client.stats.connections += 1
        self.connected.set()
        self._set_state(ConnectionState.CONNECTED)
        reconnected = self.session > 1
        self.spawn(self._watchdog(ws), "watchdog")
        self.spawn(self._subscribe_all(reconnected), "resubscribe")
        on_frame = client._on_frame
        reason = "closed"
        try:
            async for raw in ws:
                self.last_recv = time.monotonic()
                try:
                    on_frame(self, raw)
                except Exception:  # a bug in handling one frame must not stop the stream: log and count
                    client.stats.handler_errors += 1
                    logger.exception("kraken ws %s: failed to handle frame %r", self.name, raw[:300])
        except ConnectionClosed as exc:
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.clear()
            self.ws = None
            for task in list(self.session_tasks):
                task.cancel()
            transport = ws.transport
            if transport is not None:
                transport.abort()
            client._on_disconnect(self)
        if not client.closing:
            logger.warning("kraken ws %s: connection lost (%s)", self.name, reason)

    async def _watchdog(self, ws: ClientConnection) -> None:
        config = self.client.config
        stats = self.client.stats
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
                req_id = self.client.next_req_id()
                self.idle_pings[req_id] = now
                try:
                    await self.send({"method": "ping", "req_id": req_id})
                except (ConnectionClosed, NotConnected):
                    return

    async def _subscribe_all(self, reconnected: bool) -> None:
        for sub in list(self.subs.values()):
            if sub.session == self.session:
                continue
            sub.resyncing = False
            if self.private and reconnected and sub.confirmed_once:
                sub.reconcile_on_snapshot = True
            self.spawn(self.client._subscribe_request(self, sub), f"subscribe-{sub.channel}")


# --- the client -------------------------------------------------------------------------------------------------


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
        self.config = config or WsConfig()
        policy = self.config.reconnect
        self.attempt_limiter = attempt_limiter or ConnectionAttemptLimiter(policy.max_attempts, policy.attempt_window_s)
        self.engine_limiter = engine_limiter
        self.rng = rng or random.Random()
        self._token_provider = token_provider
        self.stats = WsStats()
        self.exchange_status = ExchangeStatus.UNKNOWN
        self.closing = False
        self._req_ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._public = _Endpoint(self, PUBLIC, self.config.public_url)
        self._private = _Endpoint(self, PRIVATE, self.config.private_url)
        self._books: dict[str, _BookSlot] = {}
        self._instruments: dict[str, tuple[int, int]] = {}
        self._instrument_event = asyncio.Event()
        self._book_listeners: list[BookListener] = []
        self._book_streams: list[BookStream] = []
        self._channel_listeners: dict[str, list[ChannelListener]] = {}
        self._gap_listeners: list[GapListener] = []
        self._reconcile_listeners: list[ReconcileListener] = []
        self._status_listeners: list[StatusListener] = []
        self._state_listeners: list[StateListener] = []
        self._callback_tasks: set[asyncio.Task[Any]] = set()
        self._placed: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._log_counts: dict[str, int] = {}
        self._ts_head = ""
        self._ts_head_ns = 0

    async def __aenter__(self) -> KrakenWsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- state ---------------------------------------------------------------------------------------------

    @property
    def connection_state(self) -> ConnectionState:
        """Aggregated over the endpoints in use: CLOSED if none runs; CONNECTED when all are; RECONNECTING if
        any is; else CONNECTING."""
        states = [e.state for e in (self._public, self._private) if e.started]
        if self.closing or not states:
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

    def connection_id(self, endpoint: str = PUBLIC) -> int | None:
        """The exchange's ``connection_id`` of the current connection (from its ``status`` message)."""
        return self._endpoint(endpoint).connection_id

    def book(self, symbol: str) -> OrderBook | None:
        slot = self._books.get(symbol)
        return slot.book if slot is not None else None

    @property
    def books(self) -> dict[str, OrderBook]:
        return {symbol: slot.book for symbol, slot in self._books.items()}

    def instrument_precisions(self, symbol: str) -> tuple[int, int] | None:
        """``(price_precision, qty_precision)`` from the instrument channel, if seen."""
        return self._instruments.get(symbol)

    def stats_snapshot(self) -> dict[str, Any]:
        """``stats`` as a dict, plus the books' counters (per symbol and totals)."""
        out = self.stats.as_dict()
        books: dict[str, Any] = {}
        totals = {"checksums_verified": 0, "checksum_mismatches": 0, "snapshots": 0, "messages": 0}
        for symbol, slot in self._books.items():
            s = slot.book.stats
            books[symbol] = {
                "messages": s.messages,
                "snapshots": s.snapshots,
                "checksums_verified": s.checksums_verified,
                "checksum_mismatches": s.checksum_mismatches,
                "malformed": s.malformed,
                "rejected_unsynced": s.rejected_unsynced,
                "synced": slot.book.synced,
            }
            for key in totals:
                totals[key] += getattr(s, key)
        out["books"] = books
        out["book_totals"] = totals
        out["exchange_status"] = self.exchange_status.value
        out["connection_state"] = self.connection_state.value
        out["public_state"] = self._public.state.value
        out["private_state"] = self._private.state.value
        out["pending_requests"] = len(self._pending)
        out["attempts_in_window"] = self.attempt_limiter.attempts_in_window()
        return out

    # --- listeners -------------------------------------------------------------------------------------------

    def on_book(self, callback: BookListener) -> Callable[[], None]:
        """``callback(book, event)`` after every verified book message, on the hot path: keep it short and
        synchronous (use :meth:`book_stream` for async consumers). Returns a function that removes it."""
        return _register(self._book_listeners, callback)

    def add_listener(self, channel: str, callback: ChannelListener) -> Callable[[], None]:
        """``callback(ChannelMessage)`` for ``trade``, ``ticker``, ``ohlc``, ``instrument``, ``executions``,
        ``balances`` or ``status``. Sync or async (an async one runs as a task)."""
        return _register(self._channel_listeners.setdefault(channel, []), callback)

    def on_executions(self, callback: Callable[[ChannelMessage[Execution]], object]) -> Callable[[], None]:
        return self.add_listener("executions", callback)

    def on_balances(self, callback: Callable[[ChannelMessage[BalanceUpdate]], object]) -> Callable[[], None]:
        return self.add_listener("balances", callback)

    def on_gap(self, callback: GapListener) -> Callable[[], None]:
        """``callback(channel, expected, got)`` on a private sequence gap (the channel is resubscribed)."""
        return _register(self._gap_listeners, callback)

    def on_reconcile(self, callback: ReconcileListener) -> Callable[[], None]:
        """``callback(ReconcileRequest)`` after a gap or a private reconnect: reconcile over REST."""
        return _register(self._reconcile_listeners, callback)

    def on_exchange_status(self, callback: StatusListener) -> Callable[[], None]:
        """``callback(old, new)`` when the ``status`` channel reports a change."""
        return _register(self._status_listeners, callback)

    def on_connection_state(self, callback: StateListener) -> Callable[[], None]:
        """``callback(endpoint, old, new)``; ``endpoint`` is ``"public"`` or ``"private"``."""
        return _register(self._state_listeners, callback)

    def book_stream(self, symbols: Iterable[str] | None = None) -> BookStream:
        """An async iterator of :class:`BookTop` for ``symbols`` (all when None), conflated per symbol: a slow
        consumer gets the latest top of each book, never a backlog (conflations are counted)."""
        self._ensure_open()
        stream = BookStream(self, frozenset(symbols) if symbols is not None else None)
        self._book_streams.append(stream)
        return stream

    def _emit(self, callbacks: Iterable[Callable[..., object]], *args: Any) -> None:
        for callback in callbacks:
            try:
                result = callback(*args)
            except Exception:  # a consumer's bug must not kill the connection: log and count
                self.stats.callback_errors += 1
                logger.exception("kraken ws: listener %r failed", callback)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._callback_tasks.add(task)
                task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._callback_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.stats.callback_errors += 1
            logger.error("kraken ws: async listener failed", exc_info=task.exception())

    def _state_changed(self, endpoint: str, old: ConnectionState, new: ConnectionState) -> None:
        self._emit(self._state_listeners, endpoint, old, new)

    # --- lifecycle --------------------------------------------------------------------------------------------

    def _endpoint(self, name: str) -> _Endpoint:
        if name == PUBLIC:
            return self._public
        if name == PRIVATE:
            return self._private
        raise ValueError(f"endpoint must be {PUBLIC!r} or {PRIVATE!r}")

    def _ensure_open(self) -> None:
        if self.closing:
            raise NotConnected("the client is closed")

    def start(self, *, public: bool = True, private: bool = False) -> None:
        """Start the endpoints' connection loops without waiting (endpoints also start on first use)."""
        self._ensure_open()
        if private and self._token_provider is None:
            raise ValueError("the private endpoint needs a token_provider")
        if public:
            self._public.start()
        if private:
            self._private.start()

    async def connect(self, *, public: bool = True, private: bool = False, timeout: float | None = None) -> None:
        """Start endpoints and wait until they are connected."""
        self.start(public=public, private=private)
        waits = [e.connected.wait() for wanted, e in ((public, self._public), (private, self._private)) if wanted]
        await _wait(asyncio.gather(*waits), timeout or self.config.request_timeout_s, "connect")

    async def fetch_token(self) -> str:
        if self._token_provider is None:
            raise ValueError("the private endpoint needs a token_provider")
        token = await self._token_provider()
        if not isinstance(token, str) or not token:
            raise TypeError("token_provider must return a non-empty string")
        return token

    async def close(self) -> None:
        """Cancel every task, close the sockets, fail pending requests, end book streams."""
        if self.closing:
            return
        self.closing = True
        endpoints = (self._public, self._private)
        for endpoint in endpoints:
            ws = endpoint.ws
            if ws is not None:
                try:
                    await asyncio.wait_for(ws.close(), self.config.close_timeout_s)
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
                self.stats.task_errors += 1
                logger.exception("kraken ws: connection loop %s had failed", task.get_name())
        for endpoint in endpoints:
            endpoint.task = None
            for task in list(endpoint.session_tasks):
                task.cancel()
            self._fail_pending(endpoint, "the client was closed")
            for sub in endpoint.subs.values():
                sub.ready.set()
        for task in list(self._callback_tasks):
            task.cancel()
        for stream in list(self._book_streams):
            stream._finish()
        logger.info("kraken ws client closed", extra={"stats": self.stats.as_dict()})

    def next_req_id(self) -> int:
        return next(self._req_ids)

    def reconnect(self, endpoint: str = PRIVATE, why: str = "requested by the caller") -> None:
        """Drop the endpoint's current connection; its loop reconnects (with a fresh token on the private one)
        and subscribes everything again. E.g. after ``ESession:Invalid session`` on a trading request."""
        self._endpoint(endpoint).abort(why)

    # --- requests ---------------------------------------------------------------------------------------------

    async def _request(
        self,
        endpoint: _Endpoint,
        method: str,
        params: Mapping[str, Any] | None,
        timeout: float,
        *,
        sub: _Sub | None = None,
        order_context: dict[str, Any] | None = None,
    ) -> Ack:
        req_id = self.next_req_id()
        message: dict[str, Any] = {"method": method, "req_id": req_id}
        if params is not None:
            message["params"] = params
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = _Pending(method, future, endpoint, sub, order_context, time.monotonic())
        try:
            await endpoint.send(message)
        except NotConnected:
            self._pending.pop(req_id, None)
            raise
        except ConnectionClosed as exc:
            self._pending.pop(req_id, None)
            if order_context is not None:
                raise self._outcome_unknown(method, order_context, f"connection closed while sending: {exc}") from exc
            raise NotConnected(f"{method}: connection closed while sending: {exc}") from exc
        except BaseException:
            self._pending.pop(req_id, None)
            raise
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.CancelledError:
            if order_context is not None and req_id in self._pending:
                self.stats.outcome_unknown += 1
                logger.error(
                    "order request cancelled in flight: outcome unknown",
                    extra={"method": method, **{k: v for k, v in order_context.items() if v}},
                )
            raise
        except TimeoutError as exc:
            self._pending.pop(req_id, None)
            self.stats.request_timeouts += 1
            if order_context is not None:
                raise self._outcome_unknown(method, order_context, f"no response within {timeout} s") from exc
            raise RequestTimeout(f"{method}: no response within {timeout} s (req_id {req_id})") from exc
        finally:
            self._pending.pop(req_id, None)

    def _outcome_unknown(self, method: str, context: Mapping[str, Any], why: str) -> OrderOutcomeUnknown:
        self.stats.outcome_unknown += 1
        logger.error(
            "order outcome unknown: %s", why, extra={"method": method, **{k: v for k, v in context.items() if v}}
        )
        return OrderOutcomeUnknown(
            f"{method}: outcome unknown ({why}); query by client order id before resubmitting",
            cl_ord_id=context.get("cl_ord_id"),
            userref=context.get("order_userref"),
            pair=context.get("symbol"),
        )

    def _fail_pending(self, endpoint: _Endpoint, why: str) -> None:
        for req_id, pending in list(self._pending.items()):
            if pending.endpoint is not endpoint:
                continue
            del self._pending[req_id]
            if pending.future.done():
                continue
            if pending.order_context is not None:
                pending.future.set_exception(self._outcome_unknown(pending.method, pending.order_context, why))
            else:
                pending.future.set_exception(NotConnected(f"{pending.method}: {why} before the response"))
        endpoint.idle_pings.clear()

    async def ping(self, *, endpoint: str = PUBLIC, timeout: float | None = None) -> float:
        """Application-level ping; returns the round trip in seconds. Every message the endpoint received
        before the pong has been processed when this returns (a barrier)."""
        self._ensure_open()
        target = self._endpoint(endpoint)
        target.start()
        await _wait(target.connected.wait(), timeout or self.config.request_timeout_s, "connect")
        started = time.monotonic()
        ack = await self._request(target, "ping", None, timeout or self.config.request_timeout_s)
        if ack.method != "pong":
            raise KrakenError(f"ping answered by {ack.method!r}: {ack.error}")
        rtt = time.monotonic() - started
        self.stats.last_ping_rtt_s = rtt
        return rtt

    # --- subscriptions ------------------------------------------------------------------------------------------

    async def _subscribe_request(self, endpoint: _Endpoint, sub: _Sub) -> None:
        """Send one subscribe on the current session; the ack handler updates ``sub``."""
        if sub.session == endpoint.session or not endpoint.connected.is_set():
            return
        sub.session = endpoint.session
        sub.state = "pending"
        params: dict[str, Any] = {"channel": sub.channel, **sub.params}
        if sub.symbol is not None:
            params["symbol"] = [sub.symbol]
        if endpoint.private:
            params["token"] = endpoint.token
        try:
            await self._request(endpoint, "subscribe", params, self.config.request_timeout_s, sub=sub)
        except (NotConnected, RequestTimeout, MalformedMessage) as exc:
            # The reconnect path subscribes again; a caller waiting in subscribe() times out on its own.
            logger.warning("kraken ws %s: subscribe %s %s not confirmed: %s", endpoint.name, *sub.key, exc)
            if sub.session == endpoint.session and endpoint.connected.is_set() and sub.state == "pending":
                # No usable answer on a live connection: a subscription must not stay silently dead, so
                # start over on a new connection (which subscribes everything again).
                self.stats.forced_reconnects += 1
                endpoint.abort(f"subscribe {sub.channel} {sub.symbol or ''} not confirmed")

    async def _subscribe(
        self, endpoint: _Endpoint, channel: str, symbol: str | None, params: dict[str, Any], timeout: float | None
    ) -> _Sub:
        self._ensure_open()
        key = (channel, symbol)
        sub = endpoint.subs.get(key)
        if sub is None:
            sub = _Sub(channel, symbol, params)
            endpoint.subs[key] = sub
        elif sub.params != params:
            raise ValueError(f"{channel} {symbol or ''} is already subscribed with {sub.params}")
        endpoint.start()
        if endpoint.connected.is_set() and sub.session != endpoint.session:
            endpoint.spawn(self._subscribe_request(endpoint, sub), f"subscribe-{channel}")
        try:
            await _wait(sub.ready.wait(), timeout or self.config.request_timeout_s, f"subscribe {channel}")
        except RequestTimeout:
            logger.warning("kraken ws: subscribe %s %s not yet confirmed; it stays registered", channel, symbol)
            raise
        if self.closing:
            raise NotConnected("the client is closed")
        if sub.state == "failed":
            endpoint.subs.pop(key, None)
            assert sub.error is not None
            raise sub.error
        return sub

    async def _unsubscribe(self, endpoint: _Endpoint, channel: str, symbol: str | None) -> None:
        sub = endpoint.subs.pop((channel, symbol), None)
        if sub is None or not endpoint.connected.is_set() or sub.session != endpoint.session:
            return
        params: dict[str, Any] = {"channel": channel, **_unsubscribe_params(sub)}
        if symbol is not None:
            params["symbol"] = [symbol]
        if endpoint.private:
            params["token"] = endpoint.token
        ack = await self._request(endpoint, "unsubscribe", params, self.config.request_timeout_s)
        if ack.success is False:
            logger.warning("kraken ws: unsubscribe %s %s refused: %s", channel, symbol, ack.error)

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
        if depth not in constants.BOOK_DEPTHS:
            raise ValueError(f"depth must be one of {constants.BOOK_DEPTHS}")
        wanted = list(dict.fromkeys(symbols))
        for symbol in wanted:
            existing = self._books.get(symbol)
            if existing is not None and existing.book.depth != depth:
                raise ValueError(f"{symbol} book already subscribed at depth {existing.book.depth}")
        missing = [s for s in wanted if (precisions or {}).get(s) is None and s not in self._books]
        if missing:
            await self._await_instruments(missing, timeout)
        for symbol in wanted:
            if symbol not in self._books:
                given = (precisions or {}).get(symbol)
                price_precision, qty_precision = given if given is not None else self._instruments[symbol]
                book = OrderBook(symbol, depth, price_precision, qty_precision)
                sub = self._public.subs.get(("book", symbol))
                if sub is None:
                    sub = self._public.subs[("book", symbol)] = _Sub("book", symbol, {"depth": depth})
                self._books[symbol] = _BookSlot(book, sub, BookEvent(symbol))
        results = await asyncio.gather(
            *(self._subscribe(self._public, "book", s, {"depth": depth}, timeout) for s in wanted),
            return_exceptions=True,
        )
        failure: BaseException | None = None
        for symbol, result in zip(wanted, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, RequestTimeout):
                    self._books.pop(symbol, None)
                failure = failure or result
        if failure is not None:
            raise failure

    async def _await_instruments(self, symbols: list[str], timeout: float | None) -> None:
        if ("instrument", None) not in self._public.subs:
            await self.subscribe_instrument(timeout=timeout)
        deadline = time.monotonic() + (timeout or self.config.request_timeout_s)
        while any(s not in self._instruments for s in symbols):
            left = deadline - time.monotonic()
            if left <= 0:
                unknown = [s for s in symbols if s not in self._instruments]
                raise KrakenError(f"no instrument data for {', '.join(unknown)}: give precisions or check symbols")
            self._instrument_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._instrument_event.wait(), left)

    async def unsubscribe_book(self, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            slot = self._books.pop(symbol, None)
            if slot is not None:
                await self._unsubscribe(self._public, "book", symbol)

    async def subscribe_trades(
        self, symbols: Iterable[str], *, snapshot: bool = False, timeout: float | None = None
    ) -> None:
        await self._subscribe_many("trade", symbols, {"snapshot": snapshot}, timeout)

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
        await self._subscribe_many("ticker", symbols, {"event_trigger": event_trigger, "snapshot": snapshot}, timeout)

    async def subscribe_ohlc(
        self, symbols: Iterable[str], *, interval: int = 1, snapshot: bool = True, timeout: float | None = None
    ) -> None:
        if interval not in constants.OHLC_INTERVALS:
            raise ValueError(f"interval must be one of {constants.OHLC_INTERVALS}")
        await self._subscribe_many("ohlc", symbols, {"interval": interval, "snapshot": snapshot}, timeout)

    async def subscribe_instrument(self, *, snapshot: bool = True, timeout: float | None = None) -> None:
        await self._subscribe(self._public, "instrument", None, {"snapshot": snapshot}, timeout)

    async def _subscribe_many(
        self, channel: str, symbols: Iterable[str], params: dict[str, Any], timeout: float | None
    ) -> None:
        results = await asyncio.gather(
            *(self._subscribe(self._public, channel, s, dict(params), timeout) for s in dict.fromkeys(symbols)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def unsubscribe(self, channel: str, symbols: Iterable[str | None] = (None,)) -> None:
        """Unsubscribe (and forget) ``channel`` for ``symbols`` (``None`` for channels without symbols)."""
        if channel == "book":
            await self.unsubscribe_book(s for s in symbols if s is not None)
            return
        endpoint = self._private if channel in PRIVATE_CHANNELS else self._public
        for symbol in symbols:
            await self._unsubscribe(endpoint, channel, symbol)

    async def subscribe_executions(
        self,
        *,
        snap_orders: bool = True,
        snap_trades: bool = False,
        order_status: bool = True,
        ratecounter: bool = False,
        timeout: float | None = None,
    ) -> None:
        params = {
            "snap_orders": snap_orders,
            "snap_trades": snap_trades,
            "order_status": order_status,
            "ratecounter": ratecounter,
        }
        await self._subscribe(self._private_endpoint(), "executions", None, params, timeout)

    async def subscribe_balances(self, *, snapshot: bool = True, timeout: float | None = None) -> None:
        await self._subscribe(self._private_endpoint(), "balances", None, {"snapshot": snapshot}, timeout)

    def _private_endpoint(self) -> _Endpoint:
        if self._token_provider is None:
            raise ValueError("the private endpoint needs a token_provider")
        return self._private

    # --- trading ------------------------------------------------------------------------------------------------

    async def _ready_private(self, timeout: float) -> _Endpoint:
        self._ensure_open()
        endpoint = self._private_endpoint()
        endpoint.start()
        if not endpoint.connected.is_set():
            try:
                await asyncio.wait_for(endpoint.connected.wait(), timeout)
            except TimeoutError as exc:
                raise NotConnected(f"private socket not connected within {timeout} s; nothing was sent") from exc
        return endpoint

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

        Raises the typed exception for Kraken's error string; :class:`OrderOutcomeUnknown` (with
        ``cl_ord_id``) when the ack never came; :class:`NotConnected` when nothing was sent."""
        if side not in ("buy", "sell"):
            raise ValueError("side must be 'buy' or 'sell'")
        if not isinstance(order_qty, Decimal) or (limit_price is not None and not isinstance(limit_price, Decimal)):
            raise TypeError("order_qty and limit_price must be Decimal")
        if cl_ord_id is not None and order_userref is not None:
            raise ValueError("cl_ord_id and order_userref are mutually exclusive")
        wait = timeout if timeout is not None else self.config.order_timeout_s
        endpoint = await self._ready_private(wait)
        if self.engine_limiter is not None and not validate:
            await self.engine_limiter.acquire(symbol, add_order_cost())
        params: dict[str, Any] = {
            "order_type": order_type,
            "side": side,
            "order_qty": order_qty,
            "symbol": symbol,
        }
        optional = {
            "limit_price": limit_price,
            "cl_ord_id": cl_ord_id,
            "order_userref": order_userref,
            "time_in_force": time_in_force,
            "post_only": post_only,
            "reduce_only": reduce_only,
            "deadline": deadline,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        if validate:
            params["validate"] = True
        params.update(extra or {})
        params["token"] = endpoint.token
        context = {"cl_ord_id": cl_ord_id, "order_userref": order_userref, "symbol": symbol}
        ack = await self._request(endpoint, "add_order", params, wait, order_context=context)
        if not ack.success:
            exc = error_from_string(ack.error or "EGeneral:Internal error (no error text)")
            if isinstance(exc, InternalError):
                raise self._outcome_unknown("add_order", context, ack.error or "internal error") from exc
            if isinstance(exc, TradingRateLimitExceeded) and self.engine_limiter is not None:
                self.engine_limiter.counter(symbol).saturate()
            raise exc
        result = ack.result or {}
        order_id = result.get("order_id")
        if not validate and not isinstance(order_id, str):
            raise self._outcome_unknown("add_order", context, "success without an order_id")
        userref = result.get("order_userref")
        placed_at = time.monotonic()
        for ref in (order_id, cl_ord_id):
            if isinstance(ref, str) and not validate:
                self._placed[ref] = (symbol, placed_at)
                self._placed.move_to_end(ref)
        while len(self._placed) > _TRACKED_ORDERS:
            self._placed.popitem(last=False)
        return AddOrderAck(
            order_id=order_id if isinstance(order_id, str) else None,
            cl_ord_id=result.get("cl_ord_id", cl_ord_id),
            order_userref=userref if type(userref) is int else order_userref,
            time_in=ack.time_in,
            time_out=ack.time_out,
            warnings=ack.warnings,
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
        if (order_id is None) == (cl_ord_id is None):
            raise ValueError("give exactly one of order_id or cl_ord_id")
        ref = order_id if order_id is not None else cl_ord_id
        assert ref is not None
        wait = timeout if timeout is not None else self.config.order_timeout_s
        endpoint = await self._ready_private(wait)
        tracked = self._placed.get(ref)
        pair = symbol or (tracked[0] if tracked else None)
        if self.engine_limiter is not None and pair is not None:
            age = time.monotonic() - tracked[1] if tracked else None
            await self.engine_limiter.acquire(pair, cancel_order_cost(age))
        params: dict[str, Any] = {"order_id": [order_id]} if order_id is not None else {"cl_ord_id": [cl_ord_id]}
        params["token"] = endpoint.token
        ack = await self._request(endpoint, "cancel_order", params, wait)
        if not ack.success:
            exc = error_from_string(ack.error or "EGeneral:Internal error (no error text)")
            if isinstance(exc, TradingRateLimitExceeded) and self.engine_limiter is not None and pair:
                self.engine_limiter.counter(pair).saturate()
            raise exc
        self._placed.pop(ref, None)
        result = ack.result or {}
        return CancelOrderAck(
            order_id=result.get("order_id", order_id),
            cl_ord_id=result.get("cl_ord_id", cl_ord_id),
            time_in=ack.time_in,
            time_out=ack.time_out,
        )

    async def cancel_all(self, *, timeout: float | None = None) -> int:
        """Cancel every open order of the account (``cancel_all``); returns how many."""
        wait = timeout if timeout is not None else self.config.order_timeout_s
        endpoint = await self._ready_private(wait)
        ack = await self._request(endpoint, "cancel_all", {"token": endpoint.token}, wait)
        if not ack.success:
            raise error_from_string(ack.error or "EGeneral:Internal error (no error text)")
        count = (ack.result or {}).get("count")
        if type(count) is not int:
            raise MalformedMessage(f"cancel_all: no integer count in {ack.result!r}")
        return count

    async def cancel_all_orders_after(self, seconds: int, *, timeout: float | None = None) -> CancelAfterAck:
        """Kraken's dead man's switch over the private socket: every open order of the account is canceled
        ``seconds`` from now unless this is sent again before; ``seconds=0`` disables it. Kraken recommends a
        call every 15-30 s with 60 s. Raises :class:`NotConnected` when nothing was sent."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise ValueError("seconds must be a non-negative int (0 disables)")
        wait = timeout if timeout is not None else self.config.order_timeout_s
        endpoint = await self._ready_private(wait)
        params = {"timeout": seconds, "token": endpoint.token}
        ack = await self._request(endpoint, "cancel_all_orders_after", params, wait)
        if not ack.success:
            raise error_from_string(ack.error or "EGeneral:Internal error (no error text)")
        result = ack.result or {}
        return CancelAfterAck(
            current_time=_rfc3339(result.get("currentTime")),
            trigger_time=_rfc3339(result.get("triggerTime")),
            time_in=ack.time_in,
            time_out=ack.time_out,
        )

    # --- frame handling (the hot path) ---------------------------------------------------------------------

    def _on_frame(self, endpoint: _Endpoint, raw: str | bytes) -> None:
        received_ns = time.time_ns()
        stats = self.stats
        stats.last_message_ns = received_ns
        stats.last_message_monotonic = endpoint.last_recv
        try:
            msg = decode(raw)
        except MalformedMessage as exc:
            self._note(stats.malformed, "frame", exc, raw)
            return
        channel = msg.get("channel")
        counts = stats.messages
        if channel == "book":
            counts["book"] = counts.get("book", 0) + 1
            self._on_book(msg, received_ns)
        elif "method" in msg:
            key = "ack"
            counts[key] = counts.get(key, 0) + 1
            self._on_ack(endpoint, msg)
        elif channel == "heartbeat":
            counts["heartbeat"] = counts.get("heartbeat", 0) + 1
        elif channel in PRIVATE_CHANNELS:
            counts[channel] = counts.get(channel, 0) + 1
            self._on_private(endpoint, msg, received_ns)
        elif channel == "status":
            counts["status"] = counts.get("status", 0) + 1
            self._on_status(endpoint, msg)
        elif channel in PUBLIC_DATA_CHANNELS:
            counts[channel] = counts.get(channel, 0) + 1
            self._on_public_data(msg, received_ns)
        else:
            self._note(stats.unknown, f"channel:{channel}", "unknown channel", raw)

    def _note(self, table: dict[str, int], kind: str, detail: object, raw: str | bytes | None = None) -> None:
        """Count a malformed/unknown message and log it (first few of a kind, then every 1000th)."""
        count = table.get(kind, 0) + 1
        table[kind] = count
        if count <= _LOG_FIRST or count % _LOG_EVERY == 0:
            sample = raw[:300] if raw is not None else None
            which = "malformed" if table is self.stats.malformed else "unknown"
            logger.warning("kraken ws: %s message (%s #%d): %s; frame: %r", which, kind, count, detail, sample)

    def _on_book(self, msg: dict[str, Any], received_ns: int) -> None:
        data = msg.get("data")
        if type(data) is not list or not data:
            self._note(self.stats.malformed, "book", "book message without data", None)
            return
        if len(data) > 1:  # Kraken sends one symbol per message; split if it ever does not
            kind = msg.get("type")
            for entry in data:
                self._on_book({"channel": "book", "type": kind, "data": [entry]}, received_ns)
            return
        entry = data[0]
        symbol = entry.get("symbol") if type(entry) is dict else None
        slot = self._books.get(symbol)  # type: ignore[arg-type]
        if slot is None:
            self._note(self.stats.unknown, "book_symbol", f"book message for unsubscribed symbol {symbol!r}", None)
            return
        book = slot.book
        try:
            book.apply(msg)
        except ChecksumMismatch as exc:
            self.stats.checksum_failures += 1
            self._resync_book(slot, f"checksum mismatch (message {exc.expected}, book {exc.computed})")
            return
        except BookNotSynced:
            self.stats.books_not_synced += 1
            self._resync_book(slot, "update while not synced")
            return
        except MalformedMessage as exc:
            self._note(self.stats.malformed, "book", exc, None)
            self._resync_book(slot, "malformed book message")
            return
        event = slot.event
        snapshot = msg.get("type") == "snapshot"
        if snapshot:
            slot.sub.resyncing = False
        event.snapshot = snapshot
        event.checksum = entry["checksum"]
        event.received_ns = received_ns
        ts = entry.get("timestamp")
        event.timestamp = ts
        if ts is not None:
            ts_ns = self._ts_ns(ts)
            event.exchange_ts_ns = ts_ns
            if ts_ns:
                lag = self.stats.lag.get("book")
                if lag is None:
                    lag = self.stats.lag["book"] = LagStats()
                lag.add(received_ns - ts_ns)
        else:
            event.exchange_ts_ns = 0
        for listener in self._book_listeners:
            try:
                listener(book, event)
            except Exception:  # a consumer's bug must not kill the connection: log and count
                self.stats.callback_errors += 1
                logger.exception("kraken ws: book listener %r failed", listener)
        for stream in self._book_streams:
            stream._push(book, event)

    def _ts_ns(self, ts: Any) -> int:
        """ns since the epoch from ``YYYY-MM-DDTHH:MM:SS.ffffff[fff]Z``; 0 (counted) if unreadable. The
        seconds part is cached: consecutive messages share it."""
        try:
            head = ts[:19]
            if head != self._ts_head:
                self._ts_head_ns = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()) * _NS
                self._ts_head = head
            frac = ts[20:-1] if ts[19:20] == "." else ""
            return self._ts_head_ns + (int(frac[:9].ljust(9, "0")) if frac else 0)
        except (TypeError, ValueError) as exc:
            self._note(self.stats.malformed, "timestamp", exc, None)
            return 0

    def _resync_book(self, slot: _BookSlot, why: str) -> None:
        sub = slot.sub
        endpoint = self._public
        if sub.resyncing or sub.state != "active" or not endpoint.connected.is_set():
            return  # a fresh snapshot is already on its way (resync or resubscription)
        sub.resyncing = True
        self.stats.book_resyncs += 1
        logger.warning("kraken ws: %s book: %s; resubscribing for a fresh snapshot", sub.symbol, why)
        endpoint.spawn(self._resubscribe(endpoint, sub), f"resync-{sub.symbol}")

    async def _resubscribe(self, endpoint: _Endpoint, sub: _Sub) -> None:
        """Unsubscribe then subscribe again (a fresh snapshot), on the current session. If the exchange does
        not answer, the connection is dropped: the reconnect subscribes everything again."""
        try:
            await self._resubscribe_once(endpoint, sub)
        except NotConnected:
            return  # the connection is gone; the reconnect resubscribes
        except (RequestTimeout, MalformedMessage) as exc:
            self.stats.forced_reconnects += 1
            endpoint.abort(f"resync of {sub.channel} {sub.symbol or ''} failed: {exc}")

    async def _resubscribe_once(self, endpoint: _Endpoint, sub: _Sub) -> None:
        params: dict[str, Any] = {"channel": sub.channel, **_unsubscribe_params(sub)}
        if sub.symbol is not None:
            params["symbol"] = [sub.symbol]
        if endpoint.private:
            params["token"] = endpoint.token
        ack = await self._request(endpoint, "unsubscribe", params, self.config.request_timeout_s)
        if ack.success is False:
            logger.warning("kraken ws: unsubscribe %s %s for resync refused: %s", *sub.key, ack.error)
        if endpoint.subs.get(sub.key) is not sub:
            return  # unsubscribed by the caller meanwhile
        sub.session = -1
        await self._subscribe_request(endpoint, sub)

    def _on_ack(self, endpoint: _Endpoint, msg: dict[str, Any]) -> None:
        req_id = msg.get("req_id")
        pending = self._pending.pop(req_id, None) if type(req_id) is int else None
        if pending is None:
            if msg.get("method") == "pong" and type(req_id) is int:
                sent = endpoint.idle_pings.pop(req_id, None)
                if sent is not None:
                    self.stats.last_ping_rtt_s = time.monotonic() - sent
                    return
            self.stats.late_acks += 1
            logger.warning(
                "kraken ws %s: response to no pending request (late or unsolicited): %r",
                endpoint.name,
                {k: msg.get(k) for k in ("method", "req_id", "success", "error", "result")},
            )
            return
        try:
            ack = parse_message(msg)
        except MalformedMessage as exc:
            self._note(self.stats.malformed, f"ack:{msg.get('method')}", exc, None)
            if not pending.future.done():
                pending.future.set_exception(exc)
            return
        if not isinstance(ack, Ack):  # parse_message returns an Ack for any message with "method"
            self._note(self.stats.malformed, "ack", "not an ack", None)
            return
        sub = pending.sub
        if sub is not None and pending.method == "subscribe":
            self._subscription_acked(endpoint, sub, ack)
        if ack.warnings:
            logger.info("kraken ws: %s warnings: %s", ack.method, ", ".join(ack.warnings))
        if not pending.future.done():
            pending.future.set_result(ack)

    def _subscription_acked(self, endpoint: _Endpoint, sub: _Sub, ack: Ack) -> None:
        if ack.success:
            sub.state = "active"
            sub.error = None
            sub.confirmed_once = True
        else:
            text = ack.error or "subscribe refused without an error text"
            self.stats.subscribe_errors += 1
            logger.error("kraken ws %s: subscribe %s %s refused: %s", endpoint.name, sub.channel, sub.symbol, text)
            sub.error = error_from_string(text)
            if not sub.confirmed_once:
                sub.state = "failed"  # the caller of subscribe() gets the error; the subscription is dropped
                sub.ready.set()
                return
            # A resubscription refused: keep the subscription and retry on the next connection. A refused
            # token (ESession) needs a new connection with a fresh token, so force one.
            sub.state = "pending"
            sub.session = -1
            if endpoint.private and isinstance(sub.error, AuthenticationError):
                self.stats.forced_reconnects += 1
                endpoint.abort(f"resubscription refused ({text}): new connection, fresh token")
            return
        sub.ready.set()

    def _on_status(self, endpoint: _Endpoint, msg: dict[str, Any]) -> None:
        try:
            parsed = parse_message(msg)
        except MalformedMessage as exc:
            self._note(self.stats.malformed, "status", exc, None)
            return
        assert isinstance(parsed, ChannelMessage)
        for item in parsed.items:
            if not isinstance(item, Status):
                continue
            endpoint.connection_id = item.connection_id
            try:
                status = ExchangeStatus(item.system)
            except ValueError:
                self._note(self.stats.unknown, "status_value", f"system status {item.system!r}", None)
                continue
            if status is not self.exchange_status:
                old = self.exchange_status
                self.exchange_status = status
                log = logger.info if status is ExchangeStatus.ONLINE else logger.warning
                log("kraken exchange status: %s -> %s", old.value, status.value)
                self._emit(self._status_listeners, old, status)
        self._emit(self._channel_listeners.get("status", ()), parsed)

    def _on_public_data(self, msg: dict[str, Any], received_ns: int) -> None:
        channel = msg["channel"]
        try:
            parsed = parse_message(msg)
        except MalformedMessage as exc:
            self._note(self.stats.malformed, channel, exc, None)
            return
        assert isinstance(parsed, ChannelMessage)
        if channel == "instrument":
            for item in parsed.items:
                for pair in item.pairs:
                    known = self._instruments.get(pair.symbol)
                    precisions = (pair.price_precision, pair.qty_precision)
                    if known is not None and known != precisions and pair.symbol in self._books:
                        logger.warning("kraken ws: %s precisions changed %s -> %s", pair.symbol, known, precisions)
                    self._instruments[pair.symbol] = precisions
            self._instrument_event.set()
        listeners = self._channel_listeners.get(channel)
        if listeners:
            self._emit(listeners, parsed)

    def _on_private(self, endpoint: _Endpoint, msg: dict[str, Any], received_ns: int) -> None:
        channel = msg["channel"]
        try:
            parsed = parse_message(msg)
        except MalformedMessage as exc:
            self._note(self.stats.malformed, channel, exc, None)
            return
        assert isinstance(parsed, ChannelMessage)
        sub = endpoint.subs.get((channel, None))
        seq = parsed.sequence
        if sub is None:
            self._note(self.stats.unknown, f"unsubscribed:{channel}", "message for a channel not subscribed", None)
        elif seq is None:
            self._note(self.stats.malformed, f"{channel}:sequence", "private message without a sequence", None)
        elif parsed.type == "snapshot":
            sub.last_seq = seq
            sub.resyncing = False
            if sub.reconcile_on_snapshot:
                sub.reconcile_on_snapshot = False
                self._emit(self._reconcile_listeners, ReconcileRequest("reconnect", channel))
        else:
            last = sub.last_seq
            if last is not None and not sub.resyncing and seq != last + 1:
                self._gap(endpoint, sub, last + 1, seq)
            sub.last_seq = seq
        if channel == "executions":
            self._execution_lag(parsed, received_ns)
        listeners = self._channel_listeners.get(channel)
        if listeners:
            self._emit(listeners, parsed)

    def _execution_lag(self, parsed: ChannelMessage[Any], received_ns: int) -> None:
        for item in parsed.items:
            if parsed.type == "update" and isinstance(item, Execution) and item.timestamp is not None:
                lag = self.stats.lag.get("executions")
                if lag is None:
                    lag = self.stats.lag["executions"] = LagStats()
                lag.add(received_ns - int(item.timestamp.timestamp() * _NS))

    def _gap(self, endpoint: _Endpoint, sub: _Sub, expected: int, got: int) -> None:
        self.stats.gaps += 1
        logger.warning(
            "kraken ws: %s sequence gap: expected %d, got %d; resubscribing and asking for reconciliation",
            sub.channel,
            expected,
            got,
        )
        self._emit(self._gap_listeners, sub.channel, expected, got)
        self._emit(self._reconcile_listeners, ReconcileRequest("gap", sub.channel, expected, got))
        if endpoint.connected.is_set():
            sub.resyncing = True
            self.stats.private_resyncs += 1
            endpoint.spawn(self._resubscribe(endpoint, sub), f"resync-{sub.channel}")

    def _on_disconnect(self, endpoint: _Endpoint) -> None:
        self._fail_pending(endpoint, "connection lost")
        for sub in endpoint.subs.values():
            sub.session = -1
            sub.resyncing = False
            if sub.state == "active":
                sub.state = "pending"
            if not sub.confirmed_once:
                continue
            sub.ready.clear()
        if not endpoint.private:
            for slot in self._books.values():
                slot.book.invalidate()


class BookStream:
    """Async iterator of :class:`BookTop`, conflated per symbol (see :meth:`KrakenWsClient.book_stream`)."""

    def __init__(self, client: KrakenWsClient, symbols: frozenset[str] | None) -> None:
        self._client = client
        self._symbols = symbols
        self._latest: dict[str, BookTop] = {}
        self._wakeup = asyncio.Event()
        self._finished = False
        #: Updates replaced by a newer one before the consumer took them.
        self.conflated = 0

    def _push(self, book: OrderBook, event: BookEvent) -> None:
        symbol = event.symbol
        if self._symbols is not None and symbol not in self._symbols:
            return
        if symbol in self._latest:
            self.conflated += 1
            self._client.stats.conflated_book_tops += 1
            del self._latest[symbol]  # re-insert at the end: symbols come out in order of their latest update
        self._latest[symbol] = BookTop(
            symbol,
            book.best_bid(),
            book.best_ask(),
            event.checksum,
            event.snapshot,
            event.exchange_ts_ns,
            event.received_ns,
        )
        self._wakeup.set()

    def _finish(self) -> None:
        self._finished = True
        self._wakeup.set()

    def close(self) -> None:
        """Stop the stream (the iterator ends)."""
        self._finish()
        with contextlib.suppress(ValueError):
            self._client._book_streams.remove(self)

    def __aiter__(self) -> AsyncIterator[BookTop]:
        return self

    async def __anext__(self) -> BookTop:
        while not self._latest:
            if self._finished:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        symbol = next(iter(self._latest))
        return self._latest.pop(symbol)


# --- helpers -------------------------------------------------------------------------------------------------


def _register(listeners: list[Any], callback: Any) -> Callable[[], None]:
    listeners.append(callback)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            listeners.remove(callback)

    return remove


def _unsubscribe_params(sub: _Sub) -> dict[str, Any]:
    """The subscription parameters that identify it in an unsubscribe (depth, interval, event_trigger)."""
    return {k: v for k, v in sub.params.items() if k in ("depth", "interval", "event_trigger")}


def _rfc3339(value: Any) -> datetime | None:
    """``2023-09-21T15:49:29Z`` → aware UTC datetime; ``"0"``, empty or absent → None."""
    if value in (None, "", "0", 0):
        return None
    if not isinstance(value, str):
        raise MalformedMessage(f"not an RFC 3339 timestamp: {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedMessage(f"not an RFC 3339 timestamp: {value!r}") from exc
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _wait(awaitable: Awaitable[Any], timeout: float, what: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError as exc:
        raise RequestTimeout(f"{what}: not done within {timeout} s") from exc
