"""Audit trail infrastructure: who or what changed a row, when, why, and its state before and after.

Models that must be audited (orders, positions, balances, model stages, experiments, risk limits) declare

    history = audited_history()

which keeps an append-only historical table through django-simple-history. Each historical row carries the
actor: the authenticated user of the request (set by simple-history's middleware), or the system actor named
with `audit_actor("celery:trading.submit_order")` around service calls made by tasks, the ingest worker or
reconciliation. `audit_trail(instance)` answers with every change as before/after pairs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import models
from django.dispatch import receiver
from simple_history.models import HistoricalRecords
from simple_history.signals import pre_create_historical_record

_actor: ContextVar[str | None] = ContextVar("galfriday_audit_actor", default=None)
_reason: ContextVar[str | None] = ContextVar("galfriday_audit_reason", default=None)

SYSTEM_ACTOR = "system"


@contextmanager
def audit_actor(actor: str, *, reason: str | None = None) -> Iterator[None]:
    """Attribute every audited change made inside the block to `actor` (e.g. "ingest", "celery:<task>",
    "reconciliation:<run id>"), with an optional reason."""
    if not actor:
        raise ValueError("audit_actor needs a non-empty actor name")
    actor_token = _actor.set(actor)
    reason_token = _reason.set(reason)
    try:
        yield
    finally:
        _actor.reset(actor_token)
        _reason.reset(reason_token)


def current_actor() -> str | None:
    return _actor.get()


def current_reason() -> str | None:
    return _reason.get()


class AuditedHistoricalModel(models.Model):
    """Base of every historical table: adds the actor (user or system component) to simple-history's
    `history_user`, `history_date`, `history_type` and `history_change_reason`."""

    actor = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        abstract = True


def audited_history(**kwargs: Any) -> HistoricalRecords:
    kwargs.setdefault("bases", [AuditedHistoricalModel])
    kwargs.setdefault("cascade_delete_history", False)
    return HistoricalRecords(**kwargs)


@receiver(pre_create_historical_record)
def _stamp_actor(sender: Any, instance: Any, history_instance: Any, **kwargs: Any) -> None:
    if not hasattr(history_instance, "actor"):
        return
    actor = _actor.get()
    user = getattr(history_instance, "history_user", None)
    if actor is None:
        actor = f"user:{user.get_username()}" if user is not None else SYSTEM_ACTOR
    history_instance.actor = actor
    if not getattr(history_instance, "history_change_reason", None) and _reason.get():
        history_instance.history_change_reason = _reason.get()


@dataclass(frozen=True)
class AuditEntry:
    when: datetime
    actor: str
    action: str  # "created", "changed" or "deleted"
    reason: str
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (before, after)


_ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}


def audit_trail(instance: models.Model) -> list[AuditEntry]:
    """Every recorded change of `instance`, oldest first, with the before and after value of each field."""
    records = list(instance.history.order_by("history_date", "history_id"))  # type: ignore[attr-defined]
    entries: list[AuditEntry] = []
    previous = None
    tracked = [f.attname for f in instance._meta.concrete_fields]
    for record in records:
        if previous is None:
            changes = {name: (None, getattr(record, name)) for name in tracked}
        else:
            changes = {
                name: (getattr(previous, name), getattr(record, name))
                for name in tracked
                if getattr(previous, name) != getattr(record, name)
            }
        entries.append(
            AuditEntry(
                when=record.history_date,
                actor=getattr(record, "actor", "") or SYSTEM_ACTOR,
                action=_ACTIONS[record.history_type],
                reason=record.history_change_reason or "",
                changes=changes,
            )
        )
        previous = record
    return entries
