"""Risk writes: the risk-checked submission, the kill switch (halt / reduce / resume), the continuous risk monitor,
risk limits, alerts and the market quotes the checks read.

The check and the state it allows are one transaction: `order_submit_checked` locks the trading state, the order,
its position and balances, loads the snapshot, runs `trading.risk.check_order` and moves the order to `submitted`
(or `rejected` with every reason) before committing; only after the commit is the order handed to the execution
gateway. A crash anywhere before the commit leaves the order `created` and nothing sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from core.audit import USER_ACTOR_PREFIX, audit_actor
from core.compiled import CompiledQuery
from core.errors import ApplicationError, ConflictError, NotFoundError
from trading import lock_objects, selectors
from trading.executions import EventSource
from trading.gateway import execution_gateway
from trading.models import (
    ACCOUNT_LIMIT_FIELDS,
    RISK_LIMIT_FIELDS,
    Alert,
    EquitySnapshot,
    Fill,
    Instrument,
    MarketQuote,
    Order,
    OrderEvent,
    Position,
    RiskLimit,
    TimeInForce,
    TradingState,
)
from trading.order_states import OPEN, OrderState
from trading.pnl import ZERO, q_price, unrealised_pnl
from trading.risk import (
    FEE_RESERVE,
    ORDER_RATE_WINDOW,
    InstrumentRules,
    Limits,
    OrderIntent,
    RiskFailure,
    RiskSnapshot,
    check_order,
)
from trading.selectors import account_currency
from trading.services import (
    OrderRequest,
    _locked,
    _transition_locked,
    audit_reason,
    counters,
    equity_snapshot_take,
    order_build,
    order_request_cancel,
    order_same_or_conflict,
    trading_state_set,
)

logger = logging.getLogger(__name__)

State = TradingState.State
MONITOR_ACTOR = "risk:monitor"


# --- market quotes --------------------------------------------------------------------------------------------


def market_quote_set(*, instrument: Instrument, bid: Decimal, ask: Decimal, at: datetime) -> MarketQuote:
    """Record the top of book (the ingest worker calls this, throttled). An older quote never replaces a newer."""
    if bid <= 0 or ask < bid:
        raise ApplicationError("Invalid quote.", code="validation_error", details={"bid": str(bid), "ask": str(ask)})
    if at.tzinfo is None:
        raise ApplicationError("Quote time must be timezone-aware.", code="validation_error")
    mid = q_price((bid + ask) / 2)
    with transaction.atomic():
        quote, created = MarketQuote.objects.select_for_update().get_or_create(
            instrument=instrument, defaults={"bid": bid, "ask": ask, "mid": mid, "quoted_at": at}
        )
        if not created and at >= quote.quoted_at:
            quote.bid, quote.ask, quote.mid, quote.quoted_at = bid, ask, mid, at
            quote.save()
    return quote


# --- alerts ---------------------------------------------------------------------------------------------------


def alert_raise(
    *, kind: str, severity: str, message: str, context: Mapping[str, Any] | None = None, dedupe: bool = False
) -> Alert | None:
    """Record an alert; with `dedupe`, none when an unacknowledged alert of the same kind is already open."""
    if dedupe and Alert.objects.filter(kind=kind, acknowledged_at__isnull=True).exists():
        return None
    alert = Alert.objects.create(kind=kind, severity=severity, message=message, context=dict(context or {}))
    log = logger.critical if severity == Alert.Severity.CRITICAL else logger.warning
    log("alert raised: %s", message, extra={"alert_id": alert.pk, "kind": kind, "severity": severity})
    return alert


@transaction.atomic
def alert_acknowledge(*, alert_id: int, actor: str) -> Alert:
    alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
    if alert is None:
        raise NotFoundError(f"alert {alert_id} does not exist")
    if alert.acknowledged_at is None:
        alert.acknowledged_by = actor
        alert.acknowledged_at = timezone.now()
        alert.save()
    return alert


# --- risk limits ----------------------------------------------------------------------------------------------


@transaction.atomic
def risk_limit_set(*, instrument: Instrument | None, values: Mapping[str, Any], reason: str, actor: str) -> RiskLimit:
    """Create or change the global limits (`instrument` None) or an instrument's overrides. `values` maps limit
    names to a value, or to None (an override inherits the global value again). Audited with actor and reason."""
    unknown = set(values) - set(RISK_LIMIT_FIELDS) - {"note"}
    if unknown:
        raise ApplicationError("Unknown risk limits.", code="validation_error", details={"unknown": sorted(unknown)})
    if not reason.strip():
        raise ApplicationError(
            "A risk limit change needs a reason.", code="validation_error", details={"reason": "required"}
        )
    if instrument is not None:
        account_wide = sorted(k for k in ACCOUNT_LIMIT_FIELDS if values.get(k) is not None)
        if account_wide:
            raise ApplicationError(
                "Account-wide limits belong to the global row.",
                code="validation_error",
                details={name: "global only" for name in account_wide},
            )
    with audit_actor(actor, reason=audit_reason(reason)):
        row = RiskLimit.objects.select_for_update().filter(instrument=instrument).order_by("pk").first()
        if row is None:
            base: dict[str, Any] = {}
            if instrument is None:
                effective = selectors.risk_limits_effective()
                base = {name: getattr(effective, name) for name in RISK_LIMIT_FIELDS}
            row = RiskLimit(instrument=instrument, **{k: v for k, v in base.items()})
        for name, value in values.items():
            setattr(row, name, value if value is not None or name != "note" else "")
        row.full_clean()
        row.save()
    scope = instrument.symbol if instrument else "global"
    logger.warning("risk limits changed", extra={"scope": scope, "actor": actor, "reason": reason})
    return row


# --- the snapshot ---------------------------------------------------------------------------------------------


def _day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def daily_pnl(*, now: datetime, marks: Mapping[str, Decimal], positions: list[OpenPosition] | None = None) -> Decimal:
    """Today's (UTC) realised PnL net of fees, plus the unrealised PnL of the open positions at `marks` (a
    position without a mark counts at its entry price, i.e. zero). `positions`: the open positions when the
    caller has them already."""
    return _with_unrealised(_realised_today(now), marks, _open_positions() if positions is None else positions)


def _realised_today(now: datetime) -> Decimal:
    """Today's (UTC) realised PnL net of fees, summed by the database."""
    realised = Fill.objects.filter(executed_at__gte=_day_start(now)).aggregate(r=Sum(F("realised_pnl") - F("fee")))
    return Decimal(realised["r"] or ZERO)


def _with_unrealised(realised: Decimal, marks: Mapping[str, Decimal], positions: list[OpenPosition]) -> Decimal:
    unrealised = ZERO
    for position in positions:
        mark = marks.get(position.symbol)
        if mark is not None:
            unrealised += unrealised_pnl(quantity=position.quantity, avg_price=position.avg_price, mark=mark)
    return realised + unrealised


@dataclass(frozen=True)
class OpenPosition:
    """What the risk snapshot and the daily PnL read of an open position (read as values, not model rows: the
    snapshot runs on every order, on the way to the exchange)."""

    symbol: str
    quantity: Decimal
    avg_price: Decimal


def _open_positions() -> list[OpenPosition]:
    rows = Position.objects.exclude(quantity=0).order_by().values_list("instrument__symbol", "quantity", "avg_price")
    return [OpenPosition(symbol, quantity, avg_price) for symbol, quantity, avg_price in rows]


def instrument_rules(instrument: Instrument) -> InstrumentRules:
    return InstrumentRules(
        symbol=instrument.symbol,
        base=instrument.base,
        quote=instrument.quote,
        tick_size=instrument.tick_size,
        ordermin=instrument.ordermin,
        costmin=instrument.costmin,
        qty_increment=instrument.qty_increment,
        status=instrument.status,
    )


@dataclass(frozen=True)
class _OpenOrderExposure:
    open_buy: Decimal = ZERO  # remaining quantity of the instrument's other open buys
    open_sell: Decimal = ZERO
    quote_held: Decimal = ZERO  # quote currency the open buys (any instrument in that quote) may spend, with fees
    base_held: Decimal = ZERO  # base asset the open sells (any instrument of that base) may deliver


@dataclass(frozen=True)
class _OpenOrderGroup:
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


def _exposure(
    instrument: Instrument, groups: list[_OpenOrderGroup], marks: Mapping[str, Decimal]
) -> _OpenOrderExposure:
    """What the other open orders hold."""
    open_buy = open_sell = quote_held = base_held = ZERO
    for group in groups:
        if group.instrument_id == instrument.pk:
            if group.side == "buy":
                open_buy += group.remaining
            else:
                open_sell += group.remaining
        if group.side == "buy" and group.quote == instrument.quote:
            price = group.limit_price or marks.get(group.symbol) or ZERO
            quote_held += group.remaining * price * (1 + FEE_RESERVE)
        elif group.side == "sell" and group.base == instrument.base:
            base_held += group.remaining
    return _OpenOrderExposure(open_buy, open_sell, quote_held, base_held)


_OPEN_STATES = sorted(s.value for s in OPEN)


@dataclass(frozen=True)
class _SnapshotReads:
    """What the risk snapshot reads besides the locked rows."""

    quotes: dict[str, tuple[Decimal, datetime]]  # (mid, quoted at) by v2 symbol
    open_groups: list[_OpenOrderGroup]  # the other open orders related to the instrument, grouped
    positions: list[OpenPosition]  # every open position
    recent_submissions: list[datetime]  # submission times of our orders within the order-rate window
    realised_today: Decimal  # today's (UTC) realised PnL net of fees
    latest_equity: tuple[Decimal, Decimal] | None  # (equity, high-water mark) of the latest snapshot


def _snapshot_reads(instrument: Instrument, *, exclude_pk: int | None, now: datetime) -> _SnapshotReads:
    """The reads, on PostgreSQL as one plain statement (`_snapshot_reads_sql`; six queryset statements cost most
    of a decision's CPU time on the way to the exchange), elsewhere through the ORM (`_snapshot_reads_orm`).
    A test holds the two equal."""
    if connection.vendor == "postgresql":
        return _snapshot_reads_sql(instrument, exclude_pk=exclude_pk, now=now)
    return _snapshot_reads_orm(instrument, exclude_pk=exclude_pk, now=now)


def _snapshot_reads_orm(instrument: Instrument, *, exclude_pk: int | None, now: datetime) -> _SnapshotReads:
    related = (
        Q(instrument=instrument)
        | Q(side="buy", instrument__quote=instrument.quote)
        | Q(side="sell", instrument__base=instrument.base)
    )
    groups = (
        Order.objects.filter(related, state__in=_OPEN_STATES, quantity__gt=F("filled_qty"))
        .exclude(pk=exclude_pk or 0)  # a new order (no pk yet) is not open anyway
        .values_list(
            "instrument_id", "instrument__symbol", "instrument__base", "instrument__quote", "side", "limit_price"
        )
        .annotate(remaining=Sum(F("quantity") - F("filled_qty")))
        .order_by()
    )
    recent = (
        Order.objects.filter(submitted_at__gt=now - ORDER_RATE_WINDOW, external=False)
        .order_by()
        .values_list("submitted_at", flat=True)
    )
    latest = (
        EquitySnapshot.objects.filter(currency=account_currency())
        .order_by("-taken_at", "-id")
        .values_list("equity", "high_water_mark")
        .first()
    )
    return _SnapshotReads(
        quotes=selectors.market_marks(),
        open_groups=[_OpenOrderGroup(*row) for row in groups],
        positions=_open_positions(),
        recent_submissions=[t for t in recent if t is not None],
        realised_today=_realised_today(now),
        latest_equity=(latest[0], latest[1]) if latest is not None else None,
    )


# Numbers travel as text inside the JSON (exact decimals), times as ISO 8601 (the connection's time zone is UTC).
_SNAPSHOT_SQL = """
SELECT
  (SELECT coalesce(json_agg(json_build_array(i.symbol, q.mid::text, q.quoted_at)), '[]')::text
     FROM {quote} q JOIN {instrument} i ON i.id = q.instrument_id),
  (SELECT coalesce(json_agg(json_build_array(g.instrument_id, g.symbol, g.base, g.quote, g.side,
                                             g.limit_price::text, g.remaining::text)), '[]')::text
     FROM (SELECT o.instrument_id, i.symbol, i.base, i.quote, o.side, o.limit_price,
                  sum(o.quantity - o.filled_qty) AS remaining
             FROM {order} o JOIN {instrument} i ON i.id = o.instrument_id
            WHERE (o.instrument_id = %(instrument)s OR (o.side = 'buy' AND i.quote = %(quote_ccy)s)
                   OR (o.side = 'sell' AND i.base = %(base_ccy)s))
              AND o.state = ANY(%(open_states)s) AND o.quantity > o.filled_qty AND o.id <> %(exclude)s
            GROUP BY o.instrument_id, i.symbol, i.base, i.quote, o.side, o.limit_price) g),
  (SELECT coalesce(json_agg(json_build_array(i.symbol, p.quantity::text, p.avg_price::text)), '[]')::text
     FROM {position} p JOIN {instrument} i ON i.id = p.instrument_id WHERE p.quantity <> 0),
  ARRAY(SELECT o.submitted_at FROM {order} o WHERE NOT o.external AND o.submitted_at > %(rate_since)s),
  (SELECT sum(f.realised_pnl - f.fee) FROM {fill} f WHERE f.executed_at >= %(day_start)s),
  e.equity, e.high_water_mark
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT s.equity, s.high_water_mark FROM {equity} s WHERE s.currency = %(currency)s
                   ORDER BY s.taken_at DESC, s.id DESC LIMIT 1) e ON true
"""


def _snapshot_reads_sql(instrument: Instrument, *, exclude_pk: int | None, now: datetime) -> _SnapshotReads:
    sql = _SQL_CACHE.get("snapshot")
    if sql is None:
        qn = connection.ops.quote_name
        sql = _SQL_CACHE["snapshot"] = _SNAPSHOT_SQL.format(
            quote=qn(MarketQuote._meta.db_table),
            instrument=qn(Instrument._meta.db_table),
            order=qn(Order._meta.db_table),
            position=qn(Position._meta.db_table),
            fill=qn(Fill._meta.db_table),
            equity=qn(EquitySnapshot._meta.db_table),
        )
    params: dict[str, Any] = {
        "instrument": instrument.pk,
        "quote_ccy": instrument.quote,
        "base_ccy": instrument.base,
        "open_states": _OPEN_STATES,
        "exclude": exclude_pk or 0,
        "rate_since": now - ORDER_RATE_WINDOW,
        "day_start": _day_start(now),
        "currency": account_currency(),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        quotes, groups, positions, recent, realised, equity, high_water_mark = cursor.fetchone()
    return _SnapshotReads(
        quotes={s: (Decimal(mid), datetime.fromisoformat(at)) for s, mid, at in json.loads(quotes)},
        open_groups=[
            _OpenOrderGroup(pk, symbol, base, quote, side, Decimal(price) if price is not None else None, Decimal(rem))
            for pk, symbol, base, quote, side, price, rem in json.loads(groups)
        ],
        positions=[OpenPosition(s, Decimal(qty), Decimal(avg)) for s, qty, avg in json.loads(positions)],
        recent_submissions=list(recent),
        realised_today=realised if realised is not None else ZERO,
        latest_equity=(equity, high_water_mark) if equity is not None else None,
    )


_SQL_CACHE: dict[str, str] = {}


def _snapshot_locked(order: Order, state: TradingState, now: datetime, limits: Limits | None = None) -> RiskSnapshot:
    """Everything the check reads, with the order's position and balances locked (the caller holds the trading
    state and the order). The reads come after the locks, in a statement of their own (a read folded into a
    locking statement would use that statement's snapshot, taken before it waited for the lock); sums are
    computed by the database: three statements whatever the number of orders and positions (four when the
    caller has not read the limits)."""
    instrument = order.instrument
    position = lock_objects.position_lock(instrument)
    balances = lock_objects.balances_lock([instrument.base, instrument.quote])
    reads = _snapshot_reads(instrument, exclude_pk=order.pk, now=now)
    marks = {symbol: mid for symbol, (mid, _) in reads.quotes.items()}
    held = _exposure(instrument, reads.open_groups, marks)
    gross = ZERO
    for pos in reads.positions:
        gross += abs(pos.quantity) * marks.get(pos.symbol, pos.avg_price)
    quote = reads.quotes.get(instrument.symbol)
    latest = reads.latest_equity
    return RiskSnapshot(
        now=now,
        trading_state=state.state,
        rules=instrument_rules(instrument),
        limits=limits or selectors.risk_limits_effective(instrument=instrument),
        position_qty=position.quantity,
        open_buy_qty=held.open_buy,
        open_sell_qty=held.open_sell,
        base_available=balances[instrument.base].total - held.base_held,
        quote_available=balances[instrument.quote].total - held.quote_held,
        mid=quote[0] if quote is not None else None,
        mid_at=quote[1] if quote is not None else None,
        gross_exposure=gross,
        recent_orders=reads.recent_submissions,
        daily_pnl=_with_unrealised(reads.realised_today, marks, reads.positions),
        equity=latest[0] if latest is not None else None,
        high_water_mark=latest[1] if latest is not None else None,
    )


# --- checked submission ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitDecision:
    order: Order
    submitted: bool
    failures: tuple[RiskFailure, ...] = ()
    already_decided: bool = False  # the order had left `created` before this call: nothing was checked again

    @property
    def rejected(self) -> bool:
        return self.order.state == OrderState.REJECTED


class OrderRiskRejected(ApplicationError):
    """The order was recorded as rejected by the risk manager (it exists, in state `rejected`)."""

    code = "risk_rejected"
    http_status = 422


@transaction.atomic
def order_submit_checked(
    *,
    order_id: int,
    source: EventSource = EventSource.SYSTEM,
    actor: str | None = None,
    now: datetime | None = None,
) -> SubmitDecision:
    """Risk-check a `created` order and, in the same transaction, mark it `submitted` (handed to the execution
    gateway after commit) or `rejected` with every failure (audited; nothing else changes). Safe to call twice:
    an order already past `created` is returned as it is."""
    state = lock_objects.trading_state_lock()
    return _submit_checked_locked(_locked(order_id), state, source=source, actor=actor, now=now)


def _submit_checked_locked(
    order: Order,
    state: TradingState,
    *,
    source: EventSource,
    actor: str | None,
    now: datetime | None = None,
    earlier: list[OrderEvent] | None = None,
    limits: Limits | None = None,
) -> SubmitDecision:
    """`order_submit_checked` for an order the caller holds after the trading state's lock: locked, or new (not
    inserted yet; `earlier` holds its unsaved `created` event, and the transition inserts both)."""
    if order.state != OrderState.CREATED:
        return SubmitDecision(order=order, submitted=False, already_decided=True)
    now = now or timezone.now()
    snapshot = _snapshot_locked(order, state, now, limits)
    intent = OrderIntent(
        side=order.side,
        order_type=order.order_type,
        quantity=order.quantity,
        limit_price=order.limit_price,
        post_only=order.post_only,
    )
    result = check_order(intent, snapshot)
    if not result.ok:
        reason = "risk: " + "; ".join(f.reason for f in result.failures)
        _transition_locked(
            order,
            OrderState.REJECTED,
            kind=OrderEvent.Kind.REJECTED,
            source=source,
            actor=actor,
            reason=reason,
            at=now,
            payload={"risk": result.to_json()},
            earlier=earlier,
        )
        counters["risk_rejected"] += 1
        logger.warning(
            "order rejected by risk",
            extra={"order_id": order.pk, "client_order_id": order.client_order_id, "codes": result.codes},
        )
        return SubmitDecision(order=order, submitted=False, failures=result.failures)
    _transition_locked(
        order,
        OrderState.SUBMITTED,
        kind=OrderEvent.Kind.SUBMITTED,
        source=source,
        actor=actor,
        at=now,
        payload={"risk": "passed", "mid": str(snapshot.mid), "position": str(snapshot.position_qty)},
        earlier=earlier,
    )
    transaction.on_commit(partial(execution_gateway().submit_order, order_id=order.pk), robust=True)
    logger.info("order passed risk", extra={"order_id": order.pk, "client_order_id": order.client_order_id})
    return SubmitDecision(order=order, submitted=True)


def order_place(
    *,
    instrument: Instrument,
    client_order_id: str,
    side: str,
    order_type: str,
    quantity: Decimal,
    limit_price: Decimal | None = None,
    time_in_force: str = TimeInForce.GTC,
    post_only: bool = False,
    reason: str = "",
    source: EventSource = EventSource.OPERATOR,
    actor: str | None = None,
) -> SubmitDecision:
    """Create an order and risk-check it in one transaction (a manual order, or the pipeline's)."""
    request = OrderRequest(
        client_order_id=client_order_id,
        instrument=instrument,
        side=side,
        order_type=order_type,
        quantity=quantity,
        limit_price=limit_price,
        time_in_force=time_in_force,
        post_only=post_only,
        reason=reason,
        source=source,
        actor=actor,
    )
    try:
        with transaction.atomic():
            return order_place_in_transaction(request)
    except IntegrityError:  # the same client order id placed concurrently: that order is the answer
        existing = Order.objects.filter(client_order_id=client_order_id).first()
        if existing is None:
            raise
        requested, _ = order_build(request)
        return SubmitDecision(order=order_same_or_conflict(requested, existing), submitted=False, already_decided=True)


def order_place_in_transaction(request: OrderRequest, *, limits: Limits | None = None) -> SubmitDecision:
    """`order_place` inside the caller's transaction, without a savepoint of its own (the decision pipeline's
    transaction also records the decision; a failure here rolls all of it back). Refused outside a transaction:
    the check and the state it allows must commit together. `limits`: the instrument's limits in force
    (`selectors.risk_limits_effective`) when the caller has just read them (the pipeline sizes with them), else
    they are read here."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("order_place_in_transaction needs the caller's transaction (transaction.atomic)")
    order, created = order_build(request)
    state = lock_objects.trading_state_lock()
    existing = _ORDER_BY_CLIENT_ID.rows(request.client_order_id)
    if existing:  # a repeated request: the same order (locked), checked only if it never was
        locked = order_same_or_conflict(order, _locked(existing[0][0]))
        return _submit_checked_locked(locked, state, source=request.source, actor=request.actor)
    # A new order is checked before its row exists and inserted once, in the state the check allows, with its
    # `created` event and that state's: the same history as create-then-transition, three statements fewer. A
    # concurrent request under the same client order id fails the insert on the unique constraint (no savepoint:
    # the whole transaction rolls back; `order_place` answers with the order that won).
    decision = _submit_checked_locked(
        order, state, source=request.source, actor=request.actor, earlier=[created], limits=limits
    )
    logger.info("order created", extra={"client_order_id": request.client_order_id, "order_id": order.pk})
    return decision


_ORDER_BY_CLIENT_ID = CompiledQuery(
    lambda client_order_id: Order.objects.filter(client_order_id=client_order_id).values_list("pk"),
    "\x01client_order_id",
)


# --- cancels and the kill switch --------------------------------------------------------------------------------


def _cancel_locked_order(order: Order, *, reason: str, source: EventSource, actor: str | None) -> Order:
    """Move one (locked) order towards canceled and hand a live one's cancel to the gateway after commit."""
    updated = order_request_cancel(order_id=order.pk, reason=reason, source=source, actor=actor)
    if updated.state == OrderState.PENDING_CANCEL:
        transaction.on_commit(partial(execution_gateway().cancel_order, order_id=updated.pk), robust=True)
    return updated


@transaction.atomic
def order_cancel(
    *, order_id: int, reason: str, source: EventSource = EventSource.OPERATOR, actor: str | None = None
) -> Order:
    """Cancel one order: never sent → canceled at once; live → pending_cancel and the cancel goes to the exchange."""
    return _cancel_locked_order(_locked(order_id), reason=reason, source=source, actor=actor)


@dataclass
class CancelSweep:
    canceled: list[int] = field(default_factory=list)  # never sent: canceled locally
    pending_cancel: list[int] = field(default_factory=list)  # cancel requested from the exchange
    already_pending: list[int] = field(default_factory=list)


def _cancel_sweep(
    *, reason: str, source: EventSource, actor: str | None, instrument: Instrument | None = None
) -> CancelSweep:
    sweep = CancelSweep()
    qs = lock_objects.open_orders_qs_select_for_update()
    if instrument is not None:
        qs = qs.filter(instrument=instrument)
    for order in list(qs):
        if order.state == OrderState.PENDING_CANCEL:
            sweep.already_pending.append(order.pk)
            continue
        updated = _cancel_locked_order(order, reason=reason, source=source, actor=actor)
        (sweep.pending_cancel if updated.state == OrderState.PENDING_CANCEL else sweep.canceled).append(updated.pk)
    return sweep


@transaction.atomic
def order_cancel_all(
    *,
    reason: str,
    source: EventSource = EventSource.OPERATOR,
    actor: str | None = None,
    instrument: Instrument | None = None,
) -> CancelSweep:
    """Cancel every open (or never sent) order, optionally of one instrument."""
    lock_objects.trading_state_lock()  # lock order: trading state before orders
    return _cancel_sweep(reason=reason, source=source, actor=actor, instrument=instrument)


@dataclass
class HaltResult:
    state: TradingState
    changed: bool
    sweep: CancelSweep
    alert: Alert | None = None


def _require(reason: str, actor: str) -> None:
    if not reason or not reason.strip() or not actor or not actor.strip():
        raise ApplicationError(
            "A trading state change needs an actor and a reason.",
            code="validation_error",
            details={"reason": "required"},
        )


@transaction.atomic
def trading_halt(
    *,
    reason: str,
    actor: str,
    source: EventSource = EventSource.OPERATOR,
    alert_kind: str = Alert.Kind.TRADING_HALTED,
    context: Mapping[str, Any] | None = None,
) -> HaltResult:
    """The kill switch: HALTED (audited), every open order to pending_cancel through the state machine with its
    cancel handed to the gateway after commit (never-sent orders canceled at once), and a critical alert.
    Halting when already halted sweeps again but neither records a new switch nor raises a new alert."""
    _require(reason, actor)
    state = lock_objects.trading_state_lock()
    changed = state.state != State.HALTED
    if changed:
        state = trading_state_set(state=State.HALTED, reason=reason, actor=actor)
    sweep = _cancel_sweep(reason=f"halt: {reason}", source=source, actor=actor)
    alert = None
    if changed:
        alert = alert_raise(
            kind=alert_kind,
            severity=Alert.Severity.CRITICAL,
            message=f"Trading halted by {actor}: {reason}",
            context={
                **dict(context or {}),
                "actor": actor,
                "canceled": sweep.canceled,
                "pending_cancel": sweep.pending_cancel,
            },
        )
    return HaltResult(state=state, changed=changed, sweep=sweep, alert=alert)


@transaction.atomic
def trading_reduce(*, reason: str, actor: str) -> TradingState:
    """REDUCING: only orders that shrink a position pass the risk check; open orders are left working."""
    _require(reason, actor)
    lock_objects.trading_state_lock()
    return trading_state_set(state=State.REDUCING, reason=reason, actor=actor)


def is_safety_halt(state: TradingState) -> bool:
    """A halt the system made (reconciliation, the start-up gate, the risk monitor), not a person (`user:...`)."""
    return state.state == State.HALTED and not state.changed_by.startswith(USER_ACTOR_PREFIX)


def safety_resume_blockers() -> list[int]:
    """What keeps a safety halt in place: the ids of the open critical reconciliation discrepancies, found through
    the callables named in GALFRIDAY_RESUME_BLOCKERS (trading does not import reconciliation)."""
    from django.utils.module_loading import import_string

    found: list[int] = []
    for path in getattr(settings, "GALFRIDAY_RESUME_BLOCKERS", []):
        found += list(import_string(path)())
    return found


class SafetyHaltError(ApplicationError):
    code = "safety_halt"
    http_status = 403


@transaction.atomic
def trading_resume(
    *, reason: str, actor: str, may_lift_safety_halt: bool = False, override: bool = False
) -> TradingState:
    """ACTIVE again. The monitor halts again at its next run if a loss limit is still breached.

    A safety halt (made by reconciliation, the start-up gate or the risk monitor) is lifted only by someone who
    `may_lift_safety_halt` (staff, or the galfriday_site.resume_safety_halt permission), and only while no critical
    reconciliation discrepancy is open; with some open, only as an `override` whose written reason is at least
    GALFRIDAY_RESUME_OVERRIDE_MIN_REASON characters long, recorded (galfriday_site.SafetyOverride) and logged."""
    _require(reason, actor)
    state = lock_objects.trading_state_lock()
    if not is_safety_halt(state):
        return trading_state_set(state=State.ACTIVE, reason=reason, actor=actor)
    halt = {"halted_by": state.changed_by, "halt_reason": state.reason}
    if not may_lift_safety_halt:
        raise SafetyHaltError(f"Trading was halted by {state.changed_by}: only staff may resume it.", details=halt)
    blockers = safety_resume_blockers()
    if blockers and not override:
        raise ConflictError(
            f"{len(blockers)} critical reconciliation discrepancies are open: resolve them, or override with a "
            "written reason.",
            code="open_critical_discrepancies",
            details={**halt, "count": len(blockers), "discrepancy_ids": blockers[:100]},
        )
    if blockers:
        minimum = int(getattr(settings, "GALFRIDAY_RESUME_OVERRIDE_MIN_REASON", 20))
        if len(reason.strip()) < minimum:
            raise ApplicationError(
                f"An override needs a written reason of at least {minimum} characters.",
                code="validation_error",
                details={"reason": f"at least {minimum} characters"},
            )
        from galfriday_site.models import SafetyOverride

        SafetyOverride.objects.create(actor=actor, reason=reason, open_critical=blockers, **halt)
        logger.warning(
            "safety halt overridden",
            extra={"actor": actor, "open_critical": len(blockers), "halted_by": state.changed_by},
        )
        reason = f"override ({len(blockers)} critical discrepancies open): {reason}"
    return trading_state_set(state=State.ACTIVE, reason=reason, actor=actor)


# --- the continuous check -------------------------------------------------------------------------------------


@dataclass
class MonitorResult:
    status: str  # "ok", "breach", "missing_marks"
    equity: Decimal | None = None
    high_water_mark: Decimal | None = None
    drawdown: Decimal | None = None
    daily_pnl: Decimal | None = None
    breaches: list[str] = field(default_factory=list)
    halted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "equity": None if self.equity is None else str(self.equity),
            "high_water_mark": None if self.high_water_mark is None else str(self.high_water_mark),
            "drawdown": None if self.drawdown is None else str(self.drawdown),
            "daily_pnl": None if self.daily_pnl is None else str(self.daily_pnl),
            "breaches": self.breaches,
            "halted": self.halted,
        }


def risk_monitor_check(*, now: datetime | None = None) -> MonitorResult:
    """Take an equity snapshot at the last quotes and halt ACTIVE trading when the maximum drawdown or the daily
    loss limit is breached. REDUCING (an operator unwinding) is left as it is: the pre-trade check already refuses
    every order that would add risk while a limit is breached. Safe to run twice (a second run adds a snapshot;
    halting an already halted system changes nothing)."""
    now = now or timezone.now()
    marks = {symbol: q.mid for symbol, q in selectors.market_quotes().items()}
    try:
        snapshot = equity_snapshot_take(marks=marks, currency=account_currency(), at=now)
    except ApplicationError as exc:
        if exc.code != "missing_marks":
            raise
        counters["risk_monitor_missing_marks"] += 1
        alert_raise(
            kind=Alert.Kind.RISK_MONITOR_BLIND,
            severity=Alert.Severity.WARNING,
            message=f"Risk monitor cannot value the account: {exc.message}",
            context=exc.details,
            dedupe=True,
        )
        return MonitorResult(status="missing_marks")
    limits = selectors.risk_limits_effective()
    pnl = daily_pnl(now=now, marks=marks)
    result = MonitorResult(
        status="ok",
        equity=snapshot.equity,
        high_water_mark=snapshot.high_water_mark,
        drawdown=snapshot.drawdown,
        daily_pnl=pnl,
    )
    kind = None
    if snapshot.drawdown >= limits.max_drawdown:
        result.breaches.append(
            f"drawdown {snapshot.drawdown:.2%} of the high-water mark {snapshot.high_water_mark} "
            f"reaches the limit {limits.max_drawdown:.2%}"
        )
        kind = Alert.Kind.DRAWDOWN_BREACH
    if pnl <= -limits.daily_loss_limit:
        result.breaches.append(f"today's PnL {pnl} breaches the daily loss limit {limits.daily_loss_limit}")
        kind = kind or Alert.Kind.DAILY_LOSS_BREACH
    if not result.breaches:
        return result
    result.status = "breach"
    if selectors.trading_state_get().state == State.ACTIVE and kind is not None:
        halt = trading_halt(
            reason="; ".join(result.breaches),
            actor=MONITOR_ACTOR,
            source=EventSource.SYSTEM,
            alert_kind=kind,
            context={"monitor": result.to_json(), "limits": limits.to_json()},
        )
        result.halted = halt.changed
    return result
