"""The Reconciliation and System pages: runs and open discrepancies (values to the instrument's precision, never
raw 18-digit decimals), resolve with a note through the reconciliation API (staff only, a note required, nothing
changed otherwise), paper mode said plainly; the ingest heartbeat's rates, lag, reconnects and checksum failures,
the health components, Celery's queue depths and workers, the newest alerts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from kombu import Connection

from core.metrics import TASK_OUTCOMES
from reconciliation.models import Discrepancy
from tests.dashboard.lifecycle.support import alert, discrepancy, heartbeat

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_log_in_and_the_probes_refuse_them(client: Client) -> None:
    for url in ("/reconciliation/", "/system/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    for url in ("/dashboard-api/system/health/", "/dashboard-api/system/celery/"):
        response = client.get(url)
        assert response.status_code in (401, 403)
        assert "error" in response.json()


def test_paper_mode_says_there_is_no_exchange_account_to_reconcile(staff: Client, settings: Any) -> None:
    settings.TRADING_MODE = "paper"
    body = staff.get("/reconciliation/").content.decode()
    assert "there is no exchange account to reconcile" in body
    assert 'data-action="trigger" disabled' in body
    refused = staff.post("/api/reconciliation/runs/trigger/", {"reason": "try"}, content_type="application/json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "paper_mode"


def test_live_mode_lists_runs_and_open_discrepancies_to_their_precision(viewer: Client, settings: Any) -> None:
    settings.TRADING_MODE = "live"
    d = discrepancy()
    body = viewer.get("/reconciliation/").content.decode()
    assert "no exchange account" not in body
    assert f'data-discrepancy="{d.pk}"' in body
    assert f'data-run="{d.run_id}"' in body
    assert "0.12345679" in body  # BTC/USD lots: 8 places
    assert "0.123456789012345678" not in body
    assert "0.00345679" in body
    assert 'data-action="resolve"' not in body  # not staff


def test_resolve_is_refused_to_non_staff_and_without_a_note(viewer: Client, staff: Client, settings: Any) -> None:
    settings.TRADING_MODE = "live"
    d = discrepancy()
    url = f"/api/reconciliation/discrepancies/{d.pk}/resolve/"
    assert viewer.post(url, {"note": "fine"}, content_type="application/json").status_code == 403
    for body in ({}, {"note": ""}, {"note": "   "}):
        response = staff.post(url, body, content_type="application/json")
        assert response.status_code == 400
        assert "error" in response.json()
    d.refresh_from_db()
    assert d.status == Discrepancy.Status.OPEN
    assert d.resolution_note == ""


def test_staff_resolve_with_a_note_is_audited_and_leaves_the_open_list(staff: Client, settings: Any) -> None:
    settings.TRADING_MODE = "live"
    d = discrepancy()
    assert 'data-action="resolve"' in staff.get("/reconciliation/").content.decode()
    response = staff.post(
        f"/api/reconciliation/discrepancies/{d.pk}/resolve/",
        {"note": "exchange confirmed the partial fill"},
        content_type="application/json",
    )
    assert response.status_code == 200
    d.refresh_from_db()
    assert d.status == Discrepancy.Status.RESOLVED
    assert d.resolution_note == "exchange confirmed the partial fill"
    assert d.history.latest().actor.endswith("alice")
    body = staff.get("/reconciliation/").content.decode()
    assert f'data-discrepancy="{d.pk}"' not in body
    assert "No open discrepancy." in body


def test_system_page_shows_rates_lag_reconnects_checksum_failures_and_alerts(viewer: Client) -> None:
    heartbeat()
    heartbeat("ingest@old", age_s=600)
    raised = alert()
    body = viewer.get("/system/").content.decode()
    assert 'data-worker="ingest@host-1"' in body
    assert 'data-channel="trade"' in body
    assert "12.5" in body  # trade messages per second
    assert "18.7 ms" in body  # trade lag p99
    assert '<dd data-metric="reconnects">3</dd>' in body
    assert "checksum_failures" in body
    assert ">stale<" in body  # the old worker's heartbeat
    assert f'data-alert="{raised.pk}"' in body
    assert " UTC" in body


def test_system_page_without_an_ingest_worker_says_so(viewer: Client) -> None:
    assert "No ingest worker has reported" in viewer.get("/system/").content.decode()


def test_health_probe_reports_every_component_and_details_only_to_staff(viewer: Client, staff: Client) -> None:
    plain = viewer.get("/dashboard-api/system/health/")
    assert plain.status_code == 200
    components = plain.json()["components"]
    assert {"database", "broker", "cache", "channel_layer", "timeseries", "exchange", "ingest"} <= set(components)
    assert components["database"]["status"] == "ok"
    assert "error" not in components["ingest"]
    detailed = staff.get("/dashboard-api/system/health/").json()["components"]
    assert detailed["database"]["backend"] == "postgresql"
    assert "no ingest worker" in detailed["ingest"]["error"]


@pytest.mark.services("redis")
def test_celery_probe_reports_queue_depths_from_the_broker(viewer: Client) -> None:
    with Connection(settings.CELERY_BROKER_URL) as conn:
        queue = conn.SimpleQueue("lifecycle")
        try:
            queue.clear()
            for n in range(3):
                queue.put({"n": n})
            doc = viewer.get("/dashboard-api/system/celery/").json()
        finally:
            queue.clear()
            queue.close()
    assert doc["error"] == ""
    assert doc["queues"]["lifecycle"] == 3
    assert doc["queues"]["reconciliation"] == 0
    assert doc["workers"] == []  # no worker runs in this test


def test_celery_probe_reports_task_failures_as_the_workers_counted_them(viewer: Client) -> None:
    TASK_OUTCOMES.labels("tests.lifecycle.flaky", "failure").inc(2)
    TASK_OUTCOMES.labels("tests.lifecycle.flaky", "success").inc()
    doc = viewer.get("/dashboard-api/system/celery/").json()
    flaky = next(t for t in doc["outcomes"]["tasks"] if t["task"] == "tests.lifecycle.flaky")
    assert flaky["failed"] >= 2
    assert flaky["outcomes"]["success"] >= 1
    assert doc["outcomes"]["failed_total"] >= 2


def test_celery_probe_reports_an_unreachable_broker_instead_of_failing(viewer: Client, settings: Any) -> None:
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.HEALTH_CHECK_TIMEOUT = 0.5
    doc = viewer.get("/dashboard-api/system/celery/").json()
    assert doc["error"]
    assert doc["workers"] == []


def test_times_on_the_system_page_are_to_the_second_with_the_zone(viewer: Client) -> None:
    status = heartbeat()
    body = viewer.get("/system/").content.decode()
    assert f"{status.updated_at:%Y-%m-%d %H:%M:%S} UTC" in body
    assert f"{(status.started_at - timedelta(0)):%Y-%m-%d %H:%M:%S} UTC" in body
