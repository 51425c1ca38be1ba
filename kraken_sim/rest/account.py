"""Kraken's private REST account endpoints (PROTOCOL.md §1.3): balances and trade balance, orders, trades and
the ledger, with Kraken's paging (50 a page, ``ofs``) and time bounds."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kraken_sim import errors as E
from kraken_sim.accounts import AccountTrade, LedgerEntry
from kraken_sim.engine import Order, OrderType
from kraken_sim.errors import KrakenError
from kraken_sim.exchange import Exchange, order_description
from kraken_sim.rest.params import Params, flag, integer, listed, text, time_bound
from kraken_sim.wire import NS, fixed, unix_token

PAGE_SIZE = 50


class AccountEndpoints:
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.registry = exchange.registry

    def methods(self) -> dict[str, Any]:
        return {
            "Balance": self.balance,
            "BalanceEx": self.balance_ex,
            "TradeBalance": self.trade_balance,
            "OpenOrders": self.open_orders,
            "ClosedOrders": self.closed_orders,
            "QueryOrders": self.query_orders,
            "TradesHistory": self.trades_history,
            "QueryTrades": self.query_trades,
            "Ledgers": self.ledgers,
            "QueryLedgers": self.query_ledgers,
        }

    def balance(self, params: Params) -> Any:
        account = self.exchange.account
        return {a.rest_id: fixed(account.balances[a.code], a.decimals) for a in self.registry.assets}

    def balance_ex(self, params: Params) -> Any:
        account = self.exchange.account
        return {
            a.rest_id: {
                "balance": fixed(account.balances[a.code], a.decimals),
                "hold_trade": fixed(account.held(a), a.decimals),
            }
            for a in self.registry.assets
        }

    def trade_balance(self, params: Params) -> Any:
        """Kraken's TradeBalance for a spot account (margin is not simulated, so no position: ``m``, ``n``, ``c``,
        ``v`` are 0, equity ``e`` = ``tb``, free margin ``mf`` = ``e``, and no ``ml``). ``eb`` values every
        balance in ``asset`` (default ZUSD) at the last trade prices; every listed asset counts as collateral, so
        ``tb`` = ``eb``; ``uv`` values the unfilled part of the open orders. An asset no pair prices (a staking
        balance) is left out."""
        name = text(params, "asset") or "ZUSD"
        target = self.registry.asset_by_any_name(name)
        if target is None:
            raise KrakenError(E.UNKNOWN_ASSET)
        account = self.exchange.account
        equivalent = Decimal(0)
        for asset in self.registry.assets:
            rate = self.exchange.conversion_rate(asset.code, target.code)
            if rate is not None:
                equivalent += account.balances[asset.code] * rate
        unexecuted = Decimal(0)
        for order in self.exchange.open_orders():
            inst = order.instrument
            price = order.hold_price or self.exchange.marketdata[inst.symbol].last_price
            rate = self.exchange.conversion_rate(inst.quote.code, target.code)
            if rate is not None:
                unexecuted += order.remaining * price * rate
        zero = fixed(Decimal(0), target.decimals)
        eb = fixed(equivalent, target.decimals)
        return {
            "eb": eb,
            "tb": eb,
            "m": zero,
            "n": zero,
            "c": zero,
            "v": zero,
            "e": eb,
            "mf": eb,
            "uv": fixed(unexecuted, target.decimals),
        }

    def order_info(self, order: Order, with_trades: bool) -> dict[str, Any]:
        inst = order.instrument
        cd = inst.cost_decimals
        shown_price = order.limit_price if order.order_type is OrderType.LIMIT else order.trigger_price
        misc = []
        if order.is_triggered:  # Kraken's misc flags: ``stopped`` by a stop price, ``touched`` by a touch price
            misc.append("stopped" if order.order_type is OrderType.STOP_LOSS else "touched")
        if order.filled and order.is_open:
            misc.append("partial")
        info: dict[str, Any] = {"refid": None, "userref": order.userref}
        if order.cl_ord_id is not None:
            info["cl_ord_id"] = order.cl_ord_id
        info.update(
            {
                "status": order.status.value,
                "opentm": unix_token(order.opened_ns),
                "starttm": 0,
                "expiretm": 0,
                "descr": {
                    "pair": inst.altname,
                    "type": order.side.value,
                    "ordertype": order.order_type.value,
                    "price": fixed(shown_price or Decimal(0), inst.price_decimals),
                    "price2": "0",
                    "leverage": "none",
                    "order": order_description(order),
                    "close": "",
                },
                "vol": fixed(order.qty, inst.lot_decimals),
                "vol_exec": fixed(order.filled, inst.lot_decimals),
                "cost": fixed(order.cost, cd),
                "fee": fixed(order.fee, cd),
                "price": fixed(order.avg_price, cd),
                "stopprice": fixed((order.trigger_price or Decimal(0)) if order.is_triggered else Decimal(0), cd),
                "limitprice": fixed(Decimal(0), cd),
                "misc": ",".join(misc),
                "oflags": "fciq,post" if order.post_only else "fciq",
                "timeinforce": order.time_in_force.value,
            }
        )
        if order.order_type.triggered:
            info["trigger"] = order.trigger_reference
        if with_trades and order.trade_txids:
            info["trades"] = list(order.trade_txids)
        if not order.is_open:
            info["reason"] = order.reason
            info["closetm"] = unix_token(order.closed_ns or order.opened_ns)
        return info

    def _account_orders(self, params: Params, *, open_: bool) -> list[Order]:
        userref = integer(params, "userref")
        cl_ord_id = text(params, "cl_ord_id")
        return [
            o
            for o in self.exchange.orders.values()
            if o.is_open == open_
            and (userref is None or o.userref == userref)
            and (cl_ord_id is None or o.cl_ord_id == cl_ord_id)
        ]

    def open_orders(self, params: Params) -> Any:
        with_trades = flag(params, "trades")
        return {"open": {o.order_id: self.order_info(o, with_trades) for o in self._account_orders(params, open_=True)}}

    @staticmethod
    def _page(items: list[Any], params: Params) -> list[Any]:
        ofs = integer(params, "ofs", 0) or 0
        if ofs < 0:
            raise KrakenError(E.INVALID_ARGUMENTS)
        return items[ofs : ofs + PAGE_SIZE]

    def closed_orders(self, params: Params) -> Any:
        with_trades = flag(params, "trades")
        start, end = time_bound(params, "start"), time_bound(params, "end")
        closetime = text(params, "closetime") or "both"
        if closetime not in ("open", "close", "both"):
            raise KrakenError(E.INVALID_ARGUMENTS)

        def in_range(order: Order) -> bool:
            times = []
            if closetime in ("open", "both"):
                times.append(Decimal(order.opened_ns) / NS)
            if closetime in ("close", "both"):
                times.append(Decimal(order.closed_ns or order.opened_ns) / NS)
            return any((start is None or t > start) and (end is None or t <= end) for t in times)

        orders = [o for o in self._account_orders(params, open_=False) if in_range(o)]
        orders.sort(key=lambda o: (o.closed_ns or 0, o.opened_ns), reverse=True)
        result: dict[str, Any] = {
            "closed": {o.order_id: self.order_info(o, with_trades) for o in self._page(orders, params)}
        }
        if not flag(params, "without_count"):
            result["count"] = len(orders)
        return result

    def query_orders(self, params: Params) -> Any:
        txids = listed(params, "txid")
        if not txids or len(txids) > PAGE_SIZE:
            raise KrakenError(E.INVALID_ARGUMENTS)
        with_trades = flag(params, "trades")
        userref = integer(params, "userref")
        result = {}
        for txid in txids:
            order = self.exchange.orders.get(txid)
            if order is None:
                raise KrakenError("EOrder:Invalid order")
            if userref is None or order.userref == userref:
                result[txid] = self.order_info(order, with_trades)
        return result

    def trade_info(self, trade: AccountTrade, with_ledgers: bool) -> dict[str, Any]:
        inst = trade.order.instrument
        cd = inst.cost_decimals
        info: dict[str, Any] = {
            "ordertxid": trade.order.order_id,
            "postxid": trade.postxid,
            "pair": inst.rest_key,
            "time": unix_token(trade.ts_ns, 4),
            "type": trade.order.side.value,
            "ordertype": trade.order.order_type.value,
            "price": fixed(trade.price, cd),
            "cost": fixed(trade.cost, cd),
            "fee": fixed(trade.fee, cd),
            "vol": fixed(trade.qty, inst.lot_decimals),
            "margin": fixed(Decimal(0), cd),
            "misc": "",
            "trade_id": trade.trade_id,
            "maker": trade.maker,
        }
        if with_ledgers:
            info["ledgers"] = [e.ledger_id for e in trade.ledger]
        return info

    def trades_history(self, params: Params) -> Any:
        start, end = time_bound(params, "start"), time_bound(params, "end")
        kind = text(params, "type") or "all"
        if kind not in ("all", "any position", "closed position", "closing position", "no position"):
            raise KrakenError(E.INVALID_ARGUMENTS)
        with_ledgers = flag(params, "ledgers")
        trades = [
            t
            for t in self.exchange.account.trades
            if (start is None or Decimal(t.ts_ns) / NS > start) and (end is None or Decimal(t.ts_ns) / NS <= end)
        ]
        trades.reverse()
        result: dict[str, Any] = {
            "trades": {t.txid: self.trade_info(t, with_ledgers) for t in self._page(trades, params)}
        }
        if not flag(params, "without_count"):
            result["count"] = len(trades)
        return result

    def query_trades(self, params: Params) -> Any:
        txids = listed(params, "txid")
        if not txids or len(txids) > 20:
            raise KrakenError(E.INVALID_ARGUMENTS)
        by_id = {t.txid: t for t in self.exchange.account.trades}
        result = {}
        for txid in txids:
            trade = by_id.get(txid)
            if trade is None:
                raise KrakenError(E.INVALID_ARGUMENTS)
            result[txid] = self.trade_info(trade, False)
        return result

    @staticmethod
    def ledger_info(entry: LedgerEntry) -> dict[str, Any]:
        asset = entry.asset
        return {
            "refid": entry.ref_id,
            "time": unix_token(entry.ts_ns, 4),
            "type": entry.type,
            "subtype": "",
            "aclass": "currency",
            "asset": asset.rest_id,
            "amount": fixed(entry.amount, asset.decimals),
            "fee": fixed(entry.fee, asset.decimals),
            "balance": fixed(entry.balance, asset.decimals),
        }

    def ledgers(self, params: Params) -> Any:
        start, end = time_bound(params, "start"), time_bound(params, "end")
        assets = listed(params, "asset")
        wanted = {a.code for a in (self.registry.asset_by_any_name(n) for n in assets) if a is not None}
        if assets and assets != ["all"] and not wanted:
            raise KrakenError("EQuery:Unknown asset")
        kind = text(params, "type") or "all"
        entries = [
            e
            for e in self.exchange.account.ledger
            if (not wanted or e.asset.code in wanted)
            and (kind == "all" or e.type == kind)
            and (start is None or Decimal(e.ts_ns) / NS > start)
            and (end is None or Decimal(e.ts_ns) / NS <= end)
        ]
        entries.reverse()
        result: dict[str, Any] = {"ledger": {e.ledger_id: self.ledger_info(e) for e in self._page(entries, params)}}
        if not flag(params, "without_count"):
            result["count"] = len(entries)
        return result

    def query_ledgers(self, params: Params) -> Any:
        ids = listed(params, "id")
        if not ids or len(ids) > 20:
            raise KrakenError(E.INVALID_ARGUMENTS)
        by_id = {e.ledger_id: e for e in self.exchange.account.ledger}
        result = {}
        for ledger_id in ids:
            entry = by_id.get(ledger_id)
            if entry is None:
                raise KrakenError(E.INVALID_ARGUMENTS)
            result[ledger_id] = self.ledger_info(entry)
        return result
