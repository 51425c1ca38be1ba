"""Benchmark: reconciliation against the simulator.

    .venv/bin/python bench/bench_reconciliation.py [--orders 10000] [--reward-assets 47] [--scenarios 1000]

Uses the test settings (`tests.settings`) and a throw-away test database on whatever DATABASE_URL names (SQLite
by default). Two parts, one JSON object printed:

* ``full``: the simulator holds N account orders, each filled once (N orders + N fills), and 3 traded + R reward
  assets (50 by default); the local books equal it (bulk-loaded). One full reconciliation (first run: the whole
  window) with the REST client's counter model set to Kraken's Starter tier (max 15, decay 0.33/s) on a virtual
  clock, so waits cost no wall time but are counted: the projected time the same calls take on a real Starter key
  is reported separately, with the counter's peak (never above 15). Our own processing = run duration minus the
  time inside REST calls.
* ``scenarios``: the generated scenarios of tests/reconciliation (seeds 10000..10000+S), each run in a rolled-back
  transaction: detection rate and false-positive rate of material discrepancies, and books-equal-exchange checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("GALFRIDAY_ENV_FILE", "/dev/null")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402


class VirtualClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(1e-6, seconds)  # never a step below float resolution (the waiter would spin)
        await asyncio.sleep(0)


def full_run(orders: int, reward_assets: int) -> dict[str, Any]:
    from ingest.kraken.ratelimit import RestCallCounter, Tier
    from kraken_sim.engine import OrderType, Side
    from kraken_sim.exchange import OrderRequest
    from reconciliation.runs import reconciliation_run
    from tests.reconciliation.harness import SimLoop, harness_client, local_instruments
    from trading.models import Balance, Fill, Instrument, Order, Position
    from trading.pnl import q_money

    class PeakCounter(RestCallCounter):
        peak = 0.0

        def add(self, cost: float) -> float:
            value = super().add(cost)
            self.peak = max(self.peak, value)
            return value

    sl = SimLoop()
    from kraken_sim import SimConfig, Simulator
    from tests.reconciliation.harness import UNLIMITED

    sim = Simulator(
        SimConfig(
            market="none",
            warmup_steps=0,
            rate=0.0,
            tier=UNLIMITED,
            enforce_rate_limits=False,
            balances={"USD": Decimal(10**9), "BTC": Decimal(10**4), "ETH": Decimal(10**5)},
        )
    )
    sl.run(sim.start())
    setup_start = time.perf_counter()

    def populate() -> None:
        ex = sim.exchange
        names = ["BTC/USD", "ETH/USD"]
        for i in range(orders):
            inst = ex.registry.by_symbol(names[i % 2])
            assert inst is not None
            price = inst.price_on_tick(inst.initial_price + inst.tick_size * (i % 50))
            qty = Decimal("0.01") if inst.base.code == "BTC" else Decimal("0.1")
            ours = Side.BUY if i % 4 < 2 else Side.SELL
            ex.participant_limit(inst, ours.opposite, price, qty)
            ex.place_order(
                OrderRequest(inst, ours, OrderType.LIMIT, qty, limit_price=price, cl_ord_id=f"bench-{i}"),
                source="api",
            )
        for k in range(reward_assets):
            sim.faults.balance_move(f"R{k:02d}.S", Decimal(k + 1) / 7, "reward")

    sl.call(populate)
    local_instruments()
    instruments = {i.symbol: i for i in Instrument.objects.all()}
    sim_orders = sl.call(lambda: list(sim.exchange.orders.values()))
    trades = sl.call(lambda: list(sim.exchange.account.trades))
    now = timezone.now()
    Order.objects.bulk_create(
        [
            Order(
                client_order_id=o.cl_ord_id,
                exchange_order_id=o.order_id,
                instrument=instruments[o.symbol],
                side=o.side.value,
                order_type="limit",
                quantity=o.qty,
                limit_price=o.limit_price,
                state="filled",
                filled_qty=o.filled,
                filled_cost=q_money(o.cost),
                avg_price=o.limit_price,
                fees=o.fee,
                submitted_at=now,
                accepted_at=now,
                closed_at=now,
            )
            for o in sim_orders
        ],
        batch_size=2000,
    )
    by_txid = dict(Order.objects.values_list("exchange_order_id", "pk"))
    from datetime import UTC, datetime

    Fill.objects.bulk_create(
        [
            Fill(
                order_id=by_txid[t.order.order_id],
                instrument=instruments[t.order.symbol],
                exec_id=t.txid,
                trade_id=t.trade_id,
                side=t.order.side.value,
                quantity=t.qty,
                price=t.price,
                cost=q_money(t.cost),
                fee=t.fee,
                liquidity="t",
                source="exchange",
                executed_at=datetime.fromtimestamp(t.ts_ns / 1e9, tz=UTC),
            )
            for t in trades
        ],
        batch_size=2000,
    )
    net: dict[str, Decimal] = {}
    for t in trades:
        sign = 1 if t.order.side is Side.BUY else -1
        net[t.order.symbol] = net.get(t.order.symbol, Decimal(0)) + sign * t.qty
    for symbol, qty in net.items():
        Position.objects.create(instrument=instruments[symbol], quantity=qty, avg_price=Decimal(1) if qty else 0)
    balances = sl.call(lambda: dict(sim.exchange.account.balances))
    Balance.objects.bulk_create([Balance(asset=a, total=v) for a, v in balances.items()])
    setup_s = time.perf_counter() - setup_start

    clock = VirtualClock()
    counter = PeakCounter(Tier.STARTER, history_cost=2, clock=clock.now, sleep=clock.sleep)
    client = harness_client(sim, tier=Tier.STARTER, rest_counter=counter, clock=clock.now, sleep=clock.sleep)
    try:
        run = reconciliation_run(trigger="operator", reason="benchmark", client=client)
    finally:
        client.close()
        sl.run(sim.stop())
        sl.close()
    return {
        "orders": len(sim_orders),
        "fills": len(trades),
        "assets": len(balances),
        "setup_s": round(setup_s, 2),
        "status": run.status,
        "discrepancies": run.discrepancy_count,
        "findings_by_kind": run.counts.get("findings_by_kind"),
        "processing_ms": round(run.processing_ms or 0, 1),
        "rest_wall_ms": round(run.rest_ms or 0, 1),
        "duration_ms": round(run.duration_ms or 0, 1),
        "rest_calls": run.rest_calls,
        "rest_calls_by_method": run.counts.get("rest_calls_by_method"),
        "rest_counter_cost": run.rest_cost,
        "starter_counter_peak": round(counter.peak, 3),
        "starter_counter_max": counter.maximum,
        "starter_projected_rest_wait_s": round(counter.waited_s, 1),
    }


def scenarios(count: int, first_seed: int) -> dict[str, Any]:
    from tests.reconciliation.harness import SimLoop
    from tests.reconciliation.test_scenarios import check_scenario

    sl = SimLoop()
    totals = {"expected": 0, "found": 0, "false": 0, "failed": 0}
    failures: list[str] = []
    start = time.perf_counter()
    for seed in range(first_seed, first_seed + count):
        try:
            with transaction.atomic():
                result = check_scenario(sl, seed)
                transaction.set_rollback(True)
            for key in ("expected", "found", "false"):
                totals[key] += result[key]
        except AssertionError as exc:
            totals["failed"] += 1
            failures.append(f"{seed}: {str(exc)[:200]}")
    sl.close()
    expected = totals["expected"] or 1
    return {
        "scenarios": count,
        "seconds": round(time.perf_counter() - start, 1),
        "injected_discrepancies": totals["expected"],
        "detected": totals["found"],
        "false_positives": totals["false"],
        "detection_rate": round(totals["found"] / expected, 6),
        "false_positive_rate": round(totals["false"] / max(1, totals["found"] + totals["false"]), 6),
        "failed_scenarios": totals["failed"],
        "failures": failures[:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--reward-assets", type=int, default=47)
    parser.add_argument("--scenarios", type=int, default=1000)
    parser.add_argument("--first-seed", type=int, default=10_000)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    out: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "database": connection.vendor,
    }
    try:
        if not args.skip_full:
            with transaction.atomic():
                out["full"] = full_run(args.orders, args.reward_assets)
                transaction.set_rollback(True)
        if args.scenarios:
            out["scenarios"] = scenarios(args.scenarios, args.first_seed)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
