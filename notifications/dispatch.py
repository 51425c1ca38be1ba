"""Enqueueing the delivery task by name, after commit (the services do not import the tasks module). A broker
that refuses is logged and counted, not raised: the message is in the database and the beat re-drive sends it."""

from __future__ import annotations

import logging
from collections import Counter

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)

DELIVER_TASK = "notifications.tasks.notification_deliver_task"
QUEUE = "default"
# A message due later than this is not enqueued with a countdown (a broker holding ETA tasks for hours is fragile):
# the beat re-drive sends it when it is due.
MAX_COUNTDOWN_S = 600.0

#: enqueue failures, for /metrics and tests
counters: Counter[str] = Counter()


def enqueue_now(notification_id: int, countdown: float = 0.0) -> None:
    if countdown > MAX_COUNTDOWN_S:
        return
    try:
        current_app.send_task(
            DELIVER_TASK, kwargs={"notification_id": notification_id}, queue=QUEUE, countdown=max(0.0, countdown)
        )
    except Exception:  # the broker is down: the beat re-drive will find the message
        counters["enqueue_failed"] += 1
        logger.exception("notification not enqueued", extra={"notification_id": notification_id})


def deliver_after_commit(notification_id: int, countdown: float = 0.0) -> None:
    transaction.on_commit(lambda: enqueue_now(notification_id, countdown))
