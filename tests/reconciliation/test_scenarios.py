"""Accuracy, proved by generated scenarios: the simulator is driven through seeded random orders and fills with
known discrepancies injected (withheld executions, fills during a disconnect, external orders and trades, reward
balance moves, canceled-then-filled races, fee differences). After each scenario one run must report exactly the
material discrepancies the truth shows (no miss, no false alarm), the corrected books must equal the exchange, and
the audit must show each correction. `SCENARIOS` seeds run in CI; the benchmark runs more."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.conf import settings

from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.runs import reconciliation_run
from tests.reconciliation.harness import (
    Scenario,
    SimLoop,
    World,
    books_equal_exchange,
    expected_discrepancies,
    harness_client,
)
from trading.models import Balance, OrderEvent, TradingState

SCENARIOS = int(os.environ.get("GALFRIDAY_RECONCILIATION_SCENARIOS", "200"))


def found_keys(run: ReconciliationRun) -> set[tuple[str, str]]:
    return {
        (d.kind, d.exec_id or d.exchange_order_id or d.asset or "")
        for d in run.discrepancies.filter(within_tolerance=False)
    }


def check_scenario(sim_loop: SimLoop, seed: int) -> dict[str, int]:
    world = World(sim_loop, seed)
    try:
        scenario = Scenario(seed=seed, steps=8)
        world.play(scenario)
        expected = expected_discrepancies(world)
        client = harness_client(world.sim)
        try:
            run = reconciliation_run(trigger="gap", reason=f"scenario {seed}", client=client)
        finally:
            client.close()
        found = found_keys(run)
        assert run.status in ("clean", "corrected"), (run.status, run.error, found, expected)
        assert found == expected, f"seed {seed}: missed {expected - found}, false {found - expected}"
        assert books_equal_exchange(world) == []
        # Every correction is in the audit: order events from reconciliation, balance history by the run.
        for d in run.discrepancies.exclude(action="none"):
            assert d.status == "auto_resolved"
            assert "before" in d.action_detail
            assert "after" in d.action_detail
            if d.order_id is not None:
                assert OrderEvent.objects.filter(order_id=d.order_id, source="reconciliation").exists(), d
            if d.kind == "balance_mismatch":
                history = Balance.objects.get(asset=d.asset).history.filter(actor=f"reconciliation:run-{run.pk}")
                assert history.exists(), d
        assert TradingState.objects.filter(state="halted").count() == 0
        return {"expected": len(expected), "found": len(found & expected), "false": len(found - expected)}
    finally:
        world.close()


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(SCENARIOS))
def test_scenario_reports_exactly_the_injected_discrepancies_and_corrects_the_books(
    sim_loop: SimLoop, seed: int
) -> None:
    check_scenario(sim_loop, seed)


@pytest.mark.django_db
def test_a_second_run_after_correction_is_clean(sim_loop: SimLoop) -> None:
    world = World(sim_loop, 4242)
    try:
        world.play(Scenario(seed=4242, steps=10))
        with harness_client(world.sim) as client:
            first = reconciliation_run(trigger="gap", client=client)
            second = reconciliation_run(trigger="schedule", client=client)
        assert first.status in ("clean", "corrected")
        assert second.status == "clean", list(second.discrepancies.values("kind", "exec_id", "asset", "difference"))
        # The second run re-reads the overlap before the end of the last good run's window.
        assert first.window_end is not None
        overlap = timedelta(seconds=settings.GALFRIDAY_RECONCILIATION_OVERLAP_SECONDS)
        assert second.window_start == first.window_end - overlap
        assert Discrepancy.objects.filter(run=second).count() == 0
        # Its cost on Kraken's counter: 2 per history call (TradesHistory, QueryTrades), 1 per other private call.
        by_method = second.counts["rest_calls_by_method"]
        assert {"OpenOrders", "ClosedOrders", "TradesHistory", "BalanceEx"} <= set(by_method)
        assert second.rest_calls == sum(by_method.values())
        history = by_method["TradesHistory"] + by_method.get("QueryTrades", 0)
        assert second.rest_cost == second.rest_calls + history
    finally:
        world.close()
