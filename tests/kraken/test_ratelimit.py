"""Rate-limit models (PROTOCOL.md §1.5) with an injected clock: deterministic, no real sleeping."""

from __future__ import annotations

import pytest

from ingest.kraken.ratelimit import (
    DecayingCounter,
    RestCallCounter,
    Tier,
    TradingEngineLimiter,
    add_order_cost,
    amend_order_cost,
    batch_add_cost,
    batch_cancel_cost,
    cancel_order_cost,
    edit_order_cost,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_docs_worked_example_add_amend_cancel_totals_8(clock: FakeClock) -> None:
    # add (+1), amend after 7 s (+1 +2), cancel 36 s later (+4), counted without decay: 8.
    assert add_order_cost() + amend_order_cost(7) + cancel_order_cost(43) == 8
    limiter = TradingEngineLimiter(Tier.INTERMEDIATE, decay_per_s=1e-12, clock=clock)
    limiter.add("XBTUSD", add_order_cost())
    clock.now += 7
    limiter.add("XBTUSD", amend_order_cost(7))
    clock.now += 36
    limiter.add("XBTUSD", cancel_order_cost(43))
    assert limiter.value("XBTUSD") == pytest.approx(8)


def test_fifty_adds_then_ten_seconds_at_intermediate_leave_26_6(clock: FakeClock) -> None:
    limiter = TradingEngineLimiter(Tier.INTERMEDIATE, clock=clock, sleep=clock.sleep)
    for _ in range(50):
        limiter.add("XBTUSD", add_order_cost())
    clock.now += 10
    assert limiter.value("XBTUSD") == pytest.approx(26.6)
    assert limiter.value("ETHUSD") == 0  # counters are per pair


@pytest.mark.parametrize(
    ("age", "cancel", "amend", "edit"),
    [
        (0, 8, 4, 7),
        (4.99, 8, 4, 7),
        (5, 6, 3, 6),
        (9.9, 6, 3, 6),
        (10, 5, 2, 5),
        (15, 4, 1, 3),
        (44, 4, 1, 3),
        (45, 2, 1, 2),
        (89, 2, 1, 2),
        (90, 1, 1, 1),
        (299, 1, 1, 1),
        (300, 0, 1, 1),
        (None, 8, 4, 7),  # unknown age is charged as a brand-new order
    ],
)
def test_order_action_costs_follow_the_age_table(age, cancel: int, amend: int, edit: int) -> None:
    assert cancel_order_cost(age) == cancel
    assert amend_order_cost(age) == amend
    assert edit_order_cost(age) == edit


def test_batch_costs() -> None:
    assert batch_add_cost(10) == 5
    assert batch_cancel_cost([1, 20, 400, None]) == 8 + 4 + 0 + 8


async def test_engine_limiter_waits_until_the_counter_decays_below_the_threshold(clock: FakeClock) -> None:
    limiter = TradingEngineLimiter(Tier.STARTER, clock=clock, sleep=clock.sleep)  # threshold 60, -1/s
    for _ in range(60):
        assert await limiter.acquire("XBTUSD", 1) == 0
    assert clock.sleeps == []
    waited = await limiter.acquire("XBTUSD", 8)  # needs 8 more: wait 8 s
    assert waited == pytest.approx(8)
    assert limiter.value("XBTUSD") == pytest.approx(60)


async def test_rest_counter_waits_instead_of_exceeding_the_tier_maximum(clock: FakeClock) -> None:
    counter = RestCallCounter(Tier.INTERMEDIATE, clock=clock, sleep=clock.sleep)  # max 20, -0.5/s
    for _ in range(20):
        await counter.acquire(counter.cost_of("Balance"))
    assert clock.sleeps == []
    await counter.acquire(counter.cost_of("Balance"))
    assert sum(clock.sleeps) == pytest.approx(2.0)  # one call = 1 unit at 0.5/s
    assert counter.waits == 1


@pytest.mark.parametrize(("history_cost", "expected_wait"), [(2, 4.0), (4, 8.0)])
async def test_rest_counter_history_calls_cost_2_or_4(
    clock: FakeClock, history_cost: int, expected_wait: float
) -> None:
    counter = RestCallCounter(Tier.INTERMEDIATE, history_cost=history_cost, clock=clock, sleep=clock.sleep)
    assert counter.cost_of("TradesHistory") == history_cost
    assert counter.cost_of("Ledgers") == history_cost
    assert counter.cost_of("AddOrder") == 0
    assert counter.cost_of("CancelOrder") == 0
    assert counter.cost_of("OpenOrders") == 1
    counter.add(20)
    await counter.acquire(counter.cost_of("TradesHistory"))
    assert sum(clock.sleeps) == pytest.approx(expected_wait)


def test_rest_counter_tiers(clock: FakeClock) -> None:
    starter = RestCallCounter(Tier.STARTER, clock=clock)
    pro = RestCallCounter(Tier.PRO, clock=clock)
    assert (starter.maximum, starter.decay_per_s) == (15, 0.33)
    assert (pro.maximum, pro.decay_per_s) == (20, 1.0)
    with pytest.raises(ValueError, match="history_cost"):
        RestCallCounter(history_cost=3)


def test_counter_decays_to_zero_not_below(clock: FakeClock) -> None:
    counter = DecayingCounter(20, 0.5, clock=clock)
    counter.add(3)
    clock.now += 100
    assert counter.value() == 0
    counter.add(1)
    assert counter.value() == 1


async def test_saturated_counter_makes_the_next_call_wait_for_the_decay(clock: FakeClock) -> None:
    counter = DecayingCounter(20, 0.5, clock=clock, sleep=clock.sleep)
    counter.saturate()
    await counter.acquire(1)
    assert clock.sleeps == [pytest.approx(2.0)]


async def test_a_cost_above_the_maximum_is_refused_rather_than_waiting_forever(clock: FakeClock) -> None:
    counter = DecayingCounter(20, 0.5, clock=clock, sleep=clock.sleep)
    with pytest.raises(ValueError, match="never fit"):
        await counter.acquire(21)
