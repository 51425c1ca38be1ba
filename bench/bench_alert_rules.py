"""Benchmark: what the in-app alert rules cost, and how soon a condition becomes an alert.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_bench_alerts REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/bench_alert_rules.py [--passes 200] [--conditions 100] [--orders 5000]

Issue 17's target is condition -> notification delivered p99 under 5 s; bench/bench_notifications.py measures
alert -> delivered. This measures the part before it, in this process on PostgreSQL and Redis (the database is
created if missing, migrated and flushed: never point it at a database you keep):

* pass: one run of the "database" rule group (alerting.rules.GROUPS, every 5 s from beat) over a filled database
  (`--orders` orders with decisions and events, 300 equity snapshots, three ingest workers with ten symbols, ten
  balances), nothing firing: its wall time per pass (p50/p99/max) is the cost of the schedule, and bounds how long a
  condition only the schedule sees waits (the 5 s interval plus one pass);
* event: `--conditions` times, an ingest heartbeat saying the WebSocket has been down for six minutes is written
  (ingest.services.status_save, as the worker does), and the time to the `alert_changed` signal ("fired") is taken;
  then a heartbeat saying it reconnected, and the time to "resolved". Rules on the event path (the heartbeat, the
  trading state, equity snapshots, rejected orders; reconciliation, drift, degradation, guardrails inline) answer in
  this time, not the schedule's.

Prints one JSON object. Not a timed test: run it on a quiet machine for figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_execution_report import bench_environment, btc_usd_upsert, prepare_database  # noqa: E402
from bench.stats import percentiles  # noqa: E402


def fill(orders: int) -> None:
    """A database the size of a few days of trading, with nothing any rule fires on."""
    from django.utils import timezone

    from ingest.models import IngestStatus
    from trading.accounts import balance_set
    from trading.instruments import market_quote_set
    from trading.models import Decision, EquitySnapshot, Instrument, Order
    from trading.orders import order_create

    btc_usd_upsert()
    instrument = Instrument.objects.get(symbol="BTC/USD")
    now = timezone.now()
    market_quote_set(instrument=instrument, bid=Decimal("100"), ask=Decimal("101"), at=now)
    for i in range(orders):
        order = order_create(client_order_id=f"bench-{i}", instrument=instrument, side="buy", order_type="limit",
                             quantity=Decimal("0.01"), limit_price=Decimal("100"))  # fmt: skip
        bar = now - timedelta(minutes=orders - i + 30)
        Order.objects.filter(pk=order.pk).update(state="accepted", accepted_at=bar + timedelta(seconds=60.1))
        Decision.objects.create(decision_id=f"bench-{i}", instrument=instrument, bar_time=bar, model_version="m v1",
                                signal=1, confidence=Decimal("0.6"), order=order, status="ordered")  # fmt: skip
    EquitySnapshot.objects.bulk_create(
        EquitySnapshot(taken_at=now - timedelta(seconds=10 * k), currency="USD", equity=Decimal("10000"),
                       realised_pnl=0, unrealised_pnl=0, fees=0, high_water_mark=Decimal("10000"), drawdown=0)
        for k in range(300)
    )  # fmt: skip
    for asset in ("USD", "BTC", "ETH", "SOL", "XRP", "ADA", "DOT", "LTC", "LINK", "DOGE"):
        balance_set(asset=asset, total=Decimal("1000"))
    for w in range(3):
        IngestStatus.objects.create(name=f"bench:{w}", connection_state="connected", exchange_status="online",
                                    symbols=["BTC/USD"], stats={}, last_message_at=now, started_at=now,
                                    updated_at=now)  # fmt: skip


def passes(n: int) -> dict[str, Any]:
    from alerting.rules import GROUPS, rules_evaluate

    rules_evaluate(names=list(GROUPS["database"]))  # warm: compiled statements, connections
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        result = rules_evaluate(names=list(GROUPS["database"]))
        samples.append(time.perf_counter_ns() - started)
        errors = {name: r["error"] for name, r in result.items() if "error" in r}
        if errors:
            raise SystemExit(f"a rule failed: {errors}")
    return percentiles(samples)


def events(n: int) -> dict[str, Any]:
    from django.utils import timezone

    from ingest.services import status_save
    from trading.alerts import alert_changed

    seen: dict[tuple[int, str], int] = {}

    def receiver(sender: Any, alert_id: int, change: str, **kwargs: Any) -> None:
        seen[(alert_id, change)] = time.perf_counter_ns()

    alert_changed.connect(receiver, weak=False)
    fired, resolved = [], []
    try:
        for i in range(n):
            now = timezone.now()
            name = f"bench-event:{i}"
            common = {"name": name, "exchange_status": "online", "symbols": [], "stats": {}, "last_message_at": now,
                      "started_at": now - timedelta(hours=1), "now": now}  # fmt: skip
            seen.clear()
            started = time.perf_counter_ns()
            status_save(connection_state="reconnecting", disconnected_since=now - timedelta(minutes=6), **common)
            stamps = [t for (_, change), t in seen.items() if change == "fired"]
            if not stamps:
                raise SystemExit("no alert fired on a six-minute disconnection")
            fired.append(stamps[0] - started)
            seen.clear()
            started = time.perf_counter_ns()
            status_save(connection_state="connected", disconnected_since=None, **common)
            stamps = [t for (_, change), t in seen.items() if change == "resolved"]
            if not stamps:
                raise SystemExit("the alert did not resolve on reconnection")
            resolved.append(stamps[0] - started)
    finally:
        alert_changed.disconnect(receiver)
    return {"fired": percentiles(fired), "resolved": percentiles(resolved)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--conditions", type=int, default=100)
    parser.add_argument("--orders", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as var_dir:
        os.environ.update(bench_environment(var_dir))
        import django

        django.setup()
        prepare_database()
        fill(args.orders)
        out = {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "orders": args.orders,
            "database_pass_ms": passes(args.passes),
            "condition_to_alert_ms": events(args.conditions),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
