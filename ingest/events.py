"""Normalised events the ingest worker emits: typed, with the exchange's timestamp and ours.

Events are published on the channel layer (`ingest.publisher`) to groups per kind (`market.<symbol>`, `orders`,
`balances`, `system`) as plain dicts: Decimals as strings, times as ISO 8601 UTC. The channel layer is lossy by
design; the database and the time-series store stay the source of truth and clients resync over REST.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from ingest.bars import Bar

_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # per event class, in declaration order


@functools.lru_cache(maxsize=1024)
def market_group(symbol: str) -> str:
    """The channel-layer group of a symbol's market events (`BTC/USD` → `market.BTC-USD`)."""
    return "market." + _GROUP_UNSAFE.sub("-", symbol)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Event:
    kind: ClassVar[str] = "event"

    def group(self) -> str:
        raise NotImplementedError

    def as_message(self) -> dict[str, Any]:
        """The channel-layer message: `type` routes it to consumers' `ingest_event` handler."""
        cls = type(self)
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(self))
        event: dict[str, Any] = {"kind": self.kind}
        for name in names:  # hot path (an event per trade): the common types first, the rest through _plain
            value = getattr(self, name)
            kind = type(value)
            if kind is Decimal:
                value = str(value)
            elif kind is datetime:
                value = value.isoformat()
            elif value is not None and kind is not str and kind is not int:
                value = _plain(value)
            event[name] = value
        return {"type": "ingest.event", "event": event}


@dataclass(frozen=True, slots=True)
class TopOfBook(Event):
    kind: ClassVar[str] = "book.top"
    symbol: str
    bid: Decimal | None
    bid_qty: Decimal | None
    ask: Decimal | None
    ask_qty: Decimal | None
    exchange_time: datetime | None
    received_time: datetime

    def group(self) -> str:
        return market_group(self.symbol)


@dataclass(frozen=True, slots=True)
class TradeEvent(Event):
    kind: ClassVar[str] = "trade"
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    trade_id: int
    exchange_time: datetime
    received_time: datetime

    def group(self) -> str:
        return market_group(self.symbol)


@dataclass(frozen=True, slots=True)
class TickerEvent(Event):
    kind: ClassVar[str] = "ticker"
    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    volume: Decimal
    vwap: Decimal
    exchange_time: datetime | None
    received_time: datetime

    def group(self) -> str:
        return market_group(self.symbol)


@dataclass(frozen=True, slots=True)
class BarEvent(Event):
    kind: ClassVar[str] = "bar"
    symbol: str
    interval: str
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    vwap: Decimal
    trades: int
    revision: int
    received_time: datetime

    @classmethod
    def from_bar(cls, bar: Bar, received_time: datetime) -> BarEvent:
        return cls(
            bar.symbol,
            bar.interval_label,
            bar.start,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume,
            bar.vwap,
            bar.trades,
            bar.revision,
            received_time,
        )

    def group(self) -> str:
        return market_group(self.symbol)


@dataclass(frozen=True, slots=True)
class OrderUpdateEvent(Event):
    kind: ClassVar[str] = "order"
    order_id: str
    cl_ord_id: str | None
    exec_type: str
    order_status: str | None
    symbol: str | None
    last_qty: Decimal | None
    last_price: Decimal | None
    exchange_time: datetime | None
    received_time: datetime

    def group(self) -> str:
        return "orders"


@dataclass(frozen=True, slots=True)
class BalanceEvent(Event):
    kind: ClassVar[str] = "balance"
    asset: str
    balance: Decimal
    amount: Decimal | None
    ledger_id: str | None
    exchange_time: datetime | None
    received_time: datetime

    def group(self) -> str:
        return "balances"


@dataclass(frozen=True, slots=True)
class SystemEvent(Event):
    """Connection state, exchange status, gaps, reconnects and alerts."""

    kind: ClassVar[str] = "system"
    topic: str  # "connection" | "exchange_status" | "gap" | "alert" | ...
    detail: dict[str, Any]
    received_time: datetime

    def group(self) -> str:
        return "system"

    def as_message(self) -> dict[str, Any]:
        # The site-wide `system` websocket consumer handles "system.event".
        return {
            "type": "system.event",
            "event": {"topic": self.topic, **_plain(self.detail), "at": _plain(self.received_time)},
        }
