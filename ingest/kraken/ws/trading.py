"""Trading over the private socket: ``add_order``, ``cancel_order``, ``cancel_all`` and Kraken's dead man's switch
``cancel_all_orders_after``.

An ``add_order`` whose response never comes (timeout, or the connection lost after sending) raises
:class:`~ingest.kraken.errors.OrderOutcomeUnknown` carrying the ``cl_ord_id``: query by client order id (REST
OpenOrders/ClosedOrders, or the executions snapshot) before resubmitting. Kraken's error strings become the typed
exceptions of :mod:`ingest.kraken.errors`; a rate-limit refusal saturates the engine limiter's counter.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ingest.kraken.errors import (
    InternalError,
    MalformedMessage,
    NotConnected,
    TradingRateLimitExceeded,
    error_from_string,
)
from ingest.kraken.ratelimit import TradingEngineLimiter, add_order_cost, cancel_order_cost
from ingest.kraken.wire import parse_rfc3339_optional
from ingest.kraken.ws.connection import Endpoint
from ingest.kraken.ws.context import WsContext
from ingest.kraken.ws.requests import Requests
from ingest.kraken.ws.types import AddOrderAck, CancelAfterAck, CancelOrderAck

__all__ = ["TradingRequests"]

_TRACKED_ORDERS = 10_000
_NO_ERROR_TEXT = "EGeneral:Internal error (no error text)"


class TradingRequests:
    """Order requests on the private endpoint, with the per-pair trading-engine limiter when one is given."""

    def __init__(
        self,
        ctx: WsContext,
        endpoint: Endpoint,
        requests: Requests,
        engine_limiter: TradingEngineLimiter | None = None,
    ) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.requests = requests
        self.engine_limiter = engine_limiter
        # Orders placed through this client (order id and client order id → pair, when): prices their cancels.
        self._placed: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def _ready(self, timeout: float) -> Endpoint:
        self.ctx.ensure_open()
        endpoint = self.endpoint
        endpoint.require_token_provider()
        endpoint.start()
        if not endpoint.connected.is_set():
            try:
                await asyncio.wait_for(endpoint.connected.wait(), timeout)
            except TimeoutError as exc:
                raise NotConnected(f"private socket not connected within {timeout} s; nothing was sent") from exc
        return endpoint

    async def add_order(
        self,
        *,
        symbol: str,
        side: str,
        order_type: str,
        order_qty: Decimal,
        limit_price: Decimal | None = None,
        cl_ord_id: str | None = None,
        order_userref: int | None = None,
        time_in_force: str | None = None,
        post_only: bool | None = None,
        reduce_only: bool | None = None,
        validate: bool = False,
        deadline: str | None = None,
        extra: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> AddOrderAck:
        if side not in ("buy", "sell"):
            raise ValueError("side must be 'buy' or 'sell'")
        if not isinstance(order_qty, Decimal) or (limit_price is not None and not isinstance(limit_price, Decimal)):
            raise TypeError("order_qty and limit_price must be Decimal")
        if cl_ord_id is not None and order_userref is not None:
            raise ValueError("cl_ord_id and order_userref are mutually exclusive")
        wait = timeout if timeout is not None else self.ctx.config.order_timeout_s
        endpoint = await self._ready(wait)
        if self.engine_limiter is not None and not validate:
            await self.engine_limiter.acquire(symbol, add_order_cost())
        params: dict[str, Any] = {
            "order_type": order_type,
            "side": side,
            "order_qty": order_qty,
            "symbol": symbol,
        }
        optional = {
            "limit_price": limit_price,
            "cl_ord_id": cl_ord_id,
            "order_userref": order_userref,
            "time_in_force": time_in_force,
            "post_only": post_only,
            "reduce_only": reduce_only,
            "deadline": deadline,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        if validate:
            params["validate"] = True
        params.update(extra or {})
        params["token"] = endpoint.token
        context = {"cl_ord_id": cl_ord_id, "order_userref": order_userref, "symbol": symbol}
        ack = await self.requests.send(endpoint, "add_order", params, wait, order_context=context)
        if not ack.success:
            exc = error_from_string(ack.error or _NO_ERROR_TEXT)
            if isinstance(exc, InternalError):
                raise self.requests.outcome_unknown("add_order", context, ack.error or "internal error") from exc
            if isinstance(exc, TradingRateLimitExceeded) and self.engine_limiter is not None:
                self.engine_limiter.counter(symbol).saturate()
            raise exc
        result = ack.result or {}
        order_id = result.get("order_id")
        if not validate and not isinstance(order_id, str):
            raise self.requests.outcome_unknown("add_order", context, "success without an order_id")
        userref = result.get("order_userref")
        placed_at = time.monotonic()
        for ref in (order_id, cl_ord_id):
            if isinstance(ref, str) and not validate:
                self._placed[ref] = (symbol, placed_at)
                self._placed.move_to_end(ref)
        while len(self._placed) > _TRACKED_ORDERS:
            self._placed.popitem(last=False)
        return AddOrderAck(
            order_id=order_id if isinstance(order_id, str) else None,
            cl_ord_id=result.get("cl_ord_id", cl_ord_id),
            order_userref=userref if type(userref) is int else order_userref,
            time_in=ack.time_in,
            time_out=ack.time_out,
            warnings=ack.warnings,
        )

    async def cancel_order(
        self,
        *,
        order_id: str | None = None,
        cl_ord_id: str | None = None,
        symbol: str | None = None,
        timeout: float | None = None,
    ) -> CancelOrderAck:
        if (order_id is None) == (cl_ord_id is None):
            raise ValueError("give exactly one of order_id or cl_ord_id")
        ref = order_id if order_id is not None else cl_ord_id
        assert ref is not None
        wait = timeout if timeout is not None else self.ctx.config.order_timeout_s
        endpoint = await self._ready(wait)
        tracked = self._placed.get(ref)
        pair = symbol or (tracked[0] if tracked else None)
        if self.engine_limiter is not None and pair is not None:
            age = time.monotonic() - tracked[1] if tracked else None
            await self.engine_limiter.acquire(pair, cancel_order_cost(age))
        params: dict[str, Any] = {"order_id": [order_id]} if order_id is not None else {"cl_ord_id": [cl_ord_id]}
        params["token"] = endpoint.token
        ack = await self.requests.send(endpoint, "cancel_order", params, wait)
        if not ack.success:
            exc = error_from_string(ack.error or _NO_ERROR_TEXT)
            if isinstance(exc, TradingRateLimitExceeded) and self.engine_limiter is not None and pair:
                self.engine_limiter.counter(pair).saturate()
            raise exc
        self._placed.pop(ref, None)
        result = ack.result or {}
        return CancelOrderAck(
            order_id=result.get("order_id", order_id),
            cl_ord_id=result.get("cl_ord_id", cl_ord_id),
            time_in=ack.time_in,
            time_out=ack.time_out,
        )

    async def cancel_all(self, *, timeout: float | None = None) -> int:
        wait = timeout if timeout is not None else self.ctx.config.order_timeout_s
        endpoint = await self._ready(wait)
        ack = await self.requests.send(endpoint, "cancel_all", {"token": endpoint.token}, wait)
        if not ack.success:
            raise error_from_string(ack.error or _NO_ERROR_TEXT)
        count = (ack.result or {}).get("count")
        if type(count) is not int:
            raise MalformedMessage(f"cancel_all: no integer count in {ack.result!r}")
        return count

    async def cancel_all_orders_after(self, seconds: int, *, timeout: float | None = None) -> CancelAfterAck:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise ValueError("seconds must be a non-negative int (0 disables)")
        wait = timeout if timeout is not None else self.ctx.config.order_timeout_s
        endpoint = await self._ready(wait)
        params = {"timeout": seconds, "token": endpoint.token}
        ack = await self.requests.send(endpoint, "cancel_all_orders_after", params, wait)
        if not ack.success:
            raise error_from_string(ack.error or _NO_ERROR_TEXT)
        result = ack.result or {}
        return CancelAfterAck(
            current_time=parse_rfc3339_optional(result.get("currentTime"), "currentTime"),
            trigger_time=parse_rfc3339_optional(result.get("triggerTime"), "triggerTime"),
            time_in=ack.time_in,
            time_out=ack.time_out,
        )
