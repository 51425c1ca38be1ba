"""WebSocket v2 message shapes (PROTOCOL.md §2), key order as in the recorded messages.

Numbers are raw tokens at fixed precision (``wire.num``): prices at the pair's price precision, quantities at
its qty precision, costs at its cost precision, balances and fees at the asset's precision.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kraken_sim.accounts import AccountTrade, LedgerEntry
from kraken_sim.engine import Order, OrderBook, OrderType
from kraken_sim.exchange import ExecEvent
from kraken_sim.feeds import Level
from kraken_sim.instruments import Asset, Instrument, InstrumentRegistry
from kraken_sim.marketdata import Candle, PublicTrade, SymbolMarketData
from kraken_sim.wire import num, num_text, rfc3339

ZERO = Decimal(0)
STATUS_VERSION = "2.0.10"
OHLC_WARNINGS = ["timestamp is deprecated, use interval_begin"]
INSTRUMENT_WARNINGS = ["tick_size is deprecated, use price_increment"]
HEARTBEAT = '{"channel":"heartbeat"}'

PRIVATE_ON_PUBLIC = "Private data and trading are unavailable on this endpoint. Try ws-auth.kraken.com"
PUBLIC_ON_PRIVATE = "Public market data subscriptions are unavailable on this endpoint. Try ws.kraken.com"
INVALID_SESSION = "ESession:Invalid session"
NOT_FOUND = "Subscription Not Found"
# Constructed (no recording of this case was available).
ALREADY_SUBSCRIBED = "Already subscribed"

PUBLIC_CHANNELS = ("book", "ticker", "trade", "ohlc", "instrument")
PRIVATE_CHANNELS = ("executions", "balances")


def ack(method: str, req_id: Any, result: dict[str, Any], time_in: int, time_out: int) -> dict[str, Any]:
    msg: dict[str, Any] = {"method": method}
    if req_id is not None:
        msg["req_id"] = req_id
    msg["result"] = result
    msg["success"] = True
    msg["time_in"] = rfc3339(time_in)
    msg["time_out"] = rfc3339(time_out)
    return msg


def error(
    method: str,
    text: str,
    req_id: Any,
    time_in: int,
    time_out: int,
    *,
    symbol: str | None = None,
    channel: str | None = None,
    status_error: bool = False,
) -> dict[str, Any]:
    msg: dict[str, Any] = {}
    if channel is not None:
        msg["channel"] = channel
    msg["error"] = text
    msg["method"] = method
    if req_id is not None:
        msg["req_id"] = req_id
    if status_error:
        msg["status"] = "error"
    msg["success"] = False
    if symbol is not None:
        msg["symbol"] = symbol
    msg["time_in"] = rfc3339(time_in)
    msg["time_out"] = rfc3339(time_out)
    return msg


def status(system: str, connection_id: int) -> dict[str, Any]:
    return {
        "channel": "status",
        "type": "update",
        "data": [
            {
                "version": STATUS_VERSION,
                "system": system,
                "api_version": "v2",
                "connection_id": connection_id,
                "upcoming_maintenance": [],
                "emergency": [],
            }
        ],
    }


def pong(req_id: Any, time_in: int, time_out: int) -> dict[str, Any]:
    msg: dict[str, Any] = {"method": "pong"}
    if req_id is not None:
        msg["req_id"] = req_id
    msg["time_in"] = rfc3339(time_in)
    msg["time_out"] = rfc3339(time_out)
    return msg


# -- public channels -------------------------------------------------------------------------------------
def _levels(inst: Instrument, levels: list[Level]) -> list[dict[str, Any]]:
    return [{"price": num(p, inst.price_decimals), "qty": num(q, inst.lot_decimals)} for p, q in levels]


def book_snapshot(inst: Instrument, bids: list[Level], asks: list[Level], checksum: int) -> dict[str, Any]:
    return {
        "channel": "book",
        "type": "snapshot",
        "data": [
            {
                "symbol": inst.symbol,
                "bids": _levels(inst, bids),
                "asks": _levels(inst, asks),
                "checksum": checksum,
            }
        ],
    }


def book_update(inst: Instrument, bids: list[Level], asks: list[Level], checksum: int, ts_ns: int) -> dict[str, Any]:
    return {
        "channel": "book",
        "type": "update",
        "data": [
            {
                "symbol": inst.symbol,
                "bids": _levels(inst, bids),
                "asks": _levels(inst, asks),
                "checksum": checksum,
                "timestamp": rfc3339(ts_ns),
            }
        ],
    }


def trades(inst: Instrument, items: list[PublicTrade], kind: str) -> dict[str, Any]:
    return {
        "channel": "trade",
        "type": kind,
        "data": [
            {
                "symbol": inst.symbol,
                "side": t.side.value,
                "price": num(t.price, inst.price_decimals),
                "qty": num(t.qty, inst.lot_decimals),
                "ord_type": t.ord_type,
                "trade_id": t.trade_id,
                "timestamp": rfc3339(t.ts_ns),
            }
            for t in items
        ],
    }


def ticker(inst: Instrument, book: OrderBook, md: SymbolMarketData, kind: str, ts_ns: int) -> dict[str, Any]:
    bid, ask = book.bids.best(), book.asks.best()
    change, pct = md.change()
    last = md.last_price
    return {
        "channel": "ticker",
        "type": kind,
        "data": [
            {
                "symbol": inst.symbol,
                "bid": num(bid if bid is not None else ZERO, inst.price_decimals),
                "bid_qty": num(book.bids.qty[bid] if bid is not None else ZERO, inst.lot_decimals),
                "ask": num(ask if ask is not None else ZERO, inst.price_decimals),
                "ask_qty": num(book.asks.qty[ask] if ask is not None else ZERO, inst.lot_decimals),
                "last": num(last, inst.price_decimals),
                "volume": num(md.rolling.volume, inst.lot_decimals),
                "vwap": num(md.rolling.vwap(last), inst.price_decimals),
                "low": num(md.rolling.low(last), inst.price_decimals),
                "high": num(md.rolling.high(last), inst.price_decimals),
                "change": num(change, inst.price_decimals),
                "change_pct": num(pct, 2),
                "trades": md.rolling.count,
                "timestamp": rfc3339(ts_ns),
            }
        ],
    }


def ohlc(inst: Instrument, candles: list[Candle], kind: str, ts_ns: int) -> dict[str, Any]:
    return {
        "channel": "ohlc",
        "type": kind,
        "timestamp": rfc3339(ts_ns, 9),
        "data": [
            {
                "symbol": inst.symbol,
                "open": num(c.open, inst.price_decimals),
                "high": num(c.high, inst.price_decimals),
                "low": num(c.low, inst.price_decimals),
                "close": num(c.close, inst.price_decimals),
                "trades": c.count,
                "volume": num(c.volume, inst.lot_decimals),
                "vwap": num(c.vwap, inst.price_decimals),
                "interval_begin": rfc3339(c.begin_ns, 9),
                "interval": c.interval,
                "timestamp": rfc3339(c.end_ns),
            }
            for c in candles
        ],
    }


def _asset_entry(asset: Asset) -> dict[str, Any]:
    return {
        "id": asset.code,
        "status": "enabled",
        "precision": asset.decimals,
        "precision_display": asset.display_decimals,
        "borrowable": False,
        "collateral_value": num_text("0.0"),
        "margin_rate": num_text("0.0"),
    }


def _pair_entry(inst: Instrument, pair_status: str) -> dict[str, Any]:
    return {
        "symbol": inst.symbol,
        "base": inst.base.code,
        "quote": inst.quote.code,
        "status": pair_status,
        "qty_precision": inst.lot_decimals,
        "qty_increment": num(inst.lot_step, inst.lot_decimals),
        "price_precision": inst.price_decimals,
        "cost_precision": inst.cost_decimals,
        "marginable": False,
        "has_index": True,
        "cost_min": num(inst.costmin, 1),
        "tick_size": num(inst.tick_size, inst.price_decimals),
        "price_increment": num(inst.tick_size, inst.price_decimals),
        "qty_min": num(inst.ordermin, inst.lot_decimals),
    }


def instrument(registry: InstrumentRegistry, pair_status: str, kind: str) -> dict[str, Any]:
    return {
        "channel": "instrument",
        "type": kind,
        "data": {
            "assets": [_asset_entry(a) for a in registry.assets],
            "pairs": [_pair_entry(i, pair_status) for i in registry],
        },
    }


# -- executions --------------------------------------------------------------------------------------------
def _ids(order: Order, entry: dict[str, Any]) -> None:
    entry["order_id"] = order.order_id
    if order.cl_ord_id is not None:
        entry["cl_ord_id"] = order.cl_ord_id
    entry["order_userref"] = order.userref


def _fee_num(inst: Instrument, fee: Decimal) -> Any:
    return num(fee, inst.quote.decimals)


def _order_details(order: Order, entry: dict[str, Any]) -> None:
    inst = order.instrument
    entry["symbol"] = inst.symbol
    entry["order_qty"] = num(order.qty, inst.lot_decimals)
    entry["time_in_force"] = order.time_in_force.value
    entry["side"] = order.side.value
    entry["order_type"] = order.order_type.value
    if order.order_type is OrderType.LIMIT and order.limit_price is not None:
        entry["limit_price_type"] = "static"
        entry["limit_price"] = num(order.limit_price, inst.price_decimals)
    if order.order_type.triggered:
        entry["triggers"] = _triggers(order)
    entry["post_only"] = order.post_only
    entry["fee_ccy_pref"] = "fciq"


def _triggers(order: Order, ts_ns: int | None = None) -> dict[str, Any]:
    """The ``triggers`` object of a stop-loss / take-profit order (``reference``, ``price``, ``price_type``,
    ``status``; once triggered also ``last_price``, the reference price that reached it, and ``timestamp``)."""
    inst = order.instrument
    assert order.trigger_price is not None
    entry: dict[str, Any] = {
        "reference": order.trigger_reference,
        "price": num(order.trigger_price, inst.price_decimals),
        "price_type": "static",
        "status": "triggered" if order.is_triggered else "untriggered",
    }
    if order.trigger_last_price is not None and order.triggered_ns is not None:
        entry["last_price"] = num(order.trigger_last_price, inst.price_decimals)
        entry["timestamp"] = rfc3339(order.triggered_ns)
    return entry


def execution(event: ExecEvent) -> dict[str, Any]:
    """One ``executions`` data entry. ``new``, ``filled`` and ``canceled`` are sparse, like the real ones."""
    order = event.order
    inst = order.instrument
    ts = rfc3339(event.ts_ns)
    entry: dict[str, Any] = {}
    kind = event.exec_type
    if kind == "pending_new":
        _ids(order, entry)
        _order_details(order, entry)
        entry["cum_cost"] = num(event.cum_cost, inst.cost_decimals)
        entry["exec_type"] = kind
        entry["order_status"] = event.order_status
        entry["fee_usd_equiv"] = _fee_num(inst, event.fee_total)
        entry["timestamp"] = ts
    elif kind in ("new", "status"):
        entry = {"timestamp": ts, "order_status": event.order_status, "exec_type": kind}
        entry["order_userref"] = order.userref
        if order.cl_ord_id is not None:
            entry["cl_ord_id"] = order.cl_ord_id
        entry["order_id"] = order.order_id
        if kind == "status":  # a stop-loss / take-profit order's trigger was reached: it executes as a market order
            entry["order_type"] = order.execution_type
            entry["triggers"] = _triggers(order)
    elif kind == "trade":
        trade = event.trade
        assert trade is not None
        _ids(order, entry)
        entry["exec_id"] = trade.txid
        entry["exec_type"] = kind
        entry["trade_id"] = trade.trade_id
        entry["symbol"] = inst.symbol
        entry["side"] = order.side.value
        entry["last_qty"] = num(trade.qty, inst.lot_decimals)
        entry["last_price"] = num(trade.price, inst.price_decimals)
        entry["liquidity_ind"] = "m" if trade.maker else "t"
        entry["cost"] = num(trade.cost, inst.cost_decimals)
        entry["order_type"] = order.execution_type
        entry["timestamp"] = ts
        entry["order_status"] = event.order_status
        entry["cum_qty"] = num(event.cum_qty, inst.lot_decimals)
        entry["cum_cost"] = num(event.cum_cost, inst.cost_decimals)
        entry["avg_price"] = num(event.avg_price, inst.cost_decimals)
        entry["fee_usd_equiv"] = _fee_num(inst, trade.fee)
        entry["fees"] = [{"asset": inst.quote.code, "qty": _fee_num(inst, trade.fee)}]
    elif kind in ("filled", "canceled"):
        entry = {"timestamp": ts, "order_status": event.order_status, "exec_type": kind}
        entry["cum_qty"] = num(event.cum_qty, inst.lot_decimals)
        entry["cum_cost"] = num(event.cum_cost, inst.cost_decimals)
        entry["fee_usd_equiv"] = _fee_num(inst, event.fee_total)
        entry["avg_price"] = num(event.avg_price, inst.cost_decimals)
        entry["order_userref"] = order.userref
        if order.cl_ord_id is not None:
            entry["cl_ord_id"] = order.cl_ord_id
        if kind == "canceled":
            entry["cancel_reason"] = event.reason
            entry["reason"] = event.reason
        entry["order_id"] = order.order_id
    else:
        raise ValueError(f"unknown exec_type {kind}")
    return entry


def open_order_snapshot(order: Order, ts_ns: int) -> dict[str, Any]:
    """An open order in the ``executions`` snapshot (``snap_orders``). Shape constructed from the fields the
    docs list: no recorded snapshot of open orders was available."""
    inst = order.instrument
    entry: dict[str, Any] = {}
    _ids(order, entry)
    _order_details(order, entry)
    entry["exec_type"] = "new"
    entry["order_status"] = order.ws_status
    entry["cum_qty"] = num(order.filled, inst.lot_decimals)
    entry["cum_cost"] = num(order.cost, inst.cost_decimals)
    entry["avg_price"] = num(order.avg_price, inst.cost_decimals)
    entry["fee_usd_equiv"] = _fee_num(inst, order.fee)
    entry["timestamp"] = rfc3339(order.opened_ns)
    return entry


def trade_snapshot(trade: AccountTrade) -> dict[str, Any]:
    """A past fill in the ``executions`` snapshot (``snap_trades``), as in the recorded snapshot."""
    order = trade.order
    inst = order.instrument
    entry: dict[str, Any] = {}
    _ids(order, entry)
    entry["exec_id"] = trade.txid
    entry["exec_type"] = "trade"
    entry["trade_id"] = trade.trade_id
    entry["symbol"] = inst.symbol
    entry["side"] = order.side.value
    entry["last_qty"] = num(trade.qty, inst.lot_decimals)
    entry["last_price"] = num(trade.price, inst.price_decimals)
    entry["liquidity_ind"] = "m" if trade.maker else "t"
    entry["cost"] = num(trade.cost, inst.cost_decimals)
    entry["order_status"] = order.ws_status
    entry["order_type"] = order.execution_type
    entry["timestamp"] = rfc3339(trade.ts_ns)
    entry["fee_usd_equiv"] = _fee_num(inst, trade.fee)
    entry["fees"] = [{"asset": inst.quote.code, "qty": _fee_num(inst, trade.fee)}]
    return entry


# -- balances ----------------------------------------------------------------------------------------------
def balance_snapshot_entry(asset: Asset, balance: Decimal) -> dict[str, Any]:
    value = num(balance, asset.decimals)
    return {
        "asset": asset.code,
        "asset_class": "currency",
        "balance": value,
        "wallets": [{"type": "spot", "id": "main", "balance": value}],
    }


def ledger_entry(entry: LedgerEntry) -> dict[str, Any]:
    asset = entry.asset
    return {
        "ledger_id": entry.ledger_id,
        "ref_id": entry.ref_id,
        "timestamp": rfc3339(entry.ts_ns),
        "type": entry.type,
        "asset": asset.code,
        "asset_class": "currency",
        "category": entry.type,
        "wallet_type": "spot",
        "wallet_id": "main",
        "amount": num(entry.amount, asset.decimals),
        "fee": num(entry.fee, asset.decimals),
        "balance": num(entry.balance, asset.decimals),
    }
