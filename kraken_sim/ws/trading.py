"""Trading over the private host (PROTOCOL.md §2.11): ``add_order``, ``cancel_order``, ``cancel_all`` and
``cancel_all_orders_after``, on the same engine and trading counter as REST. Each response is sent before the
``executions`` updates the request caused."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from kraken_sim import errors as E
from kraken_sim.deadman import switch_answer
from kraken_sim.engine import STP_TYPES, TRIGGER_REFERENCES, OrderType, Side, TimeInForce
from kraken_sim.errors import KrakenError
from kraken_sim.exchange import Exchange, OrderRequest
from kraken_sim.ws.connection import Connection, Subscriptions
from kraken_sim.ws.private import PrivateFeeds

TRADING_METHODS = ("add_order", "cancel_order", "cancel_all", "cancel_all_orders_after")
CL_ORD_ID_RE = re.compile(r"^([0-9a-fA-F]{32}|[0-9a-fA-F-]{36}|.{1,18})$")


def ws_decimal(value: Any) -> Decimal | None:
    """A v2 number (JSON number parsed as Decimal, int, or numeric string); None if it is not a finite one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            return None
    else:
        return None
    return result if result.is_finite() else None


def order_request(exchange: Exchange, params: dict[str, Any]) -> OrderRequest:
    """``add_order`` params → an ``OrderRequest``; ``KrakenError`` for an unknown symbol, a bad value, or a value
    Kraken would act on and the simulator does not (refused as Kraken refuses it on an account without margin)."""
    symbol = params.get("symbol")
    inst = exchange.registry.by_symbol(symbol) if isinstance(symbol, str) else None
    if inst is None:
        raise KrakenError(E.UNKNOWN_PAIR)
    try:
        order_type = OrderType(str(params.get("order_type")))
        side = Side(str(params.get("side")))
        tif = TimeInForce(str(params.get("time_in_force", "gtc")).upper())
    except ValueError as exc:
        raise KrakenError(E.INVALID_ARGUMENTS) from exc
    qty = ws_decimal(params.get("order_qty"))
    price = ws_decimal(params.get("limit_price")) if "limit_price" in params else None
    if qty is None or ("limit_price" in params and price is None):
        raise KrakenError(E.INVALID_ARGUMENTS)
    if order_type is not OrderType.LIMIT and price is not None:
        raise KrakenError(E.INVALID_ARGUMENTS)
    trigger_price, reference = _triggers(order_type, params.get("triggers"))
    post_only = params.get("post_only", False)
    validate = params.get("validate", False)
    reduce_only = params.get("reduce_only", False)
    margin = params.get("margin", False)
    cl_ord_id = params.get("cl_ord_id")
    userref = params.get("order_userref", 0)
    stp_type = params.get("stp_type", "cancel_newest")
    if not all(isinstance(v, bool) for v in (post_only, validate, reduce_only, margin)):
        raise KrakenError(E.INVALID_ARGUMENTS)
    if stp_type not in STP_TYPES:
        raise KrakenError(E.invalid("stp_type"))
    if isinstance(userref, bool) or not isinstance(userref, int) or not -(2**31) <= userref < 2**31:
        raise KrakenError(E.INVALID_ARGUMENTS)
    if cl_ord_id is not None:
        if not isinstance(cl_ord_id, str) or not CL_ORD_ID_RE.match(cl_ord_id):
            raise KrakenError(E.INVALID_ARGUMENTS)
        if "order_userref" in params:
            raise KrakenError(E.INVALID_ARGUMENTS)
    if margin:
        raise KrakenError(E.CANNOT_OPEN_POSITION)  # no margin trading
    if reduce_only:
        raise KrakenError(E.REDUCE_ONLY_NO_POSITION)  # no margin position to reduce
    return OrderRequest(
        instrument=inst,
        side=side,
        order_type=order_type,
        qty=qty,
        limit_price=price,
        time_in_force=tif,
        post_only=post_only,
        cl_ord_id=cl_ord_id,
        userref=userref,
        validate=validate,
        stp_type=stp_type,
        trigger_price=trigger_price,
        trigger_reference=reference,
    )


def _triggers(order_type: OrderType, triggers: Any) -> tuple[Decimal | None, str]:
    """A stop-loss / take-profit order's ``triggers`` → (trigger price, reference). Only ``static`` prices are
    simulated (``pct`` and ``quote`` offsets are refused)."""
    if not order_type.triggered:
        if triggers is not None:
            raise KrakenError(E.invalid("triggers"))
        return None, "last"
    if not isinstance(triggers, dict):
        raise KrakenError(E.invalid("triggers"))
    reference = triggers.get("reference", "last")
    if reference not in TRIGGER_REFERENCES:
        raise KrakenError(E.invalid("triggers.reference"))
    if triggers.get("price_type", "static") != "static":
        raise KrakenError(E.invalid("triggers.price_type"))
    price = ws_decimal(triggers.get("price"))
    if price is None:
        raise KrakenError(E.invalid("triggers.price"))
    return price, reference


class TradingRequests:
    def __init__(self, subscriptions: Subscriptions, exchange: Exchange, private: PrivateFeeds) -> None:
        self.subscriptions = subscriptions
        self.exchange = exchange
        self.private = private

    def handle(self, conn: Connection, method: str, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        """One trading request from an authenticated private connection."""
        with self.private.deferred():
            if method == "add_order":
                self._add_order(conn, params, req_id, time_in)
            elif method == "cancel_order":
                self._cancel_order(conn, params, req_id, time_in)
            elif method == "cancel_all_orders_after":
                self._cancel_all_orders_after(conn, params, req_id, time_in)
            else:
                self._cancel_all(conn, req_id, time_in)

    def _add_order(self, conn: Connection, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        try:
            req = order_request(self.exchange, params)
            order = self.exchange.place_order(req, source="ws")
        except KrakenError as exc:
            self.subscriptions.error(conn, "add_order", exc.code, req_id, time_in)
            return
        result: dict[str, Any] = {}
        if not req.validate:
            result["order_id"] = order.order_id
        if order.cl_ord_id is not None:
            result["cl_ord_id"] = order.cl_ord_id
        else:
            result["order_userref"] = order.userref
        self.subscriptions.ack(conn, "add_order", req_id, result, time_in)

    def _cancel_order(self, conn: Connection, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        refs: list[tuple[str, Any]] = []
        for field_name in ("order_id", "cl_ord_id", "order_userref"):
            values = params.get(field_name)
            if values is None:
                continue
            if not isinstance(values, list) or not values:
                self.subscriptions.error(conn, "cancel_order", E.INVALID_ARGUMENTS, req_id, time_in)
                return
            refs += [(field_name, v) for v in values]
        if not refs:
            self.subscriptions.error(conn, "cancel_order", E.INVALID_ARGUMENTS, req_id, time_in)
            return
        for field_name, value in refs:
            if field_name == "order_id":
                orders = self.exchange.find_open(txid=str(value))
            elif field_name == "cl_ord_id":
                orders = self.exchange.find_open(cl_ord_id=str(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                orders = self.exchange.find_open(userref=value)
            else:
                orders = []
            if not orders:
                self.subscriptions.error(conn, "cancel_order", E.UNKNOWN_ORDER, req_id, time_in)
                continue
            for order in orders:
                try:
                    self.exchange.cancel_orders([order], source="ws")
                except KrakenError as exc:
                    self.subscriptions.error(conn, "cancel_order", exc.code, req_id, time_in)
                    continue
                result: dict[str, Any] = {"order_id": order.order_id}
                if order.cl_ord_id is not None:
                    result["cl_ord_id"] = order.cl_ord_id
                self.subscriptions.ack(conn, "cancel_order", req_id, result, time_in)

    def _cancel_all(self, conn: Connection, req_id: Any, time_in: int) -> None:
        try:
            count = self.exchange.cancel_all(source="ws")
        except KrakenError as exc:
            self.subscriptions.error(conn, "cancel_all", exc.code, req_id, time_in)
            return
        self.subscriptions.ack(conn, "cancel_all", req_id, {"count": count}, time_in)

    def _cancel_all_orders_after(self, conn: Connection, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        method = "cancel_all_orders_after"
        try:
            result = switch_answer(*self.exchange.cancel_all_after(params.get("timeout")))
        except KrakenError as exc:
            self.subscriptions.error(conn, method, exc.code, req_id, time_in)
            return
        self.subscriptions.ack(conn, method, req_id, result, time_in)
