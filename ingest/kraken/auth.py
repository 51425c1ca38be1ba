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
later one from another process and be refused (``EAPI:Invalid nonce``). The REST client retries such a refusal
once with a fresh nonce; a deployment with heavy concurrent private traffic on one key sets a nonce window on
the key at Kraken.

Nonces are nanoseconds since the epoch (fits an unsigned 64-bit integer until 2554).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from ingest.kraken.errors import TransportError

__all__ = ["FileLockNonce", "NonceSource", "NonceUnavailable", "ProcessNonce", "RedisNonce", "sign"]

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

    def draw(self) -> tuple[int, int]:
        """Return ``(draw_index, nonce)``. ``draw_index`` counts draws across all processes in lock order
        (0, 1, 2, ...); nonces strictly increase in that order."""
        with self._lock:
            fd = self._ensure_open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
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
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return draws, nonce

    def next_nonce(self) -> int:
        return self.draw()[1]

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
# increment is Redis's own INCR (64-bit), read back as a string.
_NEXT_NONCE_LUA = """
local last = redis.call('GET', KEYS[1])
local now = ARGV[1]
if last then
  if not string.match(last, '^[1-9]%d*$') then
    return redis.error_reply('nonce state ' .. KEYS[1] .. ' is not a positive integer')
  end
  if #now < #last or (#now == #last and now <= last) then
    redis.call('INCR', KEYS[1])
    return redis.call('GET', KEYS[1])
  end
end
redis.call('SET', KEYS[1], now)
return now
"""


class RedisNonce:
    """Strictly increasing nonces for one API key across every process and machine that uses the same Redis.

    Each draw runs one Lua script on the server, which issues ``max(clock(), last + 1)`` and stores it as the
    key's last nonce, atomically: draws from any number of threads, processes and machines are totally ordered
    by Redis and strictly increase in that order; a nonce is never below the caller's clock (nanoseconds since
    the epoch, like the other sources), and a clock that steps back (or a machine whose clock lags) continues
    above the last nonce issued instead of going backwards. The state is stored under
    ``<prefix><sha256(api_key)>``: the API key itself never reaches Redis. It has no expiry (one key per API key).

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
        self._script = client.register_script(_NEXT_NONCE_LUA)

    @classmethod
    def from_url(cls, url: str, api_key: str, *, timeout_s: float = 2.0, **options: Any) -> RedisNonce:
        """A source on the Redis at ``url``: ``timeout_s`` bounds connecting and each reply; a failed call is
        retried once on a fresh connection (a pooled connection can be stale after a Redis restart), then
        fails. ``options`` go to :class:`RedisNonce` (``clock``, ``prefix``)."""
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 1)
        )
        return cls(client, api_key, **options)

    def next_nonce(self) -> int:
        now = max(int(self._clock()), 1)
        try:
            reply = self._script(keys=[self.key], args=[str(now)])
            return int(reply)
        except (RedisError, ValueError, TypeError) as exc:
            raise NonceUnavailable(
                f"no nonce: the shared nonce state in Redis ({self.key}) could not be advanced: "
                f"{type(exc).__name__}: {exc}; the request was not sent"
            ) from exc

    def close(self) -> None:
        self._client.close()
