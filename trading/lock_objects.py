"""The one place trading takes row locks (after Saleor's lock_objects.py).

Every writer locks in the same order — the trading state, then order(s) (by pk), then position, then balances
(by pk) — so two transactions never wait on each other in a cycle. The trading-state row comes first and is taken
by every risk-checked submission and by the kill switch: checked submissions are serialised (their order-rate and
exposure checks cannot race) and a halt waits for a submission in flight, then cancels it. Keep the locked block
short. SQLite ignores `select_for_update`; the concurrency tests run on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from core.compiled import PK_MARKER, CompiledQuery, model_from_row
from core.errors import NotFoundError
from trading.models import (
    Alert,
    Balance,
    EquitySnapshot,
    Fill,
    Instrument,
    MarketQuote,
    Order,
    ParkedExecution,
    Position,
    RiskLimit,
    TradingState,
)
from trading.order_states import OPEN, OrderState


def order_qs_select_for_update() -> QuerySet[Order]:
    return Order.objects.select_for_update(of=("self",)).select_related("instrument").order_by("pk")


def order_lock(pk: int) -> Order:
    """The order with its instrument, locked (`order_qs_select_for_update().get(pk=pk)`, compiled once); a
    `NotFoundError` (404) when there is none."""
    orders = orders_from_rows(_ORDER_BY_PK.rows(pk))
    if not orders:
        raise NotFoundError(f"order {pk} does not exist")
    return orders[0]


def _for_update() -> str:
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def orders_lock_matching(*, exchange_order_id: str, client_order_id: str | None) -> list[Order]:
    """Orders with this exchange order id or (when given) this client order id, with their instruments, locked in
    pk order: `order_qs_select_for_update().filter(...)`, compiled once (the first statement of every execution
    report: building and compiling the queryset cost more CPU than running it)."""
    if client_order_id:
        return orders_from_rows(_ORDER_MATCH_EITHER.rows(exchange_order_id, client_order_id))
    return orders_from_rows(_ORDER_MATCH_EXCHANGE.rows(exchange_order_id))


def orders_from_rows(rows: list[tuple[Any, ...]]) -> list[Order]:
    """Orders with their instruments from rows of `order_qs_select_for_update()` (the order's columns, then the
    instrument's)."""
    n = len(Order._meta.concrete_fields)
    orders = []
    for row in rows:
        order = model_from_row(Order, row[:n])
        Order.instrument.field.set_cached_value(order, model_from_row(Instrument, row[n:]))
        orders.append(order)
    return orders


_MARK_EXCHANGE = "\x01exchange_order_id"
_MARK_CLIENT = "\x01client_order_id"
_ORDER_BY_PK = CompiledQuery(lambda pk: order_qs_select_for_update().filter(pk=pk), PK_MARKER)
_ORDER_MATCH_EXCHANGE = CompiledQuery(
    lambda txid: order_qs_select_for_update().filter(exchange_order_id=txid), _MARK_EXCHANGE
)
_ORDER_MATCH_EITHER = CompiledQuery(
    lambda txid, cl_ord_id: order_qs_select_for_update().filter(
        Q(exchange_order_id=txid) | Q(client_order_id=cl_ord_id)
    ),
    _MARK_EXCHANGE,
    _MARK_CLIENT,
)


def position_lock(instrument: Instrument) -> Position:
    """The instrument's position, created flat if missing, locked (one query when it exists; raw SQL: the
    queryset's own CPU cost was most of this on the execution-report path)."""
    table = connection.ops.quote_name(Position._meta.db_table)
    sql = f"SELECT * FROM {table} WHERE instrument_id = %s{_for_update()}"
    position = next(iter(Position.objects.raw(sql, [instrument.pk])), None)
    if position is not None:
        return position
    Position.objects.get_or_create(instrument=instrument)
    return Position.objects.select_for_update().order_by("pk").get(instrument=instrument)


def balances_lock(assets: Iterable[str]) -> dict[str, Balance]:
    """The balances of `assets`, created at zero if missing (in name order), then locked in pk order (one query
    when they all exist)."""
    names = sorted(set(assets))
    table = connection.ops.quote_name(Balance._meta.db_table)
    sql = f"SELECT * FROM {table} WHERE asset IN ({', '.join(['%s'] * len(names))}) ORDER BY id{_for_update()}"
    locked = {b.asset: b for b in Balance.objects.raw(sql, names)}
    if len(locked) == len(names):
        return locked
    for name in names:
        Balance.objects.get_or_create(asset=name)
    return {b.asset: b for b in Balance.objects.select_for_update().filter(asset__in=names).order_by("pk")}


def parked_lock(exchange_order_id: str) -> list[ParkedExecution]:
    """The executions parked under this exchange order id, locked in pk order, as one plain statement: every
    execution report looks, and almost never finds any, so a queryset's CPU cost was most of it."""
    table = connection.ops.quote_name(ParkedExecution._meta.db_table)
    sql = f"SELECT * FROM {table} WHERE exchange_order_id = %s ORDER BY id{_for_update()}"
    return list(ParkedExecution.objects.raw(sql, [exchange_order_id]))


def fill_exists(exec_id: str) -> bool:
    """Whether a fill with this exchange execution id is recorded (the unique key; no lock needed: a concurrent
    insert of the same fill fails on the constraint and rolls its transaction back)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {connection.ops.quote_name(Fill._meta.db_table)} WHERE exec_id = %s", [exec_id])
        return cursor.fetchone() is not None


def trading_state_lock() -> TradingState:
    """The trading-state row, created if missing, locked (compiled once: every checked submission takes it)."""
    rows = _TRADING_STATE.rows()
    if rows:
        return model_from_row(TradingState, rows[0])
    TradingState.objects.get_or_create(id=TradingState.SINGLETON_ID)
    return TradingState.objects.select_for_update().get(id=TradingState.SINGLETON_ID)


def open_orders_qs_select_for_update(*, include_created: bool = True) -> QuerySet[Order]:
    """Orders live (or possibly live) on the exchange, and optionally those never sent, locked in pk order."""
    states = {s.value for s in OPEN} | ({OrderState.CREATED.value} if include_created else set())
    return order_qs_select_for_update().filter(state__in=sorted(states))


def fill_lock(pk: int) -> Fill:
    """A recorded fill, locked (after its order's lock: the order's row comes first)."""
    return Fill.objects.select_for_update().get(pk=pk)


# Rows written apart from the order / position / balance chain (each locked alone, so no cycle with it):


def instrument_lock(symbol: str) -> Instrument | None:
    """The instrument with this v2 symbol, locked; None when there is none."""
    return Instrument.objects.select_for_update().filter(symbol=symbol).order_by("pk").first()


def market_quote_lock(instrument: Instrument, *, defaults: dict[str, Any]) -> tuple[MarketQuote, bool]:
    """The instrument's last quote, created from `defaults` when missing, locked; and whether it was created."""
    return MarketQuote.objects.select_for_update().get_or_create(instrument=instrument, defaults=defaults)


def equity_snapshot_latest_lock(currency: str) -> EquitySnapshot | None:
    """The latest equity snapshot in `currency`, locked (serialises snapshots: each carries the high-water mark
    on from the one before)."""
    return EquitySnapshot.objects.select_for_update().filter(currency=currency).order_by("-taken_at", "-id").first()


def risk_limit_lock(instrument: Instrument | None) -> RiskLimit | None:
    """The global limits row (`instrument` None) or the instrument's overrides, locked; None when missing."""
    return RiskLimit.objects.select_for_update().filter(instrument=instrument).order_by("pk").first()


def alert_lock(pk: int) -> Alert | None:
    """The alert, locked; None when there is none."""
    return Alert.objects.select_for_update().filter(pk=pk).first()


_TRADING_STATE = CompiledQuery(
    lambda: TradingState.objects.select_for_update().filter(id=TradingState.SINGLETON_ID).order_by()
)
