"""The kill switch and the trading state: ACTIVE / REDUCING / HALTED (who and why, audited), halting with every
open order's cancel requested, resuming (a safety halt only by staff and only without open critical
discrepancies, or as an audited override), and the cancel requests of operators and the system.

The cancel path, layer by layer: `order_cancel_request` (here: the request, handed to the execution gateway after
commit) → `orders.order_mark_cancel_requested` (the state machine: `pending_cancel`, or canceled at once when never
sent) → the `trading.tasks.execute_cancel` task → `execution.order_cancel_at_exchange` (the broker's cancel, its
answer applied).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from core.audit import USER_ACTOR_PREFIX, audit_actor
from core.errors import ApplicationError, ConflictError
from trading import lock_objects
from trading.alerts import alert_raise, system_event_publish
from trading.attribution import audit_reason
from trading.executions import EventSource
from trading.gateway import execution_gateway
from trading.models import Alert, Instrument, Order, SafetyOverride, TradingState
from trading.order_states import OrderState
from trading.orders import order_mark_cancel_requested

logger = logging.getLogger(__name__)

State = TradingState.State


@transaction.atomic
def trading_state_set(*, state: str, reason: str, actor: str) -> TradingState:
    """Switch ACTIVE / REDUCING / HALTED, saying who and why (both required); after commit, the `system` group
    hears of it (topic "trading_state": open dashboards update; lossy, the REST API is the truth)."""
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
    event = {"topic": "trading_state", "state": state, "reason": reason, "changed_by": actor}
    transaction.on_commit(partial(system_event_publish, {**event, "at": current.changed_at.isoformat()}), robust=True)
    return current


# --- cancels ---------------------------------------------------------------------------------------------------


def _cancel_locked_order(order: Order, *, reason: str, source: EventSource, actor: str | None) -> Order:
    """Move one (locked) order towards canceled and hand a live one's cancel to the gateway after commit."""
    updated = order_mark_cancel_requested(order_id=order.pk, reason=reason, source=source, actor=actor)
    if updated.state == OrderState.PENDING_CANCEL:
        transaction.on_commit(partial(execution_gateway().cancel_order, order_id=updated.pk), robust=True)
    return updated


@transaction.atomic
def order_cancel_request(
    *, order_id: int, reason: str, source: EventSource = EventSource.OPERATOR, actor: str | None = None
) -> Order:
    """The cancel path's service (operators, reconciliation): cancel one order. Never sent → canceled at once;
    live → pending_cancel, and the cancel is handed to the execution gateway after commit."""
    return _cancel_locked_order(lock_objects.order_lock(order_id), reason=reason, source=source, actor=actor)


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
    found: list[int] = []
    for path in settings.GALFRIDAY_RESUME_BLOCKERS:
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
    `may_lift_safety_halt` (staff, or the trading.resume_safety_halt permission), and only while no critical
    reconciliation discrepancy is open; with some open, only as an `override` whose written reason is at least
    GALFRIDAY_RESUME_OVERRIDE_MIN_REASON characters long, recorded (trading.SafetyOverride) and logged."""
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
        minimum = int(settings.GALFRIDAY_RESUME_OVERRIDE_MIN_REASON)
        if len(reason.strip()) < minimum:
            raise ApplicationError(
                f"An override needs a written reason of at least {minimum} characters.",
                code="validation_error",
                details={"reason": f"at least {minimum} characters"},
            )
        SafetyOverride.objects.create(actor=actor, reason=reason, open_critical=blockers, **halt)
        logger.warning(
            "safety halt overridden",
            extra={"actor": actor, "open_critical": len(blockers), "halted_by": state.changed_by},
        )
        reason = f"override ({len(blockers)} critical discrepancies open): {reason}"
    return trading_state_set(state=State.ACTIVE, reason=reason, actor=actor)
