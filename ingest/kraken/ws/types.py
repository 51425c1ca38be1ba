"""The WebSocket client's vocabulary: connection and exchange states, configuration, the events and answers it
hands to callers, its counters, and the shapes of its listeners. Data only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from ingest.kraken import constants
from ingest.kraken.book import OrderBook
from ingest.kraken.messages import ChannelMessage
from ingest.kraken.ws.reconnect import ReconnectPolicy

__all__ = [
    "PRIVATE",
    "PRIVATE_CHANNELS",
    "PUBLIC",
    "PUBLIC_DATA_CHANNELS",
    "AddOrderAck",
    "BookEvent",
    "BookListener",
    "BookTop",
    "CancelAfterAck",
    "CancelOrderAck",
    "ChannelListener",
    "ConnectionState",
    "ExchangeStatus",
    "GapListener",
    "LagStats",
    "ReconcileListener",
    "ReconcileRequest",
    "StateListener",
    "StatusListener",
    "TokenProvider",
    "WsConfig",
    "WsStats",
]

PUBLIC = "public"
PRIVATE = "private"
PRIVATE_CHANNELS = frozenset({"executions", "balances"})
PUBLIC_DATA_CHANNELS = frozenset({"trade", "ticker", "ohlc", "instrument"})
NS = 1_000_000_000


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
    """Top of book after a verified message (what :class:`~ingest.kraken.ws.market.BookStream` yields)."""

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
        lag = lag_ns / NS
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
    """Counters for logs and metrics (``KrakenWsClient.stats_snapshot`` adds the books' counters)."""

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

    def lag_of(self, channel: str) -> LagStats:
        lag = self.lag.get(channel)
        if lag is None:
            lag = self.lag[channel] = LagStats()
        return lag

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
        out["last_message_at"] = self.last_message_ns / NS if self.last_message_ns else None
        return out


# --- listener types ------------------------------------------------------------------------------------------

BookListener = Callable[[OrderBook, BookEvent], None]
ChannelListener = Callable[[ChannelMessage[Any]], object]
GapListener = Callable[[str, int, int], object]
ReconcileListener = Callable[[ReconcileRequest], object]
StatusListener = Callable[[ExchangeStatus, ExchangeStatus], object]
StateListener = Callable[[str, ConnectionState, ConnectionState], object]
TokenProvider = Callable[[], Awaitable[str]]
