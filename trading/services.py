"""Writes to the trading books. Every state change of an order is an `OrderEvent` with its source; orders,
positions, balances and the trading state keep an audit trail (who or what, when, why, before and after).

Seams for the pieces that come later: the execution layer calls `order_create` → `order_mark_submitted` (or
`order_mark_rejected` / `order_mark_unknown`), the ingest worker calls `execution_report_apply` for every private
`executions` item and `balance_set` for `balances` snapshots, reconciliation calls the same services with
`source=EventSource.RECONCILIATION`, and the risk manager switches `trading_state_set`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import audit_actor, audited_row_insert, audited_rows_update, current_actor, current_reason
from core.errors import ApplicationError, ConflictError, NotFoundError
from ingest.kraken.messages import InstrumentPair
from ingest.kraken.rest_types import AssetPair
from trading import lock_objects
from trading.executions import EventSource, ExecType, ExecutionEvent
from trading.models import (
    Balance,
    EquitySnapshot,
    Fill,
    Instrument,
    Order,
    OrderEvent,
    OrderType,
    ParkedExecution,
    Position,
    Side,
    TimeInForce,
    TradingState,
)
from trading.order_states import TERMINAL, IllegalTransition, OrderState, can_transition, is_stale
from trading.pnl import ZERO, PositionState, apply_fill, drawdown, q_money, q_price, unrealised_pnl

logger = logging.getLogger(__name__)

# Process-local counters of what the books refused or set aside (exported by the metrics endpoint when it lands).
counters: Counter[str] = Counter()

Kind = OrderEvent.Kind


class IllegalOrderTransition(ConflictError):
    code = "illegal_order_transition"


class InvalidExecutionReport(ApplicationError):
    code = "invalid_execution_report"


class OrderConflict(ConflictError):
    code = "order_conflict"


# simple-history's change reason is a 100-character column: longer reasons (they stay whole on the order, its
# events and the trading state) are clipped in the audit record instead of failing the write on PostgreSQL.
AUDIT_REASON_MAX = 100


def audit_reason(reason: str | None) -> str | None:
    if not reason:
        return None
    return reason if len(reason) <= AUDIT_REASON_MAX else reason[: AUDIT_REASON_MAX - 1] + "…"


@contextmanager
def _attributed(actor: str | None, source: EventSource, reason: str = "") -> Iterator[str]:
    """Attribute audited changes to `actor`, else to whoever the caller already named, else to the source.
    Operator changes made inside a request keep the request's user (simple-history's middleware)."""
    name = actor or current_actor()
    if name is None and source == EventSource.OPERATOR:
        yield "operator"
        return
    # A reason the caller gave (audit_actor(..., reason=...)) wins over the service's own description.
    caller_reason = current_reason()
    with audit_actor(name or f"trading:{source}", reason=audit_reason(caller_reason or reason)):
        yield name or f"trading:{source}"


def _event(
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


def _save_audited(
    objs: list[Any], model: type[Any], fields: list[str] | None = None, *, inserting: list[Any] | None = None
) -> None:
    """Save changed rows of one audited model that already exist (locked by the caller) with their audit records,
    attributed like the history signal would: `core.audit.audited_rows_update` (on PostgreSQL one
    statement: the UPDATE and the history INSERT of exactly the rows it wrote).

    Why not `save()` / `bulk_update_with_history`: on the execution-report hot path the ORM's per-statement work
    (building and compiling `save()`'s UPDATE and the history signal's INSERT, or `bulk_update`'s CASE expressions)
    cost more CPU than the database's own work, and a round trip per statement more time. `fields` None means
    every column but the key (what `save()` writes); `updated_at` is stamped like `auto_now` would. `inserting`:
    new rows of another model written with them (`audited_rows_update`)."""
    if not objs:
        return
    now = timezone.now()
    names = fields if fields is not None else [f.attname for f in model._meta.concrete_fields if not f.primary_key]
    if "updated_at" not in names and any(f.attname == "updated_at" for f in model._meta.concrete_fields):
        names = [*names, "updated_at"]
    for obj in objs:
        if "updated_at" in names:
            obj.updated_at = now  # auto_now, which only save() applies
    audited_rows_update(objs, names, when=now, inserting=inserting)


def _stamp_state(order: Order, to_state: OrderState, at: datetime) -> None:
    order.state = to_state
    if to_state == OrderState.SUBMITTED and order.submitted_at is None:
        order.submitted_at = at
    if to_state in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED, OrderState.FILLED) and order.accepted_at is None:
        order.accepted_at = at
    if to_state in TERMINAL:
        order.closed_at = at


# --- instruments --------------------------------------------------------------------------------------------

_V2_ASSET = {"XBT": "BTC", "XDG": "DOGE"}


def _v2_asset(name: str) -> str:
    return _V2_ASSET.get(name, name)


def instrument_upsert(*, symbol: str, base: str, quote: str, **fields: Any) -> Instrument:
    """Create or update an instrument by its v2 symbol. `fields` are other Instrument fields (rest_symbol,
    altname, v1_symbol, price_precision, qty_precision, tick_size, qty_increment, ordermin, costmin, status)."""
    allowed = {f.name for f in Instrument._meta.concrete_fields} - {"id", "symbol", "base", "quote", "updated_at"}
    unknown = set(fields) - allowed
    if unknown:
        raise ApplicationError(f"unknown instrument fields: {sorted(unknown)}", code="validation_error")
    with transaction.atomic(), _attributed(None, EventSource.SYSTEM, f"instrument {symbol}"):
        instrument = Instrument.objects.select_for_update().filter(symbol=symbol).first()
        if instrument is None:
            instrument = Instrument(symbol=symbol, base=base, quote=quote, **fields)
            instrument.full_clean()
            instrument.save()
            return instrument
        changed = [
            name
            for name, value in {"base": base, "quote": quote, **fields}.items()
            if getattr(instrument, name) != value
        ]
        if changed:
            for name in changed:
                setattr(instrument, name, {"base": base, "quote": quote, **fields}[name])
            instrument.full_clean(validate_unique=False)
            instrument.save()
        return instrument


def instrument_sync_from_asset_pair(*, pair: AssetPair) -> Instrument:
    """From REST AssetPairs: the only source of the REST key, altname and v1 wsname."""
    if not pair.wsname or "/" not in pair.wsname:
        raise ApplicationError(f"asset pair {pair.key} has no wsname", code="validation_error")
    v1_base, v1_quote = pair.wsname.split("/", 1)
    base, quote = _v2_asset(v1_base), _v2_asset(v1_quote)
    fields: dict[str, Any] = {
        "rest_symbol": pair.key,
        "altname": pair.altname,
        "v1_symbol": pair.wsname,
        "price_precision": pair.pair_decimals,
        "qty_precision": pair.lot_decimals,
        "tick_size": pair.tick_size if pair.tick_size is not None else Decimal(1).scaleb(-pair.pair_decimals),
        "ordermin": pair.ordermin if pair.ordermin is not None else ZERO,
        "costmin": pair.costmin,
    }
    if pair.taker_fee is not None:
        fields["taker_fee"] = pair.taker_fee
    if pair.maker_fee is not None:
        fields["maker_fee"] = pair.maker_fee
    if pair.status is not None:
        fields["status"] = pair.status
    return instrument_upsert(symbol=f"{base}/{quote}", base=base, quote=quote, **fields)


def instrument_sync_from_ws(*, pair: InstrumentPair) -> Instrument:
    """From the v2 `instrument` channel (precision, increments, minimums and status; no REST spellings)."""
    return instrument_upsert(
        symbol=pair.symbol,
        base=pair.base,
        quote=pair.quote,
        price_precision=pair.price_precision,
        qty_precision=pair.qty_precision,
        tick_size=pair.price_increment,
        qty_increment=pair.qty_increment,
        ordermin=pair.qty_min,
        costmin=pair.cost_min,
        status=pair.status,
    )


# --- orders: local lifecycle ----------------------------------------------------------------------------------


def _validate_order_params(request: OrderRequest) -> None:
    side, order_type, quantity = request.side, request.order_type, request.quantity
    limit_price, time_in_force, post_only = request.limit_price, request.time_in_force, request.post_only
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
    if problems:
        raise ApplicationError("Invalid order.", code="validation_error", details=problems)


@dataclass(frozen=True, kw_only=True)
class OrderRequest:
    """An order as asked for: what every order-creating service takes (`order_build`, `order_create_in_transaction`,
    `risk_services.order_place_in_transaction`), so the parameters are named once."""

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
    with _attributed(request.actor, request.source, request.reason):
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
    _validate_order_params(request)
    order = Order(
        client_order_id=request.client_order_id,
        reason=request.reason,
        **{k: getattr(request, k) for k in _ORDER_FIELDS},
    )
    with _attributed(request.actor, request.source, request.reason) as who:
        created = _event(
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


def _transition_locked(
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
    not saved yet (a new order's `created`, when the order is inserted here in its first state), saved with it in
    one statement."""
    from_state = OrderState(order.state)
    try:
        if from_state == to_state or not can_transition(from_state, to_state):
            raise IllegalTransition(from_state, to_state)
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
    with _attributed(actor, source, reason or f"{from_state} -> {to_state}") as who:
        _stamp_state(order, to_state, at or timezone.now())
        if reason:
            order.reason = reason
        event = _event(
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


def _locked(order_id: int) -> Order:
    try:
        return lock_objects.order_lock(order_id)
    except Order.DoesNotExist as exc:
        raise NotFoundError(f"order {order_id} does not exist") from exc


@transaction.atomic
def order_mark_submitted(
    *, order_id: int, source: EventSource = EventSource.SYSTEM, actor: str | None = None, at: datetime | None = None
) -> Order:
    """Sent to the exchange (before the request leaves, so a crash after it is `submitted`, never lost)."""
    return _transition_locked(
        _locked(order_id), OrderState.SUBMITTED, kind=Kind.SUBMITTED, source=source, actor=actor, at=at
    )


@transaction.atomic
def order_mark_rejected(
    *, order_id: int, reason: str, source: EventSource = EventSource.EXCHANGE, actor: str | None = None
) -> Order:
    return _transition_locked(
        _locked(order_id), OrderState.REJECTED, kind=Kind.REJECTED, source=source, actor=actor, reason=reason
    )


@transaction.atomic
def order_mark_unknown(
    *, order_id: int, reason: str, source: EventSource = EventSource.SYSTEM, actor: str | None = None
) -> Order:
    """The outcome of a request could not be confirmed (timeout, lost connection): resolve by querying."""
    return _transition_locked(
        _locked(order_id), OrderState.UNKNOWN, kind=Kind.UNKNOWN, source=source, actor=actor, reason=reason
    )


@transaction.atomic
def order_request_cancel(
    *, order_id: int, reason: str, source: EventSource = EventSource.OPERATOR, actor: str | None = None
) -> Order:
    """Ask for a cancel: an order never sent is canceled at once, a live one goes to `pending_cancel`."""
    order = _locked(order_id)
    if order.state == OrderState.CREATED:
        return _transition_locked(
            order, OrderState.CANCELED, kind=Kind.CANCELED, source=source, actor=actor, reason=reason
        )
    return _transition_locked(
        order, OrderState.PENDING_CANCEL, kind=Kind.CANCEL_REQUESTED, source=source, actor=actor, reason=reason
    )


@transaction.atomic
def order_mark_cancel_rejected(
    *, order_id: int, reason: str, source: EventSource = EventSource.EXCHANGE, actor: str | None = None
) -> Order:
    order = _locked(order_id)
    if order.state != OrderState.PENDING_CANCEL:
        raise IllegalOrderTransition(f"order {order_id} has no pending cancel", details={"state": order.state})
    back = OrderState.PARTIALLY_FILLED if order.filled_qty > 0 else OrderState.ACCEPTED
    return _transition_locked(order, back, kind=Kind.CANCEL_REJECTED, source=source, actor=actor, reason=reason)


# --- execution reports ----------------------------------------------------------------------------------------


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
def execution_report_apply(*, event: ExecutionEvent, actor: str | None = None) -> ExecutionApplyResult:
    """Apply one execution event to the order, its fill, the position and the balances, in one transaction.

    Idempotent and order-independent: a fill is keyed by its exec_id (a repeat is a no-op); an exchange status
    behind the order's state (a `new` after a trade) is stale and ignored; a fill for an order we had as canceled
    is applied (the exchange is the truth). An event for an order we cannot identify yet is parked and replayed
    when the order becomes known.
    """
    with _attributed(actor, event.source, f"{event.exec_type} {event.exec_id or event.order_id}") as who:
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
                first = _event(
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
        _event(order, source=event.source, actor=who, exchange_timestamp=event.timestamp, reason=event.reason or "",
            **item)
        for item in pending
    ]  # fmt: skip
    if dirty or events:
        # With the event counter (locked, so it exists), its audit row and its events (a fill and the state it
        # reached): one statement on PostgreSQL.
        _save_audited([order], Order, inserting=events)
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
    _stamp_state(order, target, at)
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
    balance_delta: dict[str, Decimal] = {
        instrument.base: qty if order.side == Side.BUY else -qty,
        instrument.quote: -cost if order.side == Side.BUY else cost,
    }
    for fee in event.fees:
        balance_delta[fee.asset] = balance_delta.get(fee.asset, ZERO) - fee.qty
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
    _save_audited([position], Position)

    balances = lock_objects.balances_lock(balance_delta)
    moved = []
    for asset, delta in balance_delta.items():
        if delta:
            balances[asset].total += delta
            moved.append(balances[asset])
    _save_audited(moved, Balance, ["total"])

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


# --- balances ---------------------------------------------------------------------------------------------------


@transaction.atomic
def balance_set(
    *, asset: str, total: Decimal, source: EventSource = EventSource.EXCHANGE, actor: str | None = None
) -> Balance:
    """Set an asset's balance from an exchange snapshot (the exchange's number wins over our running total)."""
    if not asset:
        raise ApplicationError("Invalid balance.", code="validation_error", details={"asset": "required"})
    with _attributed(actor, source, f"balance snapshot {asset}"):
        balance = lock_objects.balances_lock([asset])[asset]
        if balance.total != total:
            balance.total = total
            balance.save()
    return balance


# --- trading state ------------------------------------------------------------------------------------------


@transaction.atomic
def trading_state_set(*, state: str, reason: str, actor: str) -> TradingState:
    """Switch ACTIVE / REDUCING / HALTED, saying who and why (both required)."""
    if state not in TradingState.State.values:
        raise ApplicationError(
            "Invalid trading state.",
            code="validation_error",
            details={"state": f"must be one of {TradingState.State.values}"},
        )
    if not reason.strip() or not actor.strip():
        raise ApplicationError("A trading state change needs an actor and a reason.", code="validation_error")
    with audit_actor(actor, reason=audit_reason(reason)):
        current = lock_objects.trading_state_lock()
        current.state = state
        current.reason = reason
        current.changed_by = actor
        current.changed_at = timezone.now()
        current.save()
    logger.warning("trading state set", extra={"state": state, "actor": actor, "reason": reason})
    return current


# --- equity -------------------------------------------------------------------------------------------------------


@transaction.atomic
def equity_snapshot_take(
    *, marks: Mapping[str, Decimal], currency: str = "USD", at: datetime | None = None
) -> EquitySnapshot:
    """Value the balances and positions at `marks` (v2 symbol → price in `currency`) and record equity, the
    high-water mark and the drawdown from it."""
    instruments = {i.symbol: i for i in Instrument.objects.filter(quote=currency)}
    price_of_asset = {instruments[s].base: Decimal(p) for s, p in marks.items() if s in instruments}
    equity = ZERO
    missing: list[str] = []
    for balance in Balance.objects.all():
        if balance.asset == currency:
            equity += balance.total
        elif balance.total != 0:
            if balance.asset not in price_of_asset:
                missing.append(balance.asset)
                continue
            equity += balance.total * price_of_asset[balance.asset]
    realised = unrealised = fees = ZERO
    for position in Position.objects.select_related("instrument").filter(instrument__quote=currency):
        realised += position.realised_pnl
        fees += position.fees
        if position.quantity != 0:
            mark = marks.get(position.instrument.symbol)
            if mark is None:
                missing.append(position.instrument.symbol)
                continue
            unrealised += unrealised_pnl(quantity=position.quantity, avg_price=position.avg_price, mark=Decimal(mark))
    if missing:
        raise ApplicationError(
            "No mark price for some holdings.", code="missing_marks", details={"missing": sorted(set(missing))}
        )
    equity = q_money(equity)
    previous = EquitySnapshot.objects.select_for_update().filter(currency=currency).order_by("-taken_at", "-id").first()
    hwm = max(previous.high_water_mark, equity) if previous is not None else equity
    return EquitySnapshot.objects.create(
        taken_at=at or timezone.now(),
        currency=currency,
        equity=equity,
        realised_pnl=q_money(realised),
        unrealised_pnl=q_money(unrealised),
        fees=q_money(fees),
        high_water_mark=hwm,
        drawdown=drawdown(high_water_mark=hwm, equity=equity),
    )


# --- corrections from reconciliation -------------------------------------------------------------------------


@transaction.atomic
def fill_fee_correct(
    *,
    exec_id: str,
    fee: Decimal,
    fee_asset: str,
    source: EventSource = EventSource.RECONCILIATION,
    actor: str | None = None,
    reason: str = "",
) -> Fill:
    """The exchange charged a different fee for a fill than we recorded (a later rebate or correction, found by
    reconciliation): set the fill's fee, and move the order's fees, the position's fees and the fee asset's
    balance by the difference. Recorded as an `amended` order event with the before and after fee; the order,
    position and balance changes are audited. A fee in an asset other than the instrument's quote is refused."""
    fill = Fill.objects.select_related("instrument").filter(exec_id=exec_id).first()
    if fill is None:
        raise NotFoundError(f"fill {exec_id} does not exist")
    instrument = fill.instrument
    if fee_asset != instrument.quote or not fee.is_finite() or fee < 0:
        raise ApplicationError(
            "Invalid fee correction.",
            code="validation_error",
            details={"fee": str(fee), "fee_asset": fee_asset, "quote": instrument.quote},
        )
    with _attributed(actor, source, reason or f"fee correction {exec_id}") as who:
        order = _locked(fill.order_id)
        fill = Fill.objects.select_for_update().get(pk=fill.pk)
        before = fill.fee
        delta = q_money(fee - before)
        if delta == 0:
            return fill
        fill.fee = q_money(fee)
        fill.fee_details = [{"asset": fee_asset, "qty": str(fee)}]
        fill.save(update_fields=["fee", "fee_details"])
        order.fees += delta
        position = lock_objects.position_lock(instrument)
        position.fees += delta
        position.save()
        balance = lock_objects.balances_lock([fee_asset])[fee_asset]
        balance.total -= delta
        balance.save()
        amended = _event(
            order,
            kind=Kind.AMENDED,
            source=source,
            from_state=order.state,
            to_state=order.state,
            actor=who,
            exec_id="",
            reason=reason or "fee corrected",
            payload={"exec_id": exec_id, "changes": {"fee": [str(before), str(fill.fee)]}, "fee_asset": fee_asset},
        )
        order.save()
        amended.save()
    logger.info("fill fee corrected", extra={"exec_id": exec_id, "before": str(before), "after": str(fee)})
    return fill
