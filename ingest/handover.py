"""Handing Celery tasks to the broker without holding up the market stream.

Publishing blocks (Celery's publish retries wait for seconds on a slow or unreachable broker): one thread, off the
event loop, so tasks leave in the order they were handed over; each outcome is counted or logged when it comes, and
:meth:`HandOver.drain` waits (bounded) at stop for what is still queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

__all__ = ["ENQUEUE_DRAIN_S", "Enqueue", "HandOver"]

logger = logging.getLogger(__name__)

# At stop, how long to wait for tasks still queued for the broker (Celery's publish retries take a few seconds).
ENQUEUE_DRAIN_S = 10.0

Enqueue = Callable[[str, list[Any]], None]


class HandOver:
    """Tasks by name to ``enqueue`` (e.g. Celery's ``send_task``), in order, from one thread."""

    def __init__(self, enqueue: Enqueue | None, counters: dict[str, int]) -> None:
        self.enqueue = enqueue
        self.counters = counters
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-enqueue")
        self._futures: set[asyncio.Future[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.enqueue is not None

    def hand_over(self, task: str, args: list[Any], *, counter: str | None = None) -> None:
        """Give a task to the enqueue thread and go on; ``counter`` counts it once it left."""
        assert self.enqueue is not None
        future = asyncio.get_running_loop().run_in_executor(self._thread, self.enqueue, task, args)
        self._futures.add(future)
        future.add_done_callback(partial(self._handed_over, task=task, args=args, counter=counter))

    def _handed_over(self, future: asyncio.Future[None], *, task: str, args: list[Any], counter: str | None) -> None:
        self._futures.discard(future)
        error = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if error is not None:  # a broker outage must not stop ingest; counted and logged
            self.counters["enqueue_failures"] += 1
            logger.error("task not enqueued", extra={"task": task, "task_args": args, "error": repr(error)})
        elif counter is not None:
            self.counters[counter] += 1

    async def drain(self) -> None:
        """At stop: wait (bounded) for the tasks still queued for the broker; what does not leave is logged."""
        if not self._futures:
            return
        _, pending = await asyncio.wait(set(self._futures), timeout=ENQUEUE_DRAIN_S)
        if pending:
            logger.error("tasks still waiting for the broker at stop", extra={"tasks": len(pending)})

    def shutdown(self) -> None:
        """After :meth:`drain`: what timed out still leaves, from this thread."""
        self._thread.shutdown(wait=False)
