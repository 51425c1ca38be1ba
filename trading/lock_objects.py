"""The one place trading takes row locks (after Saleor's lock_objects.py).

Every writer locks in the same order — order, then position, then balances (by pk) — so two transactions
never wait on each other in a cycle. Keep the locked block short. SQLite ignores `select_for_update`; the
concurrency tests run on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from trading.models import Balance, Instrument, Order, ParkedExecution, Position, TradingState


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
