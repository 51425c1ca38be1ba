"""Benchmark: model features for one new bar (incremental, live path) and for one year of bars (batch).

    .venv/bin/python bench/bench_features.py [--updates N] [--batch-rows R] [--cpu K]

The incremental calculator is primed with 1,000 synthetic 1-minute bars (book columns included), then timed
per ``update`` call with ``perf_counter_ns`` over N further bars given as dicts of ``Decimal`` values, as they
come from the store (conversion to float is part of the measured work). Batch: ``compute_features`` over R
rows (default 525,600, one year of 1-minute bars) of float columns; best of 3 runs. Target: incremental p99
under 2 ms. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models_registry.features import IncrementalFeatures, compute_features  # noqa: E402
from tests.models_registry.synthetic import make_bars  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--batch-rows", type=int, default=525_600)
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    prime = 1_000
    bars = make_bars(prime + args.updates, seed=1)
    inc = IncrementalFeatures.from_history(bars.iloc[:prime])
    live = [
        (ts, {k: Decimal(repr(round(float(v), 8))) for k, v in row.items()})
        for ts, row in zip(bars.index[prime:], bars.iloc[prime:].to_dict("records"), strict=True)
    ]
    gc.collect()
    gc.disable()
    timings = np.empty(len(live), dtype=np.int64)
    for i, (ts, row) in enumerate(live):
        t0 = time.perf_counter_ns()
        inc.update(ts, row)
        timings[i] = time.perf_counter_ns() - t0
    gc.enable()

    year = make_bars(args.batch_rows, seed=2)
    batch_seconds: list[float] = []
    for _ in range(3):
        start = time.perf_counter()
        features = compute_features(year)
        batch_seconds.append(time.perf_counter() - start)
    assert len(features) == args.batch_rows

    print(
        json.dumps(
            {
                "benchmark": "features",
                "incremental_updates": len(live),
                "incremental_p50_us": round(float(np.percentile(timings, 50)) / 1e3, 1),
                "incremental_p99_us": round(float(np.percentile(timings, 99)) / 1e3, 1),
                "incremental_max_us": round(float(timings.max()) / 1e3, 1),
                "target_p99_us": 2000,
                "batch_rows": args.batch_rows,
                "batch_seconds_best_of_3": round(min(batch_seconds), 3),
                "batch_rows_per_second": round(args.batch_rows / min(batch_seconds)),
                "python": platform.python_version(),
                "numpy": np.__version__,
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
