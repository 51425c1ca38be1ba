"""From an alert change to the messages that will carry it.

`alert_event_record` is called for every change the alerting app announces (`trading.alerts.alert_changed`, after
commit) and for reminders. It writes the event to the log (`AlertEvent`; a repeat only when it is sent: the alert
counts its repeats itself), then routes it:

- fired: to every channel whose routing accepts the alert's severity and kind (not when a silence covers it);
- repeated (raised again while open) and reminder (still open): to the routed channels that have not carried the
  alert within NOTIFY_REPEAT_INTERVAL_S, or that hold it in a message still open (it joins that message), and only
  while the alert is firing (acknowledged: someone is on it) and not silenced;
- resolved: to the routed channels that carried the alert;
- acknowledged: the log only.

Routed events join the channel's open message (one per channel and bucket) or open a new one, due after
NOTIFY_GROUP_WAIT_S: alerts that fire together go out together. Outside critical, during quiet hours the event
goes to the channel's deferred message, due when the quiet hours end.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from notifications import config, dispatch, lock_objects
from notifications.models import AlertEvent, Notification, NotificationItem
from trading.models import Alert

logger = logging.getLogger(__name__)

NOTIFYING_CHANGES = ("fired", "repeated", "reminder", "resolved")


def _carried(alert_id: int, channel: str) -> Any:
    """Messages of `channel` (not failed ones) that carry an event of the alert."""
    return Notification.objects.filter(channel=channel, items__event__alert_id=alert_id).exclude(
        state=Notification.State.FAILED
    )


def repeat_due(*, alert_id: int, channel: str, now: datetime, join_open: bool = False) -> bool:
    """True when the alert should be notified again on `channel`: never carried there, or last sealed longer than
    the repeat interval ago; with `join_open`, also while it waits in an open message of the channel (a repeat
    joins it, so the message counts its events). A reminder never joins: the open message will say it anyway."""
    carried = _carried(alert_id, channel)
    if carried.filter(sealed_at__isnull=True).exists():
        return join_open
    last = carried.order_by("-sealed_at").values_list("sealed_at", flat=True).first()
    return last is None or last <= now - config.repeat_interval()


def _channels_for(alert: Alert, *, change: str, silenced: bool, now: datetime) -> list[str]:
    if change not in NOTIFYING_CHANGES:
        return []
    routed = [r.channel for r in config.routes() if r.accepts(severity=alert.severity, kind=alert.kind)]
    if change == "resolved":
        return [c for c in routed if _carried(alert.pk, c).exists()]
    if silenced:
        return []
    if change == "fired":
        return routed
    if alert.state != Alert.State.FIRING:
        return []
    join_open = change == "repeated"
    return [c for c in routed if repeat_due(alert_id=alert.pk, channel=c, now=now, join_open=join_open)]


def _bucket(severity: str, now: datetime) -> tuple[str, datetime]:
    """(bucket, due time) of a new message for an event of `severity` at `now`."""
    quiet = config.quiet_hours()
    end = quiet.end_if_quiet(now) if quiet is not None and severity != "critical" else None
    if end is not None:
        return Notification.Bucket.QUIET, end
    return Notification.Bucket.NOW, now + config.group_wait()


@transaction.atomic
def alert_event_record(
    *, alert_id: int, change: str, silenced: bool = False, now: datetime | None = None
) -> AlertEvent | None:
    """Log the change of alert `alert_id` and attach it to the messages that will carry it (see the module).
    None when the alert does not exist (any more), and for a repeat that goes nowhere: the alerting rules raise an
    open condition again on every evaluation (every few seconds), and the alert itself counts those (`count`,
    `last_seen_at`); the log keeps every fired, acknowledged and resolved change and every repeat that is sent."""
    now = now or timezone.now()
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is None:
        logger.warning("notification for a missing alert", extra={"alert_id": alert_id, "change": change})
        return None
    channels = sorted(_channels_for(alert, change=change, silenced=silenced, now=now))
    if change == "repeated" and not channels:
        return None
    event = AlertEvent.objects.create(
        alert_id=alert.pk,
        change=change,
        kind=alert.kind,
        severity=alert.severity,
        fingerprint=alert.fingerprint,
        message=alert.message,
        count=alert.count,
        silenced=silenced,
        routed_to=channels,
        occurred_at=now,
    )
    for channel in channels:
        _attach(event, channel=channel, now=now)
    return event


def _attach(event: AlertEvent, *, channel: str, now: datetime) -> Notification:
    lock_objects.channel_lock(channel)
    bucket, due = _bucket(event.severity, now)
    notification = lock_objects.open_notification_lock(channel, bucket)
    if notification is None:
        notification = Notification.objects.create(channel=channel, bucket=bucket, deliver_after=due)
        dispatch.deliver_after_commit(notification.pk, countdown=(due - now).total_seconds())
    NotificationItem.objects.create(notification=notification, event=event)
    Notification.objects.filter(pk=notification.pk).update(event_count=F("event_count") + 1)
    return notification


def open_alerts_due_for_reminder(*, now: datetime) -> list[int]:
    """Ids of firing alerts (not silenced) that some routed channel should hear about again."""
    due_before = now - config.repeat_interval()
    alerts = Alert.objects.filter(state=Alert.State.FIRING, created_at__lte=due_before).filter(
        Q(silence__isnull=True) | Q(silence__ends_at__lte=now)
    )
    due: list[int] = []
    for alert in alerts.order_by("pk")[:1000]:
        routed = [r.channel for r in config.routes() if r.accepts(severity=alert.severity, kind=alert.kind)]
        if any(repeat_due(alert_id=alert.pk, channel=c, now=now) for c in routed):
            due.append(alert.pk)
    return due


def reminders_send(*, now: datetime | None = None) -> int:
    """A reminder event for every firing alert due for one (the beat's repeat check); returns how many."""
    now = now or timezone.now()
    count = 0
    for alert_id in open_alerts_due_for_reminder(now=now):
        if alert_event_record(alert_id=alert_id, change="reminder", now=now) is not None:
            count += 1
    return count
