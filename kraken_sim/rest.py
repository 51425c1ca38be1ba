"""Kraken's REST API (PROTOCOL.md §1): ``/0/public/<Method>`` and ``/0/private/<Method>``.

Responses use Kraken's envelope with HTTP 200: ``{"error":[],"result":…}`` on success, ``{"error":[…]}``
without ``result`` on failure. Money is written as strings at a fixed precision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from kraken_sim import errors as E
from kraken_sim.accounts import AccountTrade, LedgerEntry
from kraken_sim.auth import Authenticator, TokenStore, parse_body
from kraken_sim.config import SimConfig
from kraken_sim.deadman import switch_answer
from kraken_sim.engine import Order, OrderType, Side, TimeInForce
from kraken_sim.errors import KrakenError
from kraken_sim.exchange import Exchange, OrderRequest, order_description
from kraken_sim.faults import Faults
from kraken_sim.ids import IdGenerator
from kraken_sim.instruments import Instrument
from kraken_sim.marketdata import OHLC_INTERVALS
from kraken_sim.ratelimit import DecayingCounter
from kraken_sim.wire import NS, Clock, dumps_bytes, fixed, num_text, rfc1123, rfc3339_seconds, unix_token

log = logging.getLogger(__name__)

PAGE_SIZE = 50
HISTORY_METHODS = ("TradesHistory", "QueryTrades", "Ledgers", "QueryLedgers")
TRADING_METHODS = ("AddOrder", "CancelOrder", "CancelAll")
MAX_DEPTH_COUNT = 500
MAX_TRADES_COUNT = 1000

Params = dict[str, Any]


def _text(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bool(params: Params, name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0", ""):
        return False
    raise KrakenError(E.INVALID_ARGUMENTS)


def _decimal(params: Params, name: str) -> Decimal | None:
    value = params.get(name)
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise KrakenError(E.INVALID_ARGUMENTS) from exc
    if not result.is_finite():
        raise KrakenError(E.INVALID_ARGUMENTS)
    return result


def _int(params: Params, name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise KrakenError(E.INVALID_ARGUMENTS)
    try:
        return int(str(value).strip())
    except ValueError as exc:
        raise KrakenError(E.INVALID_ARGUMENTS) from exc


def _time_bound(params: Params, name: str) -> Decimal | None:
    """``start``/``end``/``since`` as Unix seconds (a txid bound is not supported)."""
    return _decimal(params, name)


def _list(params: Params, name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


class RestApi:
    def __init__(
        self,
        config: SimConfig,
        exchange: Exchange,
        auth: Authenticator,
        tokens: TokenStore,
        faults: Faults,
        ids: IdGenerator,
        clock: Clock,
    ) -> None:
        self.config = config
        self.exchange = exchange
        self.registry = exchange.registry
        self.auth = auth
        self.tokens = tokens
        self.faults = faults
        self.ids = ids
        self.clock = clock
        self._counters: dict[str, DecayingCounter] = {}
        self._public: dict[str, Callable[[Params], Any]] = {
            "Time": self.time,
            "SystemStatus": self.system_status,
            "Assets": self.assets,
            "AssetPairs": self.asset_pairs,
            "Ticker": self.ticker,
            "OHLC": self.ohlc,
            "Depth": self.depth,
            "Trades": self.trades,
        }
        self._private: dict[str, Callable[[Params], Any]] = {
            "Balance": self.balance,
            "BalanceEx": self.balance_ex,
            "OpenOrders": self.open_orders,
            "ClosedOrders": self.closed_orders,
            "QueryOrders": self.query_orders,
            "TradesHistory": self.trades_history,
            "QueryTrades": self.query_trades,
            "Ledgers": self.ledgers,
            "QueryLedgers": self.query_ledgers,
            "AddOrder": self.add_order,
            "CancelOrder": self.cancel_order,
            "CancelAll": self.cancel_all,
            "CancelAllOrdersAfter": self.cancel_all_orders_after,
            "GetWebSocketsToken": self.websockets_token,
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/0/public/{method}", self._handle_public)
        app.router.add_route("POST", "/0/public/{method}", self._handle_public)
        app.router.add_route("POST", "/0/private/{method}", self._handle_private)

    # -- plumbing -------------------------------------------------------------------------------------
    async def _respond(self, work: Callable[[], Awaitable[Any]], request_path: Callable[[], str]) -> web.Response:
        delay, phase = self.faults.take_rest_delay()
        if delay and phase == "before":
            await asyncio.sleep(delay)
        injected = self.faults.take_rest_error()
        if injected is not None:
            log.info("fault: answering %s", injected)
            body: dict[str, Any] = {"error": [injected]}
        else:
            try:
                body = {"error": [], "result": await work()}
            except KrakenError as exc:
                body = {"error": [exc.code]}
            except Exception:
                # A bug in the simulator must not look like a network failure to the client under test.
                log.exception("internal error answering %s", request_path())
                body = {"error": [E.INTERNAL_ERROR]}
        if delay and phase == "after":
            await asyncio.sleep(delay)
        return web.Response(body=dumps_bytes(body), content_type="application/json")

    async def _handle_public(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            handler = self._public.get(request.match_info["method"])
            if handler is None:
                raise KrakenError(E.UNKNOWN_METHOD)
            params: Params = dict(request.query)
            if request.method == "POST" and request.can_read_body:
                params.update(parse_body(await request.read(), request.content_type))
            return handler(params)

        return await self._respond(work, lambda: request.path)

    async def _handle_private(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            method = request.match_info["method"]
            handler = self._private.get(method)
            if handler is None:
                raise KrakenError(E.UNKNOWN_METHOD)
            body = await request.read()
            params = parse_body(body, request.content_type)
            key = self.auth.verify(
                uri_path=request.path,
                headers_key=request.headers.get("API-Key"),
                headers_sign=request.headers.get("API-Sign"),
                body=body,
                params=params,
            )
            self._charge(key, method)
            return handler(params)

        return await self._respond(work, lambda: request.path)

    def _charge(self, key: str, method: str) -> None:
        if not self.config.enforce_rate_limits or method in TRADING_METHODS:
            return
        counter = self._counters.get(key)
        if counter is None:
            tier = self.config.tier
            counter = self._counters[key] = DecayingCounter(tier.rest_max, tier.rest_decay)
        cost = Decimal(self.config.history_call_cost if method in HISTORY_METHODS else 1)
        if not counter.try_add(cost):
            raise KrakenError(E.API_RATE_LIMIT)

    def _pair(self, params: Params, *, required: bool = True) -> Instrument | None:
        name = _text(params, "pair")
        if not name:
            if required:
                raise KrakenError(E.INVALID_ARGUMENTS)
            return None
        inst = self.registry.by_rest_name(name)
        if inst is None:
            raise KrakenError(E.UNKNOWN_PAIR)
        return inst

    def _pairs(self, params: Params) -> list[Instrument]:
        names = _list(params, "pair")
        if not names:
            return list(self.registry)
        found = []
        for name in names:
            inst = self.registry.by_rest_name(name)
            if inst is None:
                raise KrakenError(E.UNKNOWN_PAIR)
            found.append(inst)
        return found

    # -- public ---------------------------------------------------------------------------------------
    def time(self, params: Params) -> Any:
        now = self.clock.now_ns()
        return {"unixtime": now // NS, "rfc1123": rfc1123(now)}

    def system_status(self, params: Params) -> Any:
        return {"status": self.exchange.status, "timestamp": rfc3339_seconds(self.clock.now_ns())}

    def assets(self, params: Params) -> Any:
        names = _list(params, "asset")
        assets = self.registry.assets
        if names:
            assets = []
            for name in names:
                asset = self.registry.asset_by_any_name(name)
                if asset is None:
                    raise KrakenError("EQuery:Unknown asset")
                assets.append(asset)
        return {
            a.rest_id: {
                "aclass": "currency",
                "altname": a.altname,
                "decimals": a.decimals,
                "display_decimals": a.display_decimals,
                "status": "enabled",
            }
            for a in assets
        }

    def _pair_status(self) -> str:
        return self.exchange.status

    def asset_pairs(self, params: Params) -> Any:
        taker_pct = num_text(str((self.config.taker_fee * 100).normalize()))
        maker_pct = num_text(str((self.config.maker_fee * 100).normalize()))
        return {
            i.rest_key: {
                "altname": i.altname,
                "wsname": i.wsname,
                "aclass_base": "currency",
                "base": i.base.rest_id,
                "aclass_quote": "currency",
                "quote": i.quote.rest_id,
                "lot": "unit",
                "cost_decimals": i.cost_decimals,
                "pair_decimals": i.price_decimals,
                "lot_decimals": i.lot_decimals,
                "lot_multiplier": 1,
                "leverage_buy": [],
                "leverage_sell": [],
                "fees": [[0, taker_pct]],
                "fees_maker": [[0, maker_pct]],
                "fee_volume_currency": "ZUSD",
                "margin_call": 80,
                "margin_stop": 40,
                "ordermin": str(i.ordermin),
                "costmin": str(i.costmin),
                "tick_size": str(i.tick_size),
                "status": self._pair_status(),
            }
            for i in self._pairs(params)
        }

    def ticker(self, params: Params) -> Any:
        result = {}
        for inst in self._pairs(params):
            book = self.exchange.books[inst.symbol]
            md = self.exchange.marketdata[inst.symbol]
            p, lot = inst.cost_decimals, inst.lot_decimals

            def level(price: Decimal | None, qty: Decimal, p: int = p) -> list[str]:
                if price is None:
                    return ["0", "0", "0.000"]
                return [fixed(price, p), str(max(1, int(qty))), fixed(qty, 3)]

            bid, ask = book.bids.best(), book.asks.best()
            last = md.last_price
            result[inst.rest_key] = {
                "a": level(ask, book.asks.qty[ask] if ask is not None else Decimal(0)),
                "b": level(bid, book.bids.qty[bid] if bid is not None else Decimal(0)),
                "c": [fixed(last, p), fixed(md.last_qty, lot)],
                "v": [fixed(md.today.volume, lot), fixed(md.rolling.volume, lot)],
                "p": [fixed(md.today.vwap(last), p), fixed(md.rolling.vwap(last), p)],
                "t": [md.today.count, md.rolling.count],
                "l": [fixed(md.today.low(last), p), fixed(md.rolling.low(last), p)],
                "h": [fixed(md.today.high(last), p), fixed(md.rolling.high(last), p)],
                "o": fixed(md.today_open, p),
            }
        return result

    def ohlc(self, params: Params) -> Any:
        inst = self._pair(params)
        assert inst is not None
        interval = _int(params, "interval", 1)
        if interval not in OHLC_INTERVALS:
            raise KrakenError(E.INVALID_ARGUMENTS)
        since = _time_bound(params, "since")
        candles = list(self.exchange.marketdata[inst.symbol].candles[interval])
        pd, lot = inst.price_decimals, inst.lot_decimals
        rows = [
            [
                c.begin_ns // NS,
                fixed(c.open, pd),
                fixed(c.high, pd),
                fixed(c.low, pd),
                fixed(c.close, pd),
                fixed(c.vwap, pd),
                fixed(c.volume, lot),
                c.count,
            ]
            for c in candles
            if since is None or c.begin_ns // NS > since
        ]
        committed = candles[-2].begin_ns // NS if len(candles) >= 2 else (candles[-1].begin_ns // NS if candles else 0)
        return {inst.rest_key: rows, "last": committed}

    def depth(self, params: Params) -> Any:
        inst = self._pair(params)
        assert inst is not None
        count = _int(params, "count", 100) or 100
        count = max(1, min(count, MAX_DEPTH_COUNT))
        book = self.exchange.books[inst.symbol]
        p, lot = inst.cost_decimals, inst.lot_decimals

        def rows(side: Any) -> list[list[Any]]:
            out = []
            for price, qty in side.top(count):
                newest = max(o.opened_ns for o in side.levels[price])
                out.append([fixed(price, p), fixed(qty, lot), newest // NS])
            return out

        return {inst.rest_key: {"asks": rows(book.asks), "bids": rows(book.bids)}}

    def trades(self, params: Params) -> Any:
        inst = self._pair(params)
        assert inst is not None
        since = _int(params, "since")
        count = _int(params, "count", MAX_TRADES_COUNT) or MAX_TRADES_COUNT
        count = max(1, min(count, MAX_TRADES_COUNT))
        md = self.exchange.marketdata[inst.symbol]
        # Kraken's cursor is a nanosecond timestamp; small values are taken as seconds. With it: the trades after
        # it, oldest first, ``last`` being the cursor of the next page; without it: the most recent trades.
        since_ns = (since * NS if since < 10**12 else since) if since is not None else None
        archive = md.archive
        if archive is not None:  # a scenario's history and every trade since
            indices = archive.after(since_ns, count) if since_ns is not None else archive.latest(count)
            last_ns = (
                archive.ts[indices[-1]] if indices else (since_ns if since_ns is not None else self.clock.now_ns())
            )
            return {inst.rest_key: archive.rest_rows(indices, inst.cost_decimals), "last": str(last_ns)}
        tape = [t for t in md.tape if t.ts_ns > since_ns][:count] if since_ns is not None else list(md.tape)[-count:]
        p, lot = inst.cost_decimals, inst.lot_decimals
        rows = [
            [
                fixed(t.price, p),
                fixed(t.qty, lot),
                unix_token(t.ts_ns, 4),
                "b" if t.side is Side.BUY else "s",
                "m" if t.ord_type == "market" else "l",
                "",
                t.trade_id,
            ]
            for t in tape
        ]
        last = tape[-1].ts_ns if tape else (since_ns if since_ns is not None else self.clock.now_ns())
        return {inst.rest_key: rows, "last": str(last)}

    # -- private: account -----------------------------------------------------------------------------
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

    def order_info(self, order: Order, with_trades: bool) -> dict[str, Any]:
        inst = order.instrument
        cd = inst.cost_decimals
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
                    "price": fixed(order.limit_price or Decimal(0), inst.price_decimals),
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
                "stopprice": fixed(Decimal(0), cd),
                "limitprice": fixed(Decimal(0), cd),
                "misc": "partial" if order.filled and order.is_open else "",
                "oflags": "fciq,post" if order.post_only else "fciq",
                "timeinforce": order.time_in_force.value,
            }
        )
        if with_trades and order.trade_txids:
            info["trades"] = list(order.trade_txids)
        if not order.is_open:
            info["reason"] = order.reason
            info["closetm"] = unix_token(order.closed_ns or order.opened_ns)
        return info

    def _account_orders(self, params: Params, *, open_: bool) -> list[Order]:
        userref = _int(params, "userref")
        cl_ord_id = _text(params, "cl_ord_id")
        return [
            o
            for o in self.exchange.orders.values()
            if o.is_open == open_
            and (userref is None or o.userref == userref)
            and (cl_ord_id is None or o.cl_ord_id == cl_ord_id)
        ]

    def open_orders(self, params: Params) -> Any:
        with_trades = _bool(params, "trades")
        return {"open": {o.order_id: self.order_info(o, with_trades) for o in self._account_orders(params, open_=True)}}

    @staticmethod
    def _page(items: list[Any], params: Params) -> list[Any]:
        ofs = _int(params, "ofs", 0) or 0
        if ofs < 0:
            raise KrakenError(E.INVALID_ARGUMENTS)
        return items[ofs : ofs + PAGE_SIZE]

    def closed_orders(self, params: Params) -> Any:
        with_trades = _bool(params, "trades")
        start, end = _time_bound(params, "start"), _time_bound(params, "end")
        closetime = _text(params, "closetime") or "both"
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
        if not _bool(params, "without_count"):
            result["count"] = len(orders)
        return result

    def query_orders(self, params: Params) -> Any:
        txids = _list(params, "txid")
        if not txids or len(txids) > PAGE_SIZE:
            raise KrakenError(E.INVALID_ARGUMENTS)
        with_trades = _bool(params, "trades")
        userref = _int(params, "userref")
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
        start, end = _time_bound(params, "start"), _time_bound(params, "end")
        kind = _text(params, "type") or "all"
        if kind not in ("all", "any position", "closed position", "closing position", "no position"):
            raise KrakenError(E.INVALID_ARGUMENTS)
        with_ledgers = _bool(params, "ledgers")
        trades = [
            t
            for t in self.exchange.account.trades
            if (start is None or Decimal(t.ts_ns) / NS > start) and (end is None or Decimal(t.ts_ns) / NS <= end)
        ]
        trades.reverse()
        result: dict[str, Any] = {
            "trades": {t.txid: self.trade_info(t, with_ledgers) for t in self._page(trades, params)}
        }
        if not _bool(params, "without_count"):
            result["count"] = len(trades)
        return result

    def query_trades(self, params: Params) -> Any:
        txids = _list(params, "txid")
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
        start, end = _time_bound(params, "start"), _time_bound(params, "end")
        assets = _list(params, "asset")
        wanted = {a.code for a in (self.registry.asset_by_any_name(n) for n in assets) if a is not None}
        if assets and assets != ["all"] and not wanted:
            raise KrakenError("EQuery:Unknown asset")
        kind = _text(params, "type") or "all"
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
        if not _bool(params, "without_count"):
            result["count"] = len(entries)
        return result

    def query_ledgers(self, params: Params) -> Any:
        ids = _list(params, "id")
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

    # -- private: trading -----------------------------------------------------------------------------
    def _order_request(self, params: Params) -> OrderRequest:
        inst = self._pair(params)
        assert inst is not None
        try:
            side = Side(_text(params, "type") or "")
            order_type = OrderType(_text(params, "ordertype") or "")
            tif = TimeInForce((_text(params, "timeinforce") or "GTC").upper())
        except ValueError as exc:
            raise KrakenError(E.INVALID_ARGUMENTS) from exc
        qty = _decimal(params, "volume")
        if qty is None:
            raise KrakenError(E.INVALID_ARGUMENTS)
        price = _decimal(params, "price") if order_type is OrderType.LIMIT else None
        flags = set(_list(params, "oflags"))
        if flags - {"post", "fciq", "nompp"}:
            raise KrakenError(E.INVALID_ARGUMENTS)  # fcib / viqc are not simulated
        userref = _int(params, "userref", 0) or 0
        cl_ord_id = _text(params, "cl_ord_id")
        if cl_ord_id is not None and (params.get("userref") not in (None, "") or not 0 < len(cl_ord_id) <= 36):
            raise KrakenError(E.INVALID_ARGUMENTS)
        if not -(2**31) <= userref < 2**31:
            raise KrakenError(E.INVALID_ARGUMENTS)
        return OrderRequest(
            instrument=inst,
            side=side,
            order_type=order_type,
            qty=qty,
            limit_price=price,
            time_in_force=tif,
            post_only="post" in flags,
            cl_ord_id=cl_ord_id,
            userref=userref,
            validate=_bool(params, "validate"),
        )

    def add_order(self, params: Params) -> Any:
        req = self._order_request(params)
        order = self.exchange.place_order(req, source="api")
        result: dict[str, Any] = {"descr": {"order": order_description(order)}}
        if not req.validate:
            result["txid"] = [order.order_id]
        return result

    def cancel_order(self, params: Params) -> Any:
        txid = _text(params, "txid")
        cl_ord_id = _text(params, "cl_ord_id")
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
        timeout = _int(params, "timeout")
        assert timeout is not None
        return switch_answer(*self.exchange.cancel_all_after(timeout))

    def websockets_token(self, params: Params) -> Any:
        token = self.ids.ws_token()
        self.tokens.issue(token)
        return {"token": token, "expires": int(self.config.token_ttl)}
