"""Benchmark: the retraining loop (models_registry.retraining).

    .venv/bin/python bench/bench_retraining.py retrain [--days 365] [--model hgb|logreg] [--folds 5]
    .venv/bin/python bench/bench_retraining.py scenario [--train-days 14] [--live-hours 48] [--change-hours 30]
        [--check-minutes 15] [--scenarios regime_change,random_walk]
    .venv/bin/python bench/bench_retraining.py during-bar-to-ack [--days 365] [--model hgb] [--folds 5]
        [--lifecycle-redis-url URL] [--ack-database-url URL] -- [bench_bar_to_ack.py's own options]

`retrain` (target: under 5 minutes for one year of 1-minute bars): one retraining run through the service the
lifecycle worker runs (`retraining_run`): the stored bars of the window read back from the time-series store,
features and labels, purged walk-forward evaluation with the backtest through the live risk check, the final fit,
registration with the gates recorded, the challenger adopted or rejected. Writing the bars to the store and
training the champion it retrains are set-up, timed apart.

`scenario` (realistic settings): the simulator's `regime_change` market (`--regime-change`; by default a weak
trend, then at the change a reversal regime: the price reverts to its level at the change with a 60-minute
half-life, sigma x 5, an edge above Kraken's base-tier round trip at the 60-bar horizon) and `random_walk` (no
change, the same noise): a champion trained on `--train-days` before the origin,
one prediction per live minute, outcomes maturing, a drift check every `--check-minutes` of market time with the
default thresholds and windows, the retraining scan after each check, a triggered run trained at market time
(default window and floor), and the challenger shadow-tested through the experiments app with the default
experiment settings until the market time ends. Prints per scenario: when drift was confirmed (minutes after the
true change), the run, its training time, the experiment and how the run ended (promoted, rejected with why, or
still in its shadow test), each version's live hit rate and net return before and after the change, and that
`random_walk` triggered nothing.

`during-bar-to-ack` (target: closed bar -> exchange ack p99 under 50 ms while a retraining runs on the lifecycle
queue, measured together): the `retrain` set-up (a year of bars in the store, a champion), then a real Celery
worker of the `lifecycle` queue (`celery -A galfriday_site worker -Q lifecycle --pool solo`, on this machine, as
in a one-machine deployment) is started and an operator's trigger queues the retraining run to it; once the run
is training, `bench/bench_bar_to_ack.py` runs as a subprocess with the options after `--` (its own database,
`--ack-database-url`, default DATABASE_URL, which it flushes; its own broker, REDIS_URL) and its JSON is printed
with the retraining's timeline, so the figure can be checked to have been taken while the training ran
(`retraining_overlapped_the_whole_measurement`). The retraining worker's broker is `--lifecycle-redis-url`
(default REDIS_URL's next database number), apart from the measured trading worker's, so neither consumes the
other's tasks; the two share the machine's cores, which is what this measures.

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
STORE_CHUNK = 30 * 1440  # bars per write to the time-series store


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
    for first in range(0, len(bars), STORE_CHUNK):  # one write of a year is refused (InfluxDB: 413)
        store_bars(bars.iloc[first : first + STORE_CHUNK], symbol)
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


def live_performance(model: Any, change: datetime) -> dict[str, Any]:
    """Per version and phase (before / after the true change): matured outcomes, direction hit rate and mean net
    return per decision (every minute's decision; they overlap over the horizon)."""
    from django.db.models import Avg, Count, Q

    from models_registry.models import PredictionOutcome

    out: dict[str, Any] = {}
    rows = PredictionOutcome.objects.filter(version__model=model, status=PredictionOutcome.Status.MATURED)
    for phase, cond in (("before", Q(bar_time__lt=change)), ("after", Q(bar_time__gte=change))):
        for row in (
            rows.filter(cond).values("version__version").annotate(
                n=Count("id"), hit_n=Count("id", filter=Q(direction_hit=True)),
                judged=Count("direction_hit"), net=Avg("net_return")
            ).order_by("version__version")
        ):  # fmt: skip
            out.setdefault(f"v{row['version__version']}", {})[phase] = {
                "outcomes": row["n"],
                "hit_rate": round(row["hit_n"] / row["judged"], 4) if row["judged"] else None,
                "net_return_per_decision": float(row["net"]) if row["net"] is not None else None,
            }
    return out


def scenario(args: argparse.Namespace) -> dict[str, Any]:
    from models_registry.models import ModelVersion, Stage
    from models_registry.retraining.models import RetrainingRun, RetrainingTrigger
    from models_registry.training import TrainingConfig, train_model
    from tests.models_registry.conftest import store_bars
    from tests.models_registry.retraining.support import scenario_bars, scenario_loop

    change_at = int(args.change_hours * 60)
    live_minutes = int(args.live_hours * 60)
    texts = {"regime_change": f"{args.regime_change},change_at={change_at}", "random_walk": "random_walk"}
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
            "live": live_performance(first.model, change),
        }
    return out


def _next_db(url: str) -> str:
    """The same Redis server, the next database number (redis://host:port/N -> N + 1, modulo 16)."""
    base, _, db = url.rstrip("/").rpartition("/")
    if not db.isdigit():
        return url.rstrip("/") + "/1"
    return f"{base}/{(int(db) + 1) % 16}"


def during_bar_to_ack(args: argparse.Namespace, ack_env: dict[str, str]) -> dict[str, Any]:
    """See the module doc (`during-bar-to-ack`)."""
    import subprocess

    import pandas as pd
    from django.conf import settings
    from django.db import connection

    from models_registry.models import RegisteredModel
    from models_registry.retraining.models import RetrainingPolicy, RetrainingRun
    from models_registry.retraining.services import retraining_trigger
    from models_registry.training import TrainingConfig, train_model
    from tests.models_registry.conftest import store_bars
    from tests.models_registry.synthetic import make_bars

    symbol = f"B{uuid.uuid4().hex[:10].upper()}/USD"
    bars = make_bars(args.days * 1440, seed=7, book=False)
    now = datetime.now(UTC).replace(second=0, microsecond=0)  # the worker's run ends its window at its own now
    bars.index = bars.index - bars.index[0] + pd.Timestamp(now - timedelta(days=args.days))
    for first in range(0, len(bars), STORE_CHUNK):
        store_bars(bars.iloc[first : first + STORE_CHUNK], symbol)
    config = TrainingConfig(model=args.model, n_splits=args.folds, min_samples=300)
    start = bars.index[0].to_pydatetime()
    version = train_model(
        symbol=symbol,
        start=start,
        end=start + timedelta(days=args.champion_days),
        config=config,
        model_name=f"bench-retrain-{symbol[1:7].lower()}",
        actor="bench",
    ).version  # type: ignore[union-attr]
    promote_first(version)
    # The worker reads the window from the model's policy (its own settings are the environment's).
    RetrainingPolicy.objects.update_or_create(
        model=RegisteredModel.objects.get(pk=version.model_id), defaults={"window_hours": args.days * 24.0}
    )
    worker_env = {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict),
        "REDIS_URL": args.lifecycle_redis_url,
        "CELERY_BROKER_URL": args.lifecycle_redis_url,
        "MODELS_REGISTRY_ARTIFACT_DIR": settings.MODELS_REGISTRY_ARTIFACT_DIR,
        "MODELS_REGISTRY_ARTIFACT_KEYS": ",".join(settings.MODELS_REGISTRY_ARTIFACT_KEYS),
        "PYTHONPATH": str(ROOT),
    }
    log = Path(tempfile.gettempdir()) / f"bench-retraining-lifecycle-worker-{os.getpid()}.log"
    celery = [sys.executable, "-m", "celery", "-A", "galfriday_site", "worker", "-Q", "lifecycle"]
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*celery, "--pool", "solo", "--concurrency", "1", "-n", f"bench-lifecycle-{os.getpid()}@%h"],
            cwd=ROOT, env=worker_env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            trigger = retraining_trigger(model_name=version.model.name, kind="operator", reason="bench", actor="bench")
            assert trigger.run is not None  # queued to the lifecycle worker after the trigger's commit
            run_id = trigger.run.pk
            deadline = time.monotonic() + args.start_timeout
            while RetrainingRun.objects.get(pk=run_id).status == RetrainingRun.Status.QUEUED:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit(f"the lifecycle worker did not start run {run_id}; its log: {log}")
                time.sleep(0.5)
            t0 = datetime.now(UTC)
            child = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "bench_bar_to_ack.py"), *args.bar_to_ack_args],
                cwd=ROOT, env=ack_env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            t1 = datetime.now(UTC)
            run = RetrainingRun.objects.get(pk=run_id)
            if run.status == RetrainingRun.Status.TRAINING and args.wait_for_retraining:
                while RetrainingRun.objects.get(pk=run_id).status == RetrainingRun.Status.TRAINING:
                    time.sleep(2)
                run = RetrainingRun.objects.get(pk=run_id)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
    try:
        measured: Any = json.loads(child.stdout)
    except ValueError:
        measured = {"stdout_tail": child.stdout[-2000:]}
    still_training = run.status == RetrainingRun.Status.TRAINING
    overlapped = (
        run.started_at is not None
        and run.started_at <= t0
        and (still_training or (run.finished_at is not None and run.finished_at >= t1))
    )
    return {
        "benchmark": "bar_to_ack_during_retraining",
        "target": "closed bar -> exchange ack p99 < 50 ms while the retraining runs",
        "retraining": {
            "run": run.pk,
            "status": run.status,
            "days": args.days,
            "model": args.model,
            "folds": args.folds,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "outcome": run.outcome,
        },  # fmt: skip
        "measurement": {"started_at": t0, "ended_at": t1, "exit_code": child.returncode},
        "retraining_overlapped_the_whole_measurement": overlapped,
        "bar_to_ack": measured,
        "bar_to_ack_stderr_tail": child.stderr[-2000:],
        "lifecycle_worker_log": str(log),
    }


def _database_url(db: dict[str, Any]) -> str:
    """postgres:// URL of a Django connection's settings (the test database the worker must use)."""
    auth = db["USER"] or "postgres"
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


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
    two.add_argument(
        "--regime-change",
        default="regime_change:drift=0.0001,regime_minutes=60,vol_mult=5,half_life=60",
        help="the regime_change scenario (change_at is added from --change-hours); default: a weak trend, then a "
        "reversal regime with an edge above Kraken's fees at the 60-bar horizon",
    )
    three = sub.add_parser("during-bar-to-ack")
    three.add_argument("--days", type=int, default=365)
    three.add_argument("--champion-days", type=int, default=7)
    three.add_argument("--model", choices=["hgb", "logreg"], default="hgb")
    three.add_argument("--folds", type=int, default=5)
    three.add_argument("--lifecycle-redis-url", default="", help="the retraining worker's broker (default: next db)")
    three.add_argument("--ack-database-url", default="", help="bench_bar_to_ack's database (default DATABASE_URL)")
    three.add_argument("--start-timeout", type=float, default=120.0, help="seconds for the worker to start the run")
    three.add_argument(
        "--wait-for-retraining", action="store_true", help="after the measurement, wait for the run to end"
    )
    three.add_argument("bar_to_ack_args", nargs=argparse.REMAINDER, help="after --: bench_bar_to_ack.py's options")
    args = parser.parse_args()
    ack_env = dict(os.environ)
    if args.mode == "during-bar-to-ack":
        args.bar_to_ack_args = [a for a in args.bar_to_ack_args if a != "--"]
        redis = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        args.lifecycle_redis_url = args.lifecycle_redis_url or _next_db(redis)
        if args.ack_database_url:
            ack_env["DATABASE_URL"] = args.ack_database_url
        # this process queues the retraining on the lifecycle worker's broker
        os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = args.lifecycle_redis_url

    # A year of bars is one read of the store: InfluxDB's default 5-s client timeout expired under load.
    os.environ.setdefault("INFLUXDB_TIMEOUT", "120")
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
        if args.mode == "retrain":
            result = retrain(args)
        elif args.mode == "scenario":
            result = scenario(args)
        else:
            result = during_bar_to_ack(args, ack_env)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(tmp, ignore_errors=True)
    result["machine"] = machine()
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
