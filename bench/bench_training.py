"""Benchmark: training wall time, features + labels + purged walk-forward evaluation (5 folds, backtest) + final
fit, on one year of synthetic 1-minute bars (525,600 rows). Pure computation: no database, no registration. The
backtest sends every order through the live pre-trade risk check (default limits); its counts are printed.

    .venv/bin/python bench/bench_training.py [--rows 525600] [--model hgb|logreg]

Prints JSON with the wall time of each phase.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=525_600)
    parser.add_argument("--model", choices=["hgb", "logreg"], default="hgb")
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    import django

    django.setup()
    logging.disable(logging.WARNING)  # logs go to stdout; keep it JSON only
    from models_registry.training import TrainingConfig, evaluate_and_fit
    from tests.models_registry.synthetic import make_bars

    t0 = time.perf_counter()
    bars = make_bars(args.rows, seed=7)
    generated = time.perf_counter() - t0
    config = TrainingConfig(model=args.model, horizon=args.horizon, n_splits=args.folds)
    t1 = time.perf_counter()
    outcome = evaluate_and_fit(bars, config)
    total = time.perf_counter() - t1
    print(
        json.dumps(
            {
                "benchmark": "training_walk_forward",
                "rows": args.rows,
                "model": args.model,
                "folds": args.folds,
                "horizon": args.horizon,
                "samples": outcome.n_samples,
                "generate_bars_s": round(generated, 2),
                "train_and_evaluate_s": round(total, 2),
                "metrics": {k: round(v, 4) for k, v in outcome.metrics.items() if k in ("accuracy", "sharpe", "dsr")},
                "risk": {k: v for k, v in outcome.metrics.items() if k.startswith("risk_")},
                "machine": {
                    "python": platform.python_version(),
                    "cpu": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
