"""Benchmark: outcome tracking. Targets: maturing 10,000 predictions < 1 s; live metrics of one version over
100,000 matured outcomes < 200 ms (PostgreSQL).

    .venv/bin/python bench/bench_outcomes.py [--predictions 10000] [--outcomes 100000] [--repeat 10] [--profile]
        [--no-gc-freeze]

Sets up a throw-away test database (the configured DATABASE_URL's test database), registers a version
(horizon 15, the recorded dead zone and costs), writes one bar per minute for the predictions' span to the
configured time-series store (InfluxDB when INFLUXDB_URL is set) under a fresh symbol, records one prediction
per bar, and times one `outcomes_mature` pass that matures them all (store read, labels, INSERT of the outcomes
and their audit rows), then a replayed pass (nothing to write). Then bulk-creates N matured outcomes for a
second version, runs VACUUM ANALYZE (the steady state of a table autovacuum keeps up with) and times
`version_live_metrics` (every window, intervals, calibration) `--repeat` times. Before the timed calls the
set-up's objects are frozen out of the garbage collector's reach (`gc.freeze`), as the Celery worker that runs
the maturation task does with its start-up heap; `--no-gc-freeze` leaves them (a full collection during the pass
then walks ~265,000 objects: ~0.2 s on a loaded machine). Prints JSON; `--profile` adds cProfile reports of the
two timed calls on stderr (cumulative and own time).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import logging
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")

HYPER = {"horizon": 15, "label_dead_zone": 0.001, "taker_fee": 0.004, "slippage_bps": 5.0}


def _profiled(enabled: bool, name: str, func: Any, **kwargs: Any) -> Any:
    """`func(**kwargs)`, under cProfile when `enabled` (the top 45 by cumulative and the top 25 by own time go to
    stderr)."""
    if not enabled:
        return func(**kwargs)
    profiler = cProfile.Profile()
    result = profiler.runcall(func, **kwargs)
    print(f"--- profile: {name}", file=sys.stderr)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(25)
    return result


def _gc_counts() -> list[int]:
    return [generation["collections"] for generation in gc.get_stats()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--outcomes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="cProfile the two timed calls (top 45 to stderr)")
    parser.add_argument(
        "--no-gc-freeze", action="store_true", help="leave the set-up's objects to the garbage collector (no gc.freeze)"
    )
    args = parser.parse_args()

    import django

    django.setup()
    logging.disable(logging.WARNING)
    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection

    from models_registry.artifacts import crypto

    tmp = tempfile.mkdtemp(prefix="bench-outcomes-")
    settings.MODELS_REGISTRY_ARTIFACT_DIR = tmp
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [crypto.new_key_spec("bench")]
    settings.MODELS_REGISTRY_PROMOTION_GATES = {}
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from models_registry.models import Prediction, PredictionOutcome
        from models_registry.outcomes import LOCK_KEY, outcomes_mature, version_live_metrics
        from tests.models_registry.conftest import store_bars
        from tests.models_registry.factories import make_model, make_version
        from tests.models_registry.synthetic import make_bars
        from timeseries import get_store

        cache.delete(LOCK_KEY)
        n = args.predictions
        horizon = int(HYPER["horizon"])
        symbol = f"B{uuid.uuid4().hex[:10].upper()}/USD"
        bars = make_bars(n + horizon, seed=5, book=False)
        start = datetime(2025, 6, 2, tzinfo=UTC)
        bars.index = bars.index - bars.index[0] + start
        store_bars(bars, symbol)
        version = make_version(make_model(gates={}), hyperparameters=HYPER, metrics={"direction_hit_rate": 0.5})
        Prediction.objects.bulk_create(
            Prediction(
                decision_id=f"bench-{i}",
                version=version,
                symbol=symbol,
                features_hash="0" * 64,
                probabilities={"-1": 0.3, "0": 0.2, "1": 0.5},
                predicted_class=1,
                signal=1,
                confidence=0.5,
                bar_time=t.to_pydatetime(),
                horizon=horizon,
            )
            for i, t in enumerate(bars.index[:n])
        )
        now = (bars.index[-1] + (horizon + 5) * (bars.index[1] - bars.index[0])).to_pydatetime()
        if not args.no_gc_freeze:
            # as the Celery worker does after start-up (galfriday_site.celery._freeze_startup_objects): a full
            # collection during the pass then walks what the pass made, not the set-up's ~265,000 objects
            gc.collect()
            gc.freeze()
        gc_before = _gc_counts()
        t0 = time.perf_counter()
        first = _profiled(args.profile, "mature", outcomes_mature, now=now)
        mature_s = time.perf_counter() - t0
        gc_during = [after - before for after, before in zip(_gc_counts(), gc_before, strict=True)]
        t0 = time.perf_counter()
        replay = outcomes_mature(now=now)
        replay_s = time.perf_counter() - t0

        other = make_version(make_model(gates={}), hyperparameters=HYPER, metrics={"direction_hit_rate": 0.5})
        rng = np.random.default_rng(1)
        end = datetime.now(tz=UTC).replace(second=0, microsecond=0)
        m = args.outcomes
        chunk = 20_000
        for lo in range(0, m, chunk):
            idx = range(lo, min(lo + chunk, m))
            preds = Prediction.objects.bulk_create(
                Prediction(
                    decision_id=f"live-{i}",
                    version=other,
                    symbol="BTC/USD",
                    features_hash="0" * 64,
                    probabilities={"-1": 0.3, "0": 0.2, "1": 0.5},
                    predicted_class=1,
                    signal=1,
                    confidence=0.5,
                    bar_time=end - timedelta(minutes=m - i),
                    horizon=horizon,
                )
                for i in idx
            )
            fwd = rng.normal(0.0, 0.002, len(preds))
            PredictionOutcome.objects.bulk_create(
                PredictionOutcome(
                    prediction=p,
                    version=other,
                    symbol="BTC/USD",
                    bar_time=p.bar_time,
                    horizon=horizon,
                    window_end=p.bar_time + timedelta(minutes=horizon),  # type: ignore[operator]
                    signal=1,
                    p_down=0.3,
                    p_flat=0.2,
                    p_up=0.5,
                    status="matured",
                    forward_return=float(r),
                    realised_label=1 if r > 0.001 else (-1 if r < -0.001 else 0),
                    dead_zone=0.001,
                    direction_hit=bool(r > 0),
                    position=1,
                    round_trip_cost=0.009,
                    net_return=float(r) - 0.009,
                    matured_at=end,
                    checked_at=end,
                )
                for p, r in zip(preds, fwd, strict=True)
            )
        if connection.vendor == "postgresql":
            # the steady state of a table that grows by a row a minute a symbol: autovacuum has set the visibility
            # map of all but the newest pages, so the covering index answers without visiting the heap
            with connection.cursor() as cursor:
                for model in (Prediction, PredictionOutcome):
                    cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        version_live_metrics(version=other, now=end)  # warm
        if args.profile:
            _profiled(True, "live metrics", version_live_metrics, version=other, now=end)
        timings = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            live = version_live_metrics(version=other, now=end)
            timings.append(time.perf_counter() - t0)
        ms = np.array(timings) * 1000
        print(
            json.dumps(
                {
                    "benchmark": "outcomes",
                    "database": connection.vendor,
                    "store": type(get_store()).__name__,
                    "mature": {
                        "predictions": n,
                        "matured": first.matured,
                        "pending": first.pending,
                        "seconds": round(mature_s, 3),
                        "replay_seconds": round(replay_s, 3),
                        "replay_written": replay.matured + replay.revised,
                        "target_seconds": 1.0,
                        "gc_frozen": not args.no_gc_freeze,
                        "gc_collections_by_generation": gc_during,
                    },
                    "live_metrics": {
                        "outcomes": live["windows"]["all"]["n_outcomes"],
                        "repeat": args.repeat,
                        "p50_ms": round(float(np.percentile(ms, 50)), 1),
                        "max_ms": round(float(ms.max()), 1),
                        "target_ms": 200.0,
                    },
                    "machine": {
                        "python": platform.python_version(),
                        "cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(),
                    },
                },
                indent=2,
            )
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
