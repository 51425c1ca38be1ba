"""Reconciliation reads: runs and discrepancies (API, admin, safety halts), and the loads of our own books a run
compares with the exchange (orders, fills, balances, positions, in the engine's plain types)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Case, DecimalField, F, QuerySet, Sum, When

from reconciliation import engine
from reconciliation.engine import InstrumentInfo, LocalFill, LocalOrder
from reconciliation.models import Discrepancy, ReconciliationRun
from trading.models import Balance, Fill, Instrument, Order, Position


def run_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[ReconciliationRun]:
    """Newest first. Filters: trigger, status, started_after, started_before."""
    filters = filters or {}
    qs = ReconciliationRun.objects.all()
    if filters.get("trigger"):
        qs = qs.filter(trigger=filters["trigger"])
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("started_after"):
        qs = qs.filter(started_at__gte=filters["started_after"])
    if filters.get("started_before"):
        qs = qs.filter(started_at__lt=filters["started_before"])
    return qs


def run_get(*, run_id: int) -> ReconciliationRun | None:
    return ReconciliationRun.objects.filter(pk=run_id).first()


def discrepancy_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Discrepancy]:
    """Newest first. Filters: run_id, kind, severity, status, symbol, asset, order_id, open (bool: not resolved)."""
    filters = filters or {}
    qs = Discrepancy.objects.select_related("instrument")
    for name in ("kind", "severity", "status", "asset", "order_id", "run_id"):
        if filters.get(name):
            qs = qs.filter(**{name: filters[name]})
    if filters.get("symbol"):
        qs = qs.filter(instrument__symbol=filters["symbol"])
    if filters.get("open") is True:
        qs = qs.filter(status__in=[Discrepancy.Status.OPEN, Discrepancy.Status.ACKNOWLEDGED])
    elif filters.get("open") is False:
        qs = qs.filter(status__in=[Discrepancy.Status.RESOLVED, Discrepancy.Status.AUTO_RESOLVED])
    return qs


def discrepancy_get(*, discrepancy_id: int) -> Discrepancy | None:
    return Discrepancy.objects.select_related("instrument").filter(pk=discrepancy_id).first()


def last_good_run() -> ReconciliationRun | None:
    return (
        ReconciliationRun.objects.filter(
            status__in=[ReconciliationRun.Status.CLEAN, ReconciliationRun.Status.CORRECTED]
        )
        .order_by("-started_at")
        .first()
    )


def last_good_window_end() -> datetime | None:
    """The end of the newest window a clean or corrected run covered (the next run re-reads from a little before)."""
    return (
        ReconciliationRun.objects.filter(
            status__in=[ReconciliationRun.Status.CLEAN, ReconciliationRun.Status.CORRECTED], window_end__isnull=False
        )
        .order_by("-window_end")
        .values_list("window_end", flat=True)
        .first()
    )


# --- our books, as the engine compares them -------------------------------------------------------------------

_ORDER_FIELDS = (
    "pk",
    "client_order_id",
    "exchange_order_id",
    "instrument__symbol",
    "side",
    "quantity",
    "state",
    "filled_qty",
    "created_at",
    "submitted_at",
)
_FILL_FIELDS = ("exec_id", "order_id", "instrument__symbol", "side", "quantity", "price", "fee", "executed_at")
_CHUNK = 500  # ids per IN (...) list


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _local_order(row: tuple[Any, ...]) -> LocalOrder:
    pk, cl, ex, symbol, side, qty, state, filled, created, submitted = row
    return LocalOrder(pk, cl, ex, symbol, side, qty, state, filled, created, submitted)


def local_orders_load(*, exchange_order_ids: Sequence[str], client_order_ids: Sequence[str]) -> dict[int, LocalOrder]:
    """Our open orders, and every order the exchange showed (by its exchange id or our client order id), by pk."""
    out: dict[int, LocalOrder] = {}
    qs = Order.objects.order_by()
    for row in qs.filter(state__in=[s.value for s in engine.LOCAL_OPEN]).values_list(*_ORDER_FIELDS):
        out[row[0]] = _local_order(row)
    for chunk in _chunks(list(exchange_order_ids)):
        for row in qs.filter(exchange_order_id__in=chunk).values_list(*_ORDER_FIELDS):
            out[row[0]] = _local_order(row)
    for chunk in _chunks(list(client_order_ids)):
        for row in qs.filter(client_order_id__in=chunk).values_list(*_ORDER_FIELDS):
            out[row[0]] = _local_order(row)
    return out


def local_fills_load(*, since: datetime, exec_ids: Sequence[str]) -> dict[str, LocalFill]:
    """Our fills executed since `since` (less a minute of clock skew), and those of `exec_ids`, by exec id."""
    out: dict[str, LocalFill] = {}
    qs = Fill.objects.order_by()
    for row in qs.filter(executed_at__gte=since - timedelta(seconds=60)).values_list(*_FILL_FIELDS):
        out[row[0]] = LocalFill(*row)
    missing = [e for e in exec_ids if e not in out]
    for chunk in _chunks(missing):
        for row in qs.filter(exec_id__in=chunk).values_list(*_FILL_FIELDS):
            out[row[0]] = LocalFill(*row)
    return out


def instrument_infos() -> list[InstrumentInfo]:
    """Every instrument with the names the exchange may call it by (REST pair, altname, v1 symbol)."""
    return [
        InstrumentInfo(symbol=i.symbol, base=i.base, quote=i.quote, names=(i.rest_symbol, i.altname, i.v1_symbol))
        for i in Instrument.objects.all()
    ]


def instrument_ids_by_symbol() -> dict[str, int]:
    return dict(Instrument.objects.values_list("symbol", "pk"))


def local_balances() -> dict[str, Decimal]:
    return dict(Balance.objects.values_list("asset", "total"))


def balance_total(*, asset: str) -> Decimal | None:
    total: Decimal | None = Balance.objects.filter(asset=asset).values_list("total", flat=True).first()
    return total


def positions() -> dict[str, Decimal]:
    """Position quantity per symbol, as booked."""
    return {s: q for s, q in Position.objects.values_list("instrument__symbol", "quantity")}


def positions_from_fills() -> dict[str, Decimal]:
    """Position quantity per symbol, recomputed from every fill (buys minus sells)."""
    signed = Case(
        When(side="buy", then=F("quantity")),
        default=-F("quantity"),
        output_field=DecimalField(max_digits=30, decimal_places=10),
    )
    rows = Fill.objects.order_by().values("instrument__symbol").annotate(net=Sum(signed))
    return {r["instrument__symbol"]: r["net"] or Decimal(0) for r in rows}


def existing_order_ids(*, order_ids: Iterable[int]) -> set[int]:
    return set(Order.objects.filter(pk__in=list(order_ids)).values_list("pk", flat=True))


def order_snapshot(*, order_id: int | None) -> dict[str, Any]:
    """The fields of an order a correction changes, as strings (a discrepancy's before/after evidence)."""
    if order_id is None:
        return {}
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        return {}
    return {
        "state": order.state,
        "quantity": str(order.quantity),
        "filled_qty": str(order.filled_qty),
        "fees": str(order.fees),
        "exchange_order_id": order.exchange_order_id,
    }
