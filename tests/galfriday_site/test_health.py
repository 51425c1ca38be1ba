"""/api/health/ checks every component for real and answers 503 when a required one fails."""

from __future__ import annotations

import httpx
import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.conftest import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _exchange_is_the_simulator(simulator_process, settings) -> None:  # type: ignore[no-untyped-def]
    settings.KRAKEN_REST_URL = simulator_process["rest_url"]


def get_health() -> tuple[int, dict]:  # type: ignore[type-arg]
    """As staff: the components are shown to authenticated staff only."""
    from django.contrib.auth import get_user_model

    staff, _ = get_user_model().objects.get_or_create(username="health-staff", defaults={"is_staff": True})
    client = APIClient()
    client.force_authenticate(staff)
    response = client.get("/api/health/")
    return response.status_code, response.json()


def test_anonymous_and_non_staff_callers_get_the_status_only(django_user_model) -> None:  # type: ignore[no-untyped-def]
    status, staff_body = get_health()
    anonymous = APIClient().get("/api/health/")
    assert anonymous.status_code == status
    assert anonymous.json() == {"status": staff_body["status"]}
    viewer = django_user_model.objects.create_user(username="health-viewer", password="pw-viewer-123")
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.get("/api/health/").json() == {"status": staff_body["status"]}
    assert set(staff_body["components"]) >= {"database", "exchange", "ingest"}


def test_health_reports_every_component_ok_with_latency() -> None:
    status, body = get_health()
    assert status == 200, body
    assert body["status"] == "ok"
    assert set(body["components"]) == {
        "database",
        "broker",
        "cache",
        "channel_layer",
        "timeseries",
        "exchange",
        "ingest",
    }
    assert body["components"]["ingest"] | {"status": "failing", "required": False} == body["components"]["ingest"]
    for name, component in body["components"].items():
        if name == "ingest":  # no ingest worker runs in this test
            continue
        assert component["status"] == "ok", (name, component)
        assert component["latency_ms"] >= 0
        assert component["backend"]


@pytest.mark.services("postgres", "redis", "influxdb")
def test_health_uses_the_production_services_when_configured() -> None:
    status, body = get_health()
    assert status == 200, body
    backends = {name: c["backend"] for name, c in body["components"].items() if name != "ingest"}
    assert backends == {
        "database": "postgresql",
        "broker": "redis",
        "cache": "RedisCache",
        "channel_layer": "RedisChannelLayer",
        "timeseries": "influxdb",
        "exchange": f"sim ({backends['exchange'].split('(')[1]}",
    }


def test_health_reports_stopped_redis_as_failing_with_503() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with override_settings(
        CELERY_BROKER_URL=dead,
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": dead,
                "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
            }
        },
        CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [dead]}}},
        HEALTH_CHECK_TIMEOUT=2.0,
    ):
        status, body = get_health()
    assert status == 503
    assert body["status"] == "failing"
    components = body["components"]
    for name in ("broker", "cache", "channel_layer"):
        assert components[name]["status"] == "failing", (name, components[name])
        assert components[name]["error"]
    assert components["database"]["status"] == "ok"
    assert components["timeseries"]["status"] == "ok"


def test_health_reports_unreachable_influxdb_as_failing_with_503() -> None:
    with override_settings(INFLUXDB_URL=f"http://127.0.0.1:{free_port()}", INFLUXDB_TIMEOUT=1.0):
        status, body = get_health()
    assert status == 503
    assert body["components"]["timeseries"]["status"] == "failing"
    assert "unreachable" in body["components"]["timeseries"]["error"]


def test_optional_component_failure_does_not_make_health_503() -> None:
    required = ["database", "broker", "cache", "channel_layer"]
    with override_settings(
        INFLUXDB_URL=f"http://127.0.0.1:{free_port()}", INFLUXDB_TIMEOUT=1.0, HEALTH_REQUIRED_COMPONENTS=required
    ):
        status, body = get_health()
    assert status == 200
    assert (
        body["components"]["timeseries"] | {"status": "failing", "required": False} == body["components"]["timeseries"]
    )


def test_exchange_down_is_reported_but_not_required_by_default() -> None:
    with override_settings(KRAKEN_REST_URL=f"http://127.0.0.1:{free_port()}", HEALTH_CHECK_TIMEOUT=1.0):
        status, body = get_health()
    assert status == 200
    assert body["components"]["exchange"]["status"] == "failing"
    assert body["components"]["exchange"]["required"] is False


def test_exchange_not_online_is_failing(simulator_process) -> None:  # type: ignore[no-untyped-def]
    admin = simulator_process["admin_url"]
    httpx.post(
        f"{admin}/faults", json={"fault": "system_status", "status": "maintenance"}, timeout=5
    ).raise_for_status()
    try:
        _, body = get_health()
    finally:
        httpx.post(f"{admin}/faults", json={"fault": "system_status", "status": "online"}, timeout=5)
    assert body["components"]["exchange"]["status"] == "failing"
    assert "maintenance" in body["components"]["exchange"]["error"]


def test_ingest_is_ok_only_with_a_fresh_connected_heartbeat() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from ingest.models import IngestStatus

    now = timezone.now()
    status = IngestStatus.objects.create(
        name="host:1",
        connection_state="connected",
        exchange_status="online",
        started_at=now,
        updated_at=now,
    )
    assert get_health()[1]["components"]["ingest"]["status"] == "ok"
    status.updated_at = now - timedelta(minutes=5)
    status.save()
    ingest = get_health()[1]["components"]["ingest"]
    assert ingest["status"] == "failing"
    assert "last reported" in ingest["error"]
    status.updated_at, status.connection_state = now, "reconnecting"
    status.save()
    assert "reconnecting" in get_health()[1]["components"]["ingest"]["error"]
