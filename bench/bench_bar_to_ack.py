"""Benchmark: closed bar → order acknowledged by the exchange (the simulator), through Celery on Redis.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/galfriday_bench \\
        .venv/bin/python bench/bench_bar_to_ack.py [--bars N] [--warmup N] [--predictor registry|fixed] \\
        [--transport ws|rest] [--post-ack-sync-s S]

Target (trading issue): p99 under 50 ms. Processes, all on this machine:

* ``python -m kraken_sim --market none --rate 0 --warmup 0 --no-rate-limits`` (port 0), with a large resting sell
  at 100.0 placed through its admin ``place`` action so the pipeline's market buys fill;
* a real Celery worker, ``celery -A galfriday_site worker -Q trading --pool solo --concurrency 1``, on the Redis
  broker (``REDIS_URL``, default db 8), PostgreSQL (the database is created if missing, migrated and flushed),
  ``TRADING_MODE=live`` against the simulator (its default key and secret; orders over the worker process's
  private WebSocket with ``--transport ws``, the default, or REST AddOrder with ``rest``), the execution gateway
  ``trading.gateway.CeleryExecutionGateway`` and the predictor (``--predictor``, below);
* this process: per bar (untimed) it writes the closed 1-minute bar (relational time-series store) and a fresh
  quote, then (timed) sends ``trading.tasks.decide_on_bar`` by name and polls the database every ``--poll-ms``
  (10 ms) until the decision's order has an exchange order id (the simulator's AddOrder ack applied and committed).

The figure (``send_to_ack``) ends at the ack's own time: the order's first audit row with the exchange order id,
written in the transaction that applies the ack (same host, same clock), not when the poll saw it: polling every
millisecond, as the harness did until session 7, put a query a millisecond on the two cores the worker, PostgreSQL,
Redis and the simulator share, and added up to a poll interval to each bar. What the poll saw is printed too
(``send_to_ack_seen_by_the_poll``), and the slowest bars' phases (``slowest_bars_ms``).

Bars are minute-aligned, one per minute going back from now, so every bar is a new decision; the decision age
limit (``GALFRIDAY_DECISION_MAX_AGE_S``) is raised for the run so the older synthetic bars are not expired, and
the global ``max_orders_per_minute`` risk limit is raised (the benchmark sends more than 30 a minute). Where the
time goes comes from the rows' own timestamps (same clock): send → ``Order.submitted_at``, the time the risk check
starts (broker and worker pick-up, predictor, bars, inputs and limits read, trading state locked) →
``Decision.created_at`` (risk snapshot and checks, the order and then the decision inserted) → the exchange order id
seen here (commit, ``execute_order`` enqueued after commit and picked up, the send-attempt mark, ``add_order`` over
the socket or REST AddOrder, ack committed, this poll); with REST the post-ack
read-back records the ``accepted`` order event a little later (``send_to_accepted_event_row``; with the WebSocket
that event comes from the executions stream, which no ingest worker applies here); and from the worker's own log
lines (task received, runtime). Each bar starts on an idle worker (``--gap-ms``): bars come once a minute.
``--post-ack-sync-s`` (default 0 here) is ``GALFRIDAY_EXECUTION_POST_ACK_SYNC_S``: with bars every few hundred ms
instead of one a minute, the safety-net ``sync_order`` task it schedules would queue in front of later bars on the
one solo worker, which cannot happen at one bar a minute.

The predictor (``--predictor``):

* ``registry`` (default): the production default, ``experiments.router.ExperimentRouter``, over the real
  ``models_registry.predictor.PipelinePredictor`` (with ``--shadows N``, N challenger versions run in a shadow
  experiment: each decision hands them a shadow prediction, made on a second worker of the ``lifecycle`` queue
  after the champion's order is on its way, and the run checks that every one was recorded). A production version of the
  symbol's model (``btc-usd-1m-direction``) is registered first (``register_bench_model``): the training's
  logistic regression (``StandardScaler`` + ``LogisticRegression``) fitted on synthetic feature rows around the
  bench's bars so that it predicts "up" with high probability there, its hyperparameters recording ``horizon``,
  ``signal_threshold`` and ``class_mean_returns`` that give an expected return well above the round-trip cost,
  metrics that pass the default production gates, stored encrypted in a temporary artifact directory
  (``MODELS_REGISTRY_ARTIFACT_DIR``, a fresh key in ``MODELS_REGISTRY_ARTIFACT_KEYS``) and promoted through the
  registry's services. The store holds the feature warm-up (``WARMUP_BARS`` + 1 bars, written once) before the
  first bar, so every decision reads its bars, computes the 16 features, predicts with the worker's cached
  version and records the prediction (a ``models_registry.Prediction`` row with its probabilities, bar time,
  horizon and float32 feature row) before it sizes the order: the run fails unless there is one such row per
  bar. Sizing keeps every order small (``GALFRIDAY_SIZING_FRACTION`` 0.000001: ~0.00995 BTC, ~1 USD, at the
  model's confidence, P(up) 0.995) and the no-trade band off (``GALFRIDAY_NO_TRADE_BAND`` 0, ``..._MIN_MULTIPLE`` 0), so
  every bar orders as with ``fixed``: no fills are applied here, the position stays flat and the target is
  bought again on each bar (the cost rule still runs: the expected return must beat the round trip).
* ``fixed``: ``bench.bench_bar_to_ack.FixedBuy`` (buys 0.01 BTC, 1 USD, on every bar; no registry, no features,
  nothing recorded), the predictor of the figures before issue 13. It states an expected return above the round
  trip (``FIXED_EXPECTED_RETURN``) and the no-trade band is off here too: since the cost rule, a prediction with
  no expected return, or a 1 USD rebalance inside the default band, is not traded.

Prints one JSON object. No assertion on the figures; exits 1 when a bar did not order or (``registry``) the
predictions recorded are not one per bar.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_execution_report import (  # noqa: E402
    bench_environment,
    btc_usd_upsert,
    cpu_model,
    percentiles,
    prepare_database,
)

SYMBOL = "BTC/USD"
PRICE = Decimal("100.0")
# The registry predictor's sizing: fraction of equity at full confidence (1,000,000 USD x 0.000001 x 0.995 / 100:
# ~0.00995 BTC, ~1 USD, per bar), no-trade band off. Its model's class mean returns over the horizon (the expected
# return at the bench's bars is 0.995 x 3 % ~ 3.0 %, against a round trip of 1.1 %: 2 x (0.40 % fee, 0.10 %
# half-spread, 0.05 % slippage)).
REGISTRY_SIZING_FRACTION = "0.000001"
# Every predictor's orders here are ~1 USD: the no-trade band (default 1 % of equity, at least 3x the exchange
# minimum) is off, or no bar would order.
NO_TRADE_BAND_OFF = {"GALFRIDAY_NO_TRADE_BAND": "0", "GALFRIDAY_NO_TRADE_MIN_MULTIPLE": "0"}
# The fixed predictors' expected return over their (notional) horizon: above the round trip (1.1 %), so the cost
# rule lets their buys through as it does the registry model's.
FIXED_EXPECTED_RETURN = 0.03
BENCH_CLASS_MEAN_RETURNS = {"-1": -0.02, "0": 0.0, "1": 0.03}
BENCH_HORIZON = 60
BENCH_SIGNAL_THRESHOLD = 0.2
# Out-of-sample metrics that pass the default production gates (MODELS_REGISTRY_PROMOTION_GATES).
BENCH_METRICS = {
    "net_pnl": 0.05,
    "excess_net_pnl_vs_hold": 0.02,
    "excess_net_pnl_vs_momentum": 0.02,
    "psr": 0.99,
    "dsr": 0.97,
    "log_loss_skill": 0.05,
    "brier_skill": 0.03,
    "ece": 0.03,
    "n_oos_trades": 120.0,
    "max_drawdown": 0.05,
    "sharpe": 1.5,
}


class AlwaysBuy:
    """A deterministic predictor for ``bench_decide.py``, where each order's fill is applied: always buy a tiny
    amount. The pipeline trades toward a target position, so the confidence grows by one step per bar after
    ``GALFRIDAY_BENCH_ANCHOR`` (0.00001: 0.01 BTC more at equity 1,000,000 USD, fraction 0.10, price 100); every
    bar then buys 0.01 BTC (1 USD)."""

    version = "bench-always-buy-v1"
    step = 0.00001

    def predict(self, *, symbol: str, bar_time: datetime, decision_id: str) -> Any:
        from trading.predictor import Prediction

        anchor = datetime.fromisoformat(os.environ["GALFRIDAY_BENCH_ANCHOR"])
        bars = int((bar_time - anchor).total_seconds() // 60) + 1
        return Prediction(1, min(1.0, self.step * max(bars, 1)), self.version, expected_return=FIXED_EXPECTED_RETURN)


class FixedBuy:
    """The predictor here: no ingest worker applies the executions stream in this benchmark, so the position stays
    flat and the orders stay open (``submitted`` with their exchange ids). A constant target of 0.01 BTC then buys
    0.01 BTC (1 USD) on every bar; the open buys add up to 10 BTC (1,000 USD) after 1,000 bars, well within the
    position and exposure limits (a growing target, as ``AlwaysBuy``'s, would reach the 50,000 USD position limit
    with its open orders after ~315 bars)."""

    version = "bench-fixed-buy-v1"

    def predict(self, *, symbol: str, bar_time: datetime, decision_id: str) -> Any:
        from trading.predictor import Prediction

        return Prediction(1, 0.00001, self.version, expected_return=FIXED_EXPECTED_RETURN)


def registry_environment(var_dir: str) -> dict[str, str]:
    """The settings the registry predictor runs with here (this process and the worker): the real predictor, a
    temporary local artifact store under `var_dir` with a fresh encryption key, the symbol's default model in
    production, tiny orders and no no-trade band."""
    key = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    return {
        # the production default: the experiment router, which is the registry's PipelinePredictor while no
        # experiment runs (--shadows 0) and hands shadow predictions to the lifecycle queue while one does
        "GALFRIDAY_PREDICTOR": "experiments.router.ExperimentRouter",
        "MODELS_REGISTRY_ARTIFACT_STORAGE": "local",
        "MODELS_REGISTRY_ARTIFACT_DIR": str(Path(var_dir) / "artifacts"),
        "MODELS_REGISTRY_ARTIFACT_KEYS": f"bench:{key}",
        "MODELS_REGISTRY_SYMBOL_MODELS": "{}",
        "MODELS_REGISTRY_PREDICTOR_SELECTOR": "production",
        "GALFRIDAY_SIZING_FRACTION": REGISTRY_SIZING_FRACTION,
        **NO_TRADE_BAND_OFF,
    }


def register_bench_model(*, seed: int = 7, shadows: int = 0) -> dict[str, Any]:
    """Register and promote a production version of the symbol's model that buys on the bench's bars (call
    after django.setup() and seed_market()). Returns what the decisions will be made with: the model version
    label, the probabilities and expected return at the bench's bars, and the round-trip cost they beat.
    `shadows`: that many more versions (the same estimator refitted with other seeds) are registered and a shadow
    experiment of them against the champion is started, so every decision also hands them a shadow prediction."""
    import numpy as np

    from models_registry.features import (
        FEATURE_DTYPES,
        FEATURE_NAMES,
        FEATURE_SET_NAME,
        FEATURE_SET_VERSION,
        WARMUP_BARS,
        compute_features,
    )
    from models_registry.history import bars_frame
    from models_registry.models import Stage
    from models_registry.predictor import expected_return
    from models_registry.services import (
        model_version_gates_record,
        model_version_promote,
        model_version_register,
        registered_model_create,
    )
    from models_registry.training import build_estimator, default_model_name
    from trading.costs import CostModel
    from trading.models import Instrument

    # The feature row every bench decision sees (flat bars at PRICE).
    start = datetime(2024, 1, 1, tzinfo=UTC)
    frame = bars_frame([_bar(start + timedelta(minutes=i)) for i in range(WARMUP_BARS + 2)])
    row = compute_features(frame).iloc[-1].to_numpy(dtype=np.float64)
    if not np.isfinite(row).all():
        raise SystemExit(f"the bench's bars give incomplete features: {row}")

    # Synthetic rows around it (per-feature spreads of a plausible size), labelled by a noisy linear rule that is
    # "up" at the bench's row: P(up) 0.995 there (the run fails if the model would not buy).
    spreads = {"ret_": 0.001, "vol_": 0.0005, "rsi_": 10.0, "macd": 0.0005, "volume_z": 1.0, "spread_rel": 0.0002}
    scale = np.array(
        [next((v for k, v in spreads.items() if n.startswith(k)), 0.2) for n in FEATURE_NAMES], dtype=np.float64
    )
    rng = np.random.default_rng(seed)
    n = 3000
    x = row + rng.normal(size=(n, len(FEATURE_NAMES))) * scale
    ret_1 = FEATURE_NAMES.index("ret_1")
    z = (x[:, ret_1] - row[ret_1]) / scale[ret_1] + 2.0 + 0.5 * rng.normal(size=n)
    y = np.where(z > 0.5, 1, np.where(z < -0.5, -1, 0))
    hyper = {"C": 1.0}
    estimator = build_estimator("logreg", hyper, seed).fit(x, y)
    classes = [int(c) for c in estimator.classes_]
    proba = dict(zip(classes, (float(p) for p in estimator.predict_proba(row.reshape(1, -1))[0]), strict=True))

    name = default_model_name(SYMBOL)
    registered_model_create(name=name, description=f"bench: direction of {SYMBOL} (synthetic)", actor="bench")

    def register(fitted: Any, fit_seed: int) -> Any:
        return model_version_register(
            model_name=name,
            estimator=fitted,
            signature=[(f, FEATURE_DTYPES[f]) for f in FEATURE_NAMES],
            data_start=start,
            data_end=start + timedelta(days=14),
            symbols=[SYMBOL],
            feature_set_name=FEATURE_SET_NAME,
            feature_set_version=str(FEATURE_SET_VERSION),
            hyperparameters={
                **hyper,
                "class_mean_returns": BENCH_CLASS_MEAN_RETURNS,
                "model": "logreg",
                "seed": fit_seed,
                "horizon": BENCH_HORIZON,
                "signal_threshold": BENCH_SIGNAL_THRESHOLD,
                "taker_fee": 0.004,
                "slippage_bps": 5.0,
            },
            metrics=BENCH_METRICS,
            n_trials=1,
            code_version="bench",
            description="bench_bar_to_ack: logistic regression fitted on synthetic features",
            actor="bench",
        )

    version = register(estimator, seed)
    report = model_version_gates_record(version=version, actor="bench")
    model_version_promote(
        model_name=name, version=version.version, stage=Stage.PRODUCTION, reason="benchmark", actor="bench"
    )
    experiment = None
    if shadows:
        from experiments.services import experiment_create, experiment_start

        challengers = [
            register(build_estimator("logreg", hyper, seed + 1 + i).fit(x, y), seed + 1 + i) for i in range(shadows)
        ]
        draft = experiment_create(
            model_name=name,
            name=f"bench: {shadows} shadow challengers",
            treatments=[{"version": v.version} for v in challengers],
            actor="bench",
        )
        experiment = experiment_start(experiment_id=draft.pk, actor="bench", reason="benchmark").pk
    instrument = Instrument.objects.get(symbol=SYMBOL)
    cost = CostModel.for_instrument(
        taker_fee=instrument.taker_fee, bid=PRICE - Decimal("0.1"), ask=PRICE + Decimal("0.1")
    ).round_trip
    edge = expected_return(proba, version.hyperparameters)
    p_up, p_down = proba.get(1, 0.0), proba.get(-1, 0.0)
    if p_up - p_down < BENCH_SIGNAL_THRESHOLD or edge is None or edge <= float(cost):
        raise SystemExit(f"the bench model would not buy: probabilities {proba}, expected return {edge}, cost {cost}")
    return {
        "model_version": f"{name} v{version.version}",
        "estimator": "Pipeline(StandardScaler, LogisticRegression), 3 classes, synthetic rows",
        "gates_passed": report.passed,
        "probabilities_at_bench_bars": {str(c): round(p, 4) for c, p in proba.items()},
        "expected_return": round(edge, 6),
        "round_trip_cost": float(cost),
        "horizon": BENCH_HORIZON,
        "signal_threshold": BENCH_SIGNAL_THRESHOLD,
        "class_mean_returns": BENCH_CLASS_MEAN_RETURNS,
        "sizing_fraction": REGISTRY_SIZING_FRACTION,
        "shadow_experiment": experiment,
        "shadow_challengers": shadows,
    }


def predictions_recorded(version_label: str | None) -> dict[str, Any]:
    """The registry's prediction rows: how many, how many carry probabilities, bar time, horizon and features
    (one float32 per feature), and one as a sample."""
    from models_registry.features import FEATURE_NAMES
    from models_registry.models import Prediction, features_decode

    rows = Prediction.objects.all()
    complete = rows.filter(bar_time__isnull=False, horizon__isnull=False, features__isnull=False).exclude(
        probabilities={}
    )
    sample = complete.order_by("-bar_time").first()
    features = features_decode(sample.features) if sample is not None else None
    return {
        "count": rows.count(),
        "with_probabilities_bar_time_horizon_features": complete.count(),
        "model_version": version_label,
        "sample": {
            "decision_id": sample.decision_id,
            "bar_time": sample.bar_time.isoformat() if sample.bar_time else None,
            "probabilities": sample.probabilities,
            "signal": sample.signal,
            "confidence": round(sample.confidence, 6),
            "horizon": sample.horizon,
            "features": len(features) if features is not None else None,
            "features_expected": len(FEATURE_NAMES),
        }
        if sample is not None
        else None,
    }


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path, *, json_line: bool) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE if json_line else self.log,
            stderr=self.log,
            text=True,
        )
        self.info: dict[str, Any] = {}
        if json_line:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"{args[:3]} exited before it was ready (see {log})")
            self.info = json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_for_worker(app: Any, worker: Process, name: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise SystemExit(f"the Celery worker exited ({worker.proc.returncode}); see {worker.log.name}")
        if app.control.ping(destination=[name], timeout=1.0):
            return
    raise SystemExit(f"the Celery worker {name} did not answer a ping within {timeout_s:.0f} s")


SLOWEST = 8  # the slowest bars' phases are printed, to tell where a tail comes from


def ack_applied_at(order_id: int) -> datetime | None:
    """When the exchange's acknowledgement was applied to the order: the time of its first audit row with the
    exchange order id, written in the ack's own transaction (whose commit, without a flush wait, follows within a
    fraction of a millisecond). The worker's clock is this process's: the same host."""
    from trading.models import Order

    history = Order.history.model  # type: ignore[attr-defined]
    return (
        history.objects.filter(id=order_id)
        .exclude(exchange_order_id="")
        .order_by("history_date")
        .values_list("history_date", flat=True)
        .first()
    )


def _ms(a: datetime | None, b: datetime | None) -> int | None:
    return None if a is None or b is None else int((b - a).total_seconds() * 1e9)


def run(
    bars: int,
    warmup: int,
    first_bar: datetime,
    log_dir: Path,
    env: dict[str, str],
    poll_s: float,
    gap_s: float,
    transport: str,
    predictor: str,
    shadows: int = 0,
) -> dict[str, Any]:
    import httpx
    from django.db import connections
    from django.utils import timezone

    from galfriday_site.celery import app
    from kraken_sim.config import DEFAULT_API_SECRET
    from models_registry.features import WARMUP_BARS
    from timeseries.relational import RelationalStore
    from trading.accounts import equity_snapshot_take
    from trading.instruments import market_quote_set
    from trading.models import Decision, Order
    from trading.pipeline import client_order_id_for

    sim = Process(
        [
            sys.executable,
            "-m",
            "kraken_sim",
            "--market",
            "none",
            "--rate",
            "0",
            "--warmup",
            "0",
            "--no-rate-limits",
            "--log-level",
            "WARNING",
        ],
        env,
        log_dir / "sim.log",
        json_line=True,
    )
    worker: Process | None = None
    shadow_worker: Process | None = None
    try:
        info = sim.info
        admin = httpx.Client(base_url=info["admin_url"], timeout=10.0)
        r = admin.post(
            "/market", json={"action": "place", "symbol": SYMBOL, "side": "sell", "price": "100.0", "qty": "5000"}
        )
        r.raise_for_status()

        instrument = seed_market()
        equity_snapshot_take(marks={SYMBOL: PRICE})
        model = register_bench_model(shadows=shadows) if predictor == "registry" else None
        version_label = model["model_version"] if model is not None else FixedBuy.version

        worker_env = {
            **env,
            "TRADING_MODE": "live",
            "KRAKEN_REST_URL": info["rest_url"],
            "KRAKEN_WS_URL": info["ws_url"],
            "KRAKEN_WS_AUTH_URL": info["ws_auth_url"],
            "KRAKEN_API_KEY": info["api_key"],
            "KRAKEN_API_SECRET": DEFAULT_API_SECRET,
            "GALFRIDAY_EXECUTION_WS": "true" if transport == "ws" else "false",
        }
        worker_name = f"bench-{os.getpid()}@{socket.gethostname()}"
        worker = Process(
            [
                str(Path(sys.executable).with_name("celery")),
                "-A",
                "galfriday_site",
                "worker",
                "-Q",
                "trading",
                "--pool",
                "solo",
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
                "--hostname",
                worker_name,
            ],
            worker_env,
            log_dir / "worker.log",
            json_line=False,
        )
        if shadows:
            # The shadow predictions' own worker (the lifecycle queue), on the same two cores as in production.
            shadow_worker = Process(
                [
                    str(Path(sys.executable).with_name("celery")),
                    *("-A", "galfriday_site", "worker", "-Q", "lifecycle", "--pool", "solo", "--concurrency", "1"),
                    *("--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"),
                    *("--hostname", f"bench-shadow-{os.getpid()}@{socket.gethostname()}"),
                ],
                worker_env,
                log_dir / "shadow-worker.log",
                json_line=False,
            )

        store = RelationalStore()
        total = warmup + bars
        # History before the first decision: the features' warm-up and the bar before (the registry predictor
        # reads WARMUP_BARS + 1 bars before the decision's); the sizing reads the last 60 closes for volatility.
        history = max(61, WARMUP_BARS + 1)
        store.write_batch([_bar(first_bar - timedelta(minutes=history - i)) for i in range(history)])
        # The first bar's quote must not age while the worker starts (on a loaded machine that took over the
        # 10 s quote age limit, and the first order was rejected): wait until it answers a ping.
        wait_for_worker(app, worker, worker_name)

        results: dict[str, list[int]] = {
            "send_to_ack_seen": [],
            "send_to_ack_applied": [],
            "send_to_risk_check_start": [],
            "risk_check_start_to_decision_row": [],
            "decision_row_to_exchange_id_seen": [],
            "send_to_accepted_event_row": [],
        }
        samples: list[tuple[str, str, datetime, datetime]] = []
        failures: list[dict[str, Any]] = []
        timed_sends: dict[str, datetime] = {}
        timed_seen: dict[str, datetime] = {}
        for i in range(total):
            time.sleep(gap_s)  # bars come once a minute: let the previous bar's execute_order finish (untimed)
            bar_time = first_bar + timedelta(minutes=i)
            store.write_batch([_bar(bar_time)])
            market_quote_set(
                instrument=instrument, bid=PRICE - Decimal("0.1"), ask=PRICE + Decimal("0.1"), at=timezone.now()
            )
            decision_id = f"{SYMBOL}:{bar_time.isoformat()}:{version_label}"
            client_order_id = client_order_id_for(decision_id)
            deadline_s = 60.0 if i == 0 else 10.0  # the first loads the model and opens the exchange connection
            sent_wall = datetime.now(UTC)
            t0 = time.perf_counter_ns()
            sent = app.send_task(  # as the ingest worker sends it (no result subscribed)
                "trading.tasks.decide_on_bar", args=[SYMBOL, bar_time.isoformat()], ignore_result=True
            )
            order = None
            polls = 0
            while True:
                polls += 1
                if polls % 20 == 0 and Decision.objects.filter(bar_time=bar_time).exclude(status="ordered").exists():
                    break  # decided not to trade (or no model: another decision id): reported as a failure
                order = Order.objects.filter(client_order_id=client_order_id).only("exchange_order_id", "state").first()
                if order is not None and (order.exchange_order_id or order.state in ("rejected", "unknown")):
                    break
                if (time.perf_counter_ns() - t0) / 1e9 > deadline_s:
                    break
                time.sleep(poll_s)
            elapsed = time.perf_counter_ns() - t0
            seen_wall = datetime.now(UTC)
            if order is None or not order.exchange_order_id:
                decision = Decision.objects.filter(bar_time=bar_time).first()
                failures.append(
                    {
                        "bar": bar_time.isoformat(),
                        "order_state": order.state if order else None,
                        "decision": decision.status if decision else None,
                        "model_version": decision.model_version if decision else None,
                        "reason": decision.reason if decision else None,
                    }
                )
                if len(failures) >= 5:
                    break
                continue
            if i < warmup:
                continue
            results["send_to_ack_seen"].append(elapsed)
            timed_sends[sent.id] = sent_wall
            timed_seen[sent.id] = seen_wall
            samples.append((decision_id, client_order_id, sent_wall, seen_wall))
        time.sleep(1.0)  # the last execute_order finishes (fill applied) before the rows are read
        per_bar: list[dict[str, Any]] = []
        for decision_id, client_order_id, sent_wall, seen_wall in samples:
            order = Order.objects.get(client_order_id=client_order_id)
            decision = Decision.objects.get(decision_id=decision_id)
            accepted = order.events.filter(kind="accepted").first()
            accepted_at = accepted.recorded_at if accepted is not None else None
            applied_at = ack_applied_at(order.pk)
            phases = {}
            for name, a, b in (
                ("send_to_ack_applied", sent_wall, applied_at),
                ("send_to_risk_check_start", sent_wall, order.submitted_at),
                ("risk_check_start_to_decision_row", order.submitted_at, decision.created_at),
                ("decision_row_to_ack_applied", decision.created_at, applied_at),
                ("decision_row_to_exchange_id_seen", decision.created_at, seen_wall),
                ("send_to_accepted_event_row", sent_wall, accepted_at),
            ):
                value = _ms(a, b)
                if value is not None:
                    results.setdefault(name, []).append(value)
                    phases[name] = round(value / 1e6, 1)
            per_bar.append({"bar": decision.bar_time.isoformat(), **phases})
        slowest = sorted(per_bar, key=lambda bar: bar.get("send_to_ack_applied", 0.0), reverse=True)[:SLOWEST]
        states = dict(
            (s, Order.objects.filter(state=s).count()) for s in Order.objects.values_list("state", flat=True).distinct()
        )
        decisions = {
            "ordered": Decision.objects.filter(status="ordered").count(),
            "with_probabilities_and_edge": Decision.objects.filter(expected_edge__isnull=False)
            .exclude(probabilities={})
            .count(),
            "model_versions": sorted(set(Decision.objects.values_list("model_version", flat=True))),
        }
        predictions = predictions_recorded(version_label if model is not None else None)
        expected = total * (1 + shadows) if model is not None else 0
        deadline = time.monotonic() + 60  # the shadow predictions trail the decisions on their own worker
        while shadows and predictions["count"] < expected and time.monotonic() < deadline:
            time.sleep(1.0)
            predictions = predictions_recorded(version_label)
        predictions["expected"] = expected
        admin.close()
    finally:
        if worker is not None:
            worker.stop()
        if shadow_worker is not None:
            shadow_worker.stop()
        sim.stop()
        connections.close_all()
    tasks = worker_task_split(log_dir / "worker.log", timed_sends, timed_seen)
    return {
        "benchmark": "closed bar -> decide_on_bar (Celery, Redis) -> order -> execute_order -> simulator AddOrder ack "
        "applied and committed",
        "target": "p99 < 50 ms",
        "send_to_ack": percentiles(results.pop("send_to_ack_applied")),
        "send_to_ack_seen_by_the_poll": percentiles(results.pop("send_to_ack_seen")),
        "where_the_time_goes": {name: percentiles(values) for name, values in results.items()},
        "slowest_bars_ms": slowest,
        "worker_tasks": {name: percentiles(values) for name, values in tasks.items()},
        "failures": failures,
        "order_states": states,
        "decisions": decisions,
        "predictions_recorded": predictions,
        "conditions": {
            "bars": bars,
            "warmup_bars": warmup,
            "predictor": "experiments.router.ExperimentRouter over the registry's PipelinePredictor (registered "
            f"production version; {shadows} shadow challengers in a running shadow experiment)"
            if model is not None
            else "bench.bench_bar_to_ack.FixedBuy",
            "model": model,
            "one_at_a_time": True,
            "database": "PostgreSQL " + env["DATABASE_URL"].rsplit("/", 1)[-1],
            "broker": "Redis " + env["REDIS_URL"],
            "worker": "celery worker -Q trading --pool solo (one process)",
            "exchange": "kraken_sim on loopback, --market none, liquidity placed, --no-rate-limits",
            "transport": "add_order over the private WebSocket" if transport == "ws" else "REST AddOrder",
            "post_ack_sync_s": env.get("GALFRIDAY_EXECUTION_POST_ACK_SYNC_S"),
            "poll_interval_ms": poll_s * 1000,
            "idle_gap_before_each_bar_ms": gap_s * 1000,
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "load_average_at_start": LOAD_AT_START,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }


_TASK_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO +celery\.\S+: Task trading\.tasks\.(?P<task>\w+)"
    r"\[(?P<id>[0-9a-f-]+)\] (?:(?P<received>received)|succeeded in (?P<runtime>[0-9.e-]+)s: (?P<result>.*))$"
)
_ORDER_ID = re.compile(r"'order_id': (\d+)")


def worker_task_split(
    log: Path, sends: dict[str, datetime], seen: dict[str, datetime] | None = None
) -> dict[str, list[int]]:
    """From the worker's own INFO lines (received at ms resolution, the machine's clock in UTC; runtimes exact):
    the broker hop to the decision task, its runtime, the hop to execute_order after the decision's commit,
    execute_order's runtime (the whole task, which goes on after the ack is committed: result stored, mutex
    released, with REST the read-back), and execute_order received → the exchange order id seen here (its part of
    the bar-to-ack time, plus this poll)."""
    received: dict[str, datetime] = {}
    runtime: dict[str, int] = {}
    order_of: dict[str, str] = {}
    execute_by_order: dict[str, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = _TASK_LINE.match(line)
        if m is None:
            continue
        task_id = m["id"]
        if m["received"]:
            received[task_id] = datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
            continue
        runtime[task_id] = int(float(m["runtime"]) * 1e9)
        order = _ORDER_ID.search(m["result"])
        if order is not None:
            if m["task"] == "decide_on_bar":
                order_of[task_id] = order.group(1)
            elif m["task"] == "execute_order":
                execute_by_order[order.group(1)] = task_id
    split: dict[str, list[int]] = {
        "send_to_decide_received": [],
        "decide_runtime": [],
        "decide_end_to_execute_received": [],
        "execute_order_runtime": [],
        "execute_received_to_exchange_id_seen": [],
    }
    for task_id, sent_at in sends.items():
        if task_id not in received or task_id not in runtime:
            continue
        split["send_to_decide_received"].append(_ms(sent_at, received[task_id]) or 0)
        split["decide_runtime"].append(runtime[task_id])
        execute_id = execute_by_order.get(order_of.get(task_id, ""), "")
        if execute_id not in received:
            continue  # sent by the decision task itself (GALFRIDAY_EXECUTION_INLINE): no execute_order hop
        decide_end = received[task_id] + timedelta(microseconds=runtime[task_id] / 1000)
        split["decide_end_to_execute_received"].append(_ms(decide_end, received[execute_id]) or 0)
        split["execute_order_runtime"].append(runtime.get(execute_id, 0))
        if seen and task_id in seen:
            split["execute_received_to_exchange_id_seen"].append(_ms(received[execute_id], seen[task_id]) or 0)
    return split


def seed_market() -> Any:
    """The benchmarks' trading set-up (also `bench_decide.py`): BTC/USD with Kraken's rules, 1,000,000 USD,
    trading active, the order-rate limit lifted (the benchmarks send several orders a second), a fresh quote."""
    from django.utils import timezone

    from trading.accounts import balance_set
    from trading.instruments import market_quote_set
    from trading.kill_switch import trading_state_set
    from trading.limits import risk_limit_set
    from trading.models import Instrument

    btc_usd_upsert()
    instrument = Instrument.objects.get(symbol=SYMBOL)
    balance_set(asset="USD", total=Decimal("1000000"))
    trading_state_set(state="active", reason="benchmark", actor="bench")
    risk_limit_set(
        instrument=None, values={"max_orders_per_minute": 100_000}, reason="benchmark sends fast", actor="bench"
    )
    market_quote_set(instrument=instrument, bid=PRICE - Decimal("0.1"), ask=PRICE + Decimal("0.1"), at=timezone.now())
    return instrument


def _bar(start: datetime) -> Any:
    """A flat closed 1-minute bar at PRICE with the fields the features read (volume among them)."""
    from timeseries import Point

    c = PRICE
    return Point(
        "bars",
        start,
        {"close": c, "open": c, "high": c, "low": c, "volume": Decimal("1.5"), "vwap": c, "trades": 1},
        {"symbol": SYMBOL, "interval": "1m"},
    )


LOAD_AT_START: list[float] = []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=300, help="timed bars (default 300)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed bars first (default 10)")
    parser.add_argument("--gap-ms", type=float, default=300.0, help="idle time before each bar (default 300 ms)")
    parser.add_argument("--log-dir", default="", help="keep the simulator's and worker's logs here")
    parser.add_argument(
        "--poll-ms",
        type=float,
        default=10.0,
        help="database poll interval (default 10 ms; the figure is the ack's own row time, the poll only waits)",
    )
    parser.add_argument("--transport", choices=("ws", "rest"), default="ws", help="order transport (default ws)")
    parser.add_argument(
        "--predictor",
        choices=("registry", "fixed"),
        default="registry",
        help="registry: models_registry.predictor.PipelinePredictor with a registered production version "
        "(default); fixed: FixedBuy, no registry",
    )
    parser.add_argument(
        "--shadows",
        type=int,
        default=0,
        help="with --predictor registry: that many challenger versions in a running shadow experiment, their "
        "predictions made on a lifecycle worker (default 0: the champion alone)",
    )
    parser.add_argument(
        "--post-ack-sync-s", type=float, default=0.0, help="GALFRIDAY_EXECUTION_POST_ACK_SYNC_S (default 0)"
    )
    args = parser.parse_args()
    LOAD_AT_START.extend(round(x, 2) for x in os.getloadavg())
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first_bar = now - timedelta(minutes=args.warmup + args.bars)
    with tempfile.TemporaryDirectory(prefix="galfriday-bench-") as var_dir:
        env = {
            **os.environ,
            **bench_environment(var_dir),
            "PYTHONPATH": str(ROOT),
            "GALFRIDAY_EXECUTION_GATEWAY": "trading.gateway.CeleryExecutionGateway",
            "GALFRIDAY_PREDICTOR": "bench.bench_bar_to_ack.FixedBuy",
            **NO_TRADE_BAND_OFF,
            **(registry_environment(var_dir) if args.predictor == "registry" else {}),
            "GALFRIDAY_DECISION_MAX_AGE_S": str(7 * 24 * 3600),
            "GALFRIDAY_KRAKEN_TIER": "pro",
            "KRAKEN_NONCE_FILE": str(Path(var_dir) / "kraken-nonce"),
            "KRAKEN_TIMEOUT": "5",
            "GALFRIDAY_EXECUTION_POST_ACK_SYNC_S": str(args.post_ack_sync_s),
        }
        os.environ.update(env)
        import django

        django.setup()
        prepare_database()
        log_dir = Path(args.log_dir) if args.log_dir else Path(var_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        result = run(
            args.bars,
            args.warmup,
            first_bar,
            log_dir,
            env,
            args.poll_ms / 1000,
            args.gap_ms / 1000,
            args.transport,
            args.predictor,
            args.shadows,
        )
    print(json.dumps(result, indent=2))
    predictions = result["predictions_recorded"]
    problems = []
    if result["failures"]:
        problems.append(f"{len(result['failures'])} bars did not order")
    count, complete = predictions["count"], predictions["with_probabilities_bar_time_horizon_features"]
    if args.predictor == "registry" and not count == complete == predictions["expected"]:
        problems.append(
            f"{count} predictions recorded ({complete} complete), expected one per bar: {predictions['expected']}"
        )
    if problems:
        print("bench_bar_to_ack: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
