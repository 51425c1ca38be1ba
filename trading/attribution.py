"""Who or what changed the trading books, and why: every trading service attributes its audited changes here
(`attributed`), and saves changed rows of audited models with their audit records (`rows_save_audited`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.utils import timezone

from core.audit import audit_actor, audited_rows_update, current_actor, current_reason
from trading.executions import EventSource

# simple-history's change reason is a 100-character column: longer reasons (they stay whole on the order, its
# events and the trading state) are clipped in the audit record instead of failing the write on PostgreSQL.
AUDIT_REASON_MAX = 100


def audit_reason(reason: str | None) -> str | None:
    """`reason` clipped to the audit record's column (None for no reason)."""
    if not reason:
        return None
    return reason if len(reason) <= AUDIT_REASON_MAX else reason[: AUDIT_REASON_MAX - 1] + "…"


@contextmanager
def attributed(actor: str | None, source: EventSource, reason: str = "") -> Iterator[str]:
    """Attribute audited changes to `actor`, else to whoever the caller already named, else to the source; yields
    the name used. Operator changes made inside a request keep the request's user (simple-history's middleware)."""
    name = actor or current_actor()
    if name is None and source == EventSource.OPERATOR:
        yield "operator"
        return
    # A reason the caller gave (audit_actor(..., reason=...)) wins over the service's own description.
    caller_reason = current_reason()
    with audit_actor(name or f"trading:{source}", reason=audit_reason(caller_reason or reason)):
        yield name or f"trading:{source}"


def rows_save_audited(
    objs: list[Any], model: type[Any], fields: list[str] | None = None, *, inserting: list[Any] | None = None
) -> None:
    """Save changed rows of one audited model that already exist (locked by the caller) with their audit records,
    attributed like the history signal would: `core.audit.audited_rows_update` (the UPDATE, then the audit rows
    of exactly what it wrote).

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
