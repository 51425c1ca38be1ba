"""Kraken's private REST trading endpoints (PROTOCOL.md §1.3): AddOrder (limit, market, stop-loss, take-profit),
CancelOrder, CancelAll and the dead man's switch, on the engine and trading counter the WebSocket shares."""

from __future__ import annotations

from typing import Any

from kraken_sim import errors as E
from kraken_sim.deadman import switch_answer
from kraken_sim.engine import STP_TYPES, TRIGGER_REFERENCES, OrderType, Side, TimeInForce
from kraken_sim.errors import KrakenError
from kraken_sim.exchange import Exchange, OrderRequest, order_description
from kraken_sim.rest.params import Params, decimal, flag, integer, listed, one_pair, text


class TradingEndpoints:
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    def methods(self) -> dict[str, Any]:
        return {
            "AddOrder": self.add_order,
            "CancelOrder": self.cancel_order,
            "CancelAll": self.cancel_all,
            "CancelAllOrdersAfter": self.cancel_all_orders_after,
        }

    def order_request(self, params: Params) -> OrderRequest:
        _, inst = one_pair(self.exchange.registry, params)
        try:
            side = Side(text(params, "type") or "")
            order_type = OrderType(text(params, "ordertype") or "")
            tif = TimeInForce((text(params, "timeinforce") or "GTC").upper())
        except ValueError as exc:
            raise KrakenError(E.INVALID_ARGUMENTS) from exc
        qty = decimal(params, "volume")
        if qty is None:
            raise KrakenError(E.INVALID_ARGUMENTS)
        # ``price`` is a limit order's limit, and a stop-loss / take-profit order's trigger price.
        price = decimal(params, "price") if order_type is not OrderType.MARKET else None
        trigger = text(params, "trigger") or "last"
        if trigger not in TRIGGER_REFERENCES:
            raise KrakenError(E.invalid("trigger"))
        flags = set(listed(params, "oflags"))
        if flags - {"post", "fciq", "nompp"}:
            raise KrakenError(E.INVALID_ARGUMENTS)  # fcib / viqc are not simulated
        userref = integer(params, "userref", 0) or 0
        cl_ord_id = text(params, "cl_ord_id")
        if cl_ord_id is not None and (params.get("userref") not in (None, "") or not 0 < len(cl_ord_id) <= 36):
            raise KrakenError(E.INVALID_ARGUMENTS)
        if not -(2**31) <= userref < 2**31:
            raise KrakenError(E.INVALID_ARGUMENTS)
        stp = text(params, "stptype") or "cancel-newest"
        if stp.replace("-", "_") not in STP_TYPES or "_" in stp:
            raise KrakenError(E.invalid("stptype"))
        self.refuse_unsimulated(params)
        return OrderRequest(
            instrument=inst,
            side=side,
            order_type=order_type,
            qty=qty,
            limit_price=price if order_type is OrderType.LIMIT else None,
            time_in_force=tif,
            post_only="post" in flags,
            cl_ord_id=cl_ord_id,
            userref=userref,
            validate=flag(params, "validate"),
            stp_type=stp.replace("-", "_"),
            trigger_price=price if order_type.triggered else None,
            trigger_reference=trigger,
        )

    @staticmethod
    def refuse_unsimulated(params: Params) -> None:
        """Order values Kraken would act on and the simulator does not: refused as Kraken refuses them on an
        account without margin, or as an invalid argument, rather than accepted and ignored."""
        if (text(params, "leverage") or "none").lower() != "none":
            raise KrakenError(E.CANNOT_OPEN_POSITION)  # no margin trading
        if flag(params, "reduce_only"):
            raise KrakenError(E.REDUCE_ONLY_NO_POSITION)  # no margin position to reduce
        if text(params, "displayvol") not in (None, ""):  # iceberg orders are not simulated
            raise KrakenError(E.invalid("displayvol"))
        for name in ("starttm", "expiretm"):  # scheduled and GTD orders are not simulated
            if text(params, name) not in (None, "", "0"):
                raise KrakenError(E.invalid(name))
        if any(key.startswith("close[") for key in params):  # conditional close orders are not simulated
            raise KrakenError(E.invalid("close"))

    def add_order(self, params: Params) -> Any:
        req = self.order_request(params)
        order = self.exchange.place_order(req, source="api")
        result: dict[str, Any] = {"descr": {"order": order_description(order)}}
        if not req.validate:
            result["txid"] = [order.order_id]
        return result

    def cancel_order(self, params: Params) -> Any:
        txid = text(params, "txid")
        cl_ord_id = text(params, "cl_ord_id")
        if (txid is None) == (cl_ord_id is None):
            raise KrakenError(E.INVALID_ARGUMENTS)
        if cl_ord_id is not None:
            orders = self.exchange.find_open(cl_ord_id=cl_ord_id)
        else:
            assert txid is not None
            stripped = txid.strip()
            if stripped.lstrip("-").isdigit():
                orders = self.exchange.find_open(userref=int(stripped))
            else:
                orders = self.exchange.find_open(txid=stripped)
        count = self.exchange.cancel_orders(orders, source="api")
        return {"count": count, "pending": False}

    def cancel_all(self, params: Params) -> Any:
        return {"count": self.exchange.cancel_all(source="api")}

    def cancel_all_orders_after(self, params: Params) -> Any:
        if "timeout" not in params:
            raise KrakenError(E.INVALID_ARGUMENTS)
        timeout = integer(params, "timeout")
        assert timeout is not None
        return switch_answer(*self.exchange.cancel_all_after(timeout))
