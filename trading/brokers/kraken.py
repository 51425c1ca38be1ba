"""The live broker: Kraken, over the worker process's authenticated private WebSocket (`trading.ws_session`) with
REST as the fallback when the socket cannot take a request (nothing was sent), and REST for queries.

Fills learned by REST carry the trade txid as exec id: the same id Kraken's `executions` channel uses, so a fill
applied from a query and again from the WebSocket is recorded once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from core.metrics import ProcessCounters
from ingest.kraken.errors import AuthenticationError, NotConnected, RequestTimeout, UnknownOrder
from ingest.kraken.rest import KrakenRestClientSync
from ingest.kraken.rest_types import OrderInfo, TradeInfo
from trading.brokers.base import ZERO, ExchangeOrder, OrderTicket, order_detail_event
from trading.executions import EventSource, ExecType, ExecutionEvent, FeeAmount
from trading.models import OrderType, TimeInForce
from trading.ws_session import ExchangeSession

logger = logging.getLogger(__name__)

# Counts (all processes in /metrics: galfriday_events_total) of fallbacks and anomalies (each is logged too).
counters = ProcessCounters("trading.brokers.kraken")

QUERY_TRADES_BATCH = 20


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
