"""The wiring of the rules: evaluated after the commit of the rows they watch (the ingest heartbeat, the trading
state), on the beat schedule (the periodic task), against a real Celery worker (which queues are consumed); every
kind has a runbook section; the admin's actions go through the services."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.test import Client
from django.utils import timezone

from alerting.rules import GROUPS, RULES, rule_evaluate
from alerting.tasks import TASK_NAME, alert_rules_evaluate
from galfriday_site.celery import app as celery_app
from galfriday_site.periodic import PERIODIC_TASKS
from ingest.services import status_save
from tests.waiting import wait_for
from trading import alerts
from trading.kill_switch import trading_halt, trading_resume
from trading.models import Alert, AlertSilence

RUNBOOK = Path(__file__).resolve().parents[2] / "alerting" / "RUNBOOK.md"


def open_fingerprints(kind: str) -> set[str]:
    return set(Alert.objects.filter(kind=kind).exclude(state="resolved").values_list("fingerprint", flat=True))


def heartbeat(*, disconnected_since: Any, state: str, exchange_status: str = "online") -> None:
    now = timezone.now()
    status_save(name="host:7", connection_state=state, exchange_status=exchange_status, symbols=[], stats={},
                last_message_at=now, disconnected_since=disconnected_since, started_at=now - timedelta(hours=1),
                now=now)  # fmt: skip


# The rules run on commit: a test's transaction never commits, so each write runs its on-commit callbacks in
# place (django_capture_on_commit_callbacks; nothing runs unless the write registered it).
@pytest.mark.django_db
def test_the_ingest_heartbeat_fires_and_resolves_disconnection_and_maintenance_on_commit(
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        heartbeat(disconnected_since=timezone.now() - timedelta(minutes=6), state="reconnecting")
    assert open_fingerprints("exchange_disconnected") == {"exchange_disconnected:host:7"}
    with django_capture_on_commit_callbacks(execute=True):
        heartbeat(disconnected_since=None, state="connected", exchange_status="maintenance")
    assert open_fingerprints("exchange_disconnected") == set()
    assert open_fingerprints("exchange_maintenance") == {"exchange_maintenance"}
    with django_capture_on_commit_callbacks(execute=True):
        heartbeat(disconnected_since=None, state="connected")
    assert open_fingerprints("exchange_maintenance") == set()


@pytest.mark.django_db
def test_resuming_trading_resolves_the_kill_switch_alert_on_commit(django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        trading_halt(reason="checking the exchange", actor="user:ann")
    assert open_fingerprints("trading_halted") == {"trading_halted"}
    with django_capture_on_commit_callbacks(execute=True):
        trading_resume(reason="all good", actor="user:ann")
    assert open_fingerprints("trading_halted") == set()
    assert Alert.objects.get(kind="trading_halted").resolved_by == "auto"


@pytest.mark.django_db
def test_the_rules_run_from_beat_and_the_task_is_idempotent() -> None:
    specs = {s.kwargs["group"]: s.every_seconds for s in PERIODIC_TASKS if s.task == TASK_NAME}
    assert specs == {"database": 2, "broker": 30}
    assert set(GROUPS["database"]) | set(GROUPS["broker"]) == set(RULES)
    assert TASK_NAME in celery_app.tasks
    alerts.alert_raise(kind="trading_halted", severity="critical", message="stale halt")  # trading is active
    first = alert_rules_evaluate(group="database")
    second = alert_rules_evaluate(group="database")
    assert set(first) == set(GROUPS["database"])
    assert first["kill_switch"] == {"fired": 0, "repeated": 0, "resolved": 1}
    assert second["kill_switch"] == {"fired": 0, "repeated": 0, "resolved": 0}
    assert not any("error" in result for result in first.values()), first


@pytest.mark.services("redis")
@pytest.mark.django_db(transaction=True)
def test_a_queue_no_worker_consumes_fires_and_resolves_when_a_worker_consumes_it(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_ALERT_QUEUES_REQUIRED = ["default", "lifecycle"]

    def evaluated_until(expected: set[str]) -> bool:  # a worker answers the broadcast once its consumer runs
        rule_evaluate("queue_no_worker")
        return open_fingerprints("queue_no_worker") == expected

    with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=["default"], shutdown_timeout=10):
        wait_for(lambda: evaluated_until({"queue_no_worker:lifecycle"}), timeout=30, what="lifecycle unconsumed")
    with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=["default", "lifecycle"],
                      shutdown_timeout=10):  # fmt: skip
        wait_for(lambda: evaluated_until(set()), timeout=30, what="every queue consumed")
    # While the second worker starts, nothing consumes `default` either: that may fire (and resolve) its own alert.
    lifecycle = Alert.objects.get(fingerprint="queue_no_worker:lifecycle")
    assert lifecycle.severity == "critical"
    assert lifecycle.state == "resolved"
    assert set(Alert.objects.filter(kind="queue_no_worker").values_list("state", flat=True)) == {"resolved"}


def test_every_kind_has_a_title_and_a_runbook_section() -> None:
    sections = set(re.findall(r"^## ([a-z-]+)$", RUNBOOK.read_text(), flags=re.MULTILINE))
    kinds = {kind.replace("_", "-") for kind in Alert.Kind.values}
    assert kinds == sections
    assert set(alerts.KIND_TITLES) == set(Alert.Kind.values)


@pytest.fixture
def admin_client_logged_in(django_user_model) -> Client:  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_superuser(username="root", password="pw-root-123", email="r@x.test")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_admin_lists_acknowledges_and_resolves_alerts_and_creates_and_expires_silences(admin_client_logged_in) -> None:  # type: ignore[no-untyped-def]
    client = admin_client_logged_in
    alert = alerts.alert_raise(kind="drift", severity="warning", message="drift on v3", fingerprint="drift:version:3")
    page = client.get("/admin/trading/alert/")
    assert page.status_code == 200
    assert b"drift on v3" in page.content
    assert client.get(f"/admin/trading/alert/{alert.pk}/change/").status_code == 200
    client.post("/admin/trading/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by) == ("acknowledged", "user:root")
    client.post("/admin/trading/alert/", {"action": "resolve", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by) == ("resolved", "user:root")

    refused = client.post("/admin/trading/alertsilence/add/", {"reason": "no matcher", "duration_minutes": 5})
    assert refused.status_code == 200  # the form again, with its error
    assert not AlertSilence.objects.exists()
    client.post("/admin/trading/alertsilence/add/", {"kind": "drift", "reason": "retraining", "duration_minutes": 30})
    silence = AlertSilence.objects.get()
    assert (silence.kind, silence.created_by) == ("drift", "user:root")
    client.post("/admin/trading/alertsilence/", {"action": "expire", "_selected_action": [silence.pk]})
    silence.refresh_from_db()
    assert silence.ends_at <= timezone.now()
