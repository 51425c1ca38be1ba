"""What the exchange says, over REST: the client a run uses, every call timed and counted (`RestLedger`), and the
queries of a run — the window's orders and trades, the targeted look-ups made before an order is called missing,
the balances with Kraken's asset names mapped to ours.

Nothing here writes to the database; `reconciliation.runs` decides what to ask and when.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TypeVar

from django.conf import settings

from ingest.kraken.assets import rest_asset_to_v2
from ingest.kraken.errors import KrakenError
from ingest.kraken.rest import KrakenRestClientSync
from ingest.kraken.rest_types import TradeInfo
from reconciliation.engine import ExchangeView
from trading.kraken_clients import kraken_credentials_configured, kraken_rest_client

logger = logging.getLogger(__name__)

T = TypeVar("T")

QUERY_ORDERS_BATCH = 50  # ids per QueryOrders request
QUERY_TRADES_BATCH = 20  # ids per QueryTrades request
_UNKNOWN_ORDER_ERRORS = ("Invalid order", "Unknown order")


def exchange_client() -> KrakenRestClientSync:
    """The REST client reconciliation uses, from the KRAKEN_* settings (`trading.kraken_clients`: the nonce the
    other processes on this key share); its counter model is the configured tier, so a run waits rather than
    hitting Kraken's rate limit."""
    return kraken_rest_client(
        private=kraken_credentials_configured(),
        tier=str(settings.GALFRIDAY_RECONCILIATION_TIER),
        history_cost=int(settings.GALFRIDAY_RECONCILIATION_HISTORY_COST),
    )


class RestLedger:
    """Times every REST step (waits on the counter model included) and counts calls and their counter cost."""

    def __init__(self, client: KrakenRestClientSync) -> None:
        self.client = client
        self.seconds = 0.0
        self.calls = 0
        self.cost = 0
        self.by_method: dict[str, int] = {}

    def _count(self, method: str, calls: int) -> None:
        self.calls += calls
        self.by_method[method] = self.by_method.get(method, 0) + calls
        self.cost += calls * self.client.client.rest_counter.cost_of(method)

    def call(self, method: str, fn: Callable[[], T]) -> T:
        before = self.client.client.stats["requests"]
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.seconds += time.perf_counter() - start
            made = self.client.client.stats["requests"] - before
            self._count(method, made if method != "Assets" else 0)

    def collect(self, method: str, iterator: Iterator[T]) -> list[T]:
        return self.call(method, lambda: list(iterator))


def exchange_view_fetch(rest: RestLedger, *, window_start: datetime) -> ExchangeView:
    """The open orders, and the orders closed and trades made since `window_start` (all pages)."""
    start_ts = int(window_start.timestamp())
    client = rest.client
    open_orders = rest.call("OpenOrders", lambda: client.open_orders(trades=True))
    closed = rest.collect("ClosedOrders", client.iter_closed_orders(start=start_ts, trades=True))
    trades = rest.collect("TradesHistory", client.iter_trades_history(start=start_ts))
    return ExchangeView(
        open_txids=set(open_orders),
        orders={**{o.txid: o for o in closed}, **open_orders},
        trades={t.txid: t for t in trades},
        window_start=window_start,
    )


def orders_by_client_id_fetch(rest: RestLedger, view: ExchangeView, *, client_order_id: str) -> None:
    """An order we never learned the exchange id of, looked up by our client order id (ClosedOrders)."""
    found = rest.call("ClosedOrders", partial(rest.client.closed_orders, cl_ord_id=client_order_id, trades=True))
    view.orders.update({o.txid: o for o in found.items})


def orders_query(rest: RestLedger, view: ExchangeView, *, txids: list[str]) -> None:
    """Targeted QueryOrders (batches of 50) into `view`; a batch the exchange refuses is retried one id at a time
    to find which ids it does not know (`view.unknown_txids`)."""
    client = rest.client
    for i in range(0, len(txids), QUERY_ORDERS_BATCH):
        batch = txids[i : i + QUERY_ORDERS_BATCH]
        try:
            view.orders.update(rest.call("QueryOrders", partial(client.query_orders, batch, trades=True)))
        except KrakenError as exc:
            if not _unknown_order(exc):
                raise
            for txid in batch:
                try:
                    view.orders.update(rest.call("QueryOrders", partial(client.query_orders, [txid], trades=True)))
                except KrakenError as single:
                    if not _unknown_order(single):
                        raise
                    view.unknown_txids.add(txid)


def _unknown_order(exc: KrakenError) -> bool:
    return any(text in str(exc) for text in _UNKNOWN_ORDER_ERRORS)


def trades_query(rest: RestLedger, view: ExchangeView, *, txids: list[str]) -> None:
    """Trades by id (QueryTrades, batches of 20) into `view`."""
    for i in range(0, len(txids), QUERY_TRADES_BATCH):
        batch = txids[i : i + QUERY_TRADES_BATCH]
        result = rest.call("QueryTrades", partial(rest.client.private, "QueryTrades", {"txid": batch}))
        for txid, row in dict(result).items():
            view.trades[txid] = TradeInfo.from_api(txid, row)


def balances_fetch(rest: RestLedger) -> dict[str, Decimal]:
    """Total balance per asset, in our (WebSocket v2) asset codes; Kraken's names that map to one code are summed."""
    balances_ex = rest.call("BalanceEx", rest.client.balance_ex)
    altnames = asset_altnames(rest)
    out: dict[str, Decimal] = {}
    for name, value in balances_ex.items():
        code = rest_asset_to_v2(name, altnames)
        out[code] = out.get(code, Decimal(0)) + value.balance
    return out


def asset_altnames(rest: RestLedger) -> dict[str, str]:
    """Kraken's asset name -> altname (public Assets); empty when unavailable (names are then mapped by rule)."""
    try:
        result = rest.call("Assets", lambda: rest.client.public("Assets"))
    except KrakenError:
        logger.warning("Assets unavailable: asset names mapped by rule")
        return {}
    return {name: str(info.get("altname", name)) for name, info in dict(result).items() if isinstance(info, dict)}
