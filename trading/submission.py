"""Risk-checked submission: an order is created, checked and moved to `submitted` (or `rejected` with every
reason) in one transaction, and handed to the execution gateway only after the commit.

`order_submit_checked` locks the trading state, the order, its position and balances, reads the rest of the book
(`selectors.risk_snapshot_reads`), runs `trading.risk.check_order` and records the outcome before committing. A
crash anywhere before the commit leaves the order `created` and nothing sent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.compiled import CompiledQuery
from core.errors import ApplicationError
from core.metrics import ProcessCounters
from trading import lock_objects, selectors
from trading.executions import EventSource
from trading.gateway import execution_gateway, submission_sent_here
from trading.instruments import instrument_rules
from trading.models import Instrument, Order, OrderEvent, TimeInForce, TradingState
from trading.order_states import OrderState
from trading.orders import OrderRequest, order_build, order_same_or_conflict, order_transition_locked
from trading.pnl import ZERO
from trading.risk import FEE_RESERVE, Limits, OrderIntent, RiskFailure, RiskSnapshot, check_order
from trading.selectors import OpenOrderGroup

logger = logging.getLogger(__name__)

# Counts (all processes in /metrics: galfriday_events_total; each is logged too).
counters = ProcessCounters("trading.submission")


@dataclass(frozen=True)
class _OpenOrderExposure:
    open_buy: Decimal = ZERO  # remaining quantity of the instrument's other open buys
    open_sell: Decimal = ZERO
    quote_held: Decimal = ZERO  # quote currency the open buys (any instrument in that quote) may spend, with fees
    base_held: Decimal = ZERO  # base asset the open sells (any instrument of that base) may deliver


def _exposure(instrument: Instrument, groups: list[OpenOrderGroup], marks: Mapping[str, Decimal]) -> _OpenOrderExposure:
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


def _snapshot_locked(order: Order, state: TradingState, now: datetime, limits: Limits | None = None) -> RiskSnapshot:
    """Everything the check reads, with the order's position and balances locked (the caller holds the trading
    state and the order). The reads come after the locks, in statements of their own (a read folded into a
    locking statement would use that statement's snapshot, taken before it waited for the lock); sums are
    computed by the database: five statements whatever the number of orders and positions (six when the caller
    has not read the limits)."""
    instrument = order.instrument
    position = lock_objects.position_lock(instrument)
    balances = lock_objects.balances_lock([instrument.base, instrument.quote])
    reads = selectors.risk_snapshot_reads(instrument, exclude_pk=order.pk, now=now)
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
        daily_pnl=selectors.pnl_with_unrealised(reads.realised_today, marks, reads.positions),
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
    return _submit_checked_locked(lock_objects.order_lock(order_id), state, source=source, actor=actor, now=now)


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
        order_transition_locked(
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
    if earlier is not None and submission_sent_here():
        # A new order this process sends right after the commit (the decision task's own send): its send attempt
        # is counted here, in the order's durable commit, instead of in a commit of its own before the request.
        order.send_attempts = 1
    order_transition_locked(
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
        locked = order_same_or_conflict(order, lock_objects.order_lock(existing[0][0]))
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
