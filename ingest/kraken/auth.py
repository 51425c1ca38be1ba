"""Request signing (PROTOCOL.md §0.1, §1.2) and nonce sources.

``API-Sign = base64(HMAC-SHA512(key=b64decode(secret), msg=urlpath + SHA256(nonce + postdata)))``.

Nonces must strictly increase per API key, and several processes (Celery workers, the ingest worker), possibly
on several machines, share one key. Three sources are provided, all issuing ``max(clock(), last + 1)``:

* :class:`ProcessNonce`: the in-process fast path (no system call beyond ``time.time_ns``), thread-safe,
  for a key used by one process only.
* :class:`FileLockNonce`: strictly increasing across processes on one machine. Each draw takes an exclusive
  ``fcntl.flock`` on a small state file, reads the last nonce issued, issues ``max(time_ns(), last + 1)``
  and writes it back before releasing the lock. The file descriptor stays open, so a draw costs a few system
  calls. Issuing blocks of nonces per process would be faster but would let one process send a smaller
  nonce after another process sent a larger one, so it is deliberately not done.
* :class:`RedisNonce`: strictly increasing across processes and machines that share one Redis: the last nonce
  issued for the key lives in Redis and one Lua script (atomic on the server) issues and stores the next. The
  Redis key names a SHA-256 hash of the API key, never the key itself. A draw costs one round trip; when Redis
  cannot answer the draw raises :class:`NonceUnavailable` and the request is not sent (no local fallback: a
  nonce issued without the shared state could go backwards).

Issuing in order does not order arrival: a request that drew its nonce first can still reach Kraken after a
later one from another process and be refused (``EAPI:Invalid nonce``; two processes calling back to back on the
simulator saw this on about one call in eight, and one in thirty was refused again on the client's retry). So the
shared sources also order sending: :func:`nonce_for_request` holds the key's *send slot* from the draw until the
request has been written to its connection (:meth:`SendSlot.trace`, httpcore's ``send_request_body.complete``
event), and no other client of the key draws for a send meanwhile, so requests leave in nonce order (the same
load then saw one refusal in 1,500 calls, absorbed by the retry). The slot covers only the write, not the
exchange's answer: a stalled exchange does not hold up the other processes. ``RedisNonce``'s slot is a lease in
Redis that expires if its holder dies before releasing it; ``FileLockNonce``'s is the state file's lock, which the
kernel drops with its process. A waiter polls without blocking its event loop and gives up with
:class:`NonceUnavailable` (nothing sent) after :data:`SEND_WAIT_FACTOR` request timeouts.

Nonces are nanoseconds since the epoch (fits an unsigned 64-bit integer until 2554).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ingest.kraken.errors import TransportError

__all__ = [
    "FileLockNonce",
    "NonceSource",
    "NonceUnavailable",
    "OrderedSends",
    "ProcessNonce",
    "RedisNonce",
    "SendSlot",
    "nonce_for_request",
    "sign",
]

logger = logging.getLogger(__name__)


def sign(urlpath: str, nonce: str | int, postdata: str, secret: str) -> str:
    """Compute Kraken's ``API-Sign`` header value.

    ``urlpath`` is the path starting at ``/0/private``; ``postdata`` is exactly the body sent (form-encoded
    or JSON); ``secret`` is the base64 API secret.
    """
    digest = hashlib.sha256((str(nonce) + postdata).encode()).digest()
    mac = hmac.new(base64.b64decode(secret), urlpath.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


class NonceSource(Protocol):
    """Anything that hands out strictly increasing nonces for one API key."""

    def next_nonce(self) -> int: ...


class SendSlot:
    """The nonce of one request and the key's send slot, held until :meth:`sent` (idempotent). Give :meth:`trace`
    to httpx as the request's ``trace`` extension: it frees the slot once the request body has been written."""

    __slots__ = ("_release", "nonce")

    def __init__(self, nonce: int, release: Callable[[], None] | None = None) -> None:
        self.nonce = nonce
        self._release = release

    def sent(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith(".send_request_body.complete"):
            self.sent()


@runtime_checkable
class OrderedSends(Protocol):
    """A nonce source that can also order sending: ``send_slot`` yields a :class:`SendSlot` and lets no other client
    of the key draw for a send until the slot is sent or the block ends. ``hold_s``: how long a slot may be held
    before others may take it (its holder died); ``wait_s``: how long to wait for it before
    :class:`NonceUnavailable`."""

    def send_slot(self, *, hold_s: float, wait_s: float) -> AbstractAsyncContextManager[SendSlot]: ...


#: A send slot is held at most this many request timeouts (connecting and writing each have the timeout) ...
SEND_HOLD_FACTOR = 2.0
#: ... and waited for at most this many.
SEND_WAIT_FACTOR = 3.0
_SEND_POLL_MIN_S = 0.0002
_SEND_POLL_MAX_S = 0.005


@contextlib.asynccontextmanager
async def nonce_for_request(source: NonceSource, *, timeout_s: float) -> AsyncIterator[SendSlot]:
    """The nonce of one private request (``timeout_s``: the request's timeout), for the block that sends it. A
    source that orders sending (:class:`OrderedSends`) holds the key's send slot until the request is written
    (:meth:`SendSlot.trace`) or the block ends; any other source just draws."""
    if isinstance(source, OrderedSends):
        async with source.send_slot(
            hold_s=SEND_HOLD_FACTOR * timeout_s + 1.0, wait_s=SEND_WAIT_FACTOR * timeout_s + 1.0
        ) as slot:
            yield slot
    else:
        yield SendSlot(source.next_nonce())


async def _pause(pause: float, deadline: float, what: str) -> float:
    """Sleep before the next try for a send slot (doubling, capped), or raise when the wait is over."""
    if time.monotonic() >= deadline:
        raise NonceUnavailable(f"no nonce: {what}; the request was not sent")
    await asyncio.sleep(pause)
    return min(pause * 2, _SEND_POLL_MAX_S)


class ProcessNonce:
    """Strictly increasing nonces within one process: ``max(time_ns(), last + 1)`` under a thread lock."""

    def __init__(self, start: int = 0, *, clock: Callable[[], int] = time.time_ns) -> None:
        self._last = start
        self._lock = threading.Lock()
        self._clock = clock

    def next_nonce(self) -> int:
        with self._lock:
            nonce = self._clock()
            if nonce <= self._last:
                nonce = self._last + 1
            self._last = nonce
            return nonce


# State record: last nonce issued and the number of draws so far (lock order), two unsigned 64-bit ints.
_RECORD = struct.Struct("<QQ")


class FileLockNonce:
    """Strictly increasing nonces across every process that uses the same ``path``.

    The state file holds the last nonce issued and a global draw counter; both are read and written under
    an exclusive ``flock``. A thread lock serialises threads of one process (``flock`` locks belong to the
    open file description, which the threads share). After ``fork`` the child reopens the file.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], int] = time.time_ns) -> None:
        self._path = os.fspath(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._fd = -1
        self._pid = -1

    def _ensure_open(self) -> int:
        pid = os.getpid()
        if self._fd < 0 or self._pid != pid:
            # A descriptor inherited through fork shares the parent's open file description (and its
            # flock), so the child needs its own.
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = pid
        return self._fd

    def _draw_locked(self, fd: int) -> tuple[int, int]:
        raw = os.pread(fd, _RECORD.size, 0)
        if len(raw) == _RECORD.size:
            last, draws = _RECORD.unpack(raw)
        else:
            if raw:
                logger.warning(
                    "nonce state file truncated, restarting from the clock",
                    extra={"path": self._path, "bytes": len(raw)},
                )
            last, draws = 0, 0
        nonce = self._clock()
        if nonce <= last:
            nonce = last + 1
        os.pwrite(fd, _RECORD.pack(nonce, draws + 1), 0)
        return draws, nonce

    def draw(self) -> tuple[int, int]:
        """Return ``(draw_index, nonce)``. ``draw_index`` counts draws across all processes in lock order
        (0, 1, 2, ...); nonces strictly increase in that order. Waits while another client holds the send slot."""
        with self._lock:
            fd = self._ensure_open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                return self._draw_locked(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def next_nonce(self) -> int:
        return self.draw()[1]

    @contextlib.asynccontextmanager
    async def send_slot(self, *, hold_s: float, wait_s: float) -> AsyncIterator[SendSlot]:
        """A nonce drawn under the state file's lock, kept until the slot is sent or the block ends: no client of
        this file (in any process, or another thread of this one) draws meanwhile. The lock is polled, never
        waited on, so the event loop keeps running; the kernel drops it if the process dies (``hold_s`` is not
        needed)."""
        deadline = time.monotonic() + wait_s
        pause = _SEND_POLL_MIN_S
        while True:
            if self._lock.acquire(blocking=False):
                try:
                    fd = self._ensure_open()
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    self._lock.release()
                except BaseException:
                    self._lock.release()
                    raise
            pause = await _pause(pause, deadline, f"the send slot of {self._path} stayed taken for {wait_s:g} s")

        def release() -> None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._lock.release()

        try:
            slot = SendSlot(self._draw_locked(fd)[1], release)
        except BaseException:
            release()
            raise
        try:
            yield slot
        finally:
            slot.sent()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0 and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = -1


class NonceUnavailable(TransportError):
    """The shared nonce state could not be read or advanced (Redis down or timed out, or its value is not a
    nonce): no nonce was issued and the request was NOT sent; safe to retry once the store answers."""


# KEYS[1]: the key's nonce state (a decimal integer); ARGV[1]: the caller's clock (a decimal integer without
# leading zeros). Issues and stores max(ARGV[1], last + 1). Redis scripts see integers as doubles (exact only below
# 2**53, and nanoseconds are ~2**61), so the comparison is on the decimal strings (length, then digits) and the
# increment is Redis's own INCR (64-bit), read back as a string. With KEYS[2] (the send slot), the draw first takes
# the slot for ARGV[2] (a token) for ARGV[3] ms, and issues nothing (nil) while another token holds it.
_NEXT_NONCE_LUA = """
local last = redis.call('GET', KEYS[1])
local now = ARGV[1]
if last and not string.match(last, '^[1-9]%d*$') then
  return redis.error_reply('nonce state ' .. KEYS[1] .. ' is not a positive integer')
end
if KEYS[2] and not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return false
end
if last then
  if #now < #last or (#now == #last and now <= last) then
    redis.call('INCR', KEYS[1])
    return redis.call('GET', KEYS[1])
  end
end
redis.call('SET', KEYS[1], now)
return now
"""

# KEYS[1]: a send slot; ARGV[1]: the token that took it. Frees the slot only if that token still holds it.
_RELEASE_SLOT_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisNonce:
    """Strictly increasing nonces for one API key across every process and machine that uses the same Redis.

    Each draw runs one Lua script on the server, which issues ``max(clock(), last + 1)`` and stores it as the
    key's last nonce, atomically: draws from any number of threads, processes and machines are totally ordered
    by Redis and strictly increase in that order; a nonce is never below the caller's clock (nanoseconds since
    the epoch, like the other sources), and a clock that steps back (or a machine whose clock lags) continues
    above the last nonce issued instead of going backwards. The state is stored under
    ``<prefix><sha256(api_key)>``: the API key itself never reaches Redis. It has no expiry (one key per API key).
    :meth:`send_slot` orders sending too: a lease ``<state key>:sending`` (a random token, expiring after
    ``hold_s``) taken atomically with the draw and freed once the request is written.

    When Redis is down, times out or holds something that is not a nonce, :meth:`next_nonce` raises
    :class:`NonceUnavailable` (a :class:`~ingest.kraken.errors.TransportError`: the request is not sent). There
    is deliberately no fallback to a local clock or file: a nonce issued without the shared state could be below
    one another process already sent, so the call fails clearly instead. A draw blocks for one round trip (at
    most the client's socket timeout); the client's connection pool is thread-safe and reopened after ``fork``.
    """

    def __init__(
        self,
        client: redis.Redis,
        api_key: str,
        *,
        clock: Callable[[], int] = time.time_ns,
        prefix: str = "galfriday:kraken-nonce:",
    ) -> None:
        if not api_key:
            raise ValueError("RedisNonce needs the API key its nonces are for")
        self._client = client
        self._clock = clock
        self.key = prefix + hashlib.sha256(api_key.encode()).hexdigest()
        self.slot_key = self.key + ":sending"
        self._script = client.register_script(_NEXT_NONCE_LUA)
        self._release = client.register_script(_RELEASE_SLOT_LUA)

    @classmethod
    def from_url(cls, url: str, api_key: str, *, timeout_s: float = 2.0, **options: Any) -> RedisNonce:
        """A source on the Redis at ``url``: ``timeout_s`` bounds connecting and each reply; a failed call is
        retried once on a fresh connection (a pooled connection can be stale after a Redis restart), then
        fails. ``options`` go to :class:`RedisNonce` (``clock``, ``prefix``)."""
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 1)
        )
        return cls(client, api_key, **options)

    def _draw(self, slot: tuple[str, float] | None = None) -> int | None:
        now = max(int(self._clock()), 1)
        keys, args = [self.key], [str(now)]
        if slot is not None:
            keys.append(self.slot_key)
            args += [slot[0], str(max(1, int(slot[1] * 1000)))]
        try:
            reply = self._script(keys=keys, args=args)
            return None if reply is None else int(reply)
        except (RedisError, ValueError, TypeError) as exc:
            raise NonceUnavailable(
                f"no nonce: the shared nonce state in Redis ({self.key}) could not be advanced: "
                f"{type(exc).__name__}: {exc}; the request was not sent"
            ) from exc

    def next_nonce(self) -> int:
        nonce = self._draw()
        if nonce is None:  # pragma: no cover - only a draw that takes the send slot can be refused
            raise NonceUnavailable(f"no nonce: {self.key} refused a plain draw; the request was not sent")
        return nonce

    @contextlib.asynccontextmanager
    async def send_slot(self, *, hold_s: float, wait_s: float) -> AsyncIterator[SendSlot]:
        """A nonce drawn with the key's send slot, kept until the slot is sent, the block ends or ``hold_s``
        passes: no client of this key and Redis draws for a send meanwhile. Taken by polling (the event loop keeps
        running), given up after ``wait_s`` with :class:`NonceUnavailable`. A slot that cannot be freed (Redis went
        away) expires by itself."""
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait_s
        pause = _SEND_POLL_MIN_S
        while (nonce := self._draw((token, hold_s))) is None:
            pause = await _pause(pause, deadline, f"the send slot {self.slot_key} stayed taken for {wait_s:g} s")

        def release() -> None:
            try:
                self._release(keys=[self.slot_key], args=[token])
            except RedisError as exc:
                logger.warning(
                    "nonce send slot not freed; it expires by itself",
                    extra={"slot": self.slot_key, "hold_s": hold_s, "error": f"{type(exc).__name__}: {exc}"},
                )

        slot = SendSlot(nonce, release)
        try:
            yield slot
        finally:
            slot.sent()

    def close(self) -> None:
        self._client.close()
