"""Request signing (PROTOCOL.md §0.1, §1.2) and nonce sources.

``API-Sign = base64(HMAC-SHA512(key=b64decode(secret), msg=urlpath + SHA256(nonce + postdata)))``.

Nonces must strictly increase per API key, and several processes (Celery workers, the ingest worker) share
one key. Two sources are provided:

* :class:`ProcessNonce`: the in-process fast path (no system call beyond ``time.time_ns``), thread-safe,
  for a key used by one process only.
* :class:`FileLockNonce`: strictly increasing across processes on one machine. Each draw takes an exclusive
  ``fcntl.flock`` on a small state file, reads the last nonce issued, issues ``max(time_ns(), last + 1)``
  and writes it back before releasing the lock. The file descriptor stays open, so a draw costs a few system
  calls. Issuing blocks of nonces per process would be faster but would let one process send a smaller
  nonce after another process sent a larger one, so it is deliberately not done. Processes on several
  machines sharing one key need a shared counter (or Kraken's nonce window on the key).

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
from typing import Protocol

__all__ = ["FileLockNonce", "NonceSource", "ProcessNonce", "sign"]

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
