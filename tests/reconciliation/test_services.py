"""Runs against the simulator over real sockets: halting beyond tolerance, the start-up gate, single-flight,
rate budget, operator actions and the API."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from galfriday_site.periodic import PERIODIC_TASKS
from reconciliation import runs, services
from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.tasks import reconciliation_run_task
from tests.reconciliation.harness import SimLoop, World, harness_client
from trading.accounts import fill_fee_correct
from trading.kill_switch import trading_state_set
from trading.models import Alert, Balance, Position, TradingState

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sim_loop: SimLoop):  # type: ignore[no-untyped-def]
    w = World(sim_loop, 777)
    yield w
    w.close()


def run(world: World, trigger: str = "operator") -> ReconciliationRun:
    with harness_client(world.sim) as client:
        return runs.reconciliation_run(trigger=trigger, client=client)


def test_clean_books_give_a_clean_run_with_counts_and_timings(world: World) -> None:
    world.our_order(marketable=True)
    world.sync()
    result = run(world)
    assert result.status == "clean", list(result.discrepancies.values("kind", "asset", "difference"))
    counts = {k: v for k, v in result.counts.items() if k != "rest_calls_by_method"}
    assert counts == {
        "exchange_orders": 1,
        "exchange_open_orders": 0,
        "exchange_trades": 1,
        "local_orders": 1,
        "local_fills": 1,
        "assets": 3,  # USD, BTC, ETH: the account the harness seeds
        "targeted_queries": 0,
        "findings_by_kind": {},
        "findings_by_severity": {},
        "corrected": 0,
        "correction_failures": 0,
    }
    # One page of each history call, no targeted query; Assets is public (off the private counter); TradesHistory
    # costs 2 on Kraken's counter.
    assert result.counts["rest_calls_by_method"] == {
        "OpenOrders": 1,
        "ClosedOrders": 1,
        "TradesHistory": 1,
        "BalanceEx": 1,
        "Assets": 0,
    }
    assert (result.rest_calls, result.rest_cost) == (4, 5)
    assert result.rest_ms is not None  # (narrowing for the type checker: the timings are checked below)
    assert result.duration_ms is not None
    assert 0 < result.rest_ms < result.duration_ms
    assert result.processing_ms == pytest.approx(result.duration_ms - result.rest_ms)
    assert result.window_start is not None
    assert result.window_end is not None
    lookback = timedelta(seconds=settings.GALFRIDAY_RECONCILIATION_LOOKBACK_SECONDS)  # the first run's window
    assert result.window_end - result.window_start == lookback


def test_an_unexplained_traded_balance_halts_trading_with_an_alert(world: World) -> None:
    world.fault("balance_move", asset="USD", amount="5000", type="deposit")
    result = run(world)
    assert result.status == "halted"
    d = result.discrepancies.get(kind="balance_mismatch", asset="USD")
    assert (d.severity, d.status, d.action) == ("critical", "open", "halted")
    assert d.difference == Decimal("5000")
    assert TradingState.objects.get().state == "halted"
    assert Alert.objects.filter(kind="reconciliation_halted", context__run_id=result.pk).exists()
    # The operator checks it and accepts the exchange's balance: audited, resolved.
    services.discrepancy_resolve(discrepancy_id=d.pk, actor="user:ops", note="deposit", accept_exchange_balance=True)
    d.refresh_from_db()
    assert d.status == "resolved"
    assert d.resolved_by == "user:ops"
    assert Balance.objects.get(asset="USD").history.filter(actor="user:ops").exists()


def test_a_position_its_fills_do_not_prove_halts(world: World) -> None:
    world.our_order(marketable=True)
    world.sync()
    position = Position.objects.exclude(quantity=0).get()  # the order filled
    Position.objects.filter(pk=position.pk).update(quantity=position.quantity + 1, avg_price=Decimal(1))
    result = run(world)
    assert result.status == "halted"
    d = result.discrepancies.get()
    assert (d.kind, d.severity, d.action, d.instrument_id) == (
        "position_mismatch",
        "critical",
        "halted",
        position.instrument_id,
    )
    assert d.difference == Decimal(-1)  # the fills prove one less than the book holds
    assert d.local_value == str(position.quantity + 1)
    assert TradingState.objects.get().state == "halted"


def test_start_up_gate_halts_until_a_clean_start_up_run(world: World) -> None:
    trading_state_set(state="active", reason="test", actor="test")
    assert runs.startup_gate_engage() is True
    assert TradingState.objects.get().state == "halted"
    result = run(world, trigger="startup")
    assert result.status == "clean"
    state = TradingState.objects.get()
    assert state.state == "active"
    assert state.changed_by == f"reconciliation:run-{result.pk}"


def test_start_up_gate_leaves_an_operator_halt_alone(world: World) -> None:
    trading_state_set(state="halted", reason="operator says no", actor="user:ops")
    assert runs.startup_gate_engage() is False
    run(world, trigger="startup")
    assert TradingState.objects.get().changed_by == "user:ops"


def test_a_failed_exchange_keeps_the_gate_closed_and_records_the_failure(world: World) -> None:
    runs.startup_gate_engage()
    world.fault("rest_errors", count=50, error="EService:Unavailable")
    result = run(world, trigger="startup")
    assert result.status == "failed"
    assert "Unavailable" in result.error
    assert TradingState.objects.get().state == "halted"
    assert Alert.objects.filter(kind=runs.ALERT_FAILED).exists()


def test_single_flight_a_second_run_is_refused_and_the_task_skips(world: World) -> None:
    runs.run_start(trigger="schedule")
    with pytest.raises(runs.ReconciliationRunning):
        runs.run_start(trigger="gap")
    assert reconciliation_run_task(trigger="schedule")["skipped"] is True
    assert ReconciliationRun.objects.filter(status="running").count() == 1


def test_an_abandoned_running_run_is_failed_and_the_slot_freed(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_RECONCILIATION_STALE_SECONDS = 0
    stuck = runs.run_start(trigger="schedule")
    runs.run_start(trigger="gap")
    stuck.refresh_from_db()
    assert stuck.status == "failed"
    assert "abandoned" in stuck.error


def test_a_run_whose_process_died_frees_the_slot_at_once_a_live_ones_does_not() -> None:
    """A worker killed mid-run leaves its run `running`: the next run frees the slot at once when the run's owner
    was a process of this host that is gone, not after the stale limit (15 minutes of refused runs, and a start-up
    gate never released). A live owner, or another host's process, keeps the slot."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = runs.run_start(trigger="schedule")
    ReconciliationRun.objects.filter(pk=dead.pk).update(owner=f"{socket.gethostname()}:{gone.pid}")
    fresh = runs.run_start(trigger="startup")
    dead.refresh_from_db()
    assert (dead.status, fresh.status) == ("failed", "running")
    assert f"{gone.pid} is gone" in dead.error
    assert fresh.owner == runs.process_owner()
    with pytest.raises(runs.ReconciliationRunning):  # this process is alive: its run keeps the slot
        runs.run_start(trigger="gap")
    ReconciliationRun.objects.filter(pk=fresh.pk).update(owner=f"another-host:{gone.pid}")
    with pytest.raises(runs.ReconciliationRunning):  # another host's process: only the stale limit frees it
        runs.run_start(trigger="gap")


def test_run_stays_within_the_starter_rest_budget(world: World) -> None:
    from ingest.kraken.ratelimit import RestCallCounter, Tier

    for _ in range(5):
        world.our_order(marketable=True)
    world.sync()
    counter = RestCallCounter(Tier.STARTER)
    with harness_client(world.sim, tier=Tier.STARTER, rest_counter=counter) as client:
        result = runs.reconciliation_run(trigger="schedule", client=client)
    assert result.status == "clean"
    assert result.rest_cost <= 15
    assert counter.value() <= 15


def test_fill_fee_correct_moves_fill_order_position_and_balance(world: World) -> None:
    world.our_order(marketable=True)
    world.sync()
    from trading.models import Fill

    fill = Fill.objects.get()  # the marketable order filled
    usd_before = Balance.objects.get(asset="USD").total
    order_fees = fill.order.fees
    fill_fee_correct(exec_id=fill.exec_id, fee=fill.fee + Decimal("1.5"), fee_asset="USD", actor="test")
    fill.refresh_from_db()
    assert fill.order.fees == order_fees + Decimal("1.5")
    assert Balance.objects.get(asset="USD").total == usd_before - Decimal("1.5")
    assert fill.order.events.filter(kind="amended", payload__exec_id=fill.exec_id).exists()


def test_periodic_schedule_runs_reconciliation_every_minute() -> None:
    spec = next(s for s in PERIODIC_TASKS if s.task == "reconciliation.tasks.reconciliation_run_task")
    assert (spec.every_seconds, spec.queue, spec.kwargs) == (60, "reconciliation", {"trigger": "schedule"})


def trigger_and_run_the_queued_task(api: APIClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST the trigger (202: enqueued after commit), then run the task it enqueued here, as a worker would."""
    from unittest import mock

    from reconciliation.tasks import reconciliation_run_task

    cache.delete(services.TRIGGER_COOLDOWN_KEY)  # the cool-down lives in the shared cache, beyond one test
    with (
        mock.patch.object(reconciliation_run_task, "apply_async") as apply_async,
        TestCase.captureOnCommitCallbacks(execute=True),
    ):
        response = api.post(reverse("api:reconciliation:run-trigger"), body, format="json")
    assert response.status_code == 202, response.json()
    assert response.json() == {"queued": True}
    assert apply_async.call_count == 1
    assert apply_async.call_args.kwargs["queue"] == "reconciliation"
    result: dict[str, Any] = reconciliation_run_task(**apply_async.call_args.kwargs["kwargs"])
    return result


def test_api_lists_filters_acknowledges_resolves_and_triggers(world: World, staff_user, plain_user, settings) -> None:  # type: ignore[no-untyped-def]
    world.fault("balance_move", asset="DOT.S", amount="2.5", type="reward")
    settings.KRAKEN_REST_URL = world.sim.rest_url
    settings.KRAKEN_API_KEY, settings.KRAKEN_API_SECRET = world.sim.config.api_key, world.sim.config.api_secret
    settings.GALFRIDAY_RECONCILIATION_TIER = "pro"
    api = APIClient()
    api.force_authenticate(plain_user)
    assert api.post(reverse("api:reconciliation:run-trigger"), {}, format="json").status_code == 403
    api.force_authenticate(staff_user)
    queued = trigger_and_run_the_queued_task(api, {"reason": "check"})
    assert queued["status"] == "corrected"
    response = api.get(reverse("api:reconciliation:run-detail", args=[queued["run_id"]]))
    assert response.json()["status"] == "corrected"
    listed = api.get(reverse("api:reconciliation:discrepancy-list"), {"kind": "balance_mismatch", "asset": "DOT.S"})
    rows = listed.json()["results"]
    assert len(rows) == 1
    assert rows[0]["status"] == "auto_resolved"
    assert rows[0]["exchange_value"] == "2.5000000000"
    d = Discrepancy.objects.create(run_id=response.json()["id"], kind="state_mismatch", severity="critical")
    ack = api.post(
        reverse("api:reconciliation:discrepancy-acknowledge", args=[d.pk]), {"note": "looking"}, format="json"
    )
    assert ack.json()["status"] == "acknowledged"
    bad = api.post(reverse("api:reconciliation:discrepancy-resolve", args=[d.pk]), {"note": ""}, format="json")
    assert bad.status_code == 400
    ok = api.post(reverse("api:reconciliation:discrepancy-resolve", args=[d.pk]), {"note": "fixed"}, format="json")
    assert ok.json()["status"] == "resolved"
    assert ok.json()["resolution_note"] == "fixed"
    runs = api.get(reverse("api:reconciliation:run-list"), {"trigger": "operator"}).json()["results"]
    assert runs[0]["requested_by"] == "user:staff"
    assert api.get(reverse("api:reconciliation:discrepancy-list"), {"open": "true"}).json()["count"] == 0


def test_paper_mode_skips_reconciliation_and_the_startup_gate(settings) -> None:  # type: ignore[no-untyped-def]
    from reconciliation.models import ReconciliationRun
    from reconciliation.tasks import reconciliation_run_task

    settings.TRADING_MODE = "paper"
    assert reconciliation_run_task(trigger="schedule")["skipped"] is True
    assert not ReconciliationRun.objects.exists()
