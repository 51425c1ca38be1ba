"""What the exchange says about our orders, applied: every private `executions` item (the ingest worker), every
answer of a REST query or the paper broker (`trading.execution`), every correction of reconciliation goes through
`execution_report_apply`, which moves the order through its state machine and records fills, positions and
balances in one transaction (idempotent by exec id; stale statuses ignored; reports for unknown orders parked).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.durability import commit_without_flush_wait
from core.errors import ApplicationError
from core.metrics import ProcessCounters
from trading import lock_objects
from trading.accounts import fill_balance_delta
from trading.attribution import attributed, rows_save_audited
from trading.executions import ExecType, ExecutionEvent
from trading.models import (
    Balance,
    Fill,
    Instrument,
    Order,
    OrderEvent,
    OrderType,
    ParkedExecution,
    Position,
    TimeInForce,
)
from trading.order_states import TERMINAL, OrderState, can_transition, is_stale
from trading.orders import order_event_new, order_state_stamp
from trading.pnl import ZERO, PositionState, apply_fill, q_money, q_price

logger = logging.getLogger(__name__)

# What was refused, set aside or applied against expectation (each is logged too; every process's counts
# in /metrics: galfriday_events_total).
counters = ProcessCounters("trading.execution_reports")

Kind = OrderEvent.Kind


class InvalidExecutionReport(ApplicationError):
    code = "invalid_execution_report"


@dataclass
class ExecutionApplyResult:
    order_id: int | None
    state: str | None
    fill_id: int | None = None
    duplicate_fill: bool = False
    parked: bool = False
    events: list[str] = field(default_factory=list)  # kinds of the order events recorded
    replayed: int = 0  # parked executions applied with this one


_STATUS_TARGET = {
    ExecType.PENDING_NEW: OrderState.SUBMITTED,
    ExecType.NEW: OrderState.ACCEPTED,
    ExecType.FILLED: OrderState.FILLED,
    ExecType.CANCELED: OrderState.CANCELED,
    ExecType.EXPIRED: OrderState.EXPIRED,
}
_ORDER_STATUS_TARGET = {
    "pending_new": OrderState.SUBMITTED,
    "new": OrderState.ACCEPTED,
    "filled": OrderState.FILLED,
    "canceled": OrderState.CANCELED,
    "expired": OrderState.EXPIRED,
}
_KIND_FOR = {
    OrderState.SUBMITTED: Kind.SUBMITTED,
    OrderState.ACCEPTED: Kind.ACCEPTED,
    OrderState.PARTIALLY_FILLED: Kind.FILL,
    OrderState.FILLED: Kind.FILLED,
    OrderState.CANCELED: Kind.CANCELED,
    OrderState.EXPIRED: Kind.EXPIRED,
}


def _status_target(event: ExecutionEvent) -> OrderState | None:
    if event.exec_type in _STATUS_TARGET:
        return _STATUS_TARGET[event.exec_type]
    # trade / amended / restated / status: only a status that closes the order or was never seen matters; the
    # fills themselves drive partially_filled and filled.
    return _ORDER_STATUS_TARGET.get(event.order_status or "")


@transaction.atomic
def execution_report_apply(
    *, event: ExecutionEvent, actor: str | None = None, flush_wait: bool = True
) -> ExecutionApplyResult:
    """Apply one execution event to the order, its fill, the position and the balances, in one transaction.
    `flush_wait` False: the commit does not wait for the disk (`core.durability`), for the exchange's answer to our
    own send, which the post-acknowledgement read-back and reconciliation apply again if a crash loses it.

    Idempotent and order-independent: a fill is keyed by its exec_id (a repeat is a no-op); an exchange status
    behind the order's state (a `new` after a trade) is stale and ignored; a fill for an order we had as canceled
    is applied (the exchange is the truth). An event for an order we cannot identify yet is parked and replayed
    when the order becomes known.
    """
    if not flush_wait:
        commit_without_flush_wait()
    with attributed(actor, event.source, f"{event.exec_type} {event.exec_id or event.order_id}") as who:
        order = _order_for_event(event, who)
        if order is None:
            return _park(event)
        result = _apply_locked(order, event, who)
        for parked in lock_objects.parked_lock(event.order_id):
            replayed = _apply_locked(order, ExecutionEvent.from_json(parked.payload), who)
            result.events.extend(replayed.events)
            result.replayed += 1
            parked.delete()
        result.state = order.state
    return result


def _park(event: ExecutionEvent) -> ExecutionApplyResult:
    try:
        with transaction.atomic():
            ParkedExecution.objects.create(
                exchange_order_id=event.order_id,
                exec_type=event.exec_type,
                exec_id=event.exec_id or "",
                payload=event.to_json(),
            )
    except IntegrityError:
        pass  # the same trade is already parked
    counters["execution_parked"] += 1
    logger.warning(
        "execution for an unknown order parked",
        extra={"exchange_order_id": event.order_id, "exec_type": str(event.exec_type), "exec_id": event.exec_id},
    )
    return ExecutionApplyResult(order_id=None, state=None, parked=True)


def _order_for_event(event: ExecutionEvent, who: str) -> Order | None:
    """The event's order, locked: by exchange order id, else by client order id, else created from a complete
    event (an order placed outside this system). None when it cannot be identified yet."""
    # One query for both keys (the first report of one of our orders matches by client order id only); both
    # rows, when they differ, are locked in pk order like any other multi-order lock.
    candidates = lock_objects.orders_lock_matching(exchange_order_id=event.order_id, client_order_id=event.cl_ord_id)
    for candidate in candidates:
        if candidate.exchange_order_id == event.order_id:
            return candidate
    if event.cl_ord_id:
        order = next((o for o in candidates if o.client_order_id == event.cl_ord_id), None)
        if order is not None:
            if order.exchange_order_id and order.exchange_order_id != event.order_id:
                raise InvalidExecutionReport(
                    f"client order id {event.cl_ord_id} belongs to exchange order {order.exchange_order_id}, "
                    f"not {event.order_id}",
                )
            return order
    if event.symbol and event.side and event.order_qty and event.order_type in OrderType.values:
        instrument = Instrument.objects.filter(symbol=event.symbol).first()
        if instrument is None:
            raise InvalidExecutionReport(f"unknown symbol {event.symbol!r}", details={"order_id": event.order_id})
        limit_price = event.limit_price if event.order_type == OrderType.LIMIT else None
        try:
            with transaction.atomic():
                created = Order(
                    client_order_id=event.cl_ord_id or f"kraken:{event.order_id}",
                    exchange_order_id=event.order_id,
                    instrument=instrument,
                    side=event.side,
                    order_type=event.order_type,
                    quantity=event.order_qty,
                    limit_price=limit_price,
                    time_in_force=event.time_in_force if event.time_in_force in TimeInForce.values else "gtc",
                    post_only=bool(event.post_only),
                    external=True,
                    reason="placed outside Gal-Friday; learned from the exchange",
                )
                first = order_event_new(
                    created,
                    kind=Kind.CREATED,
                    source=event.source,
                    from_state=OrderState.CREATED,
                    to_state=OrderState.CREATED,
                    actor=who,
                    reason=created.reason,
                    payload=event.to_json(),
                )
                created.save(force_insert=True)
        except IntegrityError:
            return lock_objects.order_qs_select_for_update().filter(exchange_order_id=event.order_id).first()
        first.save()
        return lock_objects.order_lock(created.pk)
    return None


def _apply_locked(order: Order, event: ExecutionEvent, who: str) -> ExecutionApplyResult:
    result = ExecutionApplyResult(order_id=order.pk, state=order.state)
    dirty = False
    pending: list[dict[str, Any]] = []  # order events to record once the order row is saved
    payload = event.to_json()
    at = event.timestamp or timezone.now()

    if order.exchange_order_id != event.order_id:
        order.exchange_order_id = event.order_id
        dirty = True

    if event.exec_type in (ExecType.AMENDED, ExecType.RESTATED):
        changes: dict[str, Any] = {}
        if event.order_qty is not None and event.order_qty != order.quantity:
            if event.order_qty < order.filled_qty:
                raise InvalidExecutionReport(
                    "amended quantity below the filled quantity", details={"order_id": event.order_id}
                )
            changes["quantity"] = (str(order.quantity), str(event.order_qty))
            order.quantity = event.order_qty
        if (
            event.limit_price is not None
            and order.order_type == OrderType.LIMIT
            and event.limit_price != order.limit_price
        ):
            changes["limit_price"] = (str(order.limit_price), str(event.limit_price))
            order.limit_price = event.limit_price
        if changes:
            dirty = True
            pending.append(
                {
                    "kind": Kind.AMENDED,
                    "from_state": order.state,
                    "to_state": order.state,
                    "payload": {**payload, "changes": changes},
                }
            )

    if event.is_trade:
        assert event.exec_id is not None
        if lock_objects.fill_exists(event.exec_id):
            result.duplicate_fill = True
            counters["duplicate_fill_ignored"] += 1
            logger.info("duplicate execution ignored", extra={"exec_id": event.exec_id, "order_id": order.pk})
        else:
            from_state = order.state
            fill = _fill_apply(order, event, at)
            result.fill_id = fill.pk
            dirty = True
            target = OrderState.FILLED if order.filled_qty >= order.quantity else OrderState.PARTIALLY_FILLED
            _advance(order, target, event, at)
            if from_state in (OrderState.CANCELED, OrderState.EXPIRED):
                counters["fill_after_close_applied"] += 1
                logger.warning(
                    "fill for an order we had as %s applied",
                    from_state,
                    extra={"order_id": order.pk, "exec_id": event.exec_id},
                )
            pending.append(
                {
                    "kind": Kind.FILL,
                    "from_state": from_state,
                    "to_state": order.state,
                    "exec_id": event.exec_id,
                    "payload": payload,
                }
            )

    status = _status_target(event)
    if status is not None:
        from_state = order.state
        if _advance(order, status, event, at):
            dirty = True
            if event.reason and status in (OrderState.CANCELED, OrderState.EXPIRED):
                order.reason = event.reason
            pending.append(
                {"kind": _KIND_FOR[status], "from_state": from_state, "to_state": order.state, "payload": payload}
            )

    events = [
        order_event_new(
            order, source=event.source, actor=who, exchange_timestamp=event.timestamp, reason=event.reason or "", **item
        )
        for item in pending
    ]
    if dirty or events:
        # With the event counter (locked, so it exists), its audit row and its events (a fill and the state it
        # reached).
        rows_save_audited([order], Order, inserting=events)
    result.events.extend(e.kind for e in events)
    result.state = order.state
    return result


def _advance(order: Order, target: OrderState, event: ExecutionEvent, at: datetime) -> bool:
    """Move the order towards an exchange-reported state when that is progress; True when the state changed."""
    current = OrderState(order.state)
    if target == current:
        return False
    if target == OrderState.PARTIALLY_FILLED and current in (OrderState.PENDING_CANCEL, *TERMINAL):
        return False  # the fill is recorded; the cancel (pending or done) still stands
    if is_stale(current, target):
        counters["stale_status_ignored"] += 1
        logger.info(
            "stale execution status ignored",
            extra={"order_id": order.pk, "state": current, "reported": target, "exec_type": event.exec_type},
        )
        return False
    if not can_transition(current, target):
        counters["illegal_transition_refused"] += 1
        logger.warning(
            "illegal order transition from the exchange refused",
            extra={"order_id": order.pk, "from": current, "to": target, "exec_type": event.exec_type},
        )
        return False
    order_state_stamp(order, target, at)
    return True


def _fill_apply(order: Order, event: ExecutionEvent, at: datetime) -> Fill:
    assert event.last_qty is not None
    assert event.last_price is not None
    assert event.exec_id is not None
    instrument = order.instrument
    if event.side and event.side != order.side:
        raise InvalidExecutionReport(
            f"fill side {event.side} contradicts order side {order.side}", details={"exec_id": event.exec_id}
        )
    if event.symbol and event.symbol != instrument.symbol:
        raise InvalidExecutionReport(
            f"fill symbol {event.symbol} contradicts order symbol {instrument.symbol}",
            details={"exec_id": event.exec_id},
        )
    qty, price, cost = event.last_qty, event.last_price, q_money(event.trade_cost)
    if order.filled_qty + qty > order.quantity:
        raise InvalidExecutionReport(
            "fill exceeds the order quantity",
            details={"exec_id": event.exec_id, "filled": str(order.filled_qty), "quantity": str(order.quantity)},
        )
    fee_quote = ZERO
    balance_delta = fill_balance_delta(
        base=instrument.base,
        quote=instrument.quote,
        side=order.side,
        qty=qty,
        cost=cost,
        fees=[(fee.asset, fee.qty) for fee in event.fees],
    )
    for fee in event.fees:
        if fee.asset == instrument.quote:
            fee_quote += fee.qty
        elif fee.asset == instrument.base:
            fee_quote += fee.qty * price
        else:
            counters["fee_in_foreign_asset"] += 1
            logger.warning(
                "fee in an asset other than base or quote left out of PnL",
                extra={"exec_id": event.exec_id, "asset": fee.asset},
            )
    fee_quote = q_money(fee_quote)

    order.filled_qty += qty
    order.filled_cost += cost
    order.avg_price = q_price(order.filled_cost / order.filled_qty)
    order.fees += fee_quote

    position = lock_objects.position_lock(instrument)
    was_flat_or_sign = position.quantity
    outcome = apply_fill(
        PositionState(position.quantity, position.avg_price, position.realised_pnl, position.fees),
        side=order.side,
        qty=qty,
        price=price,
        fee=fee_quote,
    )
    position.quantity, position.avg_price = outcome.state.quantity, outcome.state.avg_price
    position.realised_pnl, position.fees = outcome.state.realised_pnl, outcome.state.fees
    if position.quantity == 0:
        position.opened_at = None
    elif was_flat_or_sign == 0 or (was_flat_or_sign > 0) != (position.quantity > 0):
        position.opened_at = at
    rows_save_audited([position], Position)

    balances = lock_objects.balances_lock(balance_delta)
    moved = []
    for asset, delta in balance_delta.items():
        as_of = balances[asset].exchange_as_of
        if as_of is not None and at <= as_of:
            # A balance statement of the exchange at or after this trade already holds it (trading.accounts.
            # balance_set): moving the balance again would count the trade twice.
            counters["fill_already_in_balance"] += 1
            logger.info(
                "fill already in the balance statement",
                extra={"exec_id": event.exec_id, "asset": asset, "as_of": as_of.isoformat()},
            )
            continue
        if delta:
            balances[asset].total += delta
            moved.append(balances[asset])
    rows_save_audited(moved, Balance, ["total"])

    return Fill.objects.create(
        order=order,
        instrument=instrument,
        exec_id=event.exec_id,
        trade_id=event.trade_id,
        side=order.side,
        quantity=qty,
        price=price,
        cost=cost,
        fee=fee_quote,
        fee_details=[{"asset": f.asset, "qty": str(f.qty)} for f in event.fees],
        liquidity=event.liquidity_ind if event.liquidity_ind in ("m", "t") else "",
        realised_pnl=outcome.realised,
        source=event.source,
        executed_at=at,
    )
