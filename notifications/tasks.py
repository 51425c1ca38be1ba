"""Notification tasks: thin (ids in, a service called), idempotent, `acks_late`. They run on the `default` queue.

`notification_deliver_task` makes one attempt per run and schedules its own retry (exponential backoff with
jitter, `max_retries` times); past that, and for any retry lost on the way, the beat re-drive
(`notifications_redrive_task`) enqueues what is due, so a channel that stays down is tried until it returns."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from core.audit import audit_actor
from notifications.delivery import notification_deliver, notifications_redrive
from notifications.dispatch import enqueue_now
from notifications.grouping import reminders_send

DELIVER_MAX_RETRIES = 8


@shared_task(
    bind=True, name="notifications.tasks.notification_deliver_task", acks_late=True, max_retries=DELIVER_MAX_RETRIES,
    soft_time_limit=60, time_limit=90, ignore_result=True,
)  # fmt: skip
def notification_deliver_task(self: Task, notification_id: int) -> dict[str, Any]:
    with audit_actor("celery:notifications.deliver"):
        outcome = notification_deliver(notification_id=notification_id)
    if outcome.status == "retry" and outcome.retry_in is not None and self.request.retries < DELIVER_MAX_RETRIES:
        raise self.retry(countdown=outcome.retry_in)
    if outcome.status == "not_due" and outcome.retry_in is not None:
        enqueue_now(notification_id, countdown=outcome.retry_in)  # early (a countdown is not exact): come back
    return {"notification_id": notification_id, "status": outcome.status, "retry_in": outcome.retry_in}


@shared_task(name="notifications.tasks.notifications_redrive_task", acks_late=True, expires=15, ignore_result=True)
def notifications_redrive_task() -> dict[str, Any]:
    """Every 15 s from beat: enqueue the pending messages that are due and late."""
    return {"enqueued": len(notifications_redrive())}


@shared_task(name="notifications.tasks.notifications_remind_task", acks_late=True, expires=60, ignore_result=True)
def notifications_remind_task() -> dict[str, Any]:
    """Every minute from beat: a reminder for firing alerts not notified within NOTIFY_REPEAT_INTERVAL_S."""
    with audit_actor("celery:notifications.remind"):
        return {"reminders": reminders_send()}
