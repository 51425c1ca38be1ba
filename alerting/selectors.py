"""Reads of alerts and silences for the API, the admin and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from trading.models import Alert, AlertSilence


def alert_list(*, filters: Mapping[str, Any] | None = None) -> QuerySet[Alert]:
    """Newest first. Filters: state, severity, kind (each one value or a list), open (firing or acknowledged),
    fingerprint."""
    filters = filters or {}
    qs = Alert.objects.all()
    for name in ("state", "severity", "kind"):
        value = filters.get(name)
        if value:
            qs = qs.filter(**{f"{name}__in": value if isinstance(value, list | tuple) else [value]})
    if filters.get("fingerprint"):
        qs = qs.filter(fingerprint=filters["fingerprint"])
    if filters.get("open") is True:
        qs = qs.exclude(state=Alert.State.RESOLVED)
    elif filters.get("open") is False:
        qs = qs.filter(state=Alert.State.RESOLVED)
    return qs.order_by("-created_at", "-id")


def alert_get(*, alert_id: int) -> Alert | None:
    return Alert.objects.filter(pk=alert_id).first()


def silence_list(*, active: bool | None = None) -> QuerySet[AlertSilence]:
    """Latest end first; `active` True: in force now, False: ended or not started yet."""
    qs = AlertSilence.objects.all()
    now = timezone.now()
    in_force = Q(starts_at__lte=now, ends_at__gt=now)
    if active is True:
        qs = qs.filter(in_force)
    elif active is False:
        qs = qs.exclude(in_force)
    return qs.order_by("-ends_at", "-id")


def silence_get(*, silence_id: int) -> AlertSilence | None:
    return AlertSilence.objects.filter(pk=silence_id).first()
