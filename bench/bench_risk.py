"""Benchmark: `trading.risk.check_order` per order, in-process, over a realistic snapshot. Target: p99 < 1 ms.

    .venv/bin/python bench/bench_risk.py [--orders N]

The pure check only (the snapshot is loaded by `order_submit_checked` inside its transaction; that I/O is not
measured here). Orders mix buys and sells, limit and market, passing and failing (so every check runs, and the
failure path builds its reasons), against a snapshot with 60 recent order timestamps (about 6 within the last
minute). Each order is timed with `perf_counter_ns` (includes ~50 ns of timer overhead). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trading.risk import DEFAULT_LIMITS, InstrumentRules, OrderIntent, RiskSnapshot, check_order  # noqa: E402

D = Decimal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    snapshot = RiskSnapshot(
        now=now,
        trading_state="active",
        rules=InstrumentRules(
            symbol="BTC/USD",
            base="BTC",
            quote="USD",
            tick_size=D("0.1"),
            ordermin=D("0.0001"),
            costmin=D("0.5"),
            qty_increment=D("0.00000001"),
        ),
        limits=DEFAULT_LIMITS,
        position_qty=D("0.35"),
        open_buy_qty=D("0.1"),
        open_sell_qty=D("0.05"),
        base_available=D("0.3"),
        quote_available=D("25000"),
        mid=D("64250.5"),
        mid_at=now - timedelta(milliseconds=800),
        gross_exposure=D("31000"),
        recent_orders=[now - timedelta(seconds=rng.uniform(0, 600)) for _ in range(60)],
        daily_pnl=D("-120.5"),
        equity=D("98000"),
        high_water_mark=D("101000"),
    )
    intents = []
    for _ in range(1000):
        side = rng.choice(["buy", "sell"])
        market = rng.random() < 0.2
        qty = D(rng.randrange(1, 20_000_000)).scaleb(-8)
        price = None if market else (D("64250.5") + D(rng.randrange(-50000, 50000)) / 10).quantize(D("0.1"))
        intents.append(
            OrderIntent(side=side, order_type="market" if market else "limit", quantity=qty, limit_price=price)
        )

    for intent in intents:  # warm-up
        check_order(intent, snapshot)
    rejected = sum(1 for intent in intents if not check_order(intent, snapshot).ok)

    gc.collect()
    gc.disable()
    timings = []
    perf = time.perf_counter_ns
    n = len(intents)
    for i in range(args.orders):
        intent = intents[i % n]
        start = perf()
        check_order(intent, snapshot)
        timings.append(perf() - start)
    gc.enable()
    timings.sort()

    def pct(p: float) -> float:
        return timings[min(len(timings) - 1, int(p * len(timings)))] / 1000

    print(
        json.dumps(
            {
                "benchmark": "risk.check_order",
                "orders": args.orders,
                "rejected_fraction": round(rejected / n, 3),
                "p50_us": round(pct(0.50), 2),
                "p99_us": round(pct(0.99), 2),
                "p999_us": round(pct(0.999), 2),
                "max_us": round(timings[-1] / 1000, 2),
                "orders_per_s": round(args.orders / (sum(timings) / 1e9)),
                "python": platform.python_version(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
