"""Reads of the trading books."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import DateTimeField, F, Func, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.expressions import RawSQL

from core.compiled import PK_MARKER, CompiledQuery, field_names, model_from_row
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
    money_field,
)
from trading.order_states import OPEN
from trading.pnl import ZERO, unrealised_pnl
from trading.risk import DEFAULT_LIMITS, ORDER_RATE_WINDOW, Limits, limits_merged


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
            Prefetch("fills", queryset=Fill.objects.select_related("instrument").order_by("executed_at", "id")),
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
    return str(settings.GALFRIDAY_ACCOUNT_CURRENCY)


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


def market_quotes() -> dict[str, MarketQuote]:
    """The last quote of every instrument that has one, by v2 symbol."""
    return {q.instrument.symbol: q for q in MarketQuote.objects.select_related("instrument")}


def alert_list(*, unacknowledged: bool | None = None) -> QuerySet[Alert]:
    """The old `/api/trading/alerts/` list (the alerting API at `/api/alerting/alerts/` supersedes it):
    `unacknowledged` True means still firing (nobody acknowledged or resolved it), False the others."""
    qs = Alert.objects.all()
    if unacknowledged is True:
        qs = qs.filter(state=Alert.State.FIRING)
    elif unacknowledged is False:
        qs = qs.exclude(state=Alert.State.FIRING)
    return qs.order_by("-created_at", "-id")


# --- the risk snapshot's reads ----------------------------------------------------------------------------------
#
# On every order, on the way to the exchange (the bar -> ack path): each statement is compiled once per thread's
# connection (`core.compiled.CompiledQuery`; building and compiling the querysets cost more CPU than running them),
# and the same statements run on every database backend.


def utc_day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class OpenPosition:
    """What the risk snapshot and the daily PnL read of an open position (as values, not model rows)."""

    symbol: str
    quantity: Decimal
    avg_price: Decimal


def open_positions() -> list[OpenPosition]:
    """Every position that is not flat."""
    return [OpenPosition(symbol, quantity, avg_price) for symbol, quantity, avg_price in _OPEN_POSITIONS.rows()]


def pnl_with_unrealised(realised: Decimal, marks: Mapping[str, Decimal], positions: list[OpenPosition]) -> Decimal:
    """`realised` plus the unrealised PnL of `positions` at `marks` (a position without a mark counts at its entry
    price, i.e. zero)."""
    unrealised = ZERO
    for position in positions:
        mark = marks.get(position.symbol)
        if mark is not None:
            unrealised += unrealised_pnl(quantity=position.quantity, avg_price=position.avg_price, mark=mark)
    return realised + unrealised


def realised_today(now: datetime) -> Decimal:
    """Today's (UTC) realised PnL net of fees, summed by the database."""
    rows = _REALISED_SINCE.rows(_datetime_param(utc_day_start(now)))
    return Decimal(rows[0][0]) if rows and rows[0][0] is not None else ZERO


def daily_pnl(*, now: datetime, marks: Mapping[str, Decimal], positions: list[OpenPosition] | None = None) -> Decimal:
    """Today's (UTC) realised PnL net of fees, plus the unrealised PnL of the open positions at `marks` (a
    position without a mark counts at its entry price, i.e. zero). `positions`: the open positions when the
    caller has them already."""
    return pnl_with_unrealised(realised_today(now), marks, open_positions() if positions is None else positions)


@dataclass(frozen=True)
class OpenOrderGroup:
    """The other open orders' remaining quantity summed per instrument, side and limit price (every order of a
    group has the same reference price, so the sum times that price is the sum of each order's remaining times
    it)."""

    instrument_id: int
    symbol: str
    base: str
    quote: str
    side: str
    limit_price: Decimal | None
    remaining: Decimal


@dataclass(frozen=True)
class RiskSnapshotReads:
    """What the risk snapshot reads besides the locked rows."""

    quotes: dict[str, tuple[Decimal, datetime]]  # (mid, quoted at) by v2 symbol
    open_groups: list[OpenOrderGroup]  # the other open orders related to the instrument, grouped
    positions: list[OpenPosition]  # every open position
    recent_submissions: list[datetime]  # submission times of our orders within the order-rate window
    realised_today: Decimal  # today's (UTC) realised PnL net of fees
    latest_equity: tuple[Decimal, Decimal] | None  # (equity, high-water mark) of the latest snapshot


def risk_snapshot_reads(instrument: Instrument, *, exclude_pk: int | None, now: datetime) -> RiskSnapshotReads:
    """What the pre-trade check reads about the rest of the book for an order of `instrument`, in three statements
    whatever the size of the book: the instruments with their quotes and open positions, with today's realised
    PnL and the latest equity of the account currency (one statement); the other open orders that hold the
    instrument or its quote / base currency, grouped (`exclude_pk`: the order being checked); our submissions
    within the order-rate window."""
    currency = account_currency()
    book = _BOOK.rows(instrument.pk, _datetime_param(utc_day_start(now)), currency, currency)
    groups = _OPEN_ORDER_GROUPS.rows(instrument.pk, instrument.quote, instrument.base, exclude_pk or 0)
    recent = _RECENT_SUBMISSIONS.rows(_datetime_param(now - ORDER_RATE_WINDOW))
    realised, equity, high_water_mark = book[0][5:] if book else (None, None, None)
    return RiskSnapshotReads(
        quotes={symbol: (mid, at) for symbol, mid, at, *_ in book if mid is not None},
        open_groups=[OpenOrderGroup(*row) for row in groups],
        positions=[OpenPosition(symbol, qty, avg) for symbol, _, _, qty, avg, *_ in book if qty],
        recent_submissions=[t for (t,) in recent if t is not None],
        realised_today=realised if realised is not None else ZERO,
        latest_equity=(equity, high_water_mark) if equity is not None else None,
    )


def _datetime_param(value: datetime) -> Any:
    """A time as the database backend takes it in a statement parameter (what the ORM would pass)."""
    return connection.ops.adapt_datetimefield_value(value)


def _since(marker: str) -> RawSQL:
    """A time parameter of a compiled statement (`CompiledQuery` markers are strings or integers)."""
    return RawSQL("%s", (marker,), output_field=DateTimeField())


_OPEN_STATES = sorted(s.value for s in OPEN)
_OPEN_ORDER_GROUPS = CompiledQuery(
    lambda instrument_id, quote, base, exclude_pk: (
        Order.objects.filter(
            Q(instrument_id=instrument_id)
            | Q(side="buy", instrument__quote=quote)
            | Q(side="sell", instrument__base=base),
            state__in=_OPEN_STATES,
            quantity__gt=F("filled_qty"),
        )
        .exclude(pk=exclude_pk)  # a new order (no pk yet) is not open anyway
        .values_list(
            "instrument_id", "instrument__symbol", "instrument__base", "instrument__quote", "side", "limit_price"
        )
        .annotate(remaining=Sum(F("quantity") - F("filled_qty")))
        .order_by()
    ),
    PK_MARKER,
    "\x01quote",
    "\x01base",
    PK_MARKER - 1,
)
_RECENT_SUBMISSIONS = CompiledQuery(
    lambda since: (
        Order.objects.filter(submitted_at__gt=_since(since), external=False).order_by().values_list("submitted_at")
    ),
    "\x01since",
)
_REALISED_SINCE = CompiledQuery(lambda since: _realised_since(since), "\x01since")


def _realised_since(since: str) -> QuerySet[Any, Any]:
    """SUM as a plain function, not an aggregate: one row for the whole set (no GROUP BY), usable as a subquery."""
    total = Func(F("realised_pnl") - F("fee"), function="SUM", output_field=money_field())
    return Fill.objects.filter(executed_at__gte=_since(since)).order_by().annotate(total=total).values_list("total")


def _latest_equity(currency: str) -> QuerySet[EquitySnapshot]:
    return EquitySnapshot.objects.filter(currency=currency).order_by("-taken_at", "-id")


# Every instrument that has a quote or an open position, and always the order's own (so there is a row to carry
# the account-wide values: today's realised PnL and the latest equity, as subqueries).
_BOOK = CompiledQuery(
    lambda instrument_id, since, currency, currency_again: (
        Instrument.objects.filter(
            Q(pk=instrument_id) | Q(quote_top__isnull=False) | Q(position__quantity__gt=0) | Q(position__quantity__lt=0)
        )
        .annotate(
            realised=Subquery(_realised_since(since)[:1]),
            equity=Subquery(_latest_equity(currency).values("equity")[:1]),
            high_water_mark=Subquery(_latest_equity(currency_again).values("high_water_mark")[:1]),
        )
        .values_list(
            "symbol",
            "quote_top__mid",
            "quote_top__quoted_at",
            "position__quantity",
            "position__avg_price",
            "realised",
            "equity",
            "high_water_mark",
        )
        .order_by()
    ),
    PK_MARKER,
    "\x01since",
    "\x01currency",
    "\x02currency",
)
_OPEN_POSITIONS = CompiledQuery(
    lambda: Position.objects.exclude(quantity=0).order_by().values_list("instrument__symbol", "quantity", "avg_price")
)
