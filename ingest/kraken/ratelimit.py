"""Client-side models of Kraken's rate-limit counters (PROTOCOL.md §1.5), used to WAIT instead of being
rejected.

* :class:`RestCallCounter`: the per-API-key REST counter. Ledger/trade-history calls cost ``history_cost``
  (2 in the new docs, 4 in an older page: configurable), AddOrder/CancelOrder cost nothing here (they count
  on the engine limiter), every other private call costs 1. It decays continuously by the tier's rate; a call
  that would take it over the tier's maximum waits.
* :class:`TradingEngineLimiter`: the per-pair trading-engine counter shared by REST, WS and FIX: add +1,
  amend/edit/cancel cost more the younger the order (the §1.5 table), decay per tier, threshold per tier.

Both take an injectable ``clock`` (seconds, monotonic) and ``sleep`` coroutine so tests are deterministic.
Counter values are unit-less call counts, not money, so they are floats.

The model only knows this process's calls. Other processes sharing the key add to the real counter; when
Kraken reports a rate-limit error the caller should :meth:`~DecayingCounter.saturate` the model so the
following calls wait for the decay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "DecayingCounter",
    "RestCallCounter",
    "Tier",
    "TierLimits",
    "TradingEngineLimiter",
    "add_order_cost",
    "amend_order_cost",
    "batch_add_cost",
    "batch_cancel_cost",
    "cancel_order_cost",
    "edit_order_cost",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TierLimits:
    rest_max: float
    rest_decay_per_s: float
    engine_threshold: float
    engine_decay_per_s: float
    max_open_orders_per_pair: int


class Tier(Enum):
    """Kraken verification tiers with their documented limits."""

    STARTER = TierLimits(15, 0.33, 60, 1.0, 60)
    INTERMEDIATE = TierLimits(20, 0.5, 125, 2.34, 80)
    PRO = TierLimits(20, 1.0, 180, 3.75, 225)

    @property
    def limits(self) -> TierLimits:
        return self.value


class DecayingCounter:
    """A counter that decays linearly to zero at ``decay_per_s`` and must stay at or below ``maximum``."""

    def __init__(
        self,
        maximum: float,
        decay_per_s: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        name: str = "counter",
    ) -> None:
        if maximum <= 0 or decay_per_s <= 0:
            raise ValueError("maximum and decay must be positive")
        self.maximum = float(maximum)
        self.decay_per_s = float(decay_per_s)
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._value = 0.0
        self._at = clock()
        #: Number of times a caller had to wait, and the total seconds waited.
        self.waits = 0
        self.waited_s = 0.0

    def value(self) -> float:
        """The counter's value now."""
        now = self._clock()
        decayed = self._value - (now - self._at) * self.decay_per_s
        self._value = decayed if decayed > 0.0 else 0.0
        self._at = now
        return self._value

    def add(self, cost: float) -> float:
        """Count ``cost`` now (without waiting); return the new value."""
        self._value = self.value() + cost
        return self._value

    def wait_time(self, cost: float) -> float:
        """Seconds until ``cost`` can be added without exceeding the maximum (0 if it can now)."""
        excess = self.value() + cost - self.maximum
        return excess / self.decay_per_s if excess > 0 else 0.0

    async def acquire(self, cost: float) -> float:
        """Wait until ``cost`` fits, then count it. Returns the seconds waited."""
        if cost > self.maximum:
            raise ValueError(f"{self.name}: cost {cost} can never fit under {self.maximum}")
        waited = 0.0
        while True:
            delay = self.wait_time(cost)
            if delay <= 0.0:
                self.add(cost)
                if waited:
                    self.waits += 1
                    self.waited_s += waited
                    logger.info("rate limit wait", extra={"counter": self.name, "waited_s": waited, "cost": cost})
                return waited
            await self._sleep(delay)
            waited += delay

    def saturate(self) -> None:
        """Set the counter to its maximum (the exchange said we are over the limit)."""
        self.value()
        self._value = self.maximum

    def observe(self, value: float) -> None:
        """Adopt a value reported by the exchange (e.g. the executions channel's rate counter)."""
        self.value()
        self._value = max(0.0, float(value))


# --- REST call counter ---------------------------------------------------------------------------------

HISTORY_METHODS = frozenset({"Ledgers", "QueryLedgers", "TradesHistory", "QueryTrades"})
ENGINE_METHODS = frozenset({"AddOrder", "CancelOrder"})


class RestCallCounter(DecayingCounter):
    """The per-key REST counter (private endpoints)."""

    def __init__(
        self,
        tier: Tier = Tier.INTERMEDIATE,
        *,
        history_cost: int = 2,
        maximum: float | None = None,
        decay_per_s: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if history_cost not in (2, 4):
            raise ValueError("history_cost is 2 (current docs) or 4 (older docs)")
        limits = tier.limits
        super().__init__(
            maximum if maximum is not None else limits.rest_max,
            decay_per_s if decay_per_s is not None else limits.rest_decay_per_s,
            clock=clock,
            sleep=sleep,
            name="rest",
        )
        self.history_cost = history_cost

    def cost_of(self, method: str) -> int:
        """What a private ``method`` adds to this counter."""
        if method in ENGINE_METHODS:
            return 0
        if method in HISTORY_METHODS:
            return self.history_cost
        return 1


# --- trading-engine counter ----------------------------------------------------------------------------

# (order age strictly below N seconds, extra cost), first match wins; older orders cost nothing extra.
_AMEND_PENALTY = ((5.0, 3), (10.0, 2), (15.0, 1))
_EDIT_PENALTY = ((5.0, 6), (10.0, 5), (15.0, 4), (45.0, 2), (90.0, 1))
_CANCEL_PENALTY = ((5.0, 8), (10.0, 6), (15.0, 5), (45.0, 4), (90.0, 2), (300.0, 1))


def _penalty(table: tuple[tuple[float, int], ...], age_s: float | None) -> int:
    # Unknown age: assume the worst (a brand-new order).
    age = 0.0 if age_s is None else age_s
    for limit, cost in table:
        if age < limit:
            return cost
    return 0


def add_order_cost() -> float:
    return 1.0


def amend_order_cost(age_s: float | None) -> float:
    return 1.0 + _penalty(_AMEND_PENALTY, age_s)


def edit_order_cost(age_s: float | None) -> float:
    return 1.0 + _penalty(_EDIT_PENALTY, age_s)


def cancel_order_cost(age_s: float | None) -> float:
    return float(_penalty(_CANCEL_PENALTY, age_s))


def batch_add_cost(n: int) -> float:
    return n / 2


def batch_cancel_cost(ages_s: Iterable[float | None]) -> float:
    return float(sum(_penalty(_CANCEL_PENALTY, age) for age in ages_s))


class TradingEngineLimiter:
    """Per-pair trading-engine counters."""

    def __init__(
        self,
        tier: Tier = Tier.INTERMEDIATE,
        *,
        threshold: float | None = None,
        decay_per_s: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        limits = tier.limits
        self.threshold = threshold if threshold is not None else limits.engine_threshold
        self.decay_per_s = decay_per_s if decay_per_s is not None else limits.engine_decay_per_s
        self.max_open_orders = limits.max_open_orders_per_pair
        self._clock = clock
        self._sleep = sleep
        self._counters: dict[str, DecayingCounter] = {}

    def counter(self, pair: str) -> DecayingCounter:
        counter = self._counters.get(pair)
        if counter is None:
            counter = DecayingCounter(
                self.threshold, self.decay_per_s, clock=self._clock, sleep=self._sleep, name=f"engine:{pair}"
            )
            self._counters[pair] = counter
        return counter

    def value(self, pair: str) -> float:
        return self.counter(pair).value()

    def add(self, pair: str, cost: float) -> float:
        return self.counter(pair).add(cost)

    async def acquire(self, pair: str, cost: float) -> float:
        """Wait until ``cost`` fits under the pair's threshold, then count it. Returns seconds waited."""
        return await self.counter(pair).acquire(cost)
