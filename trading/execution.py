"""Execution services: orders to the exchange (live, `trading.brokers.kraken.KrakenBroker`) or to the paper broker
(`trading.brokers.paper.PaperBroker`), through the same order state machine and the same `ExecutionEvent`s applied
by `execution_reports.execution_report_apply`, so the two differ only in the broker (`trading.brokers`).

The functions below (`order_execute`, `order_cancel_at_exchange`, `orders_cancel_all_execute`, `order_sync`) are the
Django side: they re-read the order, decide, call the broker and apply the events. The Celery tasks in
`trading.tasks` are thin wrappers around them.

Transport, live: `add_order` over the process's authenticated private WebSocket (`trading.ws_session`: one session
per worker process, reused across tasks), with REST AddOrder as the fallback when the socket cannot take the
request (not connected, refused token; nothing was sent). Cancels likewise. Queries are REST.

Idempotency, live: every order carries its client order id (`cl_ord_id`). Before each send attempt the order's
`send_attempts` counter is incremented and committed, so a later delivery knows whether an earlier one may have
placed the order and died before recording it: then (`send_attempts > 0`, or state `unknown`) the exchange is asked
for the client order id first and an order found is applied, never placed again; with `send_attempts == 0` nothing
can have been sent and the first send goes out without that query. A timeout or a lost connection after the
request was written (socket dropped after send, no ack in time) is `OrderOutcomeUnknown`: the order becomes
`unknown`, the exchange is queried by client order id for a bounded time, and only if it is still not found is the
order sent again. Two deliveries of the same task never run at once: a per-order mutex in the cache (Redis in
production) serialises them; the loser retries later.

After an ack: a REST ack is followed by a query of the order (immediate fills, post-only cancels); a WebSocket ack
is not (the ingest worker's private `executions` stream brings the fills, data flow step 3): a `sync_order` task is
scheduled `GALFRIDAY_EXECUTION_POST_ACK_SYNC_S` later as a safety net instead, off the critical path.

Errors: retryable Kraken errors (service unavailable, rate limits, connect failures) become
`TransientExecutionError`, which the tasks retry with backoff and jitter; any other Kraken error on AddOrder
rejects the order with Kraken's error string as the reason (except `EOrder:Duplicate order`, which means the
client order id is already live: resolved by query).

Fills learned by REST carry the trade txid as exec id: the same id Kraken's `executions` channel uses, so a fill
applied from a query and again from the WebSocket is recorded once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db.models import F

from core.compiled import PK_MARKER, CompiledQuery
from core.metrics import ProcessCounters
from ingest.kraken.errors import KrakenError, OrderOutcomeUnknown
from trading import lock_objects
from trading.brokers.base import Broker, ExchangeOrder, OrderTicket
from trading.execution_reports import execution_report_apply
from trading.executions import EventSource
from trading.models import Order, TradingState
from trading.order_states import OPEN, TERMINAL, OrderState
from trading.orders import (
    order_mark_cancel_rejected,
    order_mark_cancel_requested,
    order_mark_canceled_unplaced,
    order_mark_rejected,
    order_mark_submitted,
    order_mark_unknown,
)

logger = logging.getLogger(__name__)

# What execution did and met (each is logged too; every process's counts in /metrics: galfriday_events_total).
counters = ProcessCounters("trading.execution")

DUPLICATE_ORDER = "EOrder:Duplicate order"
SYNC_ORDER_TASK = "trading.tasks.sync_order"


class TransientExecutionError(Exception):
    """A failure a later attempt can get past (exchange busy, rate limit, connection refused, order busy in
    another worker): the tasks retry it with backoff."""


class OrderBusy(TransientExecutionError):
    """Another worker holds this order's execution mutex."""


# --- applying what the exchange says --------------------------------------------------------------------------


def exchange_order_apply(exchange_order: ExchangeOrder, *, actor: str, flush_wait: bool = True) -> str | None:
    """Apply the broker's events in order through `execution_report_apply`; returns the order's state."""
    state: str | None = None
    for event in exchange_order.events:
        result = execution_report_apply(event=event, actor=actor, flush_wait=flush_wait)
        state = result.state if result.state is not None else state
    return state


@contextmanager
def order_mutex(order_id: int, *, ttl: float | None = None) -> Iterator[None]:
    """One execution step per order at a time, across workers (cache `add` is atomic on Redis). Bounded by a
    TTL so a killed worker's mutex expires."""
    ttl = ttl if ttl is not None else float(settings.GALFRIDAY_EXECUTION_MUTEX_TTL_S)
    key = f"trading:execution:order:{order_id}"
    token = uuid.uuid4().hex
    if not cache.add(key, token, timeout=ttl):
        counters["order_busy"] += 1
        raise OrderBusy(f"order {order_id} is being executed by another worker")
    try:
        yield
    finally:
        if cache.get(key) == token:
            cache.delete(key)


def _transient(exc: KrakenError) -> TransientExecutionError:
    counters["transient_error"] += 1
    logger.warning("transient exchange error, will retry", extra={"error": exc.error, "kind": type(exc).__name__})
    return TransientExecutionError(f"{type(exc).__name__}: {exc.error}")


def _resolve_wait() -> tuple[float, float]:
    return (
        float(settings.GALFRIDAY_EXECUTION_RESOLVE_WAIT_S),
        float(settings.GALFRIDAY_EXECUTION_RESOLVE_POLL_S),
    )


def _query(broker: Broker, ticket: OrderTicket, *, wait: bool) -> ExchangeOrder | None:
    """Ask the exchange for the order; with `wait`, keep asking (bounded) before concluding it is not there."""
    wait_s, poll_s = _resolve_wait() if wait else (0.0, 0.0)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            found = broker.query_by_client_id(ticket)
        except KrakenError as exc:
            if exc.retryable:
                raise _transient(exc) from exc
            raise
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(poll_s)


@dataclass
class ExecutionOutcome:
    order_id: int
    action: str  # what was done: sent, found, resolved, rejected, skipped, canceled, ...
    state: str = ""
    detail: str = ""
    exchange_order_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "action": self.action,
            "state": self.state,
            "detail": self.detail,
            "exchange_order_id": self.exchange_order_id,
            **self.extra,
        }


def _load(order_id: int) -> Order | None:
    """The order with its instrument (not locked: the caller holds the order's mutex), compiled once."""
    orders = lock_objects.orders_from_rows(_ORDER_WITH_INSTRUMENT.rows(order_id))
    return orders[0] if orders else None


_ORDER_WITH_INSTRUMENT = CompiledQuery(
    lambda pk: Order.objects.select_related("instrument").filter(pk=pk).order_by(), PK_MARKER
)


def _outcome(order_id: int, action: str, detail: str = "") -> ExecutionOutcome:
    order = Order.objects.filter(pk=order_id).first()
    return ExecutionOutcome(
        order_id=order_id,
        action=action,
        state=order.state if order else "",
        detail=detail,
        exchange_order_id=order.exchange_order_id if order else "",
    )


# --- submit -------------------------------------------------------------------------------------------------


def order_execute(
    *, order_id: int, broker: Broker, actor: str = "execution", first_delivery: bool = False
) -> ExecutionOutcome:
    """Send a `submitted` (or `unknown`) order to the exchange exactly once. Safe to run twice, concurrently, or
    after a run that died anywhere: an order already past `submitted` is not sent again, and an order the
    exchange already has (found by client order id) is applied, not placed again. The order is read once, under
    its mutex (a duplicate delivery meeting a run in flight retries later and is then skipped).

    `first_delivery`: the caller created the order, with its first send attempt counted in the order's own
    commit (`trading.gateway.submission_sent_here`), and sends it right after: that attempt is this one."""
    with order_mutex(order_id):
        order = _load(order_id)
        if order is None:
            logger.error("execute: no such order", extra={"order_id": order_id})
            return ExecutionOutcome(order_id=order_id, action="missing")
        if order.state not in (OrderState.SUBMITTED, OrderState.UNKNOWN) or order.exchange_order_id:
            return ExecutionOutcome(
                order_id=order_id,
                action="skipped",
                state=order.state,
                detail=f"state {order.state}",
                exchange_order_id=order.exchange_order_id,
            )
        ticket = OrderTicket.from_order(order)
        # A previous delivery may have placed it and died before recording anything (it committed a send attempt
        # first, so `send_attempts > 0`), or the outcome of an attempt is unknown: ask first. Never attempted:
        # the exchange cannot have it, send at once.
        counted = 1 if first_delivery and order.send_attempts == 1 else 0  # this delivery's own, already counted
        maybe_sent = order.send_attempts > counted or order.state == OrderState.UNKNOWN
        found = _query(broker, ticket, wait=order.state == OrderState.UNKNOWN) if maybe_sent else None
        if found is not None:
            counters["found_before_send"] += 1
            logger.warning(
                "order already on the exchange: applied, not placed again",
                extra={
                    "order_id": order_id,
                    "client_order_id": ticket.client_order_id,
                    "txid": found.exchange_order_id,
                },
            )
            exchange_order_apply(found, actor=actor)
            return _outcome(order_id, "found")
        if order.state == OrderState.UNKNOWN:
            order_mark_submitted(order_id=order_id, actor=actor)
        return _send(order_id, ticket, broker, actor=actor, attempt_counted=bool(counted))


def _send(
    order_id: int,
    ticket: OrderTicket,
    broker: Broker,
    *,
    actor: str,
    resubmitted: bool = False,
    attempt_counted: bool = False,
) -> ExecutionOutcome:
    if not attempt_counted:
        _record_send_attempt(order_id)
    try:
        ack = broker.submit(ticket)
    except OrderOutcomeUnknown as exc:
        return _outcome_unknown(order_id, ticket, broker, exc, actor=actor, resubmitted=resubmitted)
    except KrakenError as exc:
        if exc.error.startswith(DUPLICATE_ORDER):
            # The client order id is live on the exchange: a previous attempt did place it.
            found = _query(broker, ticket, wait=True)
            if found is not None:
                exchange_order_apply(found, actor=actor)
                return _outcome(order_id, "found", exc.error)
            raise TransientExecutionError(exc.error) from exc
        if exc.retryable:
            raise _transient(exc) from exc
        order_mark_rejected(order_id=order_id, reason=exc.error, source=EventSource.EXCHANGE, actor=actor)
        counters["rejected_by_exchange"] += 1
        logger.warning("order rejected by the exchange", extra={"order_id": order_id, "error": exc.error})
        return _outcome(order_id, "rejected", exc.error)
    # The acknowledgement need not wait for the disk (core.durability): the send attempt was committed durably
    # before the request left, so if a crash loses this commit, the post-ack read-back (sync_order) or any later
    # delivery asks the exchange and applies it again.
    state = exchange_order_apply(ack, actor=actor, flush_wait=False)
    counters["sent"] += 1
    counters[f"sent_via_{ack.via or broker.name}"] += 1
    logger.info(
        "order sent",
        extra={
            "order_id": order_id,
            "client_order_id": ticket.client_order_id,
            "txid": ack.exchange_order_id,
            "via": ack.via,
        },
    )
    action = "resubmitted" if resubmitted else "sent"
    if ack.via == "ws":
        _schedule_sync(order_id)  # the executions stream brings the fills; this is the safety net
        # Nothing else changed the order under its mutex: the outcome without reading it back.
        outcome = ExecutionOutcome(order_id, action, state or "", exchange_order_id=ack.exchange_order_id)
    else:
        _sync_quietly(order_id, broker, actor=actor)
        outcome = _outcome(order_id, action)
    outcome.extra["via"] = ack.via
    return outcome


def _record_send_attempt(order_id: int) -> None:
    """Count the attempt BEFORE the request leaves (committed at once outside a transaction, as in a task): a
    delivery that dies after this line leaves `send_attempts > 0`, and the next delivery asks the exchange before
    sending. Incremented in SQL (no history row: a counter, not a state change)."""
    Order.objects.filter(pk=order_id).update(send_attempts=F("send_attempts") + 1)


def _schedule_sync(order_id: int) -> None:
    """A `sync_order` task some seconds after a WebSocket ack (GALFRIDAY_EXECUTION_POST_ACK_SYNC_S; 0 = none):
    the order is read back over REST in case the executions stream missed something. Never fails the send."""
    delay = float(settings.GALFRIDAY_EXECUTION_POST_ACK_SYNC_S)
    if delay <= 0:
        return
    try:
        # By name (the tasks import this module): the registered task when this process has it, else sent.
        current_app.signature(SYNC_ORDER_TASK, kwargs={"order_id": order_id}).apply_async(
            countdown=delay,
            queue="trading",
            ignore_result=True,  # nobody reads it: no result subscription
        )
    except Exception as exc:  # a broker hiccup must not turn a placed order into a failed task: count and log
        counters["post_ack_sync_not_scheduled"] += 1
        logger.warning("post-ack sync not scheduled", extra={"order_id": order_id, "error": repr(exc)})


def _outcome_unknown(
    order_id: int, ticket: OrderTicket, broker: Broker, exc: OrderOutcomeUnknown, *, actor: str, resubmitted: bool
) -> ExecutionOutcome:
    order_mark_unknown(order_id=order_id, reason=str(exc)[:500], actor=actor)
    counters["outcome_unknown"] += 1
    found = _query(broker, ticket, wait=True)
    if found is not None:
        exchange_order_apply(found, actor=actor)
        return _outcome(order_id, "resolved", "found by client order id after an unknown outcome")
    if resubmitted:
        # Unknown twice in one run: leave it unknown; the retry resolves it by query first.
        raise TransientExecutionError(f"order {order_id}: outcome unknown again after a resubmission") from exc
    counters["resubmitted_after_unknown"] += 1
    logger.warning(
        "order not on the exchange after the bounded wait: resubmitting",
        extra={"order_id": order_id, "client_order_id": ticket.client_order_id},
    )
    order_mark_submitted(order_id=order_id, actor=actor)
    return _send(order_id, ticket, broker, actor=actor, resubmitted=True)


def _sync_quietly(order_id: int, broker: Broker, *, actor: str) -> None:
    """After an ack, read the order back (immediate fills, post-only cancels). Best effort: the private
    executions stream brings the same facts."""
    try:
        order_sync(order_id=order_id, broker=broker, actor=actor)
    except (KrakenError, TransientExecutionError) as exc:
        counters["post_ack_sync_failed"] += 1
        logger.warning("post-ack sync failed", extra={"order_id": order_id, "error": str(exc)})


def order_sync(*, order_id: int, broker: Broker, actor: str = "execution") -> ExecutionOutcome:
    """Bring one order to the exchange's view (a query, applied as events). No-op for an order never placed."""
    order = _load(order_id)
    if order is None:
        return ExecutionOutcome(order_id=order_id, action="missing")
    if order.state == OrderState.CREATED:
        return _outcome(order_id, "skipped", "never submitted")
    found = _query(broker, OrderTicket.from_order(order), wait=False)
    if found is None:
        return _outcome(order_id, "not_found")
    exchange_order_apply(found, actor=actor)
    return _outcome(order_id, "synced")


# --- cancel -----------------------------------------------------------------------------------------------------


def order_cancel_at_exchange(*, order_id: int, broker: Broker, actor: str = "execution") -> ExecutionOutcome:
    """The cancel path's execution step (the `execute_cancel` task calls it): carry out a requested cancel
    (`pending_cancel`) at the exchange through the broker. Idempotent: an order no longer pending a cancel is left
    alone. A cancel the exchange refuses returns the order to where it was, with Kraken's reason."""
    order = _load(order_id)
    if order is None:
        return ExecutionOutcome(order_id=order_id, action="missing")
    if order.state != OrderState.PENDING_CANCEL:
        return _outcome(order_id, "skipped", f"state {order.state}")
    with order_mutex(order_id):
        order = _load(order_id)
        assert order is not None
        if order.state != OrderState.PENDING_CANCEL:
            return _outcome(order_id, "skipped", f"state {order.state}")
        ticket = OrderTicket.from_order(order)
        try:
            after = broker.cancel(ticket)
            if after is None and not ticket.exchange_order_id:
                after = _query(broker, ticket, wait=True)  # maybe placed a moment ago by a dying worker
        except KrakenError as exc:
            if exc.retryable:
                raise _transient(exc) from exc
            order_mark_cancel_rejected(order_id=order_id, reason=exc.error, actor=actor)
            return _outcome(order_id, "cancel_rejected", exc.error)
        if after is None:
            order_mark_canceled_unplaced(
                order_id=order_id, reason=order.reason or "canceled before it reached the exchange", actor=actor
            )
            return _outcome(order_id, "canceled_unplaced")
        if after.status in ("open", "pending"):
            # The exchange still has it open after our cancel (it refused or has not processed it yet): leave it
            # pending; the executions stream or the next sync settles it.
            exchange_order_apply(ExchangeOrder(after.exchange_order_id, after.events[:1]), actor=actor)
            return _outcome(order_id, "cancel_pending")
        exchange_order_apply(after, actor=actor)
        return _outcome(order_id, "canceled")


def orders_cancel_all_execute(
    *, broker: Broker, actor: str = "execution", reason: str = "cancel all"
) -> dict[str, Any]:
    """Cancel everything at the exchange (CancelAll: also orders we do not know), then bring each of our open
    orders to the exchange's view (requesting the cancel through the state machine first)."""
    try:
        count = broker.cancel_all()
    except KrakenError as exc:
        if exc.retryable:
            raise _transient(exc) from exc
        raise
    results: dict[str, str] = {}
    open_states = sorted(s.value for s in OPEN)
    for pk in Order.objects.filter(state__in=open_states).order_by("pk").values_list("pk", flat=True):
        order = Order.objects.get(pk=pk)
        if order.state in TERMINAL:
            continue
        if order.state != OrderState.PENDING_CANCEL:
            order_mark_cancel_requested(order_id=pk, reason=reason, source=EventSource.SYSTEM, actor=actor)
        try:
            results[str(pk)] = order_cancel_at_exchange(order_id=pk, broker=broker, actor=actor).action
        except OrderBusy:
            results[str(pk)] = "busy"
    logger.warning("cancel all executed", extra={"exchange_count": count, "orders": results})
    return {"exchange_count": count, "orders": results}


def halt_cancel_all_once(*, broker: Broker, actor: str) -> bool:
    """While trading is HALTED, send one CancelAll per halt (the dead-man's sweep: it also cancels orders the
    books do not know). True when this call sent it."""
    state = TradingState.objects.filter(pk=TradingState.SINGLETON_ID).first()
    if state is None or state.state != TradingState.State.HALTED:
        return False
    stamp = state.changed_at.timestamp() if state.changed_at else 0
    if not cache.add(f"trading:execution:halt-cancel-all:{stamp}", actor, timeout=24 * 3600):
        return False
    try:
        count = broker.cancel_all()
    except KrakenError as exc:
        cache.delete(f"trading:execution:halt-cancel-all:{stamp}")
        if exc.retryable:
            raise _transient(exc) from exc
        raise
    counters["halt_cancel_all"] += 1
    logger.warning("halt: CancelAll sent to the exchange", extra={"count": count})
    return True
