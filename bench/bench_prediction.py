"""Benchmark: single-row prediction through `models_registry.prediction.PredictionService` with the features
ready and the model cached. Targets: p99 < 2 ms per prediction, cache hit rate >= 99% in a steady-state loop.

    .venv/bin/python bench/bench_prediction.py [--model hgb|logreg] [--n 20000] [--recorded 2000]

Sets up a throw-away test database (the configured DATABASE_URL's test database, or in-memory SQLite), trains a
model on synthetic bars (`evaluate_and_fit`), registers and promotes it, then times `predict_one` (resolution,
generation check every 200 ms, signature check, probabilities, signal) with `perf_counter_ns`, first without
recording, then with recording each prediction as a `Prediction` row (one INSERT per call). Prints JSON,
including which exact single-row evaluator served (`models_registry.fast_paths`; null: scikit-learn).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")


def _pct(values: list[int]) -> dict[str, float]:
    ms = np.array(values) / 1e6
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "max_ms": round(float(ms.max()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["hgb", "logreg"], default="hgb")
    parser.add_argument("--n", type=int, default=20_000, help="predictions timed without recording")
    parser.add_argument("--recorded", type=int, default=2_000, help="predictions timed with recording")
    args = parser.parse_args()

    import django

    django.setup()
    logging.disable(logging.WARNING)  # logs go to stdout; keep it JSON only
    from django.conf import settings
    from django.db import connection

    from models_registry.artifacts import crypto

    tmp = tempfile.mkdtemp(prefix="bench-prediction-")
    settings.MODELS_REGISTRY_ARTIFACT_DIR = tmp
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [crypto.new_key_spec("bench")]
    settings.MODELS_REGISTRY_PROMOTION_GATES = {}
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from models_registry.features import FEATURE_DTYPES, FEATURE_NAMES, compute_features, drop_warmup
        from models_registry.prediction import PredictionService
        from models_registry.services import model_version_promote, model_version_register, registered_model_create
        from models_registry.training import TrainingConfig, evaluate_and_fit
        from tests.models_registry.synthetic import make_bars

        bars = make_bars(3000, seed=3)
        outcome = evaluate_and_fit(bars, TrainingConfig(model=args.model, horizon=15))
        registered_model_create(name="bench-model", actor="bench")
        version = model_version_register(
            model_name="bench-model",
            estimator=outcome.estimator,
            signature=[(n, FEATURE_DTYPES[n]) for n in FEATURE_NAMES],
            data_start=bars.index[0].to_pydatetime(),
            data_end=bars.index[-1].to_pydatetime(),
            symbols=["BTC/USD"],
            feature_set_name="kraken_bars_1m",
            feature_set_version="1",
            hyperparameters=outcome.hyperparameters,
            metrics=outcome.metrics,
            actor="bench",
        )
        model_version_promote(model_name="bench-model", version=version.version, reason="bench", actor="bench")
        rows = [r for r in drop_warmup(compute_features(bars)).to_dict("records")]
        service = PredictionService()
        service.predict_one(rows[0], model_name="bench-model")  # first call loads the model
        loaded = service.resolve("bench-model")
        fast_path = type(loaded.fast or loaded.fast_one).__name__ if (loaded.fast or loaded.fast_one) else None
        service.reset_stats()

        gc.collect()
        gc.disable()
        timings = []
        for i in range(args.n):
            row = rows[i % len(rows)]
            t0 = time.perf_counter_ns()
            service.predict_one(row, model_name="bench-model", symbol="BTC/USD")
            timings.append(time.perf_counter_ns() - t0)
        gc.enable()
        steady = service.stats()

        recorded = []
        for i in range(args.recorded):
            row = rows[i % len(rows)]
            t0 = time.perf_counter_ns()
            service.predict_one(row, model_name="bench-model", symbol="BTC/USD", decision_id=f"bench-{i}")
            recorded.append(time.perf_counter_ns() - t0)

        print(
            json.dumps(
                {
                    "benchmark": "prediction_single_row",
                    "model": args.model,
                    "fast_path": fast_path,
                    "database": connection.vendor,
                    "cache_backend": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
                    "predictions": args.n,
                    "predict": _pct(timings),
                    "predict_and_record": {"n": args.recorded, **_pct(recorded)},
                    "cache_hit_rate": steady["hit_rate"],
                    "cache_hits": steady["cache_hits"],
                    "cache_misses": steady["cache_misses"],
                    "generation_checks": steady.get("generation_checks", 0),
                    "targets": {"p99_ms": 2.0, "hit_rate": 0.99},
                    "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
                },
                indent=2,
            )
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
