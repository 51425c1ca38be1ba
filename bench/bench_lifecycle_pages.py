"""Server time of the dashboard's Models, Experiments, Reconciliation and System pages and of every read their
scripts make (issue 16), on the history of `bench_dashboard_pages` (100,000 orders each with a fill and a
decision, 1,000,000 one-minute bars, 100,000 predictions) plus what these pages read: a matured outcome for every
prediction of the production version (and 20,000 for a staging version), 200 drift reports, 200 stage moves, a
running shadow experiment over the whole history's decisions, 2,000 reconciliation runs with 500 open
discrepancies, an ingest heartbeat and 1,000 alerts.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_lifecycle_bench REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python bench/bench_lifecycle_pages.py [--orders 100000] [--bars 1000000] \\
        [--predictions 100000] [--requests 200] [--json out.json]

Target: p95 under 150 ms for each page and each read. Needs a quiet machine. The database (`DATABASE_URL`,
created if missing, migrated and EMPTIED) is filled by bulk inserts; each URL is requested `--requests` times
through Django's full request path with the test client (server time, no network), as `bench_dashboard_pages`
measures. The System page's probes (health checks, the Celery ping) wait on other services and are left out.

Prints one JSON object: row counts and, per URL, p50/p90/p95/p99/max in ms; exits 1 when a p95 is over the target
or a request fails.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_dashboard_pages import arguments, run  # noqa: E402
from bench.bench_dashboard_pages import history as dashboard_history  # noqa: E402

MODEL = "btc-usd-1m-direction"


def fill_lifecycle(staging_outcomes: int) -> dict[str, Any]:
    """What the lifecycle pages read, on top of `bench_dashboard_pages.fill`'s history."""
    import hashlib  # reason: set-up only, after django.setup()

    from django.db import connection
    from django.utils import timezone

    from experiments.services import experiment_create, experiment_start
    from ingest.models import IngestStatus
    from models_registry.models import DriftReport, ModelVersion, PredictionOutcome, RegisteredModel, StageEvent
    from reconciliation.models import Discrepancy, ReconciliationRun
    from trading.alerts import alert_raise
    from trading.models import Instrument

    now = timezone.now()
    model = RegisteredModel.objects.get(name=MODEL)
    v1 = ModelVersion.objects.get(model=model, version=1)
    fields = {
        f: getattr(v1, f)
        for f in ("signature", "data_start", "data_end", "symbols", "feature_set_name", "feature_set_version")
    }
    v1.metrics = {"direction_hit_rate": 0.54, "log_loss": 1.05, "ece": 0.03, "net_return_per_prediction": 0.0002}
    v1.hyperparameters = {"horizon": 60}
    v1.save(update_fields=["metrics", "hyperparameters"])
    v2 = ModelVersion.objects.create(
        model=model, version=2, stage="staging", artifact_sha256=hashlib.sha256(b"bench-2").hexdigest(),
        artifact_size=1, hyperparameters={"horizon": 60}, metrics=v1.metrics, **fields,
    )  # fmt: skip
    ModelVersion.objects.bulk_create(
        [
            ModelVersion(
                model=model, version=n, artifact_sha256=hashlib.sha256(f"bench-{n}".encode()).hexdigest(),
                artifact_size=1, **fields,
            )
            for n in range(3, 61)
        ]
    )  # fmt: skip
    StageEvent.objects.bulk_create(
        [
            StageEvent(
                model=model, version=v1 if i % 2 else v2, kind="stage", from_stage="none",
                to_stage="staging" if i % 2 else "production", actor="bench", reason=f"move {i}",
                gate_report=[{"name": "min:sharpe", "passed": True, "detail": "sharpe = 1.2, needs >= 1"}],
                at=now - timedelta(hours=200 - i),
            )
            for i in range(200)
        ]
    )  # fmt: skip
    table = PredictionOutcome._meta.db_table
    with connection.cursor() as cursor:  # a matured outcome for every prediction of v1, one statement
        cursor.execute(
            f"""
            INSERT INTO {table} (prediction_id, version_id, symbol, bar_time, horizon, window_end, signal,
                p_down, p_flat, p_up, status, pending_reason, forward_return, realised_label, dead_zone,
                direction_hit, position, round_trip_cost, net_return, matured_at, revisions, checked_at)
            SELECT p.id, p.version_id, p.symbol, p.bar_time, 60, p.bar_time + interval '60 minutes', p.signal,
                0.2, 0.2, 0.6, 'matured', '', r.fr, CASE WHEN r.fr > 0.001 THEN 1 WHEN r.fr < -0.001 THEN -1 ELSE 0 END,
                0.001, r.fr > 0, 1, 0.0052, r.fr - 0.0052, %s, 0, %s
            FROM models_registry_prediction p, LATERAL (SELECT (random() - 0.48) * 0.02 AS fr) r
            WHERE p.version_id = %s AND p.bar_time IS NOT NULL
            """,
            [now, now, v1.pk],
        )
        cursor.execute(
            """
            INSERT INTO models_registry_prediction (decision_id, version_id, symbol, features_hash, probabilities,
                predicted_class, signal, confidence, bar_time, horizon, created_at)
            SELECT 'BTC/USD:v2:' || n, %s, 'BTC/USD', repeat('0', 64), '{"-1": 0.2, "0": 0.2, "1": 0.6}'::jsonb,
                1, 1, 0.6, %s - n * interval '1 minute', 60, %s
            FROM generate_series(1, %s) AS n
            """,
            [v2.pk, now, now, staging_outcomes],
        )
        cursor.execute(
            f"""
            INSERT INTO {table} (prediction_id, version_id, symbol, bar_time, horizon, window_end, signal,
                p_down, p_flat, p_up, status, pending_reason, forward_return, realised_label, dead_zone,
                direction_hit, position, round_trip_cost, net_return, matured_at, revisions, checked_at)
            SELECT p.id, p.version_id, p.symbol, p.bar_time, 60, p.bar_time + interval '60 minutes', 1,
                0.2, 0.2, 0.6, 'matured', '', 0.001, 0, 0.001, true, 1, 0.0052, 0.001 - 0.0052, %s, 0, %s
            FROM models_registry_prediction p WHERE p.version_id = %s
            """,
            [now, now, v2.pk],
        )
        cursor.execute(f"ANALYZE {table}")
        cursor.execute("ANALYZE models_registry_prediction")
    features = [
        {"feature": f"f{j}", "test": "ks", "statistic": 0.1, "p_value": 0.2, "threshold": 0.01, "drifted": j < 3,
         "psi": 0.05, "psi_level": "none", "reference_mean": 0.0, "current_mean": 0.01}
        for j in range(40)
    ]  # fmt: skip
    DriftReport.objects.bulk_create(
        [
            DriftReport(
                model=model, version=v1 if i % 2 else v2, trigger="schedule", actor="bench", status="drift",
                as_of=now - timedelta(hours=i), kinds=["feature"], confirmed=True, consecutive=3, n_features=40,
                n_drifted=3, drift_share=0.075, features=features, windows={"w": list(range(200))},
            )
            for i in range(200)
        ]
    )  # fmt: skip
    experiment = experiment_create(
        model_name=MODEL, name="bench shadow", treatments=[{"version": 2}], actor="bench", reason="bench"
    )
    experiment_start(experiment_id=experiment.pk, actor="bench", reason="bench")
    type(experiment).objects.filter(pk=experiment.pk).update(started_at=now - timedelta(days=100))
    instrument = Instrument.objects.get(symbol="BTC/USD")
    runs = ReconciliationRun.objects.bulk_create(
        [
            ReconciliationRun(
                trigger="schedule", status="clean" if i % 50 else "halted", started_at=now - timedelta(minutes=i),
                finished_at=now - timedelta(minutes=i) + timedelta(seconds=1), duration_ms=800.0, rest_calls=4,
            )
            for i in range(1, 2001)
        ]
    )  # fmt: skip
    Discrepancy.objects.bulk_create(
        [
            Discrepancy(
                run=runs[i % len(runs)], kind="quantity_mismatch", severity=("info", "warning", "critical")[i % 3],
                instrument=instrument, local_value="0.123456789012345678", exchange_value="0.12",
                status="open" if i < 500 else "resolved", resolved_by="" if i < 500 else "bench",
                resolved_at=None if i < 500 else now,
            )
            for i in range(2000)
        ]
    )  # fmt: skip
    IngestStatus.objects.create(
        name="bench-ingest", connection_state="connected", exchange_status="online", symbols=["BTC/USD"],
        stats={"health": {"messages_per_s": {"trade": 10.0}, "lag_ms": {"trade": {"p50": 3, "p99": 9, "samples": 9}}}},
        started_at=now, updated_at=now, last_message_at=now,
    )  # fmt: skip
    for i in range(1000):
        alert_raise(kind="drawdown_breach", severity="warning", message=f"bench {i}", fingerprint=f"bench-{i}")
    return {"experiment_id": experiment.pk}


def history(args: argparse.Namespace) -> dict[str, Any]:
    """`bench_dashboard_pages`'s history and the lifecycle pages' rows, or with `--reuse` what a previous run left."""
    if not args.reuse:
        data = dashboard_history(args)
        data.update(fill_lifecycle(args.staging_outcomes))
        return data
    from experiments.models import Experiment  # reason: after django.setup()

    experiment = Experiment.objects.order_by("-pk").first()
    if experiment is None:
        raise SystemExit("--reuse: the database holds no lifecycle history (run once without --reuse)")
    return {**dashboard_history(args), "experiment_id": experiment.pk}


def urls(data: dict[str, Any]) -> list[str]:
    experiment = data["experiment_id"]
    since = (datetime.now(UTC) - timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        "/models/",
        f"/models/{MODEL}/",
        f"/dashboard-api/models/{MODEL}/cumulative-net-return/?versions=1,2,3,4,5,6",
        f"/api/models/{MODEL}/versions/1/live-metrics/",
        f"/api/models/{MODEL}/versions/1/calibration/",
        "/experiments/",
        f"/experiments/{experiment}/",
        f"/api/experiments/{experiment}/results/",
        f"/dashboard-api/models/{MODEL}/cumulative-net-return/?versions=1,2&since={since}",
        "/reconciliation/",
        "/system/",
    ]


def main() -> int:
    parser = arguments(__doc__ or "")
    parser.add_argument("--staging-outcomes", type=int, default=20_000)
    return run("lifecycle_pages", parser.parse_args(), history, urls)


if __name__ == "__main__":
    sys.exit(main())
