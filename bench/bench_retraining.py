"""Benchmark: the retraining loop (models_registry.retraining).

    .venv/bin/python bench/bench_retraining.py retrain [--days 365] [--model hgb|logreg] [--folds 5]
    .venv/bin/python bench/bench_retraining.py scenario [--train-days 14] [--live-hours 48] [--change-hours 30]
        [--check-minutes 15] [--scenarios regime_change,random_walk]

`retrain` (target: under 5 minutes for one year of 1-minute bars): one retraining run through the service the
lifecycle worker runs (`retraining_run`): the stored bars of the window read back from the time-series store,
features and labels, purged walk-forward evaluation with the backtest through the live risk check, the final fit,
registration with the gates recorded, the challenger adopted or rejected. Writing the bars to the store and
training the champion it retrains are set-up, timed apart.

`scenario` (realistic settings): the simulator's `regime_change` market (the edge vanishes and sigma doubles at
the change) and `random_walk` (no change, the same noise): a champion trained on `--train-days` before the origin,
one prediction per live minute, outcomes maturing, a drift check every `--check-minutes` of market time with the
default thresholds and windows, the retraining scan after each check, a triggered run trained at market time
(default window and floor), and the challenger shadow-tested through the experiments app with the default
experiment settings until the market time ends. Prints per scenario: when drift was confirmed (minutes after the
true change), the run, its training time, the experiment and how the run ended (promoted, rejected with why, or
still in its shadow test), and that `random_walk` triggered nothing.

Both set up a throw-away test database (the configured DATABASE_URL's test database) and write bars under fresh
symbols to the configured time-series store (InfluxDB when INFLUXDB_URL is set). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")

ORIGIN = datetime(2025, 6, 2, tzinfo=UTC)
SHOWN_METRICS = ("n_samples", "sharpe", "psr", "dsr", "accuracy")


def promote_first(version: Any) -> None:
    """The champion a benchmark retrains is promoted whatever its gates say (it stands in for the running one)."""
    from django.conf import settings

    from models_registry.services import model_version_promote

    gates, extra = settings.MODELS_REGISTRY_PROMOTION_GATES, settings.MODELS_REGISTRY_EXTRA_GATES
    settings.MODELS_REGISTRY_PROMOTION_GATES, settings.MODELS_REGISTRY_EXTRA_GATES = {}, []
    try:
        model_version_promote(model_name=version.model.name, version=version.version, reason="bench", actor="bench")
    finally:
        settings.MODELS_REGISTRY_PROMOTION_GATES, settings.MODELS_REGISTRY_EXTRA_GATES = gates, extra


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def retrain(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd
    from django.conf import settings

    from models_registry.retraining.services import retraining_run, retraining_trigger
    from models_registry.training import TrainingConfig, train_model
    from tests.models_registry.conftest import store_bars
    from tests.models_registry.synthetic import make_bars

    symbol = f"B{uuid.uuid4().hex[:10].upper()}/USD"
    bars = make_bars(args.days * 1440, seed=7, book=False)
    bars.index = bars.index - bars.index[0] + pd.Timestamp(ORIGIN - timedelta(days=args.days))
    t0 = time.perf_counter()
    store_bars(bars, symbol)
    store_s = time.perf_counter() - t0
    config = TrainingConfig(model=args.model, n_splits=args.folds, min_samples=300)
    start = bars.index[0].to_pydatetime()
    t1 = time.perf_counter()
    champion = train_model(
        symbol=symbol, start=start, end=start + timedelta(days=args.champion_days), config=config,
        model_name=f"bench-retrain-{symbol[1:7].lower()}", actor="bench",
    )  # fmt: skip
    champion_s = time.perf_counter() - t1
    version = champion.version  # type: ignore[union-attr]
    promote_first(version)
    settings.MODELS_REGISTRY_RETRAINING_WINDOW_HOURS = args.days * 24.0
    trigger = retraining_trigger(model_name=version.model.name, kind="operator", reason="bench", actor="bench")
    assert trigger.run is not None
    t2 = time.perf_counter()
    run = retraining_run(run_id=trigger.run.pk, now=ORIGIN)
    retrain_s = time.perf_counter() - t2
    assert run is not None
    metrics = run.challenger.metrics if run.challenger else {}
    return {
        "benchmark": "retraining_run",
        "days": args.days,
        "bars": len(bars),
        "model": args.model,
        "folds": args.folds,
        "store_bars_s": round(store_s, 2),
        "champion_train_s": round(champion_s, 2),
        "retraining_run_s": round(retrain_s, 2),
        "target_s": 300,
        "status": run.status,
        "outcome": run.outcome,
        "window": [
            run.data_start.isoformat() if run.data_start else None,
            run.data_end.isoformat() if run.data_end else None,
        ],
        "challenger_metrics": {
            k: round(v, 4) for k, v in metrics.items() if k in ("n_samples", "sharpe", "psr", "dsr", "accuracy")
        },
    }


def scenario(args: argparse.Namespace) -> dict[str, Any]:
    from models_registry.models import ModelVersion, Stage
    from models_registry.retraining.models import RetrainingRun, RetrainingTrigger
    from models_registry.training import TrainingConfig, train_model
    from tests.models_registry.conftest import store_bars
    from tests.models_registry.retraining.support import scenario_bars, scenario_loop

    change_at = int(args.change_hours * 60)
    live_minutes = int(args.live_hours * 60)
    texts = {
        "regime_change": f"regime_change:drift=0.0001,regime_minutes=60,change_at={change_at},vol_mult=2",
        "random_walk": "random_walk",
    }
    out: dict[str, Any] = {"benchmark": "retraining_scenario", "change_at_minutes": change_at, "results": {}}
    for name in args.scenarios.split(","):
        symbol = f"S{uuid.uuid4().hex[:8].upper()}/USD"
        bars = scenario_bars(texts[name], origin=ORIGIN, first=-args.train_days * 1440, last=live_minutes - 1)
        store_bars(bars, symbol)
        config = TrainingConfig(model=args.model, horizon=60, dead_zone="auto", n_splits=3, min_samples=300)
        first = train_model(
            symbol=symbol,
            start=ORIGIN - timedelta(days=args.train_days),
            end=ORIGIN,
            config=config,
            model_name=f"bench-e2e-{symbol[1:9].lower()}",
            actor="bench",
        ).version  # type: ignore[union-attr]
        promote_first(first)
        loop = scenario_loop(
            bars, symbol, first=first, origin=ORIGIN, first_check=1440, last_minute=live_minutes,
            check_every=args.check_minutes,
        )  # fmt: skip
        change = ORIGIN + timedelta(minutes=change_at)
        runs = list(RetrainingRun.objects.filter(model=first.model).order_by("pk"))
        out["results"][name] = {
            "drift_checks": len(loop.reports),
            "drift_confirmed_minutes_after_change": (
                (loop.confirmed_at - change).total_seconds() / 60 if loop.confirmed_at else None
            ),
            "runs": [
                {
                    "id": r.pk,
                    "status": r.status,
                    "outcome": r.outcome,
                    "experiment": r.experiment_id,
                    "challenger": r.challenger.version if r.challenger else None,
                    "window": [str(r.data_start), str(r.data_end)],
                }
                for r in runs
            ],  # fmt: skip
            "triggers": RetrainingTrigger.objects.filter(model=first.model).count(),
            "training_s": round(loop.training_seconds, 2) if loop.training_seconds is not None else None,
            "champion_at_end": ModelVersion.objects.get(model=first.model, stage=Stage.PRODUCTION).version,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("retrain")
    one.add_argument("--days", type=int, default=365)
    one.add_argument("--champion-days", type=int, default=7)
    one.add_argument("--model", choices=["hgb", "logreg"], default="hgb")
    one.add_argument("--folds", type=int, default=5)
    two = sub.add_parser("scenario")
    two.add_argument("--train-days", type=int, default=14)
    two.add_argument("--live-hours", type=float, default=48.0)
    two.add_argument("--change-hours", type=float, default=30.0)
    two.add_argument("--check-minutes", type=int, default=15)
    two.add_argument("--model", choices=["hgb", "logreg"], default="logreg")
    two.add_argument("--scenarios", default="regime_change,random_walk")
    args = parser.parse_args()

    import django

    django.setup()
    logging.disable(logging.WARNING)
    from django.conf import settings
    from django.db import connection

    from models_registry.artifacts import crypto

    tmp = tempfile.mkdtemp(prefix="bench-retraining-")
    settings.MODELS_REGISTRY_ARTIFACT_DIR = tmp
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [crypto.new_key_spec("bench")]
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        result = retrain(args) if args.mode == "retrain" else scenario(args)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(tmp, ignore_errors=True)
    result["machine"] = machine()
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
