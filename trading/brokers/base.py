"""What a broker sees and says, Django-free: it takes an `OrderTicket` (what the exchange needs to know of an order)
and answers with what the exchange says about that order, as an `ExchangeOrder` (its exchange id and the execution
events that bring our books to the exchange's view). `trading.execution` applies them through
`execution_reports.execution_report_apply`, so live and paper differ only in the broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from trading.executions import ExecType, ExecutionEvent

if TYPE_CHECKING:
    from trading.models import Order

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OrderTicket:
    """An order as the exchange needs it (Django-free)."""

    client_order_id: str
    exchange_order_id: str
    symbol: str  # v2, e.g. BTC/USD
    pair: str  # REST pair name, e.g. XXBTZUSD
    base: str
    quote: str
    side: str
    order_type: str
    quantity: Decimal
    limit_price: Decimal | None
    time_in_force: str
    post_only: bool
    filled_qty: Decimal = ZERO
    fill_count: int = 0

    @classmethod
    def from_order(cls, order: Order) -> OrderTicket:
        instrument = order.instrument
        return cls(
            client_order_id=order.client_order_id,
            exchange_order_id=order.exchange_order_id,
            symbol=instrument.symbol,
            pair=instrument.rest_symbol or instrument.altname or instrument.symbol,
            base=instrument.base,
            quote=instrument.quote,
            side=order.side,
            order_type=order.order_type,
            quantity=order.quantity,
            limit_price=order.limit_price,
            time_in_force=order.time_in_force,
            post_only=order.post_only,
            filled_qty=order.filled_qty,
            fill_count=order.fills.count() if order.filled_qty else 0,
        )


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """What the exchange says about one order: its id and the events that bring our books to its view."""

    exchange_order_id: str
    events: tuple[ExecutionEvent, ...] = ()
    status: str = ""
    via: str = ""  # how the answer came: "ws" (private socket ack), "rest", "paper"; "" for queries


class Broker(Protocol):
    name: str

    def submit(self, ticket: OrderTicket) -> ExchangeOrder:
        """Place the order. Raises `KrakenError`s: retryable ones, `OrderOutcomeUnknown` (maybe placed), or a
        rejection."""

    def cancel(self, ticket: OrderTicket) -> ExchangeOrder | None:
        """Cancel it; returns the exchange's view afterwards, None when the exchange does not know the order."""

    def cancel_all(self) -> int:
        """Cancel every open order of the account; returns how many."""

    def query_by_client_id(self, ticket: OrderTicket) -> ExchangeOrder | None:
        """The exchange's view of the order (by exchange id when known, else by client order id); None when
        the exchange has no such order."""

    def close(self) -> None: ...


def order_detail_event(
    ticket: OrderTicket, exchange_order_id: str, exec_type: ExecType, **extra: Any
) -> ExecutionEvent:
    """A status event carrying the order's details (what Kraken's `pending_new` carries)."""
    return ExecutionEvent(
        order_id=exchange_order_id,
        exec_type=exec_type,
        cl_ord_id=ticket.client_order_id,
        symbol=ticket.symbol,
        side=ticket.side,
        order_type=ticket.order_type,
        time_in_force=ticket.time_in_force.upper(),
        post_only=ticket.post_only,
        order_qty=ticket.quantity,
        limit_price=ticket.limit_price,
        **extra,
    )
