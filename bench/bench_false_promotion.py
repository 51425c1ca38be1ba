"""Benchmark: how often the promotion gates pass a model that has no edge (false promotions), and how often they
pass one trained on the learnable market (power). Target: at most 5 % false promotions on `random_walk`.

    .venv/bin/python bench/bench_false_promotion.py [--seeds 100] [--power-seeds 20] [--days 14]

For each seed, the simulator's scenario generator (`kraken_sim.scenarios`, the code `python -m kraken_sim
--scenario ... --history-days 14` serves) produces 14 days of back-dated public trades of BTC/USD; they become
1-minute bars through the ingest worker's bar builder (as `models_registry.history.backfill_from_trades` builds
them); the bootstrap's training configuration evaluates and fits a model (`training.evaluate_and_fit`: purged
walk-forward, live sizing and costs, baselines), and the default production gates judge its metrics
(`selectors.gate_results`, what a promotion checks). No database is needed: nothing is registered.

A third run evaluates random-walk models without fees or slippage: they then trade noise (with costs they never
trade, so the cost rule alone refuses them), and the gates' statistics (PSR, DSR, baselines, calibration) must
refuse them on their own. Prints JSON: per scenario the number of seeds, promotions, the rate with its 95 % Wilson
interval, and which gates failed how often.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")
os.environ.setdefault("GALFRIDAY_ENV_FILE", "/dev/null")

RANDOM_WALK = "random_walk"
LEARNABLE = "trend:drift=0.0003,regime_minutes=480"  # settings.KRAKEN_SIM_SCENARIO's default


def history_bars(spec_text: str, seed: int, days: float) -> Any:
    """The 1-minute bars of `days` of the scenario's BTC/USD history, built from its trades by the bar builder."""
    from ingest.bars import BarBuilder
    from ingest.kraken.messages import Trade
    from kraken_sim.instruments import CATALOGUE
    from kraken_sim.scenarios import ScenarioPath, generate_history, parse_scenario
    from models_registry.history import bars_frame, fill_gaps

    inst = CATALOGUE["BTC/USD"]
    spec = parse_scenario(spec_text)
    path = ScenarioPath(spec, seed, inst.symbol, float(inst.initial_price))
    origin = datetime.now(UTC).replace(second=0, microsecond=0)
    origin_ns = int(origin.timestamp()) * 1_000_000_000
    minutes = int(days * 1440)
    trades = generate_history(
        path,
        minutes=minutes,
        origin_ns=origin_ns,
        tick=float(inst.tick_size),
        typical_qty=float(inst.typical_qty),
        lot_decimals=inst.lot_decimals,
        min_lots=1,
        seed=seed,
    )
    builder = BarBuilder(inst.symbol, price_precision=inst.price_decimals, interval_seconds=60)
    bars = {}
    lot = Decimal(1).scaleb(-inst.lot_decimals)
    for i, (ts, ticks, lots, buy) in enumerate(
        zip(
            trades.ts_ns.tolist(),
            trades.price_ticks.tolist(),
            trades.qty_lots.tolist(),
            trades.buy.tolist(),
            strict=True,
        )
    ):
        trade = Trade(
            symbol=inst.symbol,
            side="buy" if buy else "sell",
            price=Decimal(ticks) * inst.tick_size,
            qty=Decimal(lots) * lot,
            ord_type="market",
            trade_id=i + 1,
            timestamp=datetime.fromtimestamp(ts / 1e9, tz=UTC),
        )
        for bar in builder.add_trade(trade):
            bars[bar.start] = bar
    for bar in builder.advance(origin + timedelta(minutes=2)):
        bars[bar.start] = bar
    frame, _ = fill_gaps(bars_frame([bars[t].to_point() for t in sorted(bars)]))
    return frame


def judge(spec_text: str, seed: int, days: float, gates: dict[str, Any], *, cost_free: bool = False) -> dict[str, Any]:
    from dataclasses import replace

    from models_registry.bootstrap import bootstrap_config
    from models_registry.evaluation import RiskGate
    from models_registry.selectors import gate_results
    from models_registry.training import TrainingError, evaluate_and_fit

    bars = history_bars(spec_text, seed, days)
    try:
        config = bootstrap_config()
        if cost_free:  # no fees, no slippage: edge-less models trade noise and the statistics alone must refuse them
            config = replace(config, taker_fee=0.0, slippage_bps=0.0)
        outcome = evaluate_and_fit(bars, config, risk=RiskGate())
    except TrainingError as exc:  # e.g. single-class labels: nothing registered, nothing promoted
        return {"seed": seed, "promoted": False, "failed": [f"training:{exc.code}"], "metrics": {}}
    results = gate_results(outcome.metrics, gates)
    failed = [r.name for r in results if not r.passed]
    keep = (
        "psr", "dsr", "net_pnl", "excess_net_pnl_vs_hold", "excess_net_pnl_vs_momentum", "n_oos_trades", "ece",
        "log_loss_skill", "brier_skill", "direction_hit_rate",
    )  # fmt: skip
    return {
        "seed": seed,
        "promoted": not failed,
        "failed": failed,
        "metrics": {k: outcome.metrics.get(k) for k in keep},
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    from models_registry.evaluation.intervals import wilson_interval

    n = len(runs)
    promoted = sum(1 for r in runs if r["promoted"])
    low, high = wilson_interval(promoted, n) if n else (0.0, 1.0)
    failures: Counter[str] = Counter(name for r in runs for name in r["failed"])
    return {
        "seeds": n,
        "promoted": promoted,
        "rate": promoted / n if n else None,
        "wilson_95": [low, high],
        "gate_failures": dict(failures.most_common()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="random_walk seeds (false promotions)")
    parser.add_argument("--power-seeds", type=int, default=20, help="learnable-trend seeds (power)")
    parser.add_argument(
        "--cost-free-seeds", type=int, default=100, help="random_walk seeds evaluated without fees or slippage"
    )
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    gates = settings.MODELS_REGISTRY_PROMOTION_GATES.get("production", {})
    started = time.perf_counter()
    report: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cpus", "gates": gates}
    sections = (
        (RANDOM_WALK, RANDOM_WALK, args.seeds, False),
        ("learnable", LEARNABLE, args.power_seeds, False),
        ("random_walk_cost_free", RANDOM_WALK, args.cost_free_seeds, True),
    )
    for name, spec, count, cost_free in sections:
        runs = []
        for seed in range(args.first_seed, args.first_seed + count):
            runs.append(judge(spec, seed, args.days, gates, cost_free=cost_free))
            print(json.dumps({"scenario": name, **runs[-1]}), file=sys.stderr, flush=True)
        report[name] = {"scenario": spec, **summarise(runs)}
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
