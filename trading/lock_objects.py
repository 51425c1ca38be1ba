"""The one place trading takes row locks (after Saleor's lock_objects.py).

Every writer locks in the same order — the trading state, then order(s) (by pk), then position, then balances
(by pk) — so two transactions never wait on each other in a cycle. The trading-state row comes first and is taken
by every risk-checked submission and by the kill switch: checked submissions are serialised (their order-rate and
exposure checks cannot race) and a halt waits for a submission in flight, then cancels it. Keep the locked block
short. SQLite ignores `select_for_update`; the concurrency tests run on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from trading.models import Balance, Instrument, Order, ParkedExecution, Position, TradingState
from trading.order_states import OPEN, OrderState


def order_qs_select_for_update() -> QuerySet[Order]:
    return Order.objects.select_for_update(of=("self",)).select_related("instrument").order_by("pk")


def order_lock(pk: int) -> Order:
    return order_qs_select_for_update().get(pk=pk)


def position_lock(instrument: Instrument) -> Position:
    """The instrument's position, created flat if missing, locked."""
    Position.objects.get_or_create(instrument=instrument)
    return Position.objects.select_for_update().order_by("pk").get(instrument=instrument)


def balances_lock(assets: Iterable[str]) -> dict[str, Balance]:
    """The balances of `assets`, created at zero if missing (in name order), then locked in pk order."""
    names = sorted(set(assets))
    for name in names:
        Balance.objects.get_or_create(asset=name)
    return {b.asset: b for b in Balance.objects.select_for_update().filter(asset__in=names).order_by("pk")}


def parked_qs_select_for_update(exchange_order_id: str) -> QuerySet[ParkedExecution]:
    return ParkedExecution.objects.select_for_update().filter(exchange_order_id=exchange_order_id).order_by("pk")


def trading_state_lock() -> TradingState:
    TradingState.objects.get_or_create(id=TradingState.SINGLETON_ID)
    return TradingState.objects.select_for_update().get(id=TradingState.SINGLETON_ID)


def open_orders_qs_select_for_update(*, include_created: bool = True) -> QuerySet[Order]:
    """Orders live (or possibly live) on the exchange, and optionally those never sent, locked in pk order."""
    states = {s.value for s in OPEN} | ({OrderState.CREATED.value} if include_created else set())
    return order_qs_select_for_update().filter(state__in=sorted(states))
