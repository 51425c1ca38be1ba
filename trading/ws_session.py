"""One exchange session per worker process for live execution: a REST client and an authenticated private
WebSocket (Kraken WS v2), created lazily on first use, reused by every task the process runs, re-created after a
fork and closed at shutdown.

Why: a REST client per task would start its own event-loop thread every time; sending AddOrder over an already
open private socket costs one frame and its ack, where REST costs a signed HTTP round trip. DESIGN.md data flow
step 3: orders go over the WebSocket (`add_order` with `cl_ord_id`), REST is the fallback.

What lives here, Django-free apart from the settings `SessionConfig.from_settings` reads:

* `ExchangeSession.rest`: a `KrakenRestClientSync` (its own loop thread; thread-safe). Execution queries, REST
  AddOrder/CancelOrder fallbacks and the WebSocket token all go through it.
* `ExchangeSession.ws`: a `KrakenWsClient` (private endpoint only) on the session's own event-loop thread. Every
  (re)connection asks `GetWebSocketsToken` for a fresh token (Kraken: a token must be used within 15 minutes of
  issue and then lives as long as the connection that used it); the session subscribes to `executions`
  (sparse: no snapshot, transitions only) at once, which uses the token while it is fresh and keeps the
  authenticated connection open ("at least one private subscription"). The messages are not applied here: the
  ingest worker's own private connection applies executions (data flow step 3).
* The dead man's switch (`GALFRIDAY_DEADMAN_TIMEOUT_S`, 0 = off): while the session lives it sends Kraken's
  `cancel_all_orders_after` with that timeout every `GALFRIDAY_DEADMAN_REFRESH_S` (over the socket, REST
  `CancelAllOrdersAfter` when the socket is down). Every live worker process pushes the one account-wide trigger
  back; when none can (all workers dead, the machine cut off), Kraken cancels every open order after the timeout.
  A clean shutdown leaves it armed on purpose: with no worker left to manage orders, canceling them is the safe
  outcome (another worker's refresh keeps them).

Fork safety: a `KrakenRestClientSync` or event loop inherited through `fork` has no thread behind it in the child
(a call would wait forever), and a lock held by another thread at the moment of the fork stays held. So the
session remembers its pid; `os.register_at_fork` drops the inherited session and resets the module lock in the
child, and `session()` re-checks the pid anyway. The child never closes what it inherited (it belongs to the
parent). Celery prefork children therefore build their own session on their first task.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.metrics import ProcessCounters
from ingest.kraken.errors import AuthenticationError, NotConnected, OrderOutcomeUnknown, RequestTimeout
from ingest.kraken.ws.client import KrakenWsClient
from ingest.kraken.ws.types import AddOrderAck, CancelOrderAck, ConnectionState, WsConfig
from trading.kraken_clients import kraken_credentials, kraken_rest_client

logger = logging.getLogger(__name__)
counters = ProcessCounters("trading.ws_session")

T = TypeVar("T")
# How much longer than the client's own request timeout a blocked caller waits before it gives up on the
# session's loop (the loop is then stuck: the request's fate is unknown).
_LOOP_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything a session is built from; a session whose config no longer matches the settings is replaced
    (settings changed, e.g. another exchange URL)."""

    rest_url: str
    ws_auth_url: str
    api_key: str
    api_secret: str
    rest_timeout_s: float
    tier: str
    ws_enabled: bool
    order_timeout_s: float
    connect_wait_s: float
    deadman_timeout_s: int
    deadman_refresh_s: float

    @classmethod
    def from_settings(cls) -> SessionConfig:
        key, secret = kraken_credentials()
        deadman = settings.GALFRIDAY_DEADMAN_TIMEOUT_S
        if isinstance(deadman, bool) or int(deadman) != deadman or int(deadman) < 0:
            raise ImproperlyConfigured("GALFRIDAY_DEADMAN_TIMEOUT_S must be a whole number of seconds >= 0")
        deadman_s = int(deadman)
        refresh = float(settings.GALFRIDAY_DEADMAN_REFRESH_S) or max(1.0, deadman_s / 4)
        if deadman_s and refresh >= deadman_s:
            raise ImproperlyConfigured("GALFRIDAY_DEADMAN_REFRESH_S must be shorter than GALFRIDAY_DEADMAN_TIMEOUT_S")
        rest_timeout = float(settings.KRAKEN_TIMEOUT)
        return cls(
            rest_url=str(settings.KRAKEN_REST_URL),
            ws_auth_url=str(settings.KRAKEN_WS_AUTH_URL or ""),
            api_key=key,
            api_secret=secret,
            rest_timeout_s=rest_timeout,
            tier=str(settings.GALFRIDAY_KRAKEN_TIER).upper(),
            ws_enabled=bool(settings.GALFRIDAY_EXECUTION_WS) and bool(settings.KRAKEN_WS_AUTH_URL),
            order_timeout_s=rest_timeout,  # the ack wait, as REST's KRAKEN_TIMEOUT
            connect_wait_s=float(settings.GALFRIDAY_EXECUTION_WS_CONNECT_WAIT_S),
            deadman_timeout_s=deadman_s,
            deadman_refresh_s=refresh,
        )


class ExchangeSession:
    """A process's REST client, private WebSocket and dead man's switch (see the module docstring). Thread-safe:
    tasks may call it from any thread; the socket work runs on the session's loop thread."""

    def __init__(self, config: SessionConfig) -> None:
        self.pid = os.getpid()
        self.config = config
        self.rest = kraken_rest_client(timeout=config.rest_timeout_s, tier=config.tier)
        self.closed = False
        self.deadman_trigger: datetime | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ws: KrakenWsClient | None = None
        self._deadman: concurrent.futures.Future[None] | None = None
        if config.deadman_timeout_s:
            self._start_loop()
            self._deadman = asyncio.run_coroutine_threadsafe(self._deadman_loop(), self._require_loop())

    # --- lifecycle ------------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open, in the process that built it, with its threads alive."""
        if self.closed or self.pid != os.getpid() or not self.rest.usable:
            return False
        return self._thread is None or self._thread.is_alive()

    def _start_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="kraken-exec-session", daemon=True)
            self._thread.start()

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def close(self) -> None:
        """Close the socket, stop the loop thread, close the REST client. In a process that did not build the
        session (a forked child) it only forgets it: the threads and sockets are the parent's."""
        if self.closed:
            return
        self.closed = True
        if self.pid != os.getpid():
            return
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            if self._deadman is not None:
                self._deadman.cancel()
            ws = self._ws
            if ws is not None:
                try:
                    asyncio.run_coroutine_threadsafe(ws.close(), loop).result(5)
                except Exception:  # closing anyway: the loop is stopped below
                    logger.warning("execution session: websocket close failed", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()
        self.rest.close()

    # --- the private socket ---------------------------------------------------------------------------------

    def ws(self) -> KrakenWsClient | None:
        """The session's socket client, started on first use (the first caller waits up to
        `connect_wait_s` for the connection); None when WebSocket trading is off."""
        if not self.config.ws_enabled or self.closed:
            return None
        first = False
        with self._lock:
            if self._ws is None:
                self._start_loop()
                try:
                    self._ws = self._call(self._open_ws(), self.config.connect_wait_s + _LOOP_GRACE_S)
                except concurrent.futures.TimeoutError as exc:
                    raise NotConnected("execution session: the session loop did not start the socket") from exc
                first = True
        ws = self._ws
        if first and ws.private_state is not ConnectionState.CONNECTED:
            try:
                self._call(ws.connect(public=False, private=True, timeout=self.config.connect_wait_s), None)
            except (RequestTimeout, NotConnected, concurrent.futures.TimeoutError):
                counters["ws_connect_slow"] += 1
                logger.warning("execution session: private socket not connected yet; REST meanwhile")
        return ws

    async def _open_ws(self) -> KrakenWsClient:
        config = WsConfig(private_url=self.config.ws_auth_url, order_timeout_s=self.config.order_timeout_s)
        ws = KrakenWsClient(config, token_provider=self._token)
        ws.start(public=False, private=True)
        task = asyncio.get_running_loop().create_task(
            ws.subscribe_executions(snap_orders=False, snap_trades=False, order_status=False, timeout=30)
        )
        task.add_done_callback(_log_failure("subscribe executions"))
        return ws

    async def _token(self) -> str:
        """A fresh WebSocket token for each connection, through the session's REST client (its own loop)."""
        future = asyncio.run_coroutine_threadsafe(self.rest.client.websockets_token(), self.rest.loop)
        token = (await asyncio.wrap_future(future)).token
        counters["ws_tokens"] += 1
        return token

    def _reconnect(self, ws: KrakenWsClient, why: str) -> None:
        """Drop the socket (it reconnects with a fresh token), on the session's loop: transports are not
        thread-safe."""
        self._require_loop().call_soon_threadsafe(ws.reconnect, "private", why)

    def ws_connected(self) -> bool:
        ws = self._ws
        return ws is not None and ws.private_state is ConnectionState.CONNECTED

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._require_loop())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def _connected_ws(self) -> KrakenWsClient:
        ws = self.ws()
        if ws is None or ws.private_state is not ConnectionState.CONNECTED:
            raise NotConnected("execution session: private socket not connected; nothing was sent")
        return ws

    def add_order(self, **params: Any) -> AddOrderAck:
        """`add_order` over the socket. `NotConnected`: nothing was sent (use REST); `OrderOutcomeUnknown`:
        maybe placed (query by client order id); Kraken's rejections as their typed errors."""
        ws = self._connected_ws()
        timeout = self.config.order_timeout_s
        try:
            ack = self._call(ws.add_order(timeout=timeout, **params), timeout + _LOOP_GRACE_S)
        except concurrent.futures.TimeoutError as exc:
            counters["ws_loop_stuck"] += 1
            raise OrderOutcomeUnknown(
                "add_order: the session loop did not answer in time; query by client order id",
                cl_ord_id=params.get("cl_ord_id"),
                pair=params.get("symbol"),
            ) from exc
        except AuthenticationError:
            # ESession:Invalid session: refused before anything was placed. A new connection gets a new token.
            counters["ws_invalid_session"] += 1
            self._reconnect(ws, "trading request refused: invalid session")
            raise
        counters["ws_add_order"] += 1
        return ack

    def cancel_order(self, *, order_id: str | None = None, cl_ord_id: str | None = None) -> CancelOrderAck:
        ws = self._connected_ws()
        timeout = self.config.order_timeout_s
        try:
            ack = self._call(
                ws.cancel_order(order_id=order_id, cl_ord_id=cl_ord_id, timeout=timeout), timeout + _LOOP_GRACE_S
            )
            counters["ws_cancel_order"] += 1
            return ack
        except concurrent.futures.TimeoutError as exc:
            raise RequestTimeout("cancel_order: the session loop did not answer in time") from exc
        except AuthenticationError:
            counters["ws_invalid_session"] += 1
            self._reconnect(ws, "trading request refused: invalid session")
            raise

    def cancel_all(self) -> int:
        ws = self._connected_ws()
        timeout = self.config.order_timeout_s
        try:
            return self._call(ws.cancel_all(timeout=timeout), timeout + _LOOP_GRACE_S)
        except concurrent.futures.TimeoutError as exc:
            raise RequestTimeout("cancel_all: the session loop did not answer in time") from exc

    # --- the dead man's switch ------------------------------------------------------------------------------

    async def _deadman_loop(self) -> None:
        timeout = self.config.deadman_timeout_s
        while True:
            try:
                self.deadman_trigger = await self._deadman_refresh(timeout)
                counters["deadman_refreshed"] += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the refresher die: count, log, try again next period
                counters["deadman_refresh_failed"] += 1
                logger.warning("dead man's switch refresh failed: %r", exc)
            await asyncio.sleep(self.config.deadman_refresh_s)

    async def _deadman_refresh(self, timeout: int) -> datetime | None:
        ws = self._ws
        if ws is not None and ws.private_state is ConnectionState.CONNECTED:
            try:
                return (await ws.cancel_all_orders_after(timeout)).trigger_time
            except NotConnected:
                pass  # dropped meanwhile: REST below
        counters["deadman_via_rest"] += 1
        future = asyncio.run_coroutine_threadsafe(self.rest.client.cancel_all_orders_after(timeout), self.rest.loop)
        return (await asyncio.wrap_future(future)).trigger_time


def _log_failure(what: str) -> Any:
    def done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            counters["ws_background_failed"] += 1
            logger.warning("execution session: %s failed: %r", what, task.exception())

    return done


# --- the process's session ----------------------------------------------------------------------------------

_lock = threading.Lock()
_session: ExchangeSession | None = None


def session() -> ExchangeSession:
    """This process's session for the current settings: built on first use, rebuilt when the settings changed,
    when it broke (a dead loop thread) or in a forked child (the parent's is left alone)."""
    global _session
    config = SessionConfig.from_settings()
    with _lock:
        current = _session
        if current is not None and (current.pid != os.getpid() or current.config != config or not current.usable):
            if current.pid == os.getpid():
                current.close()
            counters["session_replaced"] += 1
            current = _session = None
        if current is None:
            current = _session = ExchangeSession(config)
            counters["session_created"] += 1
        return current


def close_session() -> None:
    """Close this process's session (worker shutdown, tests)."""
    global _session
    with _lock:
        current, _session = _session, None
    if current is not None:
        current.close()


def _after_fork_in_child() -> None:
    # The inherited lock may have been held by another thread at the fork, and the inherited session's threads
    # do not exist here: start clean. (The parent's objects are not closed: they are the parent's.)
    global _lock, _session
    _lock = threading.Lock()
    _session = None


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(close_session)
