"""What every part of the WebSocket client shares: its configuration and counters, whether it is closing, the
exchange's status, request ids, and the listeners with the one way of calling them (a failing listener is logged
and counted; an async one runs as a task)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ingest.kraken.errors import NotConnected, RequestTimeout
from ingest.kraken.ws.reconnect import ConnectionAttemptLimiter
from ingest.kraken.ws.types import (
    ChannelListener,
    ExchangeStatus,
    StateListener,
    StatusListener,
    WsConfig,
    WsStats,
)

__all__ = ["WsContext", "register", "wait_or_timeout"]

logger = logging.getLogger(__name__)

_LOG_FIRST = 10  # per kind of malformed/unknown message: log the first N, then every _LOG_EVERY-th
_LOG_EVERY = 1000


class WsContext:
    """State shared by the endpoints, the requests, the subscriptions, the market data, the user stream and the
    trading requests of one client."""

    def __init__(
        self,
        config: WsConfig,
        *,
        attempt_limiter: ConnectionAttemptLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        policy = config.reconnect
        self.attempt_limiter = attempt_limiter or ConnectionAttemptLimiter(policy.max_attempts, policy.attempt_window_s)
        self.rng = rng or random.Random()
        self.stats = WsStats()
        self.exchange_status = ExchangeStatus.UNKNOWN
        self.closing = False
        self._req_ids = itertools.count(1)
        self.channel_listeners: dict[str, list[ChannelListener]] = {}
        self.status_listeners: list[StatusListener] = []
        self.state_listeners: list[StateListener] = []
        self.callback_tasks: set[asyncio.Task[Any]] = set()

    def next_req_id(self) -> int:
        return next(self._req_ids)

    def ensure_open(self) -> None:
        if self.closing:
            raise NotConnected("the client is closed")

    def emit(self, callbacks: Iterable[Callable[..., object]], *args: Any) -> None:
        """Call each listener; a sync one in place, an async one as a task. A failure is logged and counted."""
        for callback in callbacks:
            try:
                result = callback(*args)
            except Exception:  # a consumer's bug must not kill the connection: log and count
                self.stats.callback_errors += 1
                logger.exception("kraken ws: listener %r failed", callback)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self.callback_tasks.add(task)
                task.add_done_callback(self._callback_done)

    def emit_channel(self, channel: str, message: Any) -> None:
        listeners = self.channel_listeners.get(channel)
        if listeners:
            self.emit(listeners, message)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self.callback_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.stats.callback_errors += 1
            logger.error("kraken ws: async listener failed", exc_info=task.exception())

    def cancel_callbacks(self) -> None:
        for task in list(self.callback_tasks):
            task.cancel()

    def note_malformed(self, kind: str, detail: object, raw: str | bytes | None = None) -> None:
        """Count a malformed message and log it (first few of a kind, then every 1000th)."""
        self._note(self.stats.malformed, "malformed", kind, detail, raw)

    def note_unknown(self, kind: str, detail: object, raw: str | bytes | None = None) -> None:
        """Count an unknown message and log it (first few of a kind, then every 1000th)."""
        self._note(self.stats.unknown, "unknown", kind, detail, raw)

    @staticmethod
    def _note(table: dict[str, int], which: str, kind: str, detail: object, raw: str | bytes | None) -> None:
        count = table.get(kind, 0) + 1
        table[kind] = count
        if count <= _LOG_FIRST or count % _LOG_EVERY == 0:
            sample = raw[:300] if raw is not None else None
            logger.warning("kraken ws: %s message (%s #%d): %s; frame: %r", which, kind, count, detail, sample)


def register(listeners: list[Any], callback: Any) -> Callable[[], None]:
    """Add ``callback`` to ``listeners``; returns a function that removes it."""
    listeners.append(callback)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            listeners.remove(callback)

    return remove


async def wait_or_timeout(awaitable: Awaitable[Any], timeout: float, what: str) -> Any:
    """``awaitable``'s result, or :class:`RequestTimeout` after ``timeout`` seconds."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError as exc:
        raise RequestTimeout(f"{what}: not done within {timeout} s") from exc
