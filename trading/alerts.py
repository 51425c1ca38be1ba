"""Alerts: conditions worth a person's attention, raised by trading, reconciliation, ingest and the model
lifecycle through `alert_raise` (deduplicated on request), acknowledged by an operator."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.errors import NotFoundError
from trading import lock_objects
from trading.models import Alert

logger = logging.getLogger(__name__)


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
    alert = lock_objects.alert_lock(alert_id)
    if alert is None:
        raise NotFoundError(f"alert {alert_id} does not exist")
    if alert.acknowledged_at is None:
        alert.acknowledged_by = actor
        alert.acknowledged_at = timezone.now()
        alert.save()
    return alert
