"""The private ``executions`` and ``balances`` channels (the user stream).

``sequence`` is tracked per subscription. A gap (next != last + 1) resubscribes the channel (a fresh snapshot) and
calls the ``on_gap(channel, expected, got)`` listeners and the ``on_reconcile`` listeners (reason ``"gap"``): the
caller should reconcile over REST. After a reconnect of the private endpoint the ``on_reconcile`` listeners are
called again (reason ``"reconnect"``) once each channel's new snapshot has arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, Protocol

from ingest.kraken.errors import MalformedMessage
from ingest.kraken.messages import ChannelMessage, Execution, parse_message
from ingest.kraken.ws.connection import Endpoint, Subscription
from ingest.kraken.ws.context import WsContext
from ingest.kraken.ws.subscriptions import Subscriptions
from ingest.kraken.ws.types import NS, GapListener, ReconcileListener, ReconcileRequest, TokenProvider

__all__ = ["UserStream", "token_provider_from"]

logger = logging.getLogger(__name__)


class _TokenResult(Protocol):
    @property
    def token(self) -> str: ...


class _TokenSource(Protocol):
    def websockets_token(self) -> Awaitable[_TokenResult]: ...


def token_provider_from(rest: _TokenSource) -> TokenProvider:
    """A token provider calling ``GetWebSocketsToken`` through a REST client (``KrakenRestClient``)."""

    async def provide() -> str:
        return (await rest.websockets_token()).token

    return provide


class UserStream:
    """The private endpoint's channels: sequence tracking, gaps, reconciliation requests."""

    def __init__(self, ctx: WsContext, endpoint: Endpoint, subscriptions: Subscriptions) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.subscriptions = subscriptions
        self.gap_listeners: list[GapListener] = []
        self.reconcile_listeners: list[ReconcileListener] = []

    async def subscribe_executions(
        self, *, snap_orders: bool, snap_trades: bool, order_status: bool, ratecounter: bool, timeout: float | None
    ) -> None:
        params = {
            "snap_orders": snap_orders,
            "snap_trades": snap_trades,
            "order_status": order_status,
            "ratecounter": ratecounter,
        }
        self.endpoint.require_token_provider()
        await self.subscriptions.subscribe(self.endpoint, "executions", None, params, timeout)

    async def subscribe_balances(self, *, snapshot: bool, timeout: float | None) -> None:
        self.endpoint.require_token_provider()
        await self.subscriptions.subscribe(self.endpoint, "balances", None, {"snapshot": snapshot}, timeout)

    def message(self, msg: dict[str, Any], received_ns: int) -> None:
        """An ``executions`` or ``balances`` message: sequence checked, then handed to the listeners."""
        ctx = self.ctx
        channel = msg["channel"]
        try:
            parsed = parse_message(msg)
        except MalformedMessage as exc:
            ctx.note_malformed(channel, exc)
            return
        assert isinstance(parsed, ChannelMessage)
        sub = self.endpoint.subs.get((channel, None))
        seq = parsed.sequence
        if sub is None:
            ctx.note_unknown(f"unsubscribed:{channel}", "message for a channel not subscribed")
        elif seq is None:
            ctx.note_malformed(f"{channel}:sequence", "private message without a sequence")
        elif parsed.type == "snapshot":
            if channel == "balances":
                # What the snapshot includes: every trade before the exchange took the subscription (the
                # ack's time_in; the ack comes before the snapshot). Balances use it to never count a trade twice.
                parsed = replace(parsed, as_of=sub.acked_at)
            sub.last_seq = seq
            sub.resyncing = False
            if sub.reconcile_on_snapshot:
                sub.reconcile_on_snapshot = False
                ctx.emit(self.reconcile_listeners, ReconcileRequest("reconnect", channel))
        else:
            last = sub.last_seq
            if last is not None and not sub.resyncing and seq != last + 1:
                self._gap(sub, last + 1, seq)
            sub.last_seq = seq
        if channel == "executions":
            self._execution_lag(parsed, received_ns)
        ctx.emit_channel(channel, parsed)

    def _execution_lag(self, parsed: ChannelMessage[Any], received_ns: int) -> None:
        for item in parsed.items:
            if parsed.type == "update" and isinstance(item, Execution) and item.timestamp is not None:
                self.ctx.stats.lag_of("executions").add(received_ns - int(item.timestamp.timestamp() * NS))

    def _gap(self, sub: Subscription, expected: int, got: int) -> None:
        ctx = self.ctx
        ctx.stats.gaps += 1
        logger.warning(
            "kraken ws: %s sequence gap: expected %d, got %d; resubscribing and asking for reconciliation",
            sub.channel,
            expected,
            got,
        )
        ctx.emit(self.gap_listeners, sub.channel, expected, got)
        ctx.emit(self.reconcile_listeners, ReconcileRequest("gap", sub.channel, expected, got))
        if self.endpoint.connected.is_set():
            sub.resyncing = True
            ctx.stats.private_resyncs += 1
            self.subscriptions.resync(self.endpoint, sub, sub.channel)
