"""Benchmark: one drift check (models_registry.drift.checks.drift_check) over 24 hours of 1-minute live
predictions with every feature, against a 14-day training window. Target: under 2 s.

    .venv/bin/python bench/bench_drift_check.py [--live-minutes 1440] [--train-days 14] [--outcome-days 7]
        [--repeat 10]

Sets up a throw-away test database (the configured DATABASE_URL's test database), writes the training window's
1-minute bars to the configured time-series store (InfluxDB when INFLUXDB_URL is set) under a fresh symbol,
registers a version whose signature is the whole feature set (a logistic regression fitted on those features),
records one prediction per live minute with its feature vector, and `--outcome-days` of matured outcomes (the
concept detectors' stream). Times the first check (which also builds and stores the version's reference: feature
rows, labels, the served model on the validation period) and then `--repeat` checks with the stored reference
(the steady state of the 15-minute schedule). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")

HORIZON = 15
HYPER = {
    "model": "logreg",
    "C": 0.1,
    "max_iter": 1000,
    "seed": 0,
    "horizon": HORIZON,
    "label_dead_zone": 0.001,
    "taker_fee": 0.004,
    "slippage_bps": 5.0,
    "cv": {"kind": "purged_walk_forward", "n_splits": 5, "purge": HORIZON, "embargo": HORIZON},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live-minutes", type=int, default=1440)
    parser.add_argument("--train-days", type=int, default=14)
    parser.add_argument("--outcome-days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    import django

    django.setup()
    logging.disable(logging.WARNING)
    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection

    from models_registry.artifacts import crypto

    tmp = tempfile.mkdtemp(prefix="bench-drift-")
    settings.MODELS_REGISTRY_ARTIFACT_DIR = tmp
    settings.MODELS_REGISTRY_ARTIFACT_KEYS = [crypto.new_key_spec("bench")]
    settings.MODELS_REGISTRY_PROMOTION_GATES = {}
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        import pandas as pd
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from models_registry.drift.checks import LOCK_KEY, drift_check
        from models_registry.features import FEATURE_NAMES, compute_features, feature_signature
        from models_registry.labels import make_labels
        from models_registry.models import Prediction, PredictionOutcome, features_encode
        from tests.models_registry.conftest import store_bars
        from tests.models_registry.factories import make_model, make_version
        from tests.models_registry.synthetic import make_bars

        symbol = f"B{uuid.uuid4().hex[:10].upper()}/USD"
        train_n = args.train_days * 1440
        live_n = max(args.live_minutes, args.outcome_days * 1440) + 240
        bars = make_bars(train_n + live_n, seed=5, book=False)
        start = datetime(2025, 6, 2, tzinfo=UTC)
        bars.index = bars.index - bars.index[0] + pd.Timestamp(start)
        t0 = time.perf_counter()
        store_bars(bars.iloc[:train_n], symbol)
        store_s = time.perf_counter() - t0
        features = compute_features(bars)[list(FEATURE_NAMES)]
        train_x = features.iloc[240:train_n].to_numpy()
        train_y = make_labels(bars["close"], HORIZON, dead_zone=0.001)["label"].iloc[240:train_n].to_numpy()
        keep = np.isfinite(train_y)
        estimator = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
        estimator.fit(train_x[keep], train_y[keep].astype(int))
        version = make_version(
            make_model(gates={}),
            estimator=estimator,
            signature=[(c["name"], c["dtype"]) for c in feature_signature()],
            data_start=bars.index[0].to_pydatetime(),
            data_end=bars.index[train_n].to_pydatetime(),
            symbols=[symbol],
            hyperparameters=HYPER,
            metrics={"direction_hit_rate": 0.52, "net_return_per_prediction": 0.0},
        )
        live = features.iloc[train_n + 240 :]
        labels = make_labels(bars["close"], HORIZON, dead_zone=0.001).reindex(live.index)
        proba = estimator.predict_proba(live.to_numpy())
        end = (live.index[-1] + pd.Timedelta(minutes=1)).to_pydatetime()
        preds = Prediction.objects.bulk_create(
            Prediction(
                decision_id=f"bench-{i}",
                version=version,
                symbol=symbol,
                features_hash="0" * 64,
                probabilities={"-1": float(p[0]), "0": float(p[1]), "1": float(p[2])},
                predicted_class=int(np.argmax(p)) - 1,
                signal=0,
                confidence=float(max(p)),
                bar_time=t.to_pydatetime(),
                horizon=HORIZON,
                features=features_encode(row),
            )
            for i, (t, row, p) in enumerate(zip(live.index, live.to_numpy(), proba, strict=True))
        )
        fwd, lab = labels["forward_return"].to_numpy(), labels["label"].to_numpy()
        PredictionOutcome.objects.bulk_create(
            PredictionOutcome(
                prediction=p,
                version=version,
                symbol=symbol,
                bar_time=p.bar_time,
                horizon=HORIZON,
                window_end=p.bar_time + timedelta(minutes=HORIZON),  # type: ignore[operator]
                signal=0,
                p_down=float(proba[i][0]),
                p_flat=float(proba[i][1]),
                p_up=float(proba[i][2]),
                status="matured",
                forward_return=float(fwd[i]),
                realised_label=int(lab[i]),
                dead_zone=0.001,
                direction_hit=bool(np.sign(proba[i][2] - proba[i][0]) == np.sign(fwd[i])),
                position=0,
                round_trip_cost=0.009,
                net_return=0.0,
                matured_at=end,
                checked_at=end,
            )
            for i, p in enumerate(preds)
            if np.isfinite(fwd[i])
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for model in (Prediction, PredictionOutcome):
                    cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        key = LOCK_KEY.format(version_id=version.pk)
        cache.delete(key)
        t0 = time.perf_counter()
        first = drift_check(version_id=version.pk, now=end)
        first_s = time.perf_counter() - t0
        assert first is not None
        timings = []
        for _ in range(args.repeat):
            cache.delete(key)
            t0 = time.perf_counter()
            report = drift_check(version_id=version.pk, now=end)
            timings.append(time.perf_counter() - t0)
            assert report is not None
        doc = {
            "live_predictions": report.windows["current"]["predictions"],
            "features": report.n_features,
            "reference_rows": report.windows["reference"]["feature_rows"],
            "concept_observations": report.concept["n_observations"],
            "status": report.status,
            "kinds": report.kinds,
            "first_check_with_reference_build_s": first_s,
            "check_s": {
                "median": statistics.median(timings),
                "max": max(timings),
                "min": min(timings),
                "repeat": args.repeat,
            },
            "store_training_bars_s": store_s,
            "database": connection.vendor,
            "python": platform.python_version(),
            "date": datetime.now(tz=UTC).date().isoformat(),
        }
        print(json.dumps(doc, indent=2))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
