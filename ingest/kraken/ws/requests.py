"""Requests over an endpoint and their answers: every request carries a ``req_id``, its response resolves a future,
every request has a timeout. An order request whose answer never comes (timeout, or the connection lost after
sending) becomes :class:`~ingest.kraken.errors.OrderOutcomeUnknown` carrying the client order id."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from ingest.kraken.errors import MalformedMessage, NotConnected, OrderOutcomeUnknown, RequestTimeout
from ingest.kraken.messages import Ack, parse_message
from ingest.kraken.ws.connection import Endpoint
from ingest.kraken.ws.context import WsContext

__all__ = ["Requests"]

logger = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class _Pending:
    method: str
    future: asyncio.Future[Ack]
    endpoint: Endpoint
    on_ack: Callable[[Ack], None] | None = None
    order_context: dict[str, Any] | None = None
    sent_at: float = 0.0


class Requests:
    """The requests in flight on every endpoint of a client."""

    def __init__(self, ctx: WsContext) -> None:
        self.ctx = ctx
        self._pending: dict[int, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    async def send(
        self,
        endpoint: Endpoint,
        method: str,
        params: Mapping[str, Any] | None,
        timeout: float,
        *,
        on_ack: Callable[[Ack], None] | None = None,
        order_context: dict[str, Any] | None = None,
    ) -> Ack:
        """Send a request and wait for its answer. ``on_ack`` sees the answer before the caller does (on the
        frame path); ``order_context`` (cl_ord_id, order_userref, symbol) marks an order request, whose lost
        answer is :class:`OrderOutcomeUnknown` instead of a timeout."""
        req_id = self.ctx.next_req_id()
        message: dict[str, Any] = {"method": method, "req_id": req_id}
        if params is not None:
            message["params"] = params
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = _Pending(method, future, endpoint, on_ack, order_context, time.monotonic())
        try:
            await endpoint.send(message)
        except NotConnected:
            self._pending.pop(req_id, None)
            raise
        except ConnectionClosed as exc:
            self._pending.pop(req_id, None)
            if order_context is not None:
                raise self.outcome_unknown(method, order_context, f"connection closed while sending: {exc}") from exc
            raise NotConnected(f"{method}: connection closed while sending: {exc}") from exc
        except BaseException:
            self._pending.pop(req_id, None)
            raise
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.CancelledError:
            if order_context is not None and req_id in self._pending:
                self.ctx.stats.outcome_unknown += 1
                logger.error(
                    "order request cancelled in flight: outcome unknown",
                    extra={"method": method, **{k: v for k, v in order_context.items() if v}},
                )
            raise
        except TimeoutError as exc:
            self._pending.pop(req_id, None)
            self.ctx.stats.request_timeouts += 1
            if order_context is not None:
                raise self.outcome_unknown(method, order_context, f"no response within {timeout} s") from exc
            raise RequestTimeout(f"{method}: no response within {timeout} s (req_id {req_id})") from exc
        finally:
            self._pending.pop(req_id, None)

    def outcome_unknown(self, method: str, context: Mapping[str, Any], why: str) -> OrderOutcomeUnknown:
        """The error for an order request whose outcome is unknown (counted and logged here)."""
        self.ctx.stats.outcome_unknown += 1
        logger.error(
            "order outcome unknown: %s", why, extra={"method": method, **{k: v for k, v in context.items() if v}}
        )
        return OrderOutcomeUnknown(
            f"{method}: outcome unknown ({why}); query by client order id before resubmitting",
            cl_ord_id=context.get("cl_ord_id"),
            userref=context.get("order_userref"),
            pair=context.get("symbol"),
        )

    def fail_pending(self, endpoint: Endpoint, why: str) -> None:
        """Fail every request in flight on ``endpoint`` (its connection is gone or the client closes)."""
        for req_id, pending in list(self._pending.items()):
            if pending.endpoint is not endpoint:
                continue
            del self._pending[req_id]
            if pending.future.done():
                continue
            if pending.order_context is not None:
                pending.future.set_exception(self.outcome_unknown(pending.method, pending.order_context, why))
            else:
                pending.future.set_exception(NotConnected(f"{pending.method}: {why} before the response"))
        endpoint.forget_idle_pings()

    def answer_received(self, endpoint: Endpoint, msg: dict[str, Any]) -> None:
        """A frame with ``method``: resolve the request it answers (or a watchdog ping's pong)."""
        ctx = self.ctx
        req_id = msg.get("req_id")
        pending = self._pending.pop(req_id, None) if type(req_id) is int else None
        if pending is None:
            if msg.get("method") == "pong" and type(req_id) is int:
                sent = endpoint.take_idle_ping(req_id)
                if sent is not None:
                    ctx.stats.last_ping_rtt_s = time.monotonic() - sent
                    return
            ctx.stats.late_acks += 1
            logger.warning(
                "kraken ws %s: response to no pending request (late or unsolicited): %r",
                endpoint.name,
                {k: msg.get(k) for k in ("method", "req_id", "success", "error", "result")},
            )
            return
        try:
            ack = parse_message(msg)
        except MalformedMessage as exc:
            ctx.note_malformed(f"ack:{msg.get('method')}", exc)
            if not pending.future.done():
                pending.future.set_exception(exc)
            return
        if not isinstance(ack, Ack):  # parse_message returns an Ack for any message with "method"
            ctx.note_malformed("ack", "not an ack")
            return
        if pending.on_ack is not None:
            pending.on_ack(ack)
        if ack.warnings:
            logger.info("kraken ws: %s warnings: %s", ack.method, ", ".join(ack.warnings))
        if not pending.future.done():
            pending.future.set_result(ack)
