"""Sending one message, reliably: `notification_deliver` (called by the delivery task with an id) and the re-drive
of what is due (`notifications_redrive`, from beat).

A message goes through two short transactions:

1. Seal (the channel's row locked): when an open message is due, flood control looks at the channel's messages
   sealed within NOTIFY_FLOOD_WINDOW_S; at NOTIFY_FLOOD_LIMIT it is not sent but becomes the channel's summary,
   due when the window has room again, and keeps collecting events meanwhile (nothing is dropped: every event is
   in the log and counted in the summary). Otherwise its text is rendered and fixed.
2. Send (the message's row locked, SKIP LOCKED: a second worker leaves it alone): a sent or failed message is left
   as it is (idempotent: a sent message is not sent again); else one attempt. Success: `sent`. A permanent error
   (`DeliveryError.permanent`): `failed`, kept with its error for an operator to re-queue. Anything else: still
   `pending`, with the error, the attempt count and the time of the next attempt (exponential backoff with jitter,
   or the receiver's Retry-After); the task retries then, and beat re-drives a message whose retry was lost, for
   as long as the channel stays down.

Delivery is at least once: a worker that dies after the receiver accepted and before the commit sends again; the
notification id travels with the message (webhook/e-mail header, JSON `delivery_id`) for receivers to drop it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from notifications import channels, config, dispatch, lock_objects
from notifications.models import AlertEvent, ChannelState, Notification
from notifications.rendering import EventView, render_alerts
from trading.alerts import KIND_TITLES, runbook_url

logger = logging.getLogger(__name__)

# A message is due when its time has come, give or take this much (a task's countdown is not exact).
EARLY_TOLERANCE = timedelta(milliseconds=250)
# Beat re-drives pending messages this late (their own task should have run by then).
REDRIVE_GRACE = timedelta(seconds=10)
REDRIVE_BATCH = 500


@dataclass(frozen=True)
class Outcome:
    """What one call of `notification_deliver` did: status in sent, failed, retry (in `retry_in` seconds), folded
    (became a summary, due in `retry_in`), not_due, done (already sent or failed), busy (another worker holds it),
    missing."""

    status: str
    retry_in: float | None = None
    error: str = ""
    channel: str = ""
    at: datetime | None = None


def _title(kind: str) -> str:
    return str(KIND_TITLES.get(kind, kind.replace("_", " ").capitalize()))


def _events(notification: Notification) -> list[EventView]:
    rows = AlertEvent.objects.filter(items__notification=notification).order_by("occurred_at", "pk")
    return [
        EventView(
            alert_id=e.alert_id,
            change=e.change,
            kind=e.kind,
            severity=e.severity,
            fingerprint=e.fingerprint,
            message=e.message,
            count=e.count,
            occurred_at=e.occurred_at,
        )
        for e in rows
    ]


def _flood_free_at(notification: Notification, now: datetime) -> datetime | None:
    """When the channel may send another message (None: now)."""
    window = config.flood_window()
    limit = config.flood_limit()
    recent = list(
        Notification.objects.filter(channel=notification.channel, sealed_at__gt=now - window)
        .exclude(kind=Notification.Kind.TEST)
        .exclude(pk=notification.pk)
        .order_by("sealed_at")
        .values_list("sealed_at", flat=True)
    )
    if len(recent) < limit:
        return None
    oldest_to_leave = recent[len(recent) - limit]
    assert oldest_to_leave is not None
    return oldest_to_leave + window + timedelta(milliseconds=10)


@transaction.atomic
def _seal(notification_id: int, now: datetime) -> Outcome | None:
    """Phase 1; None when the message is sealed and may be sent."""
    head = Notification.objects.filter(pk=notification_id).values("channel", "sealed_at", "state").first()
    if head is None:
        return Outcome("missing")
    if head["state"] != Notification.State.PENDING:
        return Outcome("done")
    if head["sealed_at"] is not None:
        return None
    lock_objects.channel_lock(head["channel"])
    # SKIP LOCKED: a message held by another transaction is being sent (so it is sealed) or re-queued; waiting here
    # would hold the channel's row, and every event for the channel, for as long as that send takes.
    notification = lock_objects.notification_lock_or_skip(notification_id)
    if notification is None:
        exists = Notification.objects.filter(pk=notification_id).exists()
        return Outcome("busy" if exists else "missing")
    if notification.state != Notification.State.PENDING:
        return Outcome("done")
    if notification.sealed_at is not None:
        return None
    if notification.deliver_after > now + EARLY_TOLERANCE:
        return Outcome("not_due", retry_in=(notification.deliver_after - now).total_seconds())
    free_at = _flood_free_at(notification, now)
    if free_at is not None:
        notification.kind = Notification.Kind.SUMMARY
        notification.deliver_after = free_at
        notification.save(update_fields=["kind", "deliver_after"])
        delay = (free_at - now).total_seconds()
        dispatch.deliver_after_commit(notification.pk, countdown=delay)
        logger.info(
            "flood control: message deferred and folded into a summary",
            extra={"notification_id": notification.pk, "channel": notification.channel, "due_in_s": delay},
        )
        return Outcome("folded", retry_in=delay)
    rendered = render_alerts(
        _events(notification),
        summary=notification.kind == Notification.Kind.SUMMARY,
        title=_title,
        runbook=runbook_url,
        since=notification.created_at,
    )
    notification.subject = rendered.subject[:300]
    notification.body = rendered.text
    notification.payload = {**rendered.payload, "channel": notification.channel, "created_at": now.isoformat()}
    notification.sealed_at = now
    notification.save(update_fields=["subject", "body", "payload", "sealed_at"])
    return None


def _retry_delay(attempts: int, retry_after: float | None) -> float:
    delay = config.retry_delay(attempts) * random.uniform(1.0, 1.25)  # jitter, not a secret
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@transaction.atomic
def _send(notification_id: int, now: datetime) -> Outcome:
    """Phase 2: one attempt, the row locked for its duration (every I/O has a timeout)."""
    notification = lock_objects.notification_lock_or_skip(notification_id)
    if notification is None:
        exists = Notification.objects.filter(pk=notification_id).exists()
        return Outcome("busy" if exists else "missing")
    if notification.state != Notification.State.PENDING:
        return Outcome("done")
    if notification.next_attempt_at is not None and notification.next_attempt_at > now + EARLY_TOLERANCE:
        return Outcome("not_due", retry_in=(notification.next_attempt_at - now).total_seconds())
    message = channels.Message(
        delivery_id=notification.pk, subject=notification.subject, text=notification.body, payload=notification.payload
    )
    notification.attempts += 1
    notification.last_attempt_at = now
    fields = ["attempts", "last_attempt_at", "state", "sent_at", "next_attempt_at", "last_error"]
    try:
        channels.deliver(notification.channel, message)
    except channels.DeliveryError as exc:
        error = str(exc)[:2000]
        notification.last_error = error
        if exc.permanent:
            notification.state = Notification.State.FAILED
            notification.next_attempt_at = None
            notification.save(update_fields=fields)
            logger.error(
                "notification failed (permanent)",
                extra={"notification_id": notification.pk, "channel": notification.channel, "error": error},
            )
            return Outcome("failed", error=error, channel=notification.channel, at=now)
        delay = _retry_delay(notification.attempts, exc.retry_after)
        notification.next_attempt_at = now + timedelta(seconds=delay)
        notification.save(update_fields=fields)
        logger.warning(
            "notification not delivered, will retry",
            extra={
                "notification_id": notification.pk,
                "channel": notification.channel,
                "attempts": notification.attempts,
                "retry_in_s": round(delay, 3),
                "error": error,
            },
        )
        return Outcome("retry", retry_in=delay, error=error, channel=notification.channel, at=now)
    notification.state = Notification.State.SENT
    sent_at = timezone.now()
    notification.sent_at = sent_at
    notification.next_attempt_at = None
    notification.save(update_fields=fields)
    logger.info(
        "notification sent",
        extra={"notification_id": notification.pk, "channel": notification.channel, "attempts": notification.attempts},
    )
    return Outcome("sent", channel=notification.channel, at=sent_at)


def _channel_note(outcome: Outcome) -> None:
    """The channel's last outcome, for the admin; after the message's transaction (the channel's row is locked before
    a message's everywhere else, so it is never taken while a message is held)."""
    if outcome.status == "sent":
        ChannelState.objects.filter(channel=outcome.channel).update(last_sent_at=outcome.at)
    elif outcome.status in ("failed", "retry"):
        ChannelState.objects.filter(channel=outcome.channel).update(last_error=outcome.error, last_error_at=outcome.at)


def notification_deliver(*, notification_id: int, now: datetime | None = None) -> Outcome:
    """Seal the message when it is due, then make one delivery attempt (see the module); safe to call any number
    of times, from any number of workers."""
    now = now or timezone.now()
    sealed = _seal(notification_id, now)
    if sealed is not None:
        return sealed
    outcome = _send(notification_id, now)
    _channel_note(outcome)
    return outcome


def notifications_redrive(*, now: datetime | None = None) -> list[int]:
    """Enqueue every pending message that is due and whose own task should have run already (lost in a broker
    restart, never enqueued because the broker was down, or deferred for longer than a countdown): ids."""
    now = now or timezone.now()
    late = now - REDRIVE_GRACE
    ids = list(
        Notification.objects.filter(state=Notification.State.PENDING, deliver_after__lte=late)
        .exclude(next_attempt_at__gt=late)
        .order_by("deliver_after", "pk")
        .values_list("pk", flat=True)[:REDRIVE_BATCH]
    )
    for pk in ids:
        dispatch.enqueue_now(pk)
    if ids:
        logger.info("notifications re-driven", extra={"count": len(ids)})
    return ids
