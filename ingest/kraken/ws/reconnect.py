"""When to reconnect (PROTOCOL.md §4): the backoff policy and the per-IP connection attempt limit.

A quick retry or two after a random drop, then exponential backoff with jitter (1 s → 60 s by default), at least
5 s between attempts while the exchange is in maintenance, and never more than ``max_attempts`` connection
attempts (both endpoints together, or every client sharing one :class:`ConnectionAttemptLimiter`) in a rolling
window: Kraken's edge bans an IP for 10 minutes after ~150 attempts in 10 minutes, so the limiter WAITS instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["ConnectionAttemptLimiter", "ReconnectPolicy"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """When to reconnect (PROTOCOL.md §4).

    ``failures`` counts consecutive attempts that failed or connections that lasted less than
    ``stable_after_s``. The first ``quick_retries`` retries wait a random ``[0, quick_retry_max_delay_s]`` (a
    random drop); then ``initial_delay_s * multiplier**k`` capped at ``max_delay_s``, times a random factor in
    ``[1 - jitter, 1 + jitter]``. While the exchange is in maintenance, at least ``after_maintenance_delay_s``.
    At most ``max_attempts`` connection attempts per ``attempt_window_s`` (Kraken: ~150 per 10 minutes).
    """

    initial_delay_s: float = 1.0
    max_delay_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.25
    quick_retries: int = 2
    quick_retry_max_delay_s: float = 0.25
    after_maintenance_delay_s: float = 5.0
    stable_after_s: float = 30.0
    max_attempts: int = 140
    attempt_window_s: float = 600.0

    def __post_init__(self) -> None:
        if self.initial_delay_s < 0 or self.max_delay_s < self.initial_delay_s or self.multiplier < 1:
            raise ValueError("need 0 <= initial_delay_s <= max_delay_s and multiplier >= 1")
        if not 0 <= self.jitter < 1 or self.quick_retries < 0 or self.max_attempts < 1:
            raise ValueError("need 0 <= jitter < 1, quick_retries >= 0, max_attempts >= 1")

    def delay(self, failures: int, *, maintenance: bool = False, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next attempt after ``failures`` consecutive failures."""
        draw = (rng or random).random
        if failures < self.quick_retries:
            delay = draw() * self.quick_retry_max_delay_s
        else:
            base = self.initial_delay_s * self.multiplier ** min(failures - self.quick_retries, 64)
            delay = min(self.max_delay_s, base) * (1.0 + self.jitter * (2.0 * draw() - 1.0))
            delay = min(self.max_delay_s, max(0.0, delay))
        if maintenance:
            delay = max(delay, self.after_maintenance_delay_s)
        return delay


class ConnectionAttemptLimiter:
    """At most ``max_attempts`` connection attempts per rolling ``window_s``: :meth:`acquire` waits for the
    oldest attempt to leave the window. Share one instance between every client of a process (Kraken's limit
    is per IP address)."""

    def __init__(
        self,
        max_attempts: int = 140,
        window_s: float = 600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_attempts < 1 or window_s <= 0:
            raise ValueError("max_attempts >= 1 and window_s > 0")
        self.max_attempts = max_attempts
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._log: list[float] = []
        self._lock = asyncio.Lock()
        #: Number of times an attempt had to wait, and the seconds waited in total.
        self.waits = 0
        self.waited_s = 0.0

    def attempts_in_window(self) -> int:
        self._prune(self._clock())
        return len(self._log)

    def _prune(self, now: float) -> None:
        cutoff = now - self.window_s
        drop = 0
        for at in self._log:
            if at > cutoff:
                break
            drop += 1
        if drop:
            del self._log[:drop]

    async def acquire(self) -> float:
        """Wait until an attempt is allowed, then record it. Returns the seconds waited."""
        async with self._lock:
            waited = 0.0
            while True:
                now = self._clock()
                self._prune(now)
                if len(self._log) < self.max_attempts:
                    self._log.append(now)
                    break
                delay = self._log[0] + self.window_s - now
                if waited == 0.0:
                    logger.warning(
                        "connection attempt limit reached, waiting",
                        extra={"attempts": len(self._log), "window_s": self.window_s, "wait_s": round(delay, 3)},
                    )
                await self._sleep(max(delay, 0.001))
                waited += max(delay, 0.001)
            if waited:
                self.waits += 1
                self.waited_s += waited
            return waited
