"""The private host's account feeds (PROTOCOL.md §2.9-2.10): ``executions`` and ``balances`` subscriptions with
their snapshots, then one update per order event or ledger entry, each subscription with its own ``sequence``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from kraken_sim import messages as M
from kraken_sim.accounts import LedgerEntry
from kraken_sim.config import SimConfig
from kraken_sim.errors import INVALID_ARGUMENTS
from kraken_sim.exchange import Exchange, ExecEvent
from kraken_sim.faults import Faults
from kraken_sim.wire import dumps
from kraken_sim.ws.connection import Connection, Subscription, Subscriptions

log = logging.getLogger(__name__)

FILL_SNAPSHOT_SIZE = 50  # executions snapshot: the last 50 fills (``snap_trades``)


class PrivateFeeds:
    def __init__(self, subscriptions: Subscriptions, exchange: Exchange, faults: Faults, config: SimConfig) -> None:
        self.subscriptions = subscriptions
        self.exchange = exchange
        self.faults = faults
        self.config = config
        self._deferred: list[ExecEvent | LedgerEntry] | None = None

    # -- subscriptions ----------------------------------------------------------------------------------
    def subscribe(self, conn: Connection, channel: str, params: dict[str, Any], req_id: Any, time_in: int) -> None:
        if (channel, None) in conn.subs:
            self.subscriptions.error(conn, "subscribe", M.ALREADY_SUBSCRIBED, req_id, time_in, channel=channel)
            return
        sub = Subscription(channel, None, (channel,))
        if channel == "executions":
            snap_orders = params.get("snap_orders", True)
            snap_trades = params.get("snap_trades", False)
            if not isinstance(snap_orders, bool) or not isinstance(snap_trades, bool):
                self.subscriptions.error(conn, "subscribe", INVALID_ARGUMENTS, req_id, time_in, channel=channel)
                return
            result: dict[str, Any] = {
                "channel": channel,
                "maxratecount": int(self.config.tier.trade_threshold),
                "snap_orders": snap_orders,
                "snap_trades": snap_trades,
            }
            sub.params = {"snap_orders": snap_orders, "snap_trades": snap_trades}
        else:
            result = {"channel": channel, "snapshot": True}
        self.subscriptions.add(conn, sub)
        self.subscriptions.ack(conn, "subscribe", req_id, result, time_in)
        sub.sequence = 1
        account = self.exchange.account
        if channel == "executions":
            data: list[dict[str, Any]] = []
            if sub.params["snap_orders"]:
                now = self.exchange.clock.now_ns()
                data += [M.open_order_snapshot(o, now) for o in self.exchange.open_orders()]
            if sub.params["snap_trades"]:
                data += [M.trade_snapshot(t) for t in account.trades[-FILL_SNAPSHOT_SIZE:]]
            conn.send(dumps({"channel": "executions", "type": "snapshot", "data": data, "sequence": 1}))
        else:
            assets = self.exchange.registry.assets
            data = [M.balance_snapshot_entry(a, account.balances[a.code]) for a in assets]
            conn.send(dumps({"channel": "balances", "data": data, "type": "snapshot", "sequence": 1}))

    # -- faults on the sequence -------------------------------------------------------------------------
    def skip_sequence(self, channel: str, count: int) -> int:
        affected = 0
        for conn in self.subscriptions.members((channel,)):
            sub = conn.subs.get((channel, None))
            if sub is not None:
                sub.skip += count
                affected += 1
        return affected

    def clear_skips(self, connections: list[Connection]) -> None:
        for conn in connections:
            for sub in conn.subs.values():
                sub.skip = 0

    # -- the exchange's events --------------------------------------------------------------------------
    def execution(self, event: ExecEvent) -> None:
        if self._deferred is not None:
            self._deferred.append(event)
            return
        withheld, consume = self.faults.take_withhold()
        if withheld:
            log.info("fault: withholding %s for %s", event.exec_type, event.order.order_id)
            if consume:
                for conn in self.subscriptions.members(("executions",)):
                    sub = conn.subs.get(("executions", None))
                    if sub is not None:
                        sub.sequence += 1
            return
        self._send("executions", dumps([M.execution(event)]))

    def ledger(self, entry: LedgerEntry) -> None:
        if self._deferred is not None:
            self._deferred.append(entry)
            return
        self._send("balances", dumps([M.ledger_entry(entry)]))

    def _send(self, channel: str, data_json: str) -> None:
        for conn in self.subscriptions.members((channel,)):
            sub = conn.subs.get((channel, None))
            if sub is None:
                continue
            sub.sequence += 1 + sub.skip
            sub.skip = 0
            conn.send(f'{{"channel":"{channel}","type":"update","data":{data_json},"sequence":{sub.sequence}}}')

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold the events raised while a trading request runs, so that its response goes first."""
        outer = self._deferred
        self._deferred = [] if outer is None else outer
        try:
            yield
        finally:
            pending = self._deferred
            self._deferred = outer
            if outer is None and pending:
                for item in pending:
                    if isinstance(item, ExecEvent):
                        self.execution(item)
                    else:
                        self.ledger(item)
