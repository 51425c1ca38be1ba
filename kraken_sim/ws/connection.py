"""One WebSocket connection: its send queue and writer task, heartbeats and the idle rule; and the subscription
registry shared by the public feeds, the private feeds and the hub (who is subscribed to what, publication to
every subscriber, the optional record of public messages, replies to one connection)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kraken_sim import messages as M
from kraken_sim.config import SimConfig
from kraken_sim.faults import Faults
from kraken_sim.wire import Clock, dumps

log = logging.getLogger(__name__)

Key = tuple[Any, ...]


@dataclass(slots=True)
class Subscription:
    channel: str
    symbol: str | None
    key: Key
    params: dict[str, Any] = field(default_factory=dict)
    sequence: int = 0
    skip: int = 0


class Connection:
    """A client's socket. The exchange (synchronous) only enqueues; the writer task sends, honouring silences."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        *,
        private: bool,
        connection_id: int,
        config: SimConfig,
        faults: Faults,
    ) -> None:
        self.ws = ws
        self.request = request
        self.private = private
        self.connection_id = connection_id
        self.config = config
        self.faults = faults
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.subs: dict[tuple[str, str | None], Subscription] = {}
        self.last_sent = time.monotonic()
        self.last_received = time.monotonic()
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []

    def send(self, text: str) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= self.config.ws_queue_limit:
            log.warning("connection %s: send queue full, dropping the slow consumer", self.connection_id)
            self.abort()
            return
        self.queue.put_nowait(text)

    def abort(self) -> None:
        """Cut the TCP connection without a close frame (what a network failure looks like)."""
        self.closed = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        self.queue.put_nowait(None)

    async def close(self, code: int, message: bytes) -> None:
        """Send a close frame (the socket may already be gone)."""
        self.closed = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=message)

    async def writer(self) -> None:
        while True:
            text = await self.queue.get()
            if text is None:
                return
            while True:
                left, mode = self.faults.silence_state(self)
                if left <= 0:
                    break
                if mode == "drop":
                    text = None
                    break
                await asyncio.sleep(left)
            if text is None or self.closed:
                continue
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                log.info("connection %s: send failed (%s), closing", self.connection_id, exc)
                self.closed = True
                return
            self.last_sent = time.monotonic()

    async def heartbeats(self) -> None:
        """Heartbeats when idle; and Kraken's idle rule: a connection that subscribes to nothing and sends
        nothing for about a minute is closed."""
        interval = self.config.heartbeat_interval
        idle_timeout = self.config.idle_timeout
        while not self.closed:
            await asyncio.sleep(min(interval, idle_timeout or interval) / 4)
            if idle_timeout and not self.subs and time.monotonic() - self.last_received > idle_timeout:
                log.info("connection %s: idle for %.0f s, closing", self.connection_id, idle_timeout)
                await self.close(1000, b"idle")
                return
            idle = time.monotonic() - self.last_sent
            if self.subs and idle >= interval and self.queue.empty() and self.faults.silence_state(self)[0] <= 0:
                self.send(M.HEARTBEAT)
                self.last_sent = time.monotonic()


class Subscriptions:
    """Who is subscribed to what (by key: ``("book", symbol, depth)``, ``("executions",)``…), publication to every
    subscriber of a key (serialised once), and replies to one connection. With ``record_messages`` every public
    message sent is kept in ``recorded``."""

    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.index: dict[Key, set[Connection]] = {}
        self.recorded: list[dict[str, Any]] = []

    def add(self, conn: Connection, sub: Subscription) -> None:
        conn.subs[(sub.channel, sub.symbol)] = sub
        self.index.setdefault(sub.key, set()).add(conn)

    def remove(self, conn: Connection, sub: Subscription) -> bool:
        """Forget ``sub``; True when it was the key's last subscriber."""
        conn.subs.pop((sub.channel, sub.symbol), None)
        members = self.index.get(sub.key)
        if members is None:
            return False
        members.discard(conn)
        if members:
            return False
        del self.index[sub.key]
        return True

    def members(self, key: Key) -> set[Connection]:
        return self.index.get(key, set())

    def has(self, key: Key) -> bool:
        return key in self.index

    def publish(self, key: Key, message: dict[str, Any]) -> None:
        if key in self.index:
            self.publish_text(key, dumps(message))

    def publish_text(self, key: Key, text: str) -> int:
        """Send an encoded message to the key's subscribers; how many connections it went to."""
        members = self.index.get(key)
        if not members:
            return 0
        if self.config.record_messages:
            self.recorded.append({"key": list(key), "message": text})
        for conn in members:
            conn.send(text)
        return len(members)

    def send(self, conn: Connection, message: dict[str, Any], record_key: Key | None = None) -> None:
        text = dumps(message)
        if record_key is not None and self.config.record_messages:
            self.recorded.append({"key": list(record_key), "connection_id": conn.connection_id, "message": text})
        conn.send(text)

    def ack(self, conn: Connection, method: str, req_id: Any, result: dict[str, Any], time_in: int) -> None:
        self.send(conn, M.ack(method, req_id, result, time_in, self.clock.now_ns()))

    def error(self, conn: Connection, method: str, text: str, req_id: Any, time_in: int, **kw: Any) -> None:
        self.send(conn, M.error(method, text, req_id, time_in, self.clock.now_ns(), **kw))
