"""`/metrics` exports what a real ingest worker reported (its heartbeat row), the prediction service, trading
counters and health, in Prometheus text format; it is served to loopback clients or with the configured token,
and refused otherwise. `/api/health/` carries the same ingest figures and the latest gap repairs."""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import connections
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from ingest.worker import IngestWorker
from kraken_sim import SimConfig, Simulator
from tests.ingest.test_gaps import config, finish, start, trade_for
from tests.kraken.conftest import SIM_UNLIMITED
from timeseries.relational import RelationalStore

pytestmark = pytest.mark.django_db(transaction=True)


def _staff_client() -> Client:
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.create_user(username="metrics-staff", is_staff=True))
    return client


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


async def test_metrics_and_health_show_what_the_ingest_worker_reported(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(market="generate", rate=0.0, warmup_steps=0, tier=SIM_UNLIMITED))
    await sim.start()
    try:
        worker = IngestWorker(config(sim, tmp_path), store=RelationalStore(), channel_layer=InMemoryChannelLayer())
        stop, task = await start(worker)
        await trade_for(sim, 1.5)
        sim.faults.inject_frames(["not json", '{"channel":"level3","data":[]}'])
        await trade_for(sim, 0.6)  # at least two heartbeats after the bad frames
        await finish(sim, worker, stop, task)
    finally:
        await sim.stop()

    response = await sync_to_async(Client().get)("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    metrics = samples(response.content.decode())
    worker_name = worker.config.name

    def value(metric: str, **labels: str) -> float:
        matches = [v for lbl, v in metrics.get(metric, []) if all(lbl.get(k) == x for k, x in labels.items())]
        assert matches, f"{metric} {labels} not exported"
        return matches[0]

    assert value("galfriday_ingest_messages_total", worker=worker_name, channel="trade") == float(
        worker.ws.stats.messages["trade"]
    )
    assert value("galfriday_ingest_lag_milliseconds", worker=worker_name, channel="trade", quantile="0.99") >= value(
        "galfriday_ingest_lag_milliseconds", worker=worker_name, channel="trade", quantile="0.5"
    )
    assert value("galfriday_ingest_malformed_messages_total", worker=worker_name) >= 1
    assert value("galfriday_ingest_unknown_messages_total", worker=worker_name) >= 1
    assert value("galfriday_ingest_reconnects_total", worker=worker_name) == 0
    assert value("galfriday_ingest_queue_depth", worker=worker_name, queue="timeseries_pending") == 0
    assert value("galfriday_ingest_events_total", worker=worker_name, name="trades") == worker.counters["trades"]
    assert value("galfriday_ingest_backfills_total", reason="startup", status="done") == 2
    assert value("galfriday_ingest_up", worker=worker_name) == 0  # stopped: its last heartbeat says closed
    assert "galfriday_prediction_events_total" in metrics
    assert value("galfriday_trading_state", state="active") == 1
    assert value("galfriday_health_component_up", component="database", required="true") == 1
    assert "galfriday_health_up" in metrics

    staff = await sync_to_async(_staff_client)()  # the components are shown to staff only
    body = (await sync_to_async(staff.get)("/api/health/")).json()
    ingest = body["components"]["ingest"]
    assert ingest["status"] == "failing"  # the worker stopped; its figures are still shown
    details = ingest["details"]
    assert details["worker"] == worker_name
    assert details["lag_ms"]["trade"]["samples"] > 0
    assert details["malformed_messages"] >= 1
    assert {"timeseries_pending", "held_trades", "events_pending"} <= set(details["queues"])
    assert [b["reason"] for b in details["recent_backfills"]] == ["startup", "startup"]
    await sync_to_async(connections.close_all)()


def test_metrics_show_whether_the_books_agree_with_the_exchange(client: Client) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from reconciliation.models import Discrepancy, ReconciliationRun

    now = timezone.now()

    def run(status: str, finished_ago_s: float | None, found: int = 0) -> ReconciliationRun:
        finished = None if finished_ago_s is None else now - timedelta(seconds=finished_ago_s)
        return ReconciliationRun.objects.create(
            trigger="schedule",
            status=status,
            started_at=now - timedelta(seconds=(finished_ago_s or 0) + 2),
            finished_at=finished,
            duration_ms=1500.0 if finished else None,
            discrepancy_count=found,
        )

    run("clean", 600)
    corrected = run("corrected", 300, found=1)
    halted = run("halted", 60, found=2)
    run("running", None)
    for kind, severity, status in (
        ("missing_fill", "warning", "auto_resolved"),
        ("balance_mismatch", "critical", "open"),
        ("position_mismatch", "critical", "open"),
        ("fee_mismatch", "info", "resolved"),
    ):
        closed = {} if status == "open" else {"resolved_by": "reconciliation", "resolved_at": now}
        Discrepancy.objects.create(
            run=halted if status == "open" else corrected, kind=kind, severity=severity, status=status, **closed
        )
    metrics = samples(client.get("/metrics").content.decode())
    runs = dict((labels["status"], value) for labels, value in metrics["galfriday_reconciliation_runs_total"])
    assert runs == {"clean": 1, "corrected": 1, "halted": 1, "running": 1}
    outcome = dict((labels["status"], value) for labels, value in metrics["galfriday_reconciliation_last_run_status"])
    assert outcome == {"clean": 0, "corrected": 0, "halted": 1, "failed": 0}
    [(_, age)] = metrics["galfriday_reconciliation_last_run_age_seconds"]
    assert 60 <= age < 120
    assert metrics["galfriday_reconciliation_last_run_duration_seconds"] == [({}, 1.5)]
    assert metrics["galfriday_reconciliation_last_run_discrepancies"] == [({}, 2.0)]
    [(_, agreed)] = metrics["galfriday_reconciliation_last_agreement_age_seconds"]
    assert 300 <= agreed < 360  # the corrected run: the halted one found the books different
    still_open = {
        (labels["kind"], labels["severity"]): value
        for labels, value in metrics["galfriday_reconciliation_discrepancies_open"]
    }
    assert still_open == {("balance_mismatch", "critical"): 1, ("position_mismatch", "critical"): 1}


def test_metrics_count_orders_per_state_and_unacknowledged_alerts(client: Client) -> None:
    from django.utils import timezone

    from tests.trading.factories import OrderFactory
    from trading.models import Alert

    for state in ("submitted", "submitted", "filled", "rejected"):
        OrderFactory(state=state)
    Alert.objects.create(kind="trading_halted", severity="critical", message="halted", fingerprint="a")
    Alert.objects.create(kind="trading_halted", severity="critical", message="halted again", fingerprint="b")
    Alert.objects.create(
        kind="trading_halted",
        severity="critical",
        message="seen",
        fingerprint="c",
        state="acknowledged",
        acknowledged_by="ops",
        acknowledged_at=timezone.now(),
    )
    metrics = samples(client.get("/metrics").content.decode())
    orders = {labels["state"]: value for labels, value in metrics["galfriday_trading_orders"]}
    assert orders == {"submitted": 2, "filled": 1, "rejected": 1}
    assert metrics["galfriday_alerts_unacknowledged"] == [({"severity": "critical", "kind": "trading_halted"}, 2.0)]


def test_metrics_without_any_reconciliation_run_say_nothing_about_it(client: Client) -> None:
    metrics = samples(client.get("/metrics").content.decode())
    assert "galfriday_reconciliation_last_run_age_seconds" not in metrics
    assert "galfriday_reconciliation_last_agreement_age_seconds" not in metrics
    assert "galfriday_reconciliation_runs_total" not in metrics
    assert ({"collector": "reconciliation"}, 1.0) not in metrics.get("galfriday_metrics_collector_failed", [])


def test_metrics_refuse_remote_clients_without_a_token(client: Client) -> None:
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_metrics_token_is_required_from_everyone_once_set(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_METRICS_TOKEN = "s3cret-metrics"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", REMOTE_ADDR="127.0.0.1").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200
    assert b"galfriday_health_up" in response.content
    assert client.post("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics").status_code == 405


def test_a_failing_collector_costs_only_its_own_metrics(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    # Replaced: the prediction service failing is not something a real process can be made to do here.
    def broken() -> dict[str, object]:
        raise RuntimeError("prediction service unavailable")

    monkeypatch.setattr("models_registry.prediction.prediction_stats", broken)
    response = client.get("/metrics")
    assert response.status_code == 200
    metrics = samples(response.content.decode())
    assert ({"collector": "prediction"}, 1.0) in metrics["galfriday_metrics_collector_failed"]
    assert "galfriday_prediction_events_total" not in metrics
    assert "galfriday_health_up" in metrics


def test_metrics_refuse_a_request_relayed_by_a_local_proxy(client: Client) -> None:
    """A proxy on this host relays outside clients from a loopback address: without a token, a request carrying
    forwarding headers is not served, whatever address the headers claim."""
    for header in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"):
        assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", **{header: "127.0.0.1"}).status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


def test_metrics_answer_plain_http_with_the_https_redirect_on(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200  # a local scraper speaks HTTP
    assert client.get("/api/trading/orders/", REMOTE_ADDR="127.0.0.1").status_code == 301  # the rest is redirected
