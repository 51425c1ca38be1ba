"""Time and memory of the simulator's back-dated scenario history (kraken_sim ``--history-days``).

    .venv/bin/python bench/bench_sim_history.py [--days 14] [--scenario trend]

Starts an in-process simulator (two symbols, no background market), reports the time ``start()`` took (history
generation + installing it into the archive, candles and ticker), the trades per symbol, and the peak RSS of the
process before and after (``resource.getrusage``: includes Python, numpy and aiohttp themselves).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy  # noqa: F401  (imported before the first RSS reading, so it is not counted as history)

from kraken_sim import SimConfig, Simulator


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(days: float, scenario: str) -> None:
    before = rss_mb()
    config = SimConfig(market="generate", rate=0.0, scenario=scenario, history_days=days)
    started = time.perf_counter()
    sim = Simulator(config)
    await sim.start()
    elapsed = time.perf_counter() - started
    after = rss_mb()
    report = sim.market.history_report
    trades = {s: r["trades"] for s, r in report.items() if isinstance(r, dict)}
    print(f"scenario {scenario}, {days} days x {len(trades)} symbols: trades {trades}")
    print(f"start() {elapsed:.2f} s (history generation and installation {report.get('seconds')} s)")
    print(f"peak RSS before {before:.0f} MB, after {after:.0f} MB (+{after - before:.0f} MB)")
    await sim.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--scenario", default="trend")
    args = parser.parse_args()
    asyncio.run(main(args.days, args.scenario))
