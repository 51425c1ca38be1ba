"""Reconciliation writes an operator asks for: a run (enqueued, never run in the request), acknowledging and
resolving discrepancies. The run itself is `reconciliation.runs`; its corrections `reconciliation.corrections`."""

from __future__ import annotations

import time
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core.audit import audit_actor
from core.errors import ApplicationError, ConflictError, NotFoundError
from reconciliation import lock_objects, selectors
from reconciliation.models import Discrepancy
from reconciliation.tasks import live_trading, reconciliation_request
from trading.accounts import balance_set
from trading.attribution import audit_reason
from trading.executions import EventSource

TRIGGER_COOLDOWN_KEY = "reconciliation:operator-trigger"


class ReconciliationPaperMode(ConflictError):
    code = "paper_mode"


class ReconciliationCooldown(ApplicationError):
    code = "cooldown"
    http_status = 429


def reconciliation_trigger(*, requested_by: str, reason: str = "", now: float | None = None) -> None:
    """An operator asks for a run: enqueued on the reconciliation queue (after commit), never run in the request.

    Refused in paper mode (the exchange account is not ours: a run would halt trading over differences that are
    not differences) and within GALFRIDAY_RECONCILIATION_TRIGGER_COOLDOWN_S of the previous operator request (a run
    spends the Kraken REST budget that trading shares); the cool-down is kept in the shared cache, so it holds
    across web processes."""
    if not live_trading():
        raise ReconciliationPaperMode(
            "Paper trading: the exchange account is not ours to reconcile.",
            details={"trading_mode": settings.TRADING_MODE},
        )
    cooldown = int(settings.GALFRIDAY_RECONCILIATION_TRIGGER_COOLDOWN_S)
    now = time.time() if now is None else now
    if cooldown > 0 and not cache.add(TRIGGER_COOLDOWN_KEY, now, timeout=cooldown):
        since = cache.get(TRIGGER_COOLDOWN_KEY)
        retry_after = max(1, round(cooldown - (now - float(since)))) if since is not None else cooldown
        raise ReconciliationCooldown(
            f"A run was requested less than {cooldown} s ago: try again in {retry_after} s.",
            details={"retry_after_s": retry_after, "cooldown_s": cooldown},
        )
    reconciliation_request(trigger="operator", requested_by=requested_by, reason=reason)


@transaction.atomic
def discrepancy_acknowledge(*, discrepancy_id: int, actor: str, note: str = "") -> Discrepancy:
    """Seen by an operator, still to be resolved. Acknowledging a resolved discrepancy changes nothing."""
    d = lock_objects.discrepancy_lock(discrepancy_id)
    if d is None:
        raise NotFoundError(f"discrepancy {discrepancy_id} does not exist")
    if d.status == Discrepancy.Status.OPEN:
        with audit_actor(actor, reason=audit_reason(note or "acknowledged")):
            d.status = Discrepancy.Status.ACKNOWLEDGED
            d.resolved_by = actor
            d.resolved_at = timezone.now()
            d.resolution_note = note
            d.save()
    return d


@transaction.atomic
def discrepancy_resolve(
    *, discrepancy_id: int, actor: str, note: str, accept_exchange_balance: bool = False
) -> Discrepancy:
    """Closed by an operator with a note (required). For a balance mismatch, `accept_exchange_balance` sets our
    balance to the exchange's value (audited) as part of the resolution."""
    if not note.strip():
        raise ApplicationError("A resolution needs a note.", code="validation_error", details={"note": "required"})
    d = lock_objects.discrepancy_lock(discrepancy_id)
    if d is None:
        raise NotFoundError(f"discrepancy {discrepancy_id} does not exist")
    if d.status in (Discrepancy.Status.RESOLVED, Discrepancy.Status.AUTO_RESOLVED):
        raise ConflictError("The discrepancy is already resolved.", details={"status": d.status})
    with audit_actor(actor, reason=audit_reason(note)):
        if accept_exchange_balance:
            if d.kind != Discrepancy.Kind.BALANCE_MISMATCH or not d.asset:
                raise ApplicationError(
                    "Only a balance mismatch can accept the exchange's balance.", code="validation_error"
                )
            before = selectors.balance_total(asset=d.asset)
            balance = balance_set(
                asset=d.asset, total=Decimal(d.exchange_value), source=EventSource.OPERATOR, actor=actor
            )
            d.action = Discrepancy.Action.BALANCE_SET
            d.action_detail = {
                **d.action_detail,
                "operator": {"before": str(before), "after": str(balance.total), "by": actor},
            }
        d.status = Discrepancy.Status.RESOLVED
        d.resolved_by = actor
        d.resolved_at = timezone.now()
        d.resolution_note = note
        d.save()
    return d
