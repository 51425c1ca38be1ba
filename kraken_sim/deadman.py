"""The account's dead man's switch (REST ``CancelAllOrdersAfter``, WS v2 ``cancel_all_orders_after``).

Each call restarts the countdown (``timeout`` whole seconds, at most a day); 0 disarms it. When the countdown runs
out the switch fires once (every open order of the account is canceled) and stays off until the next non-zero
call, as Kraken documents. The countdown runs with the simulator's clock; ``advance`` lets time pass for it at
once (``POST /_sim/dead_man_switch``), so a test sees it fire, or not, without waiting for the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from kraken_sim import errors as E
from kraken_sim.errors import KrakenError
from kraken_sim.wire import NS, Clock, rfc3339, rfc3339_seconds

log = logging.getLogger(__name__)

MAX_TIMEOUT_S = 86_400


def checked_timeout(timeout: object) -> int:
    """A ``timeout`` argument: whole seconds in 0..86400, else ``EGeneral:Invalid arguments``."""
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout <= MAX_TIMEOUT_S:
        raise KrakenError(E.INVALID_ARGUMENTS)
    return timeout


def switch_answer(now_ns: int, trigger_ns: int) -> dict[str, str]:
    """The answer of both APIs: ``{"currentTime":"…Z","triggerTime":"…Z"}``, ``"0"`` when the switch is off."""
    return {
        "currentTime": rfc3339_seconds(now_ns),
        "triggerTime": rfc3339_seconds(trigger_ns) if trigger_ns else "0",
    }


class DeadManSwitch:
    def __init__(self, clock: Clock, fire: Callable[[], None]) -> None:
        self._clock = clock
        self._fire = fire
        self.trigger_ns = 0  # when it fires, on the simulator's clock; 0: off
        self.fired = 0
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, timeout: object) -> tuple[int, int]:
        """Restart the countdown at ``timeout`` seconds (0: disarm). Returns ``(now_ns, trigger_ns)``,
        ``trigger_ns`` 0 when off. Must run on the simulator's loop."""
        timeout = checked_timeout(timeout)
        now = self._clock.now_ns()
        if timeout == 0:
            self.trigger_ns = 0
            self._cancel_timer()
            log.info("dead man's switch disarmed")
            return now, 0
        self.trigger_ns = now + timeout * NS
        self._schedule(now)
        return now, self.trigger_ns

    def advance(self, seconds: Decimal) -> bool:
        """Let ``seconds`` of the countdown pass now; it fires here if they reach the trigger. True if it fired.
        A switch that is off stays off."""
        if not seconds.is_finite() or seconds < 0:
            raise ValueError("seconds must be a non-negative number")
        if not self.trigger_ns:
            return False
        self.trigger_ns -= int(seconds * NS)
        return self._schedule(self._clock.now_ns())

    def _schedule(self, now_ns: int) -> bool:
        """(Re)start the timer for the time left; fire now if none is."""
        self._cancel_timer()
        left_ns = self.trigger_ns - now_ns
        if left_ns <= 0:
            self._run()
            return True
        self._handle = asyncio.get_running_loop().call_later(left_ns / NS, self._run)
        return False

    def _run(self) -> None:
        self._handle = None
        self.trigger_ns = 0
        self.fired += 1
        self._fire()

    def _cancel_timer(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def stop(self) -> None:
        """The simulator stops: no timer left behind."""
        self._cancel_timer()

    def describe(self) -> dict[str, Any]:
        return {"trigger": rfc3339(self.trigger_ns) if self.trigger_ns else None, "fired": self.fired}
