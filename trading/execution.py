"""Execution: orders to the exchange (live, `KrakenBroker`) or to the paper broker (`trading.paper.PaperBroker`),
through the same order state machine and the same `ExecutionEvent`s applied by `execution_report_apply`, so the
two differ only in the broker.

A `Broker` is Django-free: it takes an `OrderTicket` (what the exchange needs to know of an order) and answers
with what the exchange says about that order, as an `ExchangeOrder` (its exchange id and the execution events
that bring our books to the exchange's view). The functions below (`order_execute`, `order_cancel_execute`,
`orders_cancel_all_execute`, `order_sync`) are the Django side: they re-read the order, decide, call the broker
and apply the events. The Celery tasks in `trading.tasks` are thin wrappers around them.

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
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.compiled import PK_MARKER, CompiledQuery
from ingest.kraken.errors import AuthenticationError, KrakenError, OrderOutcomeUnknown, UnknownOrder
from ingest.kraken.rest import KrakenRestClientSync
from ingest.kraken.rest_types import OrderInfo, TradeInfo
from ingest.kraken.ws import NotConnected, RequestTimeout
from trading import lock_objects
from trading.executions import EventSource, ExecType, ExecutionEvent, FeeAmount
from trading.models import Order, OrderEvent, OrderType, TimeInForce, TradingState
from trading.order_states import OPEN, TERMINAL, OrderState
from trading.services import (
    _locked,
    _transition_locked,
    execution_report_apply,
    order_mark_cancel_rejected,
    order_mark_rejected,
    order_mark_submitted,
    order_mark_unknown,
    order_request_cancel,
)

if TYPE_CHECKING:
    from trading.ws_session import ExchangeSession

logger = logging.getLogger(__name__)
counters: Counter[str] = Counter()

ZERO = Decimal(0)
DUPLICATE_ORDER = "EOrder:Duplicate order"
QUERY_TRADES_BATCH = 20


class TransientExecutionError(Exception):
    """A failure a later attempt can get past (exchange busy, rate limit, connection refused, order busy in
    another worker): the tasks retry it with backoff."""


class OrderBusy(TransientExecutionError):
    """Another worker holds this order's execution mutex."""


# --- what brokers see and say ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderTicket:
    """An order as the exchange needs it (Django-free)."""

    client_order_id: str
    exchange_order_id: str
    symbol: str  # v2, e.g. BTC/USD
    pair: str  # REST pair name, e.g. XXBTZUSD
    base: str
    quote: str
    side: str
    order_type: str
    quantity: Decimal
    limit_price: Decimal | None
    time_in_force: str
    post_only: bool
    filled_qty: Decimal = ZERO
    fill_count: int = 0

    @classmethod
    def from_order(cls, order: Order) -> OrderTicket:
        instrument = order.instrument
        return cls(
            client_order_id=order.client_order_id,
            exchange_order_id=order.exchange_order_id,
            symbol=instrument.symbol,
            pair=instrument.rest_symbol or instrument.altname or instrument.symbol,
            base=instrument.base,
            quote=instrument.quote,
            side=order.side,
            order_type=order.order_type,
            quantity=order.quantity,
            limit_price=order.limit_price,
            time_in_force=order.time_in_force,
            post_only=order.post_only,
            filled_qty=order.filled_qty,
            fill_count=order.fills.count() if order.filled_qty else 0,
        )


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """What the exchange says about one order: its id and the events that bring our books to its view."""

    exchange_order_id: str
    events: tuple[ExecutionEvent, ...] = ()
    status: str = ""
    via: str = ""  # how the answer came: "ws" (private socket ack), "rest", "paper"; "" for queries


class Broker(Protocol):
    name: str

    def submit(self, ticket: OrderTicket) -> ExchangeOrder:
        """Place the order. Raises `KrakenError`s: retryable ones, `OrderOutcomeUnknown` (maybe placed), or a
        rejection."""

    def cancel(self, ticket: OrderTicket) -> ExchangeOrder | None:
        """Cancel it; returns the exchange's view afterwards, None when the exchange does not know the order."""

    def cancel_all(self) -> int:
        """Cancel every open order of the account; returns how many."""

    def query_by_client_id(self, ticket: OrderTicket) -> ExchangeOrder | None:
        """The exchange's view of the order (by exchange id when known, else by client order id); None when
        the exchange has no such order."""

    def close(self) -> None: ...


def order_detail_event(
    ticket: OrderTicket, exchange_order_id: str, exec_type: ExecType, **extra: Any
) -> ExecutionEvent:
    """A status event carrying the order's details (what Kraken's `pending_new` carries)."""
    return ExecutionEvent(
        order_id=exchange_order_id,
        exec_type=exec_type,
        cl_ord_id=ticket.client_order_id,
        symbol=ticket.symbol,
        side=ticket.side,
        order_type=ticket.order_type,
        time_in_force=ticket.time_in_force.upper(),
        post_only=ticket.post_only,
        order_qty=ticket.quantity,
        limit_price=ticket.limit_price,
        **extra,
    )


# --- the live broker ------------------------------------------------------------------------------------------


class KrakenBroker:
    """Kraken: `add_order` / `cancel_order` / `cancel_all` over the session's private WebSocket when one is given
    (`trading.ws_session.ExchangeSession`), REST AddOrder / CancelOrder / CancelAll as the fallback when the socket
    cannot take the request (nothing was sent); queries over REST (OpenOrders/ClosedOrders by `cl_ord_id`,
    QueryOrders by txid, QueryTrades for the fills). The REST client is the worker process's shared one
    (`owns_client=False`: `close` leaves it open) or, built for one use, closed with the broker."""

    name = "kraken"

    def __init__(
        self, client: KrakenRestClientSync, *, session: ExchangeSession | None = None, owns_client: bool = True
    ) -> None:
        self.client = client
        self.session = session
        self._owns_client = owns_client

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def submit(self, ticket: OrderTicket) -> ExchangeOrder:
        if self.session is not None:
            try:
                return self._submit_ws(self.session, ticket)
            except (NotConnected, AuthenticationError) as exc:
                # Not sent (no connection, or the session token refused before anything was placed): REST.
                counters["ws_submit_fallback_rest"] += 1
                logger.warning(
                    "private socket could not take the order: REST AddOrder",
                    extra={"client_order_id": ticket.client_order_id, "error": str(exc)},
                )
        return self._submit_rest(ticket)

    def _submit_ws(self, session: ExchangeSession, ticket: OrderTicket) -> ExchangeOrder:
        ack = session.add_order(
            symbol=ticket.symbol,
            side=ticket.side,
            order_type=ticket.order_type,
            order_qty=ticket.quantity,
            limit_price=ticket.limit_price if ticket.order_type == OrderType.LIMIT else None,
            cl_ord_id=ticket.client_order_id,
            time_in_force=TimeInForce.IOC.value if ticket.time_in_force == TimeInForce.IOC else None,
            post_only=True if ticket.post_only else None,
        )
        assert ack.order_id is not None  # add_order raises OrderOutcomeUnknown for a success without one
        event = order_detail_event(
            ticket,
            ack.order_id,
            ExecType.PENDING_NEW,
            timestamp=ack.time_out or timezone.now(),
            source=EventSource.EXCHANGE,
        )
        return ExchangeOrder(exchange_order_id=ack.order_id, events=(event,), status="pending", via="ws")

    def _submit_rest(self, ticket: OrderTicket) -> ExchangeOrder:
        tif = TimeInForce.IOC.upper() if ticket.time_in_force == TimeInForce.IOC else None
        result = self.client.add_order(
            pair=ticket.pair,
            side=ticket.side,
            ordertype=ticket.order_type,
            volume=ticket.quantity,
            price=ticket.limit_price if ticket.order_type == OrderType.LIMIT else None,
            cl_ord_id=ticket.client_order_id,
            oflags=["post"] if ticket.post_only else None,
            timeinforce=tif,
        )
        txid = result.txids[0]
        ack = order_detail_event(
            ticket, txid, ExecType.PENDING_NEW, timestamp=timezone.now(), source=EventSource.REST_QUERY
        )
        return ExchangeOrder(exchange_order_id=txid, events=(ack,), status="pending", via="rest")

    def cancel(self, ticket: OrderTicket) -> ExchangeOrder | None:
        try:
            if not self._cancel_ws(ticket):
                if ticket.exchange_order_id:
                    self.client.cancel_order(ticket.exchange_order_id, pair=ticket.pair)
                else:
                    self.client.cancel_order(cl_ord_id=ticket.client_order_id, pair=ticket.pair)
        except UnknownOrder:
            pass  # closed already, or never placed: the query says which
        return self.query_by_client_id(ticket)

    def _cancel_ws(self, ticket: OrderTicket) -> bool:
        """Cancel over the socket; False when it could not be done there (REST then: a cancel sent twice is
        harmless, the second meets `EOrder:Unknown order`)."""
        if self.session is None:
            return False
        try:
            if ticket.exchange_order_id:
                self.session.cancel_order(order_id=ticket.exchange_order_id)
            else:
                self.session.cancel_order(cl_ord_id=ticket.client_order_id)
        except (NotConnected, AuthenticationError, RequestTimeout) as exc:
            counters["ws_cancel_fallback_rest"] += 1
            logger.warning("private socket could not cancel: REST", extra={"error": str(exc)})
            return False
        return True

    def cancel_all(self) -> int:
        if self.session is not None:
            try:
                return self.session.cancel_all()
            except (NotConnected, AuthenticationError, RequestTimeout) as exc:
                counters["ws_cancel_fallback_rest"] += 1
                logger.warning("private socket could not cancel all: REST", extra={"error": str(exc)})
        return self.client.cancel_all()

    def query_by_client_id(self, ticket: OrderTicket) -> ExchangeOrder | None:
        info: OrderInfo | None = None
        if ticket.exchange_order_id:
            info = self.client.query_orders([ticket.exchange_order_id], trades=True).get(ticket.exchange_order_id)
        else:
            candidates = list(self.client.open_orders(trades=True, cl_ord_id=ticket.client_order_id).values())
            if not candidates:
                page = self.client.closed_orders(trades=True, cl_ord_id=ticket.client_order_id, without_count=True)
                candidates = list(page.items)
            candidates = [c for c in candidates if c.cl_ord_id in (None, ticket.client_order_id)]
            if len(candidates) > 1:
                counters["duplicate_client_order_id_on_exchange"] += 1
                logger.error(
                    "several exchange orders carry one client order id",
                    extra={"client_order_id": ticket.client_order_id, "txids": [c.txid for c in candidates]},
                )
            info = candidates[0] if candidates else None
        if info is None:
            return None
        return ExchangeOrder(
            exchange_order_id=info.txid,
            events=events_from_order_info(ticket, info, self._trades(info)),
            status=info.status,
        )

    def _trades(self, info: OrderInfo) -> list[TradeInfo]:
        trades: list[TradeInfo] = []
        ids = list(info.trades)
        for i in range(0, len(ids), QUERY_TRADES_BATCH):
            raw = self.client.private("QueryTrades", {"txid": ids[i : i + QUERY_TRADES_BATCH]})
            trades.extend(TradeInfo.from_api(txid, t) for txid, t in dict(raw).items())
        return sorted(trades, key=lambda t: (t.time, t.txid))


def events_from_order_info(
    ticket: OrderTicket, info: OrderInfo, trades: Sequence[TradeInfo]
) -> tuple[ExecutionEvent, ...]:
    """The execution events that say what a REST order record says: accepted (or pending), each fill, and how it
    ended. `filled` only when every fill is in hand, so an order is never filled without its fills."""
    source = EventSource.REST_QUERY
    limit = info.descr.price if info.descr.ordertype == OrderType.LIMIT else None
    cl_ord_id = info.cl_ord_id or ticket.client_order_id
    details: dict[str, Any] = {
        "cl_ord_id": info.cl_ord_id or ticket.client_order_id,
        "symbol": ticket.symbol,
        "side": info.descr.type or ticket.side,
        "order_type": info.descr.ordertype or ticket.order_type,
        "order_qty": info.vol if info.vol > 0 else ticket.quantity,
        "limit_price": limit if limit else ticket.limit_price,
        "post_only": "post" in info.oflags.split(","),
        "time_in_force": ticket.time_in_force.upper(),
    }
    opened = info.opened_at or timezone.now()
    # REST cannot tell whether a canceled order without fills was ever live (a post-only that would cross is
    # canceled before it rests, `pending_new` → `canceled` on the executions channel): say only what is certain.
    never_live = info.status == "pending" or (info.status in ("canceled", "expired") and info.vol_exec == 0)
    first = ExecType.PENDING_NEW if never_live else ExecType.NEW
    events: list[ExecutionEvent] = [
        ExecutionEvent(order_id=info.txid, exec_type=first, timestamp=opened, source=source, **details)
    ]
    filled = ZERO
    for trade in trades:
        filled += trade.vol
        events.append(
            ExecutionEvent(
                order_id=info.txid,
                exec_type=ExecType.TRADE,
                timestamp=trade.executed_at,
                cl_ord_id=cl_ord_id,
                symbol=ticket.symbol,
                side=trade.type,
                exec_id=trade.txid,
                trade_id=trade.trade_id,
                last_qty=trade.vol,
                last_price=trade.price,
                cost=trade.cost,
                fees=(FeeAmount(ticket.quote, trade.fee),) if trade.fee else (),
                liquidity_ind=None if trade.maker is None else ("m" if trade.maker else "t"),
                source=source,
            )
        )
    closed = info.closed_at or timezone.now()
    if filled != info.vol_exec:
        counters["rest_fills_incomplete"] += 1
        logger.warning(
            "exchange order's fills not all in hand",
            extra={"txid": info.txid, "vol_exec": str(info.vol_exec), "fills": str(filled)},
        )
    if info.status == "closed" and filled == info.vol_exec and info.vol_exec > 0:
        events.append(
            ExecutionEvent(
                order_id=info.txid,
                exec_type=ExecType.FILLED,
                timestamp=closed,
                order_status="filled",
                cum_qty=info.vol_exec,
                cum_cost=info.cost,
                source=source,
            )
        )
    elif info.status in ("canceled", "expired"):
        exec_type = ExecType.CANCELED if info.status == "canceled" else ExecType.EXPIRED
        events.append(
            ExecutionEvent(
                order_id=info.txid,
                exec_type=exec_type,
                timestamp=closed,
                order_status=info.status,
                cum_qty=info.vol_exec,
                reason=info.reason or None,
                source=source,
            )
        )
    return tuple(events)


# --- choosing the broker --------------------------------------------------------------------------------------


def trading_mode() -> str:
    mode = str(getattr(settings, "TRADING_MODE", "paper")).lower()
    if mode not in ("paper", "live"):
        raise ImproperlyConfigured(f"TRADING_MODE must be 'paper' or 'live', not {mode!r}")
    return mode


def kraken_rest_client(*, private: bool = True) -> KrakenRestClientSync:
    """The REST client execution uses: KRAKEN_* settings, a nonce shared by every process of this machine (so
    several workers can use one API key), the configured tier's counter model."""
    from ingest.kraken.auth import FileLockNonce
    from ingest.kraken.ratelimit import Tier

    key = str(getattr(settings, "KRAKEN_API_KEY", "") or "")
    secret = str(getattr(settings, "KRAKEN_API_SECRET", "") or "")
    kwargs: dict[str, Any] = {
        "base_url": str(settings.KRAKEN_REST_URL),
        "timeout": float(getattr(settings, "KRAKEN_TIMEOUT", 10.0)),
        "tier": Tier[str(getattr(settings, "GALFRIDAY_KRAKEN_TIER", "starter")).upper()],
    }
    if private:
        if not key or not secret:
            raise ImproperlyConfigured("TRADING_MODE=live needs KRAKEN_API_KEY and KRAKEN_API_SECRET")
        nonce_file = str(getattr(settings, "KRAKEN_NONCE_FILE", "") or "") or str(
            Path(getattr(settings, "VAR_DIR", "var")) / "kraken-nonce"
        )
        kwargs.update(api_key=key, api_secret=secret, nonce_source=FileLockNonce(nonce_file))
    return KrakenRestClientSync(**kwargs)


def broker_for_mode() -> Broker:
    """TRADING_MODE=live → `KrakenBroker` on this process's exchange session (shared REST client, private socket
    unless GALFRIDAY_EXECUTION_WS is off); paper → `PaperBroker` filling against the exchange's public book read
    through this process's shared public REST client."""
    if trading_mode() == "live":
        from trading.ws_session import session

        current = session()
        return KrakenBroker(current.rest, session=current if current.config.ws_enabled else None, owns_client=False)
    from trading.paper import PaperBroker, RestDepthBooks

    class SharedDepthBooks(RestDepthBooks):
        def close(self) -> None:  # the process's shared client stays open for the next task
            pass

    return PaperBroker(SharedDepthBooks(_public_rest_client()))


_public_lock = threading.Lock()
_public_client: tuple[tuple[Any, ...], KrakenRestClientSync] | None = None


def _public_rest_client() -> KrakenRestClientSync:
    """One public (unsigned) REST client per process for the paper broker's book reads; rebuilt when the
    settings change, after a fork (`KrakenRestClientSync.usable` is False in a child) or once closed."""
    global _public_client
    key = (
        str(settings.KRAKEN_REST_URL),
        float(getattr(settings, "KRAKEN_TIMEOUT", 10.0)),
        str(getattr(settings, "GALFRIDAY_KRAKEN_TIER", "starter")),
    )
    with _public_lock:
        current = _public_client
        if current is not None and current[0] == key and current[1].usable:
            return current[1]
        if current is not None:
            current[1].close()  # a no-op for a client inherited through fork
        client = kraken_rest_client(private=False)
        _public_client = (key, client)
        return client


def _public_after_fork() -> None:
    global _public_lock, _public_client
    _public_lock = threading.Lock()
    _public_client = None


os.register_at_fork(after_in_child=_public_after_fork)


# --- applying what the exchange says --------------------------------------------------------------------------


def exchange_order_apply(exchange_order: ExchangeOrder, *, actor: str) -> str | None:
    """Apply the broker's events in order through `execution_report_apply`; returns the order's state."""
    state: str | None = None
    for event in exchange_order.events:
        result = execution_report_apply(event=event, actor=actor)
        state = result.state if result.state is not None else state
    return state


@contextmanager
def order_mutex(order_id: int, *, ttl: float | None = None) -> Iterator[None]:
    """One execution step per order at a time, across workers (cache `add` is atomic on Redis). Bounded by a
    TTL so a killed worker's mutex expires."""
    ttl = ttl if ttl is not None else float(getattr(settings, "GALFRIDAY_EXECUTION_MUTEX_TTL_S", 150))
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
        float(getattr(settings, "GALFRIDAY_EXECUTION_RESOLVE_WAIT_S", 5.0)),
        float(getattr(settings, "GALFRIDAY_EXECUTION_RESOLVE_POLL_S", 0.5)),
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


def order_execute(*, order_id: int, broker: Broker, actor: str = "execution") -> ExecutionOutcome:
    """Send a `submitted` (or `unknown`) order to the exchange exactly once. Safe to run twice, concurrently, or
    after a run that died anywhere: an order already past `submitted` is not sent again, and an order the
    exchange already has (found by client order id) is applied, not placed again. The order is read once, under
    its mutex (a duplicate delivery meeting a run in flight retries later and is then skipped)."""
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
        maybe_sent = order.send_attempts > 0 or order.state == OrderState.UNKNOWN
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
        return _send(order_id, ticket, broker, actor=actor)


def _send(
    order_id: int, ticket: OrderTicket, broker: Broker, *, actor: str, resubmitted: bool = False
) -> ExecutionOutcome:
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
    state = exchange_order_apply(ack, actor=actor)
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
    delay = float(getattr(settings, "GALFRIDAY_EXECUTION_POST_ACK_SYNC_S", 5.0))
    if delay <= 0:
        return
    try:
        from trading.tasks import sync_order

        sync_order.apply_async(kwargs={"order_id": order_id}, countdown=delay, queue="trading")
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


@transaction.atomic
def _mark_canceled_unplaced(order_id: int, *, reason: str, actor: str) -> Order:
    """A cancel for an order the exchange never had (never placed, or placing it failed): canceled locally."""
    order = _locked(order_id)
    return _transition_locked(
        order,
        OrderState.CANCELED,
        kind=OrderEvent.Kind.CANCELED,
        source=EventSource.SYSTEM,
        actor=actor,
        reason=reason,
    )


def order_cancel_execute(*, order_id: int, broker: Broker, actor: str = "execution") -> ExecutionOutcome:
    """Carry out a requested cancel (`pending_cancel`) at the exchange. Idempotent: an order no longer pending a
    cancel is left alone. A cancel the exchange refuses returns the order to where it was, with Kraken's reason."""
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
            _mark_canceled_unplaced(
                order_id, reason=order.reason or "canceled before it reached the exchange", actor=actor
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
            order_request_cancel(order_id=pk, reason=reason, source=EventSource.SYSTEM, actor=actor)
        try:
            results[str(pk)] = order_cancel_execute(order_id=pk, broker=broker, actor=actor).action
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
