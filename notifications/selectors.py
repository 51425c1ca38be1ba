"""Reads of the delivery log."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet

from notifications import config
from notifications.models import AlertEvent, ChannelState, Notification


def notification_list(*, filters: dict[str, Any]) -> QuerySet[Notification]:
    qs = Notification.objects.all()
    for name in ("channel", "state", "kind"):
        if filters.get(name):
            qs = qs.filter(**{name: filters[name]})
    if filters.get("alert_id"):
        qs = qs.filter(items__event__alert_id=filters["alert_id"]).distinct()
    if filters.get("created_after"):
        qs = qs.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        qs = qs.filter(created_at__lt=filters["created_before"])
    return qs.order_by("-created_at", "-id")


def notification_get(*, notification_id: int) -> Notification | None:
    return Notification.objects.filter(pk=notification_id).first()


def notification_events(*, notification: Notification) -> QuerySet[AlertEvent]:
    return AlertEvent.objects.filter(items__notification=notification).order_by("occurred_at", "pk")


def event_list(*, filters: dict[str, Any]) -> QuerySet[AlertEvent]:
    qs = AlertEvent.objects.all()
    for name in ("alert_id", "change", "kind", "severity"):
        if filters.get(name):
            qs = qs.filter(**{name: filters[name]})
    if filters.get("occurred_after"):
        qs = qs.filter(occurred_at__gte=filters["occurred_after"])
    return qs.order_by("-occurred_at", "-id")


def channel_overview() -> list[dict[str, Any]]:
    """Each channel: configured or not, its routing, its last outcome and its messages per state. No secret."""
    states = {c.channel: c for c in ChannelState.objects.all()}
    counts: dict[tuple[str, str], int] = {
        (row["channel"], row["state"]): row["n"]
        for row in Notification.objects.values("channel", "state").annotate(n=Count("id"))
    }
    rows = []
    for route in config.routes():
        state = states.get(route.channel)
        rows.append(
            {
                "channel": route.channel,
                "configured": route.configured,
                "severities": sorted(route.severities),
                "kinds": sorted(route.kinds),
                "last_sent_at": state.last_sent_at if state else None,
                "last_error": state.last_error if state else "",
                "last_error_at": state.last_error_at if state else None,
                "pending": counts.get((route.channel, Notification.State.PENDING), 0),
                "sent": counts.get((route.channel, Notification.State.SENT), 0),
                "failed": counts.get((route.channel, Notification.State.FAILED), 0),
            }
        )
    return rows
