"""Typed results of the REST client. Every price, volume, cost and fee is a Decimal; Kraken sends most of
them as strings ("30010.00000"), some as JSON numbers (decoded exactly), and both are accepted. Timestamps
are kept as exact Decimal unix seconds, with ``*_at`` properties giving timezone-aware UTC datetimes. Each
order/trade record keeps the decoded ``raw`` dict for fields not modelled here.

The ``from_api`` constructors raise :class:`~ingest.kraken.errors.InvalidResponse` on an unexpected shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import wraps
from typing import Any, Generic, ParamSpec, TypeVar

from ingest.kraken.errors import InvalidResponse, MalformedMessage
from ingest.kraken.messages import to_decimal

__all__ = [
    "AddOrderResult",
    "AssetPair",
    "BalanceEx",
    "CancelOrderResult",
    "Depth",
    "DepthLevel",
    "OHLCBar",
    "OHLCResult",
    "OrderDescription",
    "OrderInfo",
    "Page",
    "PublicTrade",
    "PublicTrades",
    "ServerTime",
    "SystemStatus",
    "TickerInfo",
    "TradeInfo",
    "WebSocketToken",
    "unix_to_datetime",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _shape_checked(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn shape errors while reading a result into InvalidResponse."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (MalformedMessage, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidResponse(f"unexpected result shape in {fn.__qualname__}: {exc!r}") from exc

    return wrapper


def unix_to_datetime(ts: Decimal) -> datetime:
    """UTC datetime from exact unix seconds (microsecond resolution)."""
    seconds = int(ts)
    micros = int((ts - seconds) * 1_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)


def _dec(value: Any, name: str = "value") -> Decimal:
    return to_decimal(value, name)


def _opt_dec(value: Any, name: str = "value") -> Decimal | None:
    if value is None or value == "":
        return None
    return to_decimal(value, name)


def _opt_int(value: Any) -> int | None:
    """Kraken sends userref as an int or a numeric string ("0")."""
    if value is None or value == "":
        return None
    if type(value) is bool:
        raise TypeError("boolean where an integer was expected")
    return int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a paginated call; ``count`` is Kraken's total (None with ``without_count``)."""

    items: tuple[T, ...]
    count: int | None


@dataclass(frozen=True, slots=True)
class ServerTime:
    unixtime: int
    rfc1123: str

    @classmethod
    @_shape_checked
    def from_api(cls, result: Mapping[str, Any]) -> ServerTime:
        return cls(unixtime=int(result["unixtime"]), rfc1123=str(result["rfc1123"]))


@dataclass(frozen=True, slots=True)
class SystemStatus:
    status: str  # online | maintenance | cancel_only | post_only
    timestamp: str

    @classmethod
    @_shape_checked
    def from_api(cls, result: Mapping[str, Any]) -> SystemStatus:
        return cls(status=str(result["status"]), timestamp=str(result.get("timestamp", "")))


@dataclass(frozen=True, slots=True)
class AssetPair:
    key: str  # REST result key, e.g. XXBTZUSD
    altname: str
    wsname: str | None
    base: str
    quote: str
    pair_decimals: int
    lot_decimals: int
    cost_decimals: int | None
    ordermin: Decimal | None
    costmin: Decimal | None
    tick_size: Decimal | None
    status: str | None
    raw: Mapping[str, Any] = field(compare=False, repr=False)
    taker_fee: Decimal | None = None  # fraction, at the lowest volume tier of `fees` (Kraken gives percent)
    maker_fee: Decimal | None = None  # fraction, from `fees_maker`

    @classmethod
    @_shape_checked
    def from_api(cls, key: str, d: Mapping[str, Any]) -> AssetPair:
        return cls(
            key=key,
            altname=str(d["altname"]),
            wsname=_opt_str(d.get("wsname")),
            base=str(d["base"]),
            quote=str(d["quote"]),
            pair_decimals=int(d["pair_decimals"]),
            lot_decimals=int(d["lot_decimals"]),
            cost_decimals=_opt_int(d.get("cost_decimals")),
            ordermin=_opt_dec(d.get("ordermin"), "ordermin"),
            costmin=_opt_dec(d.get("costmin"), "costmin"),
            tick_size=_opt_dec(d.get("tick_size"), "tick_size"),
            status=_opt_str(d.get("status")),
            raw=d,
            taker_fee=_base_tier_fee(d.get("fees"), "fees"),
            maker_fee=_base_tier_fee(d.get("fees_maker"), "fees_maker"),
        )


def _base_tier_fee(tiers: Any, name: str) -> Decimal | None:
    """The fee of the lowest volume tier, as a fraction: Kraken lists ``[[volume, percent], ...]``."""
    if not tiers:
        return None
    if not isinstance(tiers, list) or not all(isinstance(t, list) and len(t) == 2 for t in tiers):
        raise ValueError(f"{name} must be a list of [volume, percent] pairs")
    lowest = min(tiers, key=lambda t: Decimal(str(t[0])))
    percent = _opt_dec(lowest[1], name)
    return None if percent is None else percent / 100


@dataclass(frozen=True, slots=True)
class TickerInfo:
    key: str
    ask: Decimal
    ask_lot_volume: Decimal
    bid: Decimal
    bid_lot_volume: Decimal
    last: Decimal
    last_volume: Decimal
    volume_today: Decimal
    volume_24h: Decimal
    vwap_today: Decimal
    vwap_24h: Decimal
    trades_today: int
    trades_24h: int
    low_today: Decimal
    low_24h: Decimal
    high_today: Decimal
    high_24h: Decimal
    open: Decimal

    @classmethod
    @_shape_checked
    def from_api(cls, key: str, d: Mapping[str, Any]) -> TickerInfo:
        return cls(
            key=key,
            ask=_dec(d["a"][0], "a"),
            ask_lot_volume=_dec(d["a"][-1], "a"),
            bid=_dec(d["b"][0], "b"),
            bid_lot_volume=_dec(d["b"][-1], "b"),
            last=_dec(d["c"][0], "c"),
            last_volume=_dec(d["c"][1], "c"),
            volume_today=_dec(d["v"][0], "v"),
            volume_24h=_dec(d["v"][1], "v"),
            vwap_today=_dec(d["p"][0], "p"),
            vwap_24h=_dec(d["p"][1], "p"),
            trades_today=int(d["t"][0]),
            trades_24h=int(d["t"][1]),
            low_today=_dec(d["l"][0], "l"),
            low_24h=_dec(d["l"][1], "l"),
            high_today=_dec(d["h"][0], "h"),
            high_24h=_dec(d["h"][1], "h"),
            open=_dec(d["o"], "o"),
        )


@dataclass(frozen=True, slots=True)
class OHLCBar:
    time: int  # interval start, unix seconds
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    vwap: Decimal
    volume: Decimal
    count: int


@dataclass(frozen=True, slots=True)
class OHLCResult:
    """Bars oldest first; the last bar is still forming. Pass ``last`` as ``since`` to continue."""

    key: str
    bars: tuple[OHLCBar, ...]
    last: int

    @classmethod
    @_shape_checked
    def from_api(cls, result: Mapping[str, Any]) -> OHLCResult:
        key, rows = _single_pair(result)
        bars = tuple(
            OHLCBar(
                time=int(r[0]),
                open=_dec(r[1], "open"),
                high=_dec(r[2], "high"),
                low=_dec(r[3], "low"),
                close=_dec(r[4], "close"),
                vwap=_dec(r[5], "vwap"),
                volume=_dec(r[6], "volume"),
                count=int(r[7]),
            )
            for r in rows
        )
        return cls(key=key, bars=bars, last=int(result["last"]))


@dataclass(frozen=True, slots=True)
class DepthLevel:
    price: Decimal
    volume: Decimal
    timestamp: Decimal


@dataclass(frozen=True, slots=True)
class Depth:
    key: str
    asks: tuple[DepthLevel, ...]  # lowest first
    bids: tuple[DepthLevel, ...]  # highest first

    @classmethod
    @_shape_checked
    def from_api(cls, result: Mapping[str, Any]) -> Depth:
        key, book = _single_pair(result)

        def side(rows: Any) -> tuple[DepthLevel, ...]:
            return tuple(DepthLevel(_dec(r[0], "price"), _dec(r[1], "volume"), _dec(r[2], "timestamp")) for r in rows)

        return cls(key=key, asks=side(book["asks"]), bids=side(book["bids"]))


@dataclass(frozen=True, slots=True)
class PublicTrade:
    price: Decimal
    volume: Decimal
    time: Decimal
    side: str  # "b" | "s"
    order_type: str  # "m" | "l"
    misc: str
    trade_id: int | None


@dataclass(frozen=True, slots=True)
class PublicTrades:
    key: str
    trades: tuple[PublicTrade, ...]
    last: str  # cursor (nanosecond timestamp string) to pass as ``since``

    @classmethod
    @_shape_checked
    def from_api(cls, result: Mapping[str, Any]) -> PublicTrades:
        key, rows = _single_pair(result)
        trades = tuple(
            PublicTrade(
                price=_dec(r[0], "price"),
                volume=_dec(r[1], "volume"),
                time=_dec(r[2], "time"),
                side=str(r[3]),
                order_type=str(r[4]),
                misc=str(r[5]),
                trade_id=_opt_int(r[6]) if len(r) > 6 else None,
            )
            for r in rows
        )
        return cls(key=key, trades=trades, last=str(result["last"]))


def _single_pair(result: Mapping[str, Any]) -> tuple[str, Any]:
    keys = [k for k in result if k != "last"]
    if len(keys) != 1:
        raise InvalidResponse(f"expected exactly one pair in the result, got {keys}")
    return keys[0], result[keys[0]]


@dataclass(frozen=True, slots=True)
class BalanceEx:
    balance: Decimal
    hold_trade: Decimal
    credit: Decimal | None = None
    credit_used: Decimal | None = None

    @property
    def available(self) -> Decimal:
        return self.balance - self.hold_trade

    @classmethod
    @_shape_checked
    def from_api(cls, d: Mapping[str, Any]) -> BalanceEx:
        return cls(
            balance=_dec(d["balance"], "balance"),
            hold_trade=_dec(d.get("hold_trade", "0"), "hold_trade"),
            credit=_opt_dec(d.get("credit"), "credit"),
            credit_used=_opt_dec(d.get("credit_used"), "credit_used"),
        )


@dataclass(frozen=True, slots=True)
class OrderDescription:
    pair: str
    type: str
    ordertype: str
    price: Decimal | None
    price2: Decimal | None
    leverage: str | None
    order: str
    close: str | None


@dataclass(frozen=True, slots=True)
class OrderInfo:
    txid: str
    status: str  # pending | open | closed | canceled | expired
    userref: int | None
    cl_ord_id: str | None
    opentm: Decimal | None
    closetm: Decimal | None
    starttm: Decimal | None
    expiretm: Decimal | None
    descr: OrderDescription
    vol: Decimal
    vol_exec: Decimal
    cost: Decimal
    fee: Decimal
    price: Decimal  # average fill price
    stopprice: Decimal | None
    limitprice: Decimal | None
    misc: str
    oflags: str
    reason: str | None
    trades: tuple[str, ...]
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def opened_at(self) -> datetime | None:
        return unix_to_datetime(self.opentm) if self.opentm else None

    @property
    def closed_at(self) -> datetime | None:
        return unix_to_datetime(self.closetm) if self.closetm else None

    @classmethod
    @_shape_checked
    def from_api(cls, txid: str, d: Mapping[str, Any]) -> OrderInfo:
        descr = d.get("descr") or {}
        return cls(
            txid=txid,
            status=str(d["status"]),
            userref=_opt_int(d.get("userref")),
            cl_ord_id=_opt_str(d.get("cl_ord_id")),
            opentm=_opt_dec(d.get("opentm"), "opentm"),
            closetm=_opt_dec(d.get("closetm"), "closetm"),
            starttm=_opt_dec(d.get("starttm"), "starttm"),
            expiretm=_opt_dec(d.get("expiretm"), "expiretm"),
            descr=OrderDescription(
                pair=str(descr.get("pair", "")),
                type=str(descr.get("type", "")),
                ordertype=str(descr.get("ordertype", "")),
                price=_opt_dec(descr.get("price"), "descr.price"),
                price2=_opt_dec(descr.get("price2"), "descr.price2"),
                leverage=_opt_str(descr.get("leverage")),
                order=str(descr.get("order", "")),
                close=_opt_str(descr.get("close")),
            ),
            vol=_dec(d["vol"], "vol"),
            vol_exec=_dec(d.get("vol_exec", "0"), "vol_exec"),
            cost=_dec(d.get("cost", "0"), "cost"),
            fee=_dec(d.get("fee", "0"), "fee"),
            price=_dec(d.get("price", "0"), "price"),
            stopprice=_opt_dec(d.get("stopprice"), "stopprice"),
            limitprice=_opt_dec(d.get("limitprice"), "limitprice"),
            misc=str(d.get("misc", "")),
            oflags=str(d.get("oflags", "")),
            reason=_opt_str(d.get("reason")),
            trades=tuple(str(t) for t in d.get("trades") or ()),
            raw=d,
        )


@dataclass(frozen=True, slots=True)
class TradeInfo:
    txid: str
    ordertxid: str
    postxid: str | None
    pair: str  # REST pair key, e.g. XXBTZUSD
    time: Decimal
    type: str
    ordertype: str
    price: Decimal
    cost: Decimal
    fee: Decimal
    vol: Decimal
    margin: Decimal | None
    misc: str
    trade_id: int | None
    maker: bool | None
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def executed_at(self) -> datetime:
        return unix_to_datetime(self.time)

    @classmethod
    @_shape_checked
    def from_api(cls, txid: str, d: Mapping[str, Any]) -> TradeInfo:
        maker = d.get("maker")
        return cls(
            txid=txid,
            ordertxid=str(d["ordertxid"]),
            postxid=_opt_str(d.get("postxid")),
            pair=str(d["pair"]),
            time=_dec(d["time"], "time"),
            type=str(d["type"]),
            ordertype=str(d["ordertype"]),
            price=_dec(d["price"], "price"),
            cost=_dec(d["cost"], "cost"),
            fee=_dec(d["fee"], "fee"),
            vol=_dec(d["vol"], "vol"),
            margin=_opt_dec(d.get("margin"), "margin"),
            misc=str(d.get("misc", "")),
            trade_id=_opt_int(d.get("trade_id")),
            maker=maker if type(maker) is bool else None,
            raw=d,
        )


@dataclass(frozen=True, slots=True)
class AddOrderResult:
    """``txids`` is empty for ``validate=True``."""

    txids: tuple[str, ...]
    description: str | None
    close: str | None
    cl_ord_id: str | None = None
    userref: int | None = None

    @classmethod
    @_shape_checked
    def from_api(cls, result: Mapping[str, Any], *, cl_ord_id: str | None, userref: int | None) -> AddOrderResult:
        descr = result.get("descr") or {}
        return cls(
            txids=tuple(str(t) for t in result.get("txid") or ()),
            description=_opt_str(descr.get("order")),
            close=_opt_str(descr.get("close")),
            cl_ord_id=cl_ord_id,
            userref=userref,
        )


@dataclass(frozen=True, slots=True)
class CancelOrderResult:
    count: int
    pending: bool

    @classmethod
    @_shape_checked
    def from_api(cls, result: Mapping[str, Any]) -> CancelOrderResult:
        return cls(count=int(result["count"]), pending=bool(result.get("pending", False)))


@dataclass(frozen=True, slots=True)
class WebSocketToken:
    token: str
    expires: int  # seconds

    @classmethod
    @_shape_checked
    def from_api(cls, result: Mapping[str, Any]) -> WebSocketToken:
        return cls(token=str(result["token"]), expires=int(result["expires"]))
