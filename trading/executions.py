"""Normalised execution events: what the ingest worker (or reconciliation, or the paper broker) hands to
`trading.execution_reports.execution_report_apply`. Django-free, adapted from Kraken's WebSocket v2 `executions`
channel.

Updates are sparse, keyed by the exchange `order_id`: only `order_id` and `exec_type` are always present. A `trade`
carries the fill (`exec_id`, `last_qty`, `last_price`, `cost`, `fees`, `liquidity_ind`), keyed by `exec_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from ingest.kraken.messages import Execution


class ExecType(StrEnum):
    PENDING_NEW = "pending_new"
    NEW = "new"
    TRADE = "trade"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    AMENDED = "amended"
    RESTATED = "restated"
    STATUS = "status"
    ICEBERG_REFILL = "iceberg_refill"


class EventSource(StrEnum):
    """Where a state change came from; recorded on every order event."""

    EXCHANGE = "exchange"  # a private WebSocket execution message
    REST_QUERY = "rest_query"  # QueryOrders / ClosedOrders / TradesHistory
    RECONCILIATION = "reconciliation"
    OPERATOR = "operator"  # a person, through the admin or the API
    SYSTEM = "system"  # the trading pipeline itself (creation, submission)

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(s.value, s.value.replace("_", " ")) for s in cls]


class InvalidExecutionEvent(ValueError):
    """The event is self-contradictory or misses what its exec_type needs."""


@dataclass(frozen=True, slots=True)
class FeeAmount:
    asset: str
    qty: Decimal


def _decimal_or_none(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float | bool):
        raise InvalidExecutionEvent(f"{name}: floats and booleans are not exact amounts")
    try:
        result = Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise InvalidExecutionEvent(f"{name}: {value!r} is not a number") from exc
    if not result.is_finite():
        raise InvalidExecutionEvent(f"{name}: {value!r} is not finite")
    return result


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    order_id: str
    exec_type: ExecType
    timestamp: datetime | None = None
    cl_ord_id: str | None = None
    order_status: str | None = None
    symbol: str | None = None
    side: str | None = None
    order_type: str | None = None
    time_in_force: str | None = None
    post_only: bool | None = None
    order_qty: Decimal | None = None
    limit_price: Decimal | None = None
    cum_qty: Decimal | None = None
    cum_cost: Decimal | None = None
    avg_price: Decimal | None = None
    exec_id: str | None = None
    trade_id: int | None = None
    last_qty: Decimal | None = None
    last_price: Decimal | None = None
    cost: Decimal | None = None
    fees: tuple[FeeAmount, ...] = ()
    liquidity_ind: str | None = None
    reason: str | None = None
    source: EventSource = EventSource.EXCHANGE

    def __post_init__(self) -> None:
        if not self.order_id:
            raise InvalidExecutionEvent("order_id is required")
        if self.timestamp is not None and self.timestamp.tzinfo is None:
            raise InvalidExecutionEvent("timestamp must be timezone-aware")
        if self.side is not None and self.side not in ("buy", "sell"):
            raise InvalidExecutionEvent(f"side must be buy or sell, not {self.side!r}")
        if self.order_qty is not None and self.order_qty <= 0:
            raise InvalidExecutionEvent("order_qty must be positive")
        if self.exec_type == ExecType.TRADE:
            if not self.exec_id:
                raise InvalidExecutionEvent("a trade needs its exec_id")
            if self.last_qty is None or self.last_qty <= 0:
                raise InvalidExecutionEvent("a trade needs a positive last_qty")
            if self.last_price is None or self.last_price <= 0:
                raise InvalidExecutionEvent("a trade needs a positive last_price")
            if self.cost is not None and self.cost < 0:
                raise InvalidExecutionEvent("a trade's cost cannot be negative")

    @property
    def is_trade(self) -> bool:
        return self.exec_type == ExecType.TRADE

    @property
    def trade_cost(self) -> Decimal:
        assert self.last_qty is not None
        assert self.last_price is not None
        return self.cost if self.cost is not None else self.last_qty * self.last_price

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form (Decimals as strings) for storing a parked event or an order event's payload."""
        out: dict[str, Any] = {}
        for name in self.__slots__:  # type: ignore[attr-defined]
            value = getattr(self, name)
            if value is None or value == ():
                continue
            if name == "fees":
                value = [{"asset": f.asset, "qty": str(f.qty)} for f in value]
            elif isinstance(value, Decimal):
                value = str(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, StrEnum):
                value = value.value
            out[name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExecutionEvent:
        kwargs = dict(data)
        for name in ("order_qty", "limit_price", "cum_qty", "cum_cost", "avg_price", "last_qty", "last_price", "cost"):
            if name in kwargs:
                kwargs[name] = _decimal_or_none(kwargs[name], name)
        if "timestamp" in kwargs:
            kwargs["timestamp"] = datetime.fromisoformat(kwargs["timestamp"])
        kwargs["fees"] = tuple(
            FeeAmount(asset=f["asset"], qty=_decimal_or_none(f["qty"], "fee") or Decimal(0))
            for f in kwargs.get("fees", ())
        )
        kwargs["exec_type"] = ExecType(kwargs["exec_type"])
        kwargs["source"] = EventSource(kwargs.get("source", EventSource.EXCHANGE))
        return cls(**kwargs)

    @classmethod
    def from_kraken(cls, execution: Execution, *, source: EventSource = EventSource.EXCHANGE) -> ExecutionEvent:
        """Adapt a parsed Kraken v2 `executions` item."""
        try:
            exec_type = ExecType(execution.exec_type)
        except ValueError as exc:
            raise InvalidExecutionEvent(f"unknown exec_type {execution.exec_type!r}") from exc
        return cls(
            order_id=execution.order_id,
            exec_type=exec_type,
            timestamp=execution.timestamp,
            cl_ord_id=execution.cl_ord_id,
            order_status=execution.order_status,
            symbol=execution.symbol,
            side=execution.side,
            order_type=execution.order_type,
            time_in_force=execution.time_in_force,
            post_only=execution.post_only,
            order_qty=execution.order_qty,
            limit_price=execution.limit_price,
            cum_qty=execution.cum_qty,
            cum_cost=execution.cum_cost,
            avg_price=execution.avg_price,
            exec_id=execution.exec_id,
            trade_id=execution.trade_id,
            last_qty=execution.last_qty,
            last_price=execution.last_price,
            cost=execution.cost,
            fees=tuple(FeeAmount(asset=f.asset, qty=f.qty) for f in execution.fees),
            liquidity_ind=execution.liquidity_ind,
            reason=execution.reason,
            source=source,
        )


__all__ = ["EventSource", "ExecType", "ExecutionEvent", "FeeAmount", "InvalidExecutionEvent"]
