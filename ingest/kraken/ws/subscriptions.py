"""Subscriptions are state the client owns: ``subscribe`` registers one on its endpoint, every (re)connection sends
every registered subscription again (Kraken does not restore them), ``unsubscribe`` removes it, and a resync
(unsubscribe, subscribe: a fresh snapshot) repairs a book or a private channel in place."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from ingest.kraken.errors import AuthenticationError, MalformedMessage, NotConnected, RequestTimeout, error_from_string
from ingest.kraken.messages import Ack
from ingest.kraken.ws.connection import Endpoint, Subscription
from ingest.kraken.ws.context import WsContext, wait_or_timeout
from ingest.kraken.ws.requests import Requests

__all__ = ["Subscriptions"]

logger = logging.getLogger(__name__)

# The subscription parameters that identify a subscription in an unsubscribe.
_IDENTIFYING = ("depth", "interval", "event_trigger")


class Subscriptions:
    """Subscribe, unsubscribe and resubscribe on any endpoint of a client."""

    def __init__(self, ctx: WsContext, requests: Requests) -> None:
        self.ctx = ctx
        self.requests = requests

    async def subscribe(
        self, endpoint: Endpoint, channel: str, symbol: str | None, params: dict[str, Any], timeout: float | None
    ) -> Subscription:
        """Register the subscription, send it when connected, and wait until it is confirmed (or refused)."""
        self.ctx.ensure_open()
        key = (channel, symbol)
        sub = endpoint.subs.get(key)
        if sub is None:
            sub = Subscription(channel, symbol, params)
            endpoint.subs[key] = sub
        elif sub.params != params:
            raise ValueError(f"{channel} {symbol or ''} is already subscribed with {sub.params}")
        endpoint.start()
        if endpoint.connected.is_set() and sub.session != endpoint.session:
            endpoint.spawn(self.send_subscribe(endpoint, sub), f"subscribe-{channel}")
        try:
            await wait_or_timeout(
                sub.ready.wait(), timeout or self.ctx.config.request_timeout_s, f"subscribe {channel}"
            )
        except RequestTimeout:
            logger.warning("kraken ws: subscribe %s %s not yet confirmed; it stays registered", channel, symbol)
            raise
        if self.ctx.closing:
            raise NotConnected("the client is closed")
        if sub.state == "failed":
            endpoint.subs.pop(key, None)
            assert sub.error is not None
            raise sub.error
        return sub

    async def send_subscribe(self, endpoint: Endpoint, sub: Subscription) -> None:
        """Send one subscribe on the current session; its answer updates ``sub``."""
        if sub.session == endpoint.session or not endpoint.connected.is_set():
            return
        sub.session = endpoint.session
        sub.state = "pending"
        sub.acked_at = None
        params: dict[str, Any] = {"channel": sub.channel, **sub.params}
        if sub.symbol is not None:
            params["symbol"] = [sub.symbol]
        if endpoint.private:
            params["token"] = endpoint.token
        on_ack = partial(self._acked, endpoint, sub)
        try:
            await self.requests.send(endpoint, "subscribe", params, self.ctx.config.request_timeout_s, on_ack=on_ack)
        except (NotConnected, RequestTimeout, MalformedMessage) as exc:
            # The reconnect path subscribes again; a caller waiting in subscribe() times out on its own.
            logger.warning("kraken ws %s: subscribe %s %s not confirmed: %s", endpoint.name, *sub.key, exc)
            if sub.session == endpoint.session and endpoint.connected.is_set() and sub.state == "pending":
                # No usable answer on a live connection: a subscription must not stay silently dead, so
                # start over on a new connection (which subscribes everything again).
                self.ctx.stats.forced_reconnects += 1
                endpoint.abort(f"subscribe {sub.channel} {sub.symbol or ''} not confirmed")

    def _acked(self, endpoint: Endpoint, sub: Subscription, ack: Ack) -> None:
        if ack.success:
            sub.acked_at = ack.time_in
            sub.state = "active"
            sub.error = None
            sub.confirmed_once = True
        else:
            text = ack.error or "subscribe refused without an error text"
            self.ctx.stats.subscribe_errors += 1
            logger.error("kraken ws %s: subscribe %s %s refused: %s", endpoint.name, sub.channel, sub.symbol, text)
            sub.error = error_from_string(text)
            if not sub.confirmed_once:
                sub.state = "failed"  # the caller of subscribe() gets the error; the subscription is dropped
                sub.ready.set()
                return
            # A resubscription refused: keep the subscription and retry on the next connection. A refused
            # token (ESession) needs a new connection with a fresh token, so force one.
            sub.state = "pending"
            sub.session = -1
            if endpoint.private and isinstance(sub.error, AuthenticationError):
                self.ctx.stats.forced_reconnects += 1
                endpoint.abort(f"resubscription refused ({text}): new connection, fresh token")
            return
        sub.ready.set()

    async def unsubscribe(self, endpoint: Endpoint, channel: str, symbol: str | None) -> None:
        """Forget the subscription and, when it is live on this connection, unsubscribe it."""
        sub = endpoint.subs.pop((channel, symbol), None)
        if sub is None or not endpoint.connected.is_set() or sub.session != endpoint.session:
            return
        ack = await self.requests.send(
            endpoint, "unsubscribe", self._unsubscribe_params(endpoint, sub), self.ctx.config.request_timeout_s
        )
        if ack.success is False:
            logger.warning("kraken ws: unsubscribe %s %s refused: %s", channel, symbol, ack.error)

    def resync(self, endpoint: Endpoint, sub: Subscription, what: str) -> None:
        """Unsubscribe and subscribe again for a fresh snapshot, as a task of the current session."""
        endpoint.spawn(self._resubscribe(endpoint, sub), f"resync-{what}")

    async def _resubscribe(self, endpoint: Endpoint, sub: Subscription) -> None:
        """Unsubscribe then subscribe again (a fresh snapshot), on the current session. If the exchange does
        not answer, the connection is dropped: the reconnect subscribes everything again."""
        try:
            await self._resubscribe_once(endpoint, sub)
        except NotConnected:
            return  # the connection is gone; the reconnect resubscribes
        except (RequestTimeout, MalformedMessage) as exc:
            self.ctx.stats.forced_reconnects += 1
            endpoint.abort(f"resync of {sub.channel} {sub.symbol or ''} failed: {exc}")

    async def _resubscribe_once(self, endpoint: Endpoint, sub: Subscription) -> None:
        params = self._unsubscribe_params(endpoint, sub)
        ack = await self.requests.send(endpoint, "unsubscribe", params, self.ctx.config.request_timeout_s)
        if ack.success is False:
            logger.warning("kraken ws: unsubscribe %s %s for resync refused: %s", *sub.key, ack.error)
        if endpoint.subs.get(sub.key) is not sub:
            return  # unsubscribed by the caller meanwhile
        sub.session = -1
        await self.send_subscribe(endpoint, sub)

    @staticmethod
    def _unsubscribe_params(endpoint: Endpoint, sub: Subscription) -> dict[str, Any]:
        params: dict[str, Any] = {
            "channel": sub.channel,
            **{k: v for k, v in sub.params.items() if k in _IDENTIFYING},
        }
        if sub.symbol is not None:
            params["symbol"] = [sub.symbol]
        if endpoint.private:
            params["token"] = endpoint.token
        return params

    def session_started(self, endpoint: Endpoint, reconnected: bool) -> None:
        """A new connection: subscribe everything again (a task of the session)."""
        endpoint.spawn(self._subscribe_all(endpoint, reconnected), "resubscribe")

    async def _subscribe_all(self, endpoint: Endpoint, reconnected: bool) -> None:
        for sub in list(endpoint.subs.values()):
            if sub.session == endpoint.session:
                continue
            sub.resyncing = False
            if endpoint.private and reconnected and sub.confirmed_once:
                sub.reconcile_on_snapshot = True
            endpoint.spawn(self.send_subscribe(endpoint, sub), f"subscribe-{sub.channel}")

    @staticmethod
    def session_ended(endpoint: Endpoint) -> None:
        """The connection is gone: every subscription waits for the next one."""
        for sub in endpoint.subs.values():
            sub.session = -1
            sub.resyncing = False
            if sub.state == "active":
                sub.state = "pending"
            if not sub.confirmed_once:
                continue
            sub.ready.clear()

    @staticmethod
    def release_waiters(endpoint: Endpoint) -> None:
        """At close: wake whoever waits for a subscription to become ready."""
        for sub in endpoint.subs.values():
            sub.ready.set()
