"""Paper trading's Django side: the sweep that fills resting paper limit orders the market traded through, and
the paper account's starting balances. The broker itself is `trading.brokers.paper.PaperBroker`."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings

from trading.accounts import balance_set
from trading.brokers.base import OrderTicket
from trading.brokers.paper import BookSnapshot, PaperBroker, is_paper_order_id
from trading.execution import OrderBusy, exchange_order_apply, order_mutex
from trading.executions import EventSource
from trading.models import Balance, Order, OrderType
from trading.order_states import OrderState

logger = logging.getLogger(__name__)


def paper_sweep(*, broker: PaperBroker, actor: str = "paper:sweep") -> dict[str, Any]:
    """Fill the resting paper limit orders the market traded through: one book read per instrument, each order
    under its execution mutex (an order busy elsewhere is left to the next sweep). Idempotent: exec ids follow
    the order's fill count, so a sweep repeated (or run twice at once) records each fill once."""
    open_states = [OrderState.ACCEPTED.value, OrderState.PARTIALLY_FILLED.value]
    orders = (
        Order.objects.select_related("instrument")
        .filter(state__in=open_states, order_type=OrderType.LIMIT, external=False)
        .exclude(exchange_order_id="")
        .order_by("pk")
    )
    books: dict[int, BookSnapshot] = {}
    filled: list[int] = []
    busy: list[int] = []
    for order in orders:
        if not is_paper_order_id(order.exchange_order_id):
            continue
        try:
            with order_mutex(order.pk):
                order.refresh_from_db()
                if order.state not in open_states:
                    continue
                ticket = OrderTicket.from_order(order)
                if order.instrument_id not in books:
                    books[order.instrument_id] = broker.books.book(ticket)
                result = broker.match_resting(ticket, books[order.instrument_id])
                if result is not None:
                    exchange_order_apply(result, actor=actor)
                    filled.append(order.pk)
        except OrderBusy:
            busy.append(order.pk)
    if filled:
        logger.info("paper sweep filled resting orders", extra={"orders": filled})
    return {"filled": filled, "busy": busy, "books": len(books)}


def parse_balances(text: str) -> dict[str, Decimal]:
    """`USD=100000,BTC=0.5` → {"USD": Decimal("100000"), "BTC": Decimal("0.5")}; a clear error otherwise."""
    balances: dict[str, Decimal] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        asset, sep, amount = part.partition("=")
        try:
            value = Decimal(amount)
        except ArithmeticError as exc:
            raise ValueError(f"paper balance {part!r}: {amount!r} is not a number") from exc
        if not sep or not asset.strip() or not value.is_finite() or value < 0:
            raise ValueError(f"paper balance {part!r} must look like ASSET=AMOUNT with AMOUNT >= 0")
        balances[asset.strip().upper()] = value
    return balances


def paper_account_seed(*, balances: dict[str, Decimal] | None = None) -> dict[str, Decimal]:
    """Give a new paper account its starting balances (GALFRIDAY_PAPER_BALANCES); once: an account that already
    has balances is left alone. Returns what was set (empty when nothing was)."""
    if Balance.objects.exists():
        return {}
    wanted = balances if balances is not None else parse_balances(settings.GALFRIDAY_PAPER_BALANCES)
    for asset, amount in wanted.items():
        balance_set(asset=asset, total=amount, source=EventSource.SYSTEM, actor="paper-account")
    return wanted
