"""The seam between deciding and executing: services hand order ids to an `ExecutionGateway` after their
transaction commits (`transaction.on_commit`), never before, so a rolled-back decision sends nothing.

The implementation is chosen by the setting `GALFRIDAY_EXECUTION_GATEWAY` (a dotted path to a class built with no
arguments). `CeleryExecutionGateway` (the default when the setting is absent) enqueues the execution tasks of
`trading.tasks` by name on the `trading` queue: `execute_order` (with an expiry: an order not sent within
`GALFRIDAY_EXECUTION_SUBMIT_EXPIRES_S` is not sent late; it stays `submitted` for reconciliation),
`execute_cancel` and `cancel_all_orders` (never expire). `UnwiredExecutionGateway` logs and counts every hand-over
and does nothing else (orders stay `submitted` / `pending_cancel` and reconciliation sees them).

A caller that is itself a task on the trading worker may hold the submissions instead (`submissions_held`): the
decision task does, and sends its order at once in the same process rather than through the broker and back
(`GALFRIDAY_EXECUTION_INLINE`, on by default), handing it to `execute_order` only when that fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from celery import current_app
from django.conf import settings
from django.utils.module_loading import import_string

from core.metrics import ProcessCounters

logger = logging.getLogger(__name__)

counters = ProcessCounters("trading.gateway")
_held: ContextVar[list[int] | None] = ContextVar("galfriday_held_submissions", default=None)


@contextmanager
def submissions_held() -> Iterator[list[int]]:
    """Inside, `CeleryExecutionGateway.submit_order` appends the committed order ids to the yielded list instead of
    enqueueing `execute_order`. The caller owns them: it must send each one itself or hand it back with
    `submit_order` outside the block (see `trading.tasks.decide_on_bar`), or the order stays `submitted` until
    reconciliation finds it."""
    held: list[int] = []
    token = _held.set(held)
    try:
        yield held
    finally:
        _held.reset(token)


def submission_sent_here() -> bool:
    """Whether an order handed over now is sent by this process itself right after its commit (held by the
    decision task, `submissions_held`, under `CeleryExecutionGateway`) rather than through the broker: its
    creator then counts the send attempt in the order's own transaction (`order_execute`'s `first_delivery`)."""
    return _held.get() is not None and isinstance(execution_gateway(), CeleryExecutionGateway)


class ExecutionGateway(Protocol):
    def submit_order(self, *, order_id: int) -> None:
        """Send an order that passed the risk check (state `submitted`) to the exchange."""

    def cancel_order(self, *, order_id: int) -> None:
        """Ask the exchange to cancel an order (state `pending_cancel`)."""


class UnwiredExecutionGateway:
    """No execution layer yet: say so loudly and count, do nothing else."""

    def submit_order(self, *, order_id: int) -> None:
        counters["submit_unwired"] += 1
        logger.warning("execution not wired: order not sent", extra={"order_id": order_id})

    def cancel_order(self, *, order_id: int) -> None:
        counters["cancel_unwired"] += 1
        logger.warning("execution not wired: cancel not sent", extra={"order_id": order_id})


class CeleryExecutionGateway:
    """Enqueue the execution tasks by name (the trading layer never imports the execution code)."""

    submit_task = "trading.tasks.execute_order"
    cancel_task = "trading.tasks.execute_cancel"
    cancel_all_task = "trading.tasks.cancel_all_orders"
    queue = "trading"

    def submit_order(self, *, order_id: int) -> None:
        held = _held.get()
        if held is not None:
            held.append(order_id)
            return
        expires = float(settings.GALFRIDAY_EXECUTION_SUBMIT_EXPIRES_S)
        self._send(self.submit_task, {"order_id": order_id}, expires=expires)

    def cancel_order(self, *, order_id: int) -> None:
        self._send(self.cancel_task, {"order_id": order_id})

    def cancel_all_orders(self, *, reason: str = "cancel all") -> None:
        self._send(self.cancel_all_task, {"reason": reason})

    def _send(self, task: str, kwargs: dict[str, Any], **options: Any) -> None:
        # The caller never reads the task's result: without ignore_result each send would subscribe this process
        # to the result's channel on Redis (and unsubscribe when the result object goes).
        current_app.send_task(task, kwargs=kwargs, queue=self.queue, ignore_result=True, **options)


def execution_gateway() -> ExecutionGateway:
    gateway_class = import_string(settings.GALFRIDAY_EXECUTION_GATEWAY)
    gateway: ExecutionGateway = gateway_class()
    return gateway
