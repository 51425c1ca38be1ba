"""The order's local lifecycle: validated creation (idempotent by client order id), and every state change the
system makes itself as an event through the state machine (`trading.order_states`). What the exchange reports is
applied by `trading.execution_reports`; risk-checked placement is `trading.submission`; a cancel is requested by
`trading.kill_switch.order_cancel_request` and carried out by `trading.execution.order_cancel_at_exchange`.

Every state change of an order is an `OrderEvent` with its source and actor (`trading.attribution`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import audited_row_insert
from core.errors import ApplicationError, ConflictError
from core.metrics import ProcessCounters
from trading import lock_objects
from trading.attribution import attributed
from trading.executions import EventSource
from trading.models import Instrument, Order, OrderEvent, OrderType, Side, TimeInForce
from trading.order_states import TERMINAL, IllegalTransition, OrderState, check_transition

logger = logging.getLogger(__name__)

# Counts (all processes in /metrics: galfriday_events_total) of what this module refused (each is logged too).
counters = ProcessCounters("trading.orders")

Kind = OrderEvent.Kind


class IllegalOrderTransition(ConflictError):
    code = "illegal_order_transition"


class OrderConflict(ConflictError):
    code = "order_conflict"


def order_event_new(
    order: Order,
    *,
    kind: str,
    source: EventSource,
    from_state: str,
    to_state: str,
    actor: str,
    exec_id: str = "",
    exchange_timestamp: datetime | None = None,
    reason: str = "",
    payload: Mapping[str, Any] | None = None,
) -> OrderEvent:
    """The order's next event, not yet saved. Its sequence comes from the order row's counter, bumped here in
    memory: the order row is locked, so there is no race, and no MAX(sequence) query (one read together with the
    lock could be stale under READ COMMITTED; the row itself never is)."""
    order.last_event_sequence += 1
    return OrderEvent(
        order=order,
        sequence=order.last_event_sequence,
        kind=kind,
        source=source,
        from_state=from_state,
        to_state=to_state,
        exec_id=exec_id,
        exchange_timestamp=exchange_timestamp,
        actor=actor,
        reason=reason,
        payload=dict(payload or {}),
    )


def order_state_stamp(order: Order, to_state: OrderState, at: datetime) -> None:
    """Set the order's state and the timestamps it reaches (submitted, accepted, closed); not saved."""
    order.state = to_state
    if to_state == OrderState.SUBMITTED and order.submitted_at is None:
        order.submitted_at = at
    if to_state in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED, OrderState.FILLED) and order.accepted_at is None:
        order.accepted_at = at
    if to_state in TERMINAL:
        order.closed_at = at


# --- creation -------------------------------------------------------------------------------------------------


def order_params_problems(
    *,
    side: str,
    order_type: str,
    quantity: Decimal | None,
    limit_price: Decimal | None,
    time_in_force: str,
    post_only: bool,
) -> dict[str, str]:
    """What is wrong with an order's parameters, by parameter (empty when nothing is): the one check of order
    parameters, used by `order_build` and by the API's input serializer."""
    problems: dict[str, str] = {}
    if side not in Side.values:
        problems["side"] = f"must be one of {Side.values}"
    if order_type not in OrderType.values:
        problems["order_type"] = f"must be one of {OrderType.values}"
    if time_in_force not in TimeInForce.values:
        problems["time_in_force"] = f"must be one of {TimeInForce.values}"
    if not isinstance(quantity, Decimal) or not quantity.is_finite() or quantity <= 0:
        problems["quantity"] = "must be a positive Decimal"
    if order_type == OrderType.LIMIT and (limit_price is None or not limit_price.is_finite() or limit_price <= 0):
        problems["limit_price"] = "a limit order needs a positive limit price"
    if order_type == OrderType.MARKET and limit_price is not None:
        problems["limit_price"] = "a market order has no limit price"
    if post_only and order_type != OrderType.LIMIT:
        problems["post_only"] = "only limit orders can be post-only"
    if post_only and time_in_force == TimeInForce.IOC:
        problems["post_only"] = "post-only and immediate-or-cancel contradict each other"
    return problems


@dataclass(frozen=True, kw_only=True)
class OrderRequest:
    """An order as asked for: what every order-creating service takes (`order_build`, `order_create_in_transaction`,
    `submission.order_place_in_transaction`), so the parameters are named once."""

    client_order_id: str
    instrument: Instrument
    side: str
    order_type: str
    quantity: Decimal
    limit_price: Decimal | None = None
    time_in_force: str = TimeInForce.GTC
    post_only: bool = False
    reason: str = ""
    source: EventSource = EventSource.SYSTEM
    actor: str | None = None


@transaction.atomic
def order_create(
    *,
    client_order_id: str,
    instrument: Instrument,
    side: str,
    order_type: str,
    quantity: Decimal,
    limit_price: Decimal | None = None,
    time_in_force: str = TimeInForce.GTC,
    post_only: bool = False,
    reason: str = "",
    source: EventSource = EventSource.SYSTEM,
    actor: str | None = None,
) -> Order:
    """A new order in `created`. Idempotent on the client order id: the same request returns the same order;
    a different request under a used id is refused (a retried decision never makes a second order)."""
    order, _ = order_create_in_transaction(
        OrderRequest(
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
    )
    return order


def order_create_in_transaction(request: OrderRequest) -> tuple[Order, bool]:
    """`order_create` inside the caller's transaction (no savepoint of its own but the insert's), saying whether
    the order is new. A new order is inserted by this transaction, so nobody else can see or lock it until the
    commit: the caller may treat it as locked. An existing one is returned unlocked.

    The insert comes first (the common case costs no lookup); a used client order id fails it on the unique
    constraint, inside a savepoint, and the existing order is returned (or refused when it differs)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("order_create_in_transaction needs the caller's transaction (transaction.atomic)")
    order, created = order_build(request)
    with attributed(request.actor, request.source, request.reason):
        try:
            with transaction.atomic():
                order.save(force_insert=True)
        except IntegrityError:
            existing = Order.objects.filter(client_order_id=request.client_order_id).first()
            if existing is None:
                raise
            return order_same_or_conflict(order, existing), False
        created.save()
    logger.info("order created", extra={"client_order_id": request.client_order_id, "order_id": order.pk})
    return order, True


_ORDER_PARAMS = ("instrument_id", "side", "order_type", "quantity", "limit_price", "time_in_force", "post_only")
_ORDER_FIELDS = ("instrument", "side", "order_type", "quantity", "limit_price", "time_in_force", "post_only")


def order_build(request: OrderRequest) -> tuple[Order, OrderEvent]:
    """A validated new order in `created` and its `created` event, neither saved yet (bad input raises and
    changes nothing). The caller inserts the order, then the event, in one transaction."""
    if not request.client_order_id:
        raise ApplicationError("Invalid order.", code="validation_error", details={"client_order_id": "required"})
    problems = order_params_problems(
        side=request.side,
        order_type=request.order_type,
        quantity=request.quantity,
        limit_price=request.limit_price,
        time_in_force=request.time_in_force,
        post_only=request.post_only,
    )
    if problems:
        raise ApplicationError("Invalid order.", code="validation_error", details=problems)
    order = Order(
        client_order_id=request.client_order_id,
        reason=request.reason,
        **{k: getattr(request, k) for k in _ORDER_FIELDS},
    )
    with attributed(request.actor, request.source, request.reason) as who:
        created = order_event_new(
            order,
            kind=Kind.CREATED,
            source=request.source,
            from_state=OrderState.CREATED,
            to_state=OrderState.CREATED,
            actor=who,
            reason=request.reason,
            payload={k: None if getattr(order, k) is None else str(getattr(order, k)) for k in _ORDER_PARAMS},
        )
    return order, created


def order_same_or_conflict(requested: Order, existing: Order) -> Order:
    """`existing` when it is the same request as `requested` (idempotent by client order id), else refused."""
    differ = {k: str(getattr(existing, k)) for k in _ORDER_PARAMS if getattr(existing, k) != getattr(requested, k)}
    if differ:
        raise OrderConflict(
            f"client order id {existing.client_order_id} is already used by a different order",
            details={"client_order_id": existing.client_order_id, "existing": differ},
        )
    return existing


# --- state changes the system makes ---------------------------------------------------------------------------


def order_transition_locked(
    order: Order,
    to_state: OrderState,
    *,
    kind: str,
    source: EventSource,
    actor: str | None,
    reason: str = "",
    at: datetime | None = None,
    payload: Mapping[str, Any] | None = None,
    earlier: list[OrderEvent] | None = None,
) -> Order:
    """Move a locked order to `to_state` (refused when illegal) with its event. `earlier`: events of the order
    not saved yet (a new order's `created`, when the order is inserted here in its first state), saved with it
    (`core.audit.audited_row_insert`)."""
    from_state = OrderState(order.state)
    try:
        check_transition(from_state, to_state)  # no state moves to itself
    except IllegalTransition as exc:
        counters["illegal_transition_refused"] += 1
        logger.warning(
            "illegal order transition refused",
            extra={
                "order_id": order.pk,
                "client_order_id": order.client_order_id,
                "from": from_state,
                "to": to_state,
                "source": str(source),
            },
        )
        raise IllegalOrderTransition(
            str(exc), details={"order_id": order.pk, "from": str(from_state), "to": str(to_state)}
        ) from exc
    with attributed(actor, source, reason or f"{from_state} -> {to_state}") as who:
        order_state_stamp(order, to_state, at or timezone.now())
        if reason:
            order.reason = reason
        event = order_event_new(
            order,
            kind=kind,
            source=source,
            from_state=from_state,
            to_state=to_state,
            actor=who,
            reason=reason,
            payload=payload,
        )
        if order._state.adding:  # an order not inserted yet is inserted here, already in `to_state`
            audited_row_insert(order, when=timezone.now(), children=[*(earlier or []), event])
        else:
            order.save()
            OrderEvent.objects.bulk_create([*(earlier or []), event])
    return order


@transaction.atomic
def order_mark_submitted(
    *, order_id: int, source: EventSource = EventSource.SYSTEM, actor: str | None = None, at: datetime | None = None
) -> Order:
    """Sent to the exchange (before the request leaves, so a crash after it is `submitted`, never lost)."""
    return order_transition_locked(
        lock_objects.order_lock(order_id), OrderState.SUBMITTED, kind=Kind.SUBMITTED, source=source, actor=actor, at=at
    )


@transaction.atomic
def order_mark_rejected(
    *, order_id: int, reason: str, source: EventSource = EventSource.EXCHANGE, actor: str | None = None
) -> Order:
    return order_transition_locked(
        lock_objects.order_lock(order_id),
        OrderState.REJECTED,
        kind=Kind.REJECTED,
        source=source,
        actor=actor,
        reason=reason,
    )


@transaction.atomic
def order_mark_unknown(
    *, order_id: int, reason: str, source: EventSource = EventSource.SYSTEM, actor: str | None = None
) -> Order:
    """The outcome of a request could not be confirmed (timeout, lost connection): resolve by querying."""
    return order_transition_locked(
        lock_objects.order_lock(order_id),
        OrderState.UNKNOWN,
        kind=Kind.UNKNOWN,
        source=source,
        actor=actor,
        reason=reason,
    )


@transaction.atomic
def order_mark_cancel_requested(
    *, order_id: int, reason: str, source: EventSource = EventSource.OPERATOR, actor: str | None = None
) -> Order:
    """The cancel path's state-machine step (sends nothing): an order never sent is canceled at once, a live one
    goes to `pending_cancel`. `kill_switch.order_cancel_request` calls it and hands the cancel to the gateway."""
    order = lock_objects.order_lock(order_id)
    if order.state == OrderState.CREATED:
        return order_transition_locked(
            order, OrderState.CANCELED, kind=Kind.CANCELED, source=source, actor=actor, reason=reason
        )
    return order_transition_locked(
        order, OrderState.PENDING_CANCEL, kind=Kind.CANCEL_REQUESTED, source=source, actor=actor, reason=reason
    )


@transaction.atomic
def order_mark_cancel_rejected(
    *, order_id: int, reason: str, source: EventSource = EventSource.EXCHANGE, actor: str | None = None
) -> Order:
    """The exchange refused a cancel: back to where the order was, with the exchange's reason."""
    order = lock_objects.order_lock(order_id)
    if order.state != OrderState.PENDING_CANCEL:
        raise IllegalOrderTransition(f"order {order_id} has no pending cancel", details={"state": order.state})
    back = OrderState.PARTIALLY_FILLED if order.filled_qty > 0 else OrderState.ACCEPTED
    return order_transition_locked(order, back, kind=Kind.CANCEL_REJECTED, source=source, actor=actor, reason=reason)


@transaction.atomic
def order_mark_canceled_unplaced(*, order_id: int, reason: str, actor: str) -> Order:
    """A cancel for an order the exchange never had (never placed, or placing it failed): canceled locally."""
    return order_transition_locked(
        lock_objects.order_lock(order_id),
        OrderState.CANCELED,
        kind=Kind.CANCELED,
        source=EventSource.SYSTEM,
        actor=actor,
        reason=reason,
    )
