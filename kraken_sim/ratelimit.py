"""Kraken's rate-limit counters (PROTOCOL.md §1.5): a decaying REST call counter per API key and a decaying
trading counter per pair, shared by REST and WebSocket trading."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

# Extra trading-counter cost of a cancel, by how long the order rested (seconds, cost).
CANCEL_AGE_COSTS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal(5), Decimal(8)),
    (Decimal(10), Decimal(6)),
    (Decimal(15), Decimal(5)),
    (Decimal(45), Decimal(4)),
    (Decimal(90), Decimal(2)),
    (Decimal(300), Decimal(1)),
)


def cancel_cost(age_seconds: Decimal) -> Decimal:
    for limit, cost in CANCEL_AGE_COSTS:
        if age_seconds < limit:
            return cost
    return Decimal(0)


class DecayingCounter:
    """A counter that decays continuously by ``decay`` per second and refuses to pass ``maximum``."""

    def __init__(self, maximum: Decimal, decay: Decimal, clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = maximum
        self.decay = decay
        self._clock = clock
        self._value = Decimal(0)
        self._at = clock()

    @property
    def value(self) -> Decimal:
        self._decay()
        return self._value

    def _decay(self) -> None:
        now = self._clock()
        elapsed = Decimal(repr(now - self._at)) if now > self._at else Decimal(0)
        self._at = now
        self._value = max(Decimal(0), self._value - elapsed * self.decay)

    def would_exceed(self, cost: Decimal) -> bool:
        self._decay()
        return self._value + cost > self.maximum

    def add(self, cost: Decimal) -> None:
        self._decay()
        self._value += cost

    def try_add(self, cost: Decimal) -> bool:
        if self.would_exceed(cost):
            return False
        self._value += cost
        return True
