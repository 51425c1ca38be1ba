"""The paper broker: fills orders against the exchange's current book (REST Depth, which the simulator serves, or
a snapshot passed in) without sending anything, and answers with the same `ExecutionEvent`s Kraken's executions
channel would send (pending_new / new / trade / filled / canceled, with exec ids). The events go through
`execution_report_apply` like live ones, so the order state machine, fills, positions and balances behave the
same; paper and live differ only in the broker.

Rules (Kraken's, as the simulator implements them):
- market and marketable limit orders walk the book level by level (one fill per level, so the order's average
  is the VWAP), as a taker; a market order's unfilled rest is canceled (`Insufficient liquidity`), an IOC's
  (`Immediate or cancel`);
- a post-only order that would cross is accepted, then canceled (`Post only order`);
- a resting limit fills, as a maker at its limit price, when the market trades through it: asks strictly below a
  resting buy (bids strictly above a resting sell), up to the quantity offered there (`trading.paper.paper_sweep`);
- fees at Kraken's base tier (0.25 % maker, 0.40 % taker, settings `GALFRIDAY_PAPER_MAKER_FEE` /
  `GALFRIDAY_PAPER_TAKER_FEE`) in the quote currency; taker prices worsened by `GALFRIDAY_PAPER_SLIPPAGE_BPS`.

Exchange order ids and exec ids are derived from the client order id and the fill count, so a repeated submit or
sweep produces the same ids and `execution_report_apply` records each fill once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone

from ingest.kraken.rest import KrakenRestClientSync
from trading.brokers.base import ExchangeOrder, OrderTicket, order_detail_event
from trading.executions import EventSource, ExecType, ExecutionEvent, FeeAmount
from trading.models import OrderType, Side, TimeInForce
from trading.pnl import ZERO, q_money, q_price

logger = logging.getLogger(__name__)

PAPER_ID_PREFIX = "P"
BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Price levels, best first: bids descending, asks ascending, each (price, quantity)."""

    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]

    @classmethod
    def of(cls, *, bids: Iterable[tuple[Any, Any]], asks: Iterable[tuple[Any, Any]]) -> BookSnapshot:
        b = sorted(((Decimal(p), Decimal(q)) for p, q in bids), key=lambda lvl: lvl[0], reverse=True)
        a = sorted(((Decimal(p), Decimal(q)) for p, q in asks), key=lambda lvl: lvl[0])
        return cls(bids=tuple(lvl for lvl in b if lvl[1] > 0), asks=tuple(lvl for lvl in a if lvl[1] > 0))


class BookSource(Protocol):
    def book(self, ticket: OrderTicket) -> BookSnapshot: ...

    def close(self) -> None: ...


class RestDepthBooks:
    """The exchange's public book from REST Depth (no API key needed)."""

    def __init__(self, client: KrakenRestClientSync, *, depth: int = 100) -> None:
        self.client = client
        self.depth = depth

    def book(self, ticket: OrderTicket) -> BookSnapshot:
        depth = self.client.depth(ticket.pair, count=self.depth)
        return BookSnapshot.of(
            bids=((lvl.price, lvl.volume) for lvl in depth.bids), asks=((lvl.price, lvl.volume) for lvl in depth.asks)
        )

    def close(self) -> None:
        self.client.close()


class StaticBooks:
    """Books given by the caller, per v2 symbol (tests, backtests, a snapshot the ingest worker holds)."""

    def __init__(self, books: dict[str, BookSnapshot]) -> None:
        self.books = books

    def book(self, ticket: OrderTicket) -> BookSnapshot:
        return self.books.get(ticket.symbol, BookSnapshot((), ()))

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class PaperConfig:
    maker_fee: Decimal = Decimal("0.0025")
    taker_fee: Decimal = Decimal("0.0040")
    slippage_bps: Decimal = ZERO

    @classmethod
    def from_settings(cls) -> PaperConfig:
        return cls(
            maker_fee=Decimal(str(settings.GALFRIDAY_PAPER_MAKER_FEE)),
            taker_fee=Decimal(str(settings.GALFRIDAY_PAPER_TAKER_FEE)),
            slippage_bps=Decimal(str(settings.GALFRIDAY_PAPER_SLIPPAGE_BPS)),
        )


def paper_order_id(client_order_id: str) -> str:
    """Kraken-shaped (`PXXXXX-XXXXX-XXXXXX`), derived from the client order id: the same order, the same id."""
    digest = hashlib.sha256(client_order_id.encode()).hexdigest().upper()
    return f"{PAPER_ID_PREFIX}{digest[:5]}-{digest[5:10]}-{digest[10:16]}"


def is_paper_order_id(exchange_order_id: str) -> bool:
    return len(exchange_order_id) == 19 and exchange_order_id.startswith(PAPER_ID_PREFIX)


@dataclass(frozen=True, slots=True)
class _Fill:
    qty: Decimal
    price: Decimal
    maker: bool


class PaperBroker:
    name = "paper"

    def __init__(
        self,
        books: BookSource,
        config: PaperConfig | None = None,
        *,
        clock: Callable[[], datetime] = timezone.now,
    ) -> None:
        self.books = books
        self.config = config or PaperConfig.from_settings()
        self.clock = clock

    def close(self) -> None:
        self.books.close()

    # --- the Broker interface ------------------------------------------------------------------------------

    def submit(self, ticket: OrderTicket) -> ExchangeOrder:
        oid = paper_order_id(ticket.client_order_id)
        now = self.clock()
        events: list[ExecutionEvent] = [self._detail(ticket, oid, ExecType.PENDING_NEW, now)]
        book = self.books.book(ticket)
        if ticket.post_only and self._crosses(ticket, book):
            events.append(self._closed(oid, ExecType.CANCELED, now, reason="Post only order"))
            return ExchangeOrder(oid, tuple(events), status="canceled")
        events.append(self._detail(ticket, oid, ExecType.NEW, now))
        fills = self._take(ticket, book)
        events.extend(self._trades(ticket, oid, fills, now))
        filled = ticket.filled_qty + sum((f.qty for f in fills), ZERO)
        if filled >= ticket.quantity:
            events.append(self._closed(oid, ExecType.FILLED, now, cum_qty=filled))
            return ExchangeOrder(oid, tuple(events), status="closed")
        if ticket.order_type == OrderType.MARKET:
            events.append(self._closed(oid, ExecType.CANCELED, now, reason="Insufficient liquidity", cum_qty=filled))
            return ExchangeOrder(oid, tuple(events), status="canceled")
        if ticket.time_in_force == TimeInForce.IOC:
            events.append(self._closed(oid, ExecType.CANCELED, now, reason="Immediate or cancel", cum_qty=filled))
            return ExchangeOrder(oid, tuple(events), status="canceled")
        return ExchangeOrder(oid, tuple(events), status="open")

    def cancel(self, ticket: OrderTicket) -> ExchangeOrder | None:
        if not ticket.exchange_order_id:
            return None  # never reached the paper book
        now = self.clock()
        event = self._closed(ticket.exchange_order_id, ExecType.CANCELED, now, reason="User requested")
        return ExchangeOrder(ticket.exchange_order_id, (event,), status="canceled")

    def cancel_all(self) -> int:
        return 0  # the paper book is our own open orders: `orders_cancel_all_execute` cancels each of them

    def query_by_client_id(self, ticket: OrderTicket) -> ExchangeOrder | None:
        # The paper exchange's record is ours: an order is on it once its ack was applied (no events to add).
        if ticket.exchange_order_id:
            return ExchangeOrder(ticket.exchange_order_id, (), status="open")
        return None

    # --- resting orders ------------------------------------------------------------------------------------

    def match_resting(self, ticket: OrderTicket, book: BookSnapshot | None = None) -> ExchangeOrder | None:
        """Fill a resting limit order the market traded through (as a maker, at its limit price)."""
        if ticket.order_type != OrderType.LIMIT or ticket.limit_price is None or not ticket.exchange_order_id:
            return None
        remaining = ticket.quantity - ticket.filled_qty
        if remaining <= 0:
            return None
        book = book if book is not None else self.books.book(ticket)
        if ticket.side == Side.BUY:
            through = sum((q for p, q in book.asks if p < ticket.limit_price), ZERO)
        else:
            through = sum((q for p, q in book.bids if p > ticket.limit_price), ZERO)
        qty = min(remaining, through)
        if qty <= 0:
            return None
        now = self.clock()
        oid = ticket.exchange_order_id
        events = list(self._trades(ticket, oid, [_Fill(qty, ticket.limit_price, maker=True)], now))
        if ticket.filled_qty + qty >= ticket.quantity:
            events.append(self._closed(oid, ExecType.FILLED, now, cum_qty=ticket.quantity))
        return ExchangeOrder(oid, tuple(events), status="closed" if qty == remaining else "open")

    # --- matching ------------------------------------------------------------------------------------------

    @staticmethod
    def _levels(ticket: OrderTicket, book: BookSnapshot) -> Sequence[tuple[Decimal, Decimal]]:
        return book.asks if ticket.side == Side.BUY else book.bids

    @staticmethod
    def _marketable(ticket: OrderTicket, price: Decimal) -> bool:
        if ticket.order_type == OrderType.MARKET or ticket.limit_price is None:
            return True
        return price <= ticket.limit_price if ticket.side == Side.BUY else price >= ticket.limit_price

    def _crosses(self, ticket: OrderTicket, book: BookSnapshot) -> bool:
        levels = self._levels(ticket, book)
        return bool(levels) and self._marketable(ticket, levels[0][0])

    def _take(self, ticket: OrderTicket, book: BookSnapshot) -> list[_Fill]:
        remaining = ticket.quantity - ticket.filled_qty
        fills: list[_Fill] = []
        for price, available in self._levels(ticket, book):
            if remaining <= 0 or not self._marketable(ticket, price):
                break
            qty = min(remaining, available)
            fills.append(_Fill(qty, self._slipped(ticket.side, price), maker=False))
            remaining -= qty
        return fills

    def _slipped(self, side: str, price: Decimal) -> Decimal:
        if not self.config.slippage_bps:
            return price
        factor = self.config.slippage_bps / BPS
        return q_price(price * (1 + factor) if side == Side.BUY else price * (1 - factor))

    # --- events --------------------------------------------------------------------------------------------

    def _detail(self, ticket: OrderTicket, oid: str, exec_type: ExecType, now: datetime) -> ExecutionEvent:
        return order_detail_event(ticket, oid, exec_type, timestamp=now, source=EventSource.EXCHANGE)

    @staticmethod
    def _closed(oid: str, exec_type: ExecType, now: datetime, **extra: Any) -> ExecutionEvent:
        return ExecutionEvent(
            order_id=oid,
            exec_type=exec_type,
            timestamp=now,
            order_status=str(exec_type),
            source=EventSource.EXCHANGE,
            **extra,
        )

    def _trades(self, ticket: OrderTicket, oid: str, fills: Sequence[_Fill], now: datetime) -> list[ExecutionEvent]:
        events = []
        for n, fill in enumerate(fills, start=ticket.fill_count + 1):
            cost = q_money(fill.qty * fill.price)
            fee = q_money(cost * (self.config.maker_fee if fill.maker else self.config.taker_fee))
            events.append(
                ExecutionEvent(
                    order_id=oid,
                    exec_type=ExecType.TRADE,
                    timestamp=now,
                    cl_ord_id=ticket.client_order_id,
                    symbol=ticket.symbol,
                    side=ticket.side,
                    exec_id=f"{oid}-T{n}",
                    last_qty=fill.qty,
                    last_price=fill.price,
                    cost=cost,
                    fees=(FeeAmount(ticket.quote, fee),) if fee else (),
                    liquidity_ind="m" if fill.maker else "t",
                    source=EventSource.EXCHANGE,
                )
            )
        return events
