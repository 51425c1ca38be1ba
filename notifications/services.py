"""Operator actions on notifications: send a test message, re-queue a message. Both audited (the message's history
names the actor)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from core.audit import audit_actor
from core.errors import ApplicationError, ConflictError, NotFoundError
from notifications import config, dispatch, lock_objects
from notifications.models import Channel, Notification
from notifications.rendering import render_test


@transaction.atomic
def notification_send_test(*, requested_by: str, channel: str | None = None) -> list[Notification]:
    """A test message to `channel`, or to every configured channel; sent at once (no grouping, no flood control,
    no quiet hours). Refused when the channel (or every channel) is not configured."""
    if channel is not None and channel not in Channel.values:
        raise ApplicationError(f"unknown channel {channel!r}", code="unknown_channel")
    wanted = [channel] if channel is not None else config.configured_channels()
    missing = [c for c in wanted if not config.channel_configured(c)]
    if missing or not wanted:
        raise ConflictError(
            f"channel {missing[0]} is not configured" if missing else "no notification channel is configured",
            code="channel_not_configured",
            details={"configured": config.configured_channels()},
        )
    now = timezone.now()
    created = []
    with audit_actor(requested_by, reason="test notification"):
        for name in wanted:
            rendered = render_test(channel=name, requested_by=requested_by, at=now)
            notification = Notification.objects.create(
                channel=name,
                kind=Notification.Kind.TEST,
                subject=rendered.subject,
                body=rendered.text,
                payload={**rendered.payload, "channel": name, "created_at": now.isoformat()},
                requested_by=requested_by,
                deliver_after=now,
                sealed_at=now,
            )
            dispatch.deliver_after_commit(notification.pk)
            created.append(notification)
    return created


@transaction.atomic
def notification_requeue(*, notification_id: int, actor: str) -> Notification:
    """Send a failed message again (after the channel was fixed); a pending one is just enqueued once more. A sent
    message is not sent twice (409)."""
    notification = lock_objects.notification_lock(notification_id)
    if notification is None:
        raise NotFoundError(f"notification {notification_id} does not exist")
    if notification.state == Notification.State.SENT:
        raise ConflictError(f"notification {notification_id} was sent at {notification.sent_at:%Y-%m-%d %H:%M:%S}")
    if notification.state == Notification.State.FAILED:
        with audit_actor(actor, reason="re-queued"):
            notification.state = Notification.State.PENDING
            notification.next_attempt_at = None
            notification.save(update_fields=["state", "next_attempt_at"])
    dispatch.deliver_after_commit(notification.pk)
    return notification
