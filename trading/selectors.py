"""Reads of the trading books."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import F, Prefetch, Q, QuerySet, Subquery

from core.compiled import CompiledQuery, field_names, model_from_row
from trading.models import (
    Alert,
    Balance,
    Decision,
    EquitySnapshot,
    Fill,
    Instrument,
    MarketQuote,
    Order,
    OrderEvent,
    Position,
    RiskLimit,
    TradingState,
)
from trading.order_states import OPEN
from trading.pnl import unrealised_pnl
from trading.risk import DEFAULT_LIMITS, Limits, limits_merged


def order_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Order]:
    """Orders, newest first. Filters: state, side, symbol, client_order_id, exchange_order_id, open (bool),
    created_after, created_before."""
    filters = filters or {}
    qs = Order.objects.select_related("instrument", "decision")
    if filters.get("state"):
        qs = qs.filter(state=filters["state"])
    if filters.get("side"):
        qs = qs.filter(side=filters["side"])
    if filters.get("symbol"):
        qs = qs.filter(instrument__symbol=filters["symbol"])
    if filters.get("client_order_id"):
        qs = qs.filter(client_order_id=filters["client_order_id"])
    if filters.get("exchange_order_id"):
        qs = qs.filter(exchange_order_id=filters["exchange_order_id"])
    if filters.get("open") is True:
        qs = qs.filter(state__in=[s.value for s in OPEN])
    elif filters.get("open") is False:
        qs = qs.exclude(state__in=[s.value for s in OPEN])
    if filters.get("created_after"):
        qs = qs.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        qs = qs.filter(created_at__lt=filters["created_before"])
    return qs.order_by("-created_at", "-id")


def order_get(*, order_id: int) -> Order | None:
    return (
        Order.objects.select_related("instrument", "decision")
        .prefetch_related(
            Prefetch("events", queryset=OrderEvent.objects.order_by("sequence")),
            Prefetch("fills", queryset=Fill.objects.order_by("executed_at", "id")),
        )
        .filter(pk=order_id)
        .first()
    )


def open_orders() -> QuerySet[Order]:
    """Orders live (or possibly live) on the exchange: what a HALT must cancel."""
    return order_list(filters={"open": True})


def fill_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Fill]:
    filters = filters or {}
    qs = Fill.objects.select_related("instrument", "order")
    if filters.get("order_id"):
        qs = qs.filter(order_id=filters["order_id"])
    if filters.get("symbol"):
        qs = qs.filter(instrument__symbol=filters["symbol"])
    if filters.get("executed_after"):
        qs = qs.filter(executed_at__gte=filters["executed_after"])
    return qs.order_by("-executed_at", "-id")


def decision_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Decision]:
    """The decision pipeline's records (signals, sizing, the order they made), newest bar first."""
    filters = filters or {}
    qs = Decision.objects.select_related("instrument", "order")
    if filters.get("symbol"):
        qs = qs.filter(instrument__symbol=filters["symbol"])
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("bar_after"):
        qs = qs.filter(bar_time__gte=filters["bar_after"])
    return qs.order_by("-bar_time", "-id")


def position_list(*, include_flat: bool = True) -> QuerySet[Position]:
    qs = Position.objects.select_related("instrument")
    if not include_flat:
        qs = qs.exclude(quantity=0)
    return qs.order_by("instrument__symbol")


@dataclass(frozen=True)
class PositionValuation:
    symbol: str
    quantity: Decimal
    avg_price: Decimal
    mark: Decimal
    unrealised_pnl: Decimal
    realised_pnl: Decimal
    fees: Decimal

    @property
    def total_pnl(self) -> Decimal:
        return self.realised_pnl + self.unrealised_pnl - self.fees


def position_valuation(*, position: Position, mark: Decimal) -> PositionValuation:
    return PositionValuation(
        symbol=position.instrument.symbol,
        quantity=position.quantity,
        avg_price=position.avg_price,
        mark=mark,
        unrealised_pnl=unrealised_pnl(quantity=position.quantity, avg_price=position.avg_price, mark=mark),
        realised_pnl=position.realised_pnl,
        fees=position.fees,
    )


def balance_list() -> QuerySet[Balance]:
    return Balance.objects.order_by("asset")


def trading_state_get() -> TradingState:
    """The trading state; ACTIVE with no history when nobody has switched it yet (not written by a read)."""
    return TradingState.objects.filter(id=TradingState.SINGLETON_ID).first() or TradingState()


def equity_snapshot_list(*, currency: str = "USD", since: datetime | None = None) -> QuerySet[EquitySnapshot]:
    qs = EquitySnapshot.objects.filter(currency=currency)
    if since is not None:
        qs = qs.filter(taken_at__gte=since)
    return qs.order_by("-taken_at", "-id")


# --- risk -----------------------------------------------------------------------------------------------------


def risk_limit_list() -> QuerySet[RiskLimit]:
    """The global row first, then the per-instrument overrides by symbol."""
    return RiskLimit.objects.select_related("instrument").order_by(F("instrument__symbol").asc(nulls_first=True))


_LIMIT_NAMES: tuple[str, ...] = tuple(Limits.__slots__)  # type: ignore[attr-defined]


def risk_limits_effective(*, instrument: Instrument | None = None) -> Limits:
    """The limits in force for `instrument` (or the account): built-in defaults, overridden by the global row,
    overridden by the instrument's row.

    Read on every call, not cached: it is one indexed statement for at most two rows (read as values), and a
    per-process cache would need a statement to validate it anyway (a limit changed by the admin, the API or a
    bulk update must bind the very next order)."""
    scope = Q(instrument__isnull=True)
    if instrument is not None:
        scope |= Q(instrument=instrument)
    rows = {
        values.pop("instrument_id"): values
        for values in RiskLimit.objects.filter(scope).order_by().values("instrument_id", *_LIMIT_NAMES)
    }  # one query for both rows
    limits = limits_merged(DEFAULT_LIMITS, rows.get(None, {}))
    if instrument is not None:
        limits = limits_merged(limits, rows.get(instrument.pk, {}))
    return limits


def account_currency() -> str:
    """The currency the account is valued in (equity snapshots, drawdown, the daily loss limit)."""
    return str(getattr(settings, "GALFRIDAY_ACCOUNT_CURRENCY", "USD"))


@dataclass(frozen=True)
class DecisionInputs:
    instrument: Instrument
    mid: Decimal | None  # of the instrument's last quote
    bid: Decimal | None
    ask: Decimal | None
    position_qty: Decimal
    equity: Decimal | None  # of the latest equity snapshot
    existing_decision_id: int | None  # the pk of the decision already made under this id


def decision_inputs(*, symbol: str, decision_id: str) -> DecisionInputs:
    """What the decision pipeline reads before sizing, in one statement compiled once (it runs on every closed
    bar, on the path to the exchange): the instrument with its quote's mid and its position joined, the latest
    equity in the account currency and the decision already made under `decision_id`, if any, as subqueries.
    Raises Instrument.DoesNotExist for an unknown symbol."""
    rows = _DECISION_INPUTS.rows(symbol, decision_id, account_currency())
    if not rows:
        raise Instrument.DoesNotExist(f"no instrument {symbol}")
    n = len(Instrument._meta.concrete_fields)
    mid, bid, ask, position_qty, equity, existing = rows[0][n:]
    return DecisionInputs(
        instrument=model_from_row(Instrument, rows[0][:n]),
        mid=mid,
        bid=bid,
        ask=ask,
        position_qty=position_qty if position_qty is not None else Decimal(0),
        equity=equity,
        existing_decision_id=existing,
    )


_DECISION_INPUTS = CompiledQuery(
    lambda symbol, decision_id, currency: (
        Instrument.objects.filter(symbol=symbol)
        .annotate(
            latest_equity=Subquery(
                EquitySnapshot.objects.filter(currency=currency).order_by("-taken_at", "-id").values("equity")[:1]
            ),
            existing_decision=Subquery(Decision.objects.filter(decision_id=decision_id).values("pk")[:1]),
        )
        .values_list(
            *field_names(Instrument),
            "quote_top__mid",
            "quote_top__bid",
            "quote_top__ask",
            "position__quantity",
            "latest_equity",
            "existing_decision",
        )
        .order_by()
    ),
    "\x01symbol",
    "\x01decision_id",
    "\x01currency",
)


def market_marks() -> dict[str, tuple[Decimal, datetime]]:
    """(mid, quoted at) of every instrument that has a quote, by v2 symbol: what the risk snapshot reads, as
    values (no model rows: it runs on every order)."""
    rows = MarketQuote.objects.order_by().values_list("instrument__symbol", "mid", "quoted_at")
    return {symbol: (mid, quoted_at) for symbol, mid, quoted_at in rows}


def market_quotes() -> dict[str, MarketQuote]:
    """The last quote of every instrument that has one, by v2 symbol."""
    return {q.instrument.symbol: q for q in MarketQuote.objects.select_related("instrument")}


def alert_list(*, unacknowledged: bool | None = None) -> QuerySet[Alert]:
    qs = Alert.objects.all()
    if unacknowledged is True:
        qs = qs.filter(acknowledged_at__isnull=True)
    elif unacknowledged is False:
        qs = qs.filter(acknowledged_at__isnull=False)
    return qs.order_by("-created_at", "-id")
