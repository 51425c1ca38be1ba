"""Trading tasks: thin (ids and primitives in, state re-read, a service called), idempotent, `acks_late`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from celery import Task, shared_task, signals
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from core.audit import audit_actor
from core.metrics import BAR_TO_ACK
from trading import pipeline
from trading.brokers.base import Broker
from trading.brokers.factory import broker_for_mode, trading_mode
from trading.brokers.paper import PaperBroker
from trading.execution import (
    OrderBusy,
    TransientExecutionError,
    halt_cancel_all_once,
    order_cancel_at_exchange,
    order_execute,
    order_sync,
    orders_cancel_all_execute,
)
from trading.gateway import CeleryExecutionGateway, execution_gateway, submissions_held
from trading.models import Decision, Order
from trading.order_states import OrderState
from trading.orders import order_mark_unknown
from trading.paper import paper_sweep
from trading.risk_monitor import risk_monitor_check
from trading.ws_session import close_session

logger = logging.getLogger(__name__)


@shared_task(name="trading.tasks.risk_monitor_run", acks_late=True, expires=10, ignore_result=True)
def risk_monitor_run() -> dict[str, Any]:
    """The continuous risk check (every 10 s from beat): equity snapshot, halt on a breached loss limit."""
    with audit_actor("celery:trading.tasks.risk_monitor_run"):
        return risk_monitor_check().to_json()


# --- execution (trading.execution): live through KrakenBroker, paper through PaperBroker -----------------------
#
# Tasks take an order id, re-read the order and are safe to run twice (see trading.execution). Retries only for
# transient errors, with exponential backoff and jitter; `acks_late` plus the project's reject-on-worker-lost make
# a killed worker's task run again, and that run finds the order by client order id instead of placing another.

EXECUTION_MAX_RETRIES = 6
_EXECUTION_RETRY: dict[str, Any] = {
    "autoretry_for": (TransientExecutionError,),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": EXECUTION_MAX_RETRIES,
}
_EXECUTION_LIMITS: dict[str, Any] = {"acks_late": True, "soft_time_limit": 120, "time_limit": 150}
# A busy order (its mutex, TTL GALFRIDAY_EXECUTION_MUTEX_TTL_S = the hard time limit) is retried past that TTL.
_BUSY_COUNTDOWN_S = 15
_BUSY_MAX_RETRIES = 12


@contextmanager
def _broker() -> Iterator[Broker]:
    """The broker for this task. Live, it rides on the worker process's exchange session (`trading.ws_session`:
    one REST client and one private WebSocket per process, built on the first task after the fork and reused);
    `close` then leaves the shared clients open."""
    broker = broker_for_mode()
    try:
        yield broker
    finally:
        broker.close()


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _close_execution_session(**_: Any) -> None:
    """Close this process's exchange session at shutdown (prefork children, and the solo pool's one process).
    The dead man's switch is left armed on purpose: see `trading.ws_session`."""
    close_session()


def _give_up(task: Task, order_id: int, exc: Exception) -> dict[str, Any] | None:
    """Out of retries on a transient error: the order's outcome is not known for sure (an attempt may have
    been refused or may never have arrived) → `unknown`, which reconciliation and the next sync resolve."""
    if task.request.retries < (task.max_retries or 0):
        return None
    order = Order.objects.filter(pk=order_id).first()
    if order is not None and order.state == OrderState.SUBMITTED:
        order_mark_unknown(order_id=order_id, reason=f"gave up after {task.request.retries} retries: {exc}"[:500])
    return {"order_id": order_id, "action": "gave_up", "detail": str(exc)}


@shared_task(bind=True, name="trading.tasks.execute_order", expires=60, **_EXECUTION_RETRY, **_EXECUTION_LIMITS)
def execute_order(self: Task, order_id: int) -> dict[str, Any]:
    """Send a risk-checked (`submitted`) order to the exchange or the paper broker, once."""
    actor = "celery:trading.tasks.execute_order"
    try:
        with audit_actor(actor), _broker() as broker:
            outcome = order_execute(order_id=order_id, broker=broker, actor=actor)
        if outcome.action == "sent":
            _observe_order_bar_to_ack(order_id)
        return outcome.to_json()
    except OrderBusy as exc:
        # Another run holds the order (or a killed worker's mutex has not expired yet): wait it out; the run that
        # gets the mutex asks the exchange first, so waiting never duplicates.
        raise self.retry(exc=exc, countdown=_BUSY_COUNTDOWN_S, max_retries=_BUSY_MAX_RETRIES) from None
    except TransientExecutionError as exc:
        if (gave_up := _give_up(self, order_id, exc)) is not None:
            return gave_up
        raise
    except SoftTimeLimitExceeded:
        # Cut off mid-request: the order may or may not exist. Mark it unknown; the retry resolves it by query.
        _mark_unknown_if_unsent(order_id, "execution cut off by its time limit")
        raise self.retry(countdown=1) from None


def _mark_unknown_if_unsent(order_id: int, reason: str) -> None:
    order = Order.objects.filter(pk=order_id).first()
    if order is not None and order.state == OrderState.SUBMITTED and not order.exchange_order_id:
        order_mark_unknown(order_id=order_id, reason=reason)


@shared_task(bind=True, name="trading.tasks.execute_cancel", **_EXECUTION_RETRY, **_EXECUTION_LIMITS)
def execute_cancel(self: Task, order_id: int) -> dict[str, Any]:
    """The cancel path's task (the gateway enqueues it after `kill_switch.order_cancel_request` commits): carry out
    a requested cancel (`pending_cancel`) through `execution.order_cancel_at_exchange`. While trading is HALTED the
    first cancel of the halt also sends CancelAll, so orders the books do not know are canceled too. No `expires`:
    a cancel is never stale."""
    actor = "celery:trading.tasks.execute_cancel"
    try:
        with audit_actor(actor), _broker() as broker:
            halted = halt_cancel_all_once(broker=broker, actor=actor)
            outcome = order_cancel_at_exchange(order_id=order_id, broker=broker, actor=actor).to_json()
            return {**outcome, "halt_cancel_all": halted}
    except OrderBusy as exc:
        raise self.retry(exc=exc, countdown=_BUSY_COUNTDOWN_S, max_retries=_BUSY_MAX_RETRIES) from None


@shared_task(bind=True, name="trading.tasks.cancel_all_orders", **_EXECUTION_RETRY, **_EXECUTION_LIMITS)
def cancel_all_orders(self: Task, reason: str = "cancel all") -> dict[str, Any]:
    """CancelAll at the exchange, then every open order of ours brought to canceled through the state machine."""
    actor = "celery:trading.tasks.cancel_all_orders"
    with audit_actor(actor), _broker() as broker:
        return orders_cancel_all_execute(broker=broker, actor=actor, reason=reason)


@shared_task(bind=True, name="trading.tasks.sync_order", expires=60, **_EXECUTION_RETRY, **_EXECUTION_LIMITS)
def sync_order(self: Task, order_id: int) -> dict[str, Any]:
    """Bring one order to the exchange's view by a REST query (after a gap, or to settle a pending cancel)."""
    actor = "celery:trading.tasks.sync_order"
    with audit_actor(actor), _broker() as broker:
        return order_sync(order_id=order_id, broker=broker, actor=actor).to_json()


@shared_task(name="trading.tasks.paper_broker_sweep", acks_late=True, expires=5, soft_time_limit=20, time_limit=30)
def paper_broker_sweep() -> dict[str, Any]:
    """Paper mode: fill resting limit orders the market traded through (every few seconds from beat)."""
    if trading_mode() != "paper":
        return {"skipped": "not paper mode"}
    with audit_actor("celery:trading.tasks.paper_broker_sweep"), _broker() as broker:
        assert isinstance(broker, PaperBroker)
        return paper_sweep(broker=broker)


# --- the decision pipeline (trading.pipeline) ------------------------------------------------------------------


@shared_task(name="trading.tasks.decide_on_bar", acks_late=True, expires=55, ignore_result=True)
def decide_on_bar(symbol: str, bar_start: str) -> dict[str, Any]:
    """One closed bar → one decision (idempotent by decision id); enqueued by the ingest worker after the bar is
    stored. Expires with the next bar: a late decision is worse than none.

    With `GALFRIDAY_EXECUTION_INLINE` (the default) the decision's order, once committed, is sent from here, in
    this process, instead of through the broker to `execute_order` and back: the same `order_execute` (its mutex,
    its answer applied; its send-attempt mark committed with the order itself), one hop and one commit less on
    the way to the exchange. When that fails for any
    reason the order goes to `execute_order` as before, whose retries ask the exchange before sending again. A
    replayed task (its worker died after the commit) finds the decision made and hands an order that never reached
    the exchange to execution again."""
    if not settings.GALFRIDAY_EXECUTION_INLINE:
        decision = pipeline.decide_on_bar(symbol=symbol, bar_time=datetime.fromisoformat(bar_start))
        return {"decision": decision.decision_id, "status": decision.status, "order_id": decision.order_id}
    with submissions_held() as held:
        decision = pipeline.decide_on_bar(symbol=symbol, bar_time=datetime.fromisoformat(bar_start))
    created_here = set(held)  # with their first send attempt counted in their own commit (submission_sent_here)
    if not held and decision.order_id is not None and _unsent(decision.order_id):
        held.append(decision.order_id)  # a replay: the first run may have died before the order left
    bar_end = decision.bar_time + pipeline.BAR_LENGTH
    outcomes = [
        _execute_here(order_id, first_delivery=order_id in created_here, symbol=symbol, bar_end=bar_end)
        for order_id in held
    ]
    return {
        "decision": decision.decision_id,
        "status": decision.status,
        "order_id": decision.order_id,
        "sent": outcomes,
    }


_INLINE_ACTOR = "celery:trading.tasks.decide_on_bar"


def _unsent(order_id: int) -> bool:
    """Whether the order is still waiting to be sent (or its send's outcome is unknown) and the decision's orders
    go through Celery here (another gateway, e.g. a test's, has them already)."""
    if not isinstance(execution_gateway(), CeleryExecutionGateway):
        return False
    return Order.objects.filter(
        pk=order_id, state__in=(OrderState.SUBMITTED, OrderState.UNKNOWN), exchange_order_id=""
    ).exists()


def _execute_here(order_id: int, *, first_delivery: bool, symbol: str, bar_end: datetime) -> str:
    """Send a just-decided order from this task; on any failure hand it to `execute_order` (its retries and
    give-up rules apply there). `first_delivery`: created by this run, its first send attempt counted with it;
    `symbol`, `bar_end`: its decision's. Returns what happened, for the task's result."""
    try:
        with audit_actor(_INLINE_ACTOR), _broker() as broker:
            action = order_execute(
                order_id=order_id, broker=broker, actor=_INLINE_ACTOR, first_delivery=first_delivery
            ).action
    except Exception as exc:
        logger.warning(
            "inline execution failed: handed to execute_order", extra={"order_id": order_id, "error": repr(exc)}
        )
        execution_gateway().submit_order(order_id=order_id)
        return "handed_over"
    if action == "sent":
        _observe_bar_to_ack(symbol, bar_end)
    return action


def _observe_bar_to_ack(symbol: str, bar_end: datetime) -> None:
    """The latency target closed bar → exchange acknowledgement (`galfriday_bar_to_ack_seconds`): from the
    decision's bar end to now, just after the exchange's answer was applied."""
    BAR_TO_ACK.labels(symbol).observe(max(0.0, (timezone.now() - bar_end).total_seconds()))


def _observe_order_bar_to_ack(order_id: int) -> None:
    """`_observe_bar_to_ack` for an order sent by `execute_order`, if a decision placed it."""
    row = Decision.objects.filter(order_id=order_id).values_list("instrument__symbol", "bar_time").first()
    if row is not None:
        _observe_bar_to_ack(row[0], row[1] + pipeline.BAR_LENGTH)
