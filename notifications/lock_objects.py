"""The one place notifications take row locks (after Saleor's lock_objects.py). Order: the channel's row first,
then its messages; the grouping of new events and the sealing of a message (flood control) both hold the
channel's row, so they never race. A message being sent is locked alone (SKIP LOCKED: a second worker on the same
message leaves it to the first). SQLite ignores row locks; the concurrency tests run on PostgreSQL."""

from __future__ import annotations

from notifications.models import ChannelState, Notification


def channel_lock(channel: str) -> ChannelState:
    ChannelState.objects.get_or_create(channel=channel)
    return ChannelState.objects.select_for_update().get(channel=channel)


def open_notification_lock(channel: str, bucket: str) -> Notification | None:
    return (
        Notification.objects.select_for_update()
        .filter(channel=channel, bucket=bucket, sealed_at__isnull=True, state=Notification.State.PENDING)
        .order_by("pk")
        .first()
    )


def notification_lock(pk: int) -> Notification | None:
    return Notification.objects.select_for_update().filter(pk=pk).order_by("pk").first()


def notification_lock_or_skip(pk: int) -> Notification | None:
    """The message locked, or None when it is gone or another transaction holds it."""
    return Notification.objects.select_for_update(skip_locked=True).filter(pk=pk).order_by("pk").first()
