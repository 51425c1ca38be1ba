"""The heartbeat ping (galfriday_site.heartbeat) against a local HTTP server standing in for the outside service
(healthchecks-style; no internet here): sent only while the system is healthy, never raising when the service is
down, slow or absent, and registered as a beat task."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from galfriday_site import heartbeat, tasks
from galfriday_site.celery import app
from galfriday_site.periodic import PERIODIC_TASKS
from ingest.models import IngestStatus
from tests.deploy.servers import http_receiver, loopback_port

pytestmark = [pytest.mark.django_db, pytest.mark.services("postgres", "redis")]


def ingest_reported(seconds_ago: float) -> IngestStatus:
    at = timezone.now() - timedelta(seconds=seconds_ago)
    return IngestStatus.objects.create(
        name="host:1", connection_state="connected", exchange_status="online", started_at=at, updated_at=at
    )


def test_healthy_system_pings_the_url() -> None:
    ingest_reported(seconds_ago=2)
    sent = heartbeat.counters["sent"]
    with http_receiver() as receiver:
        assert heartbeat.heartbeat_ping(f"{receiver.url}/ping/abc") == "sent"
        [request] = receiver.received()
    assert (request.method, request.path) == ("GET", "/ping/abc")
    assert heartbeat.counters["sent"] == sent + 1


def test_the_beat_task_pings_the_configured_url(settings) -> None:  # type: ignore[no-untyped-def]
    ingest_reported(seconds_ago=2)
    with http_receiver() as receiver:
        settings.GALFRIDAY_HEARTBEAT_URL = f"{receiver.url}/ping/beat"
        assert tasks.heartbeat_ping() == "sent"
        assert [r.path for r in receiver.received()] == ["/ping/beat"]


def test_silent_while_the_ingest_worker_is_not_reporting() -> None:
    ingest_reported(seconds_ago=120)
    with http_receiver() as receiver:
        assert heartbeat.heartbeat_ping(f"{receiver.url}/ping") == "unhealthy"
        assert receiver.received() == []
    IngestStatus.objects.all().delete()
    with http_receiver() as receiver:
        assert heartbeat.heartbeat_ping(f"{receiver.url}/ping") == "unhealthy"
        assert receiver.received() == []


def test_silent_while_a_required_component_fails(settings) -> None:  # type: ignore[no-untyped-def]
    ingest_reported(seconds_ago=2)
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{loopback_port()}/0"  # nothing listens there
    health = heartbeat.system_health()
    assert not health.healthy
    assert any(p.startswith("broker:") for p in health.problems)
    with http_receiver() as receiver:
        assert heartbeat.heartbeat_ping(f"{receiver.url}/ping") == "unhealthy"
        assert receiver.received() == []


def test_off_without_a_url(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_HEARTBEAT_URL = ""
    assert heartbeat.heartbeat_ping() == "off"


def test_a_failing_service_is_reported_not_raised() -> None:
    ingest_reported(seconds_ago=2)
    failed = heartbeat.counters["failed"]
    with http_receiver() as receiver:
        receiver.status = 503
        assert heartbeat.heartbeat_ping(f"{receiver.url}/ping") == "failed"
        assert len(receiver.received()) == 1
    assert heartbeat.heartbeat_ping(f"http://127.0.0.1:{loopback_port()}/ping") == "failed"  # nothing listens
    assert heartbeat.counters["failed"] == failed + 2  # counted, as well as logged


def test_a_hanging_service_times_out_without_raising() -> None:
    ingest_reported(seconds_ago=2)
    hang = threading.Event()
    with http_receiver(delay=hang) as receiver:
        assert heartbeat.heartbeat_ping(f"{receiver.url}/ping", timeout=0.3) == "failed"
        assert len(receiver.received()) == 1


def test_registered_as_a_beat_task() -> None:
    [spec] = [s for s in PERIODIC_TASKS if s.task == "galfriday_site.heartbeat_ping"]
    assert spec.every_seconds == 60
    assert spec.expires_seconds is not None
    assert "galfriday_site.heartbeat_ping" in app.tasks
