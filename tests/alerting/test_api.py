"""The alerting API: list with filters and pages, acknowledge, resolve, silences; bad input answers 4xx in the one
error shape and changes nothing; reads for users, changes for staff."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.audit import audit_trail
from trading import alerts
from trading.models import Alert, AlertSilence

pytestmark = pytest.mark.django_db
BASE = "/api/alerting/"


@pytest.fixture
def staff(staff_user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.fixture
def viewer(plain_user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(plain_user)
    return client


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


def snapshot() -> list[tuple[Any, ...]]:
    return [
        *Alert.objects.order_by("pk").values_list("pk", "state", "count", "acknowledged_by", "resolved_by"),
        *AlertSilence.objects.order_by("pk").values_list("pk", "ends_at", "reason"),
    ]


@pytest.fixture
def three() -> dict[str, Alert]:
    return {
        "drift": alerts.alert_raise(kind="drift", severity="warning", message="d", fingerprint="drift:version:1"),
        "halt": alerts.alert_raise(kind="trading_halted", severity="critical", message="h"),
        "lag": alerts.alert_raise(kind="ingest_lag", severity="warning", message="l", fingerprint="ingest_lag:w"),
    }


def test_list_filters_by_state_severity_and_kind_and_pages(viewer: APIClient, three) -> None:  # type: ignore[no-untyped-def]
    alerts.alert_acknowledge(alert_id=three["lag"].pk, actor="user:ann")
    page = viewer.get(BASE + "alerts/", {"severity": "warning"}).json()
    assert page["count"] == 2
    assert {r["kind"] for r in page["results"]} == {"drift", "ingest_lag"}
    assert [r["id"] for r in viewer.get(BASE + "alerts/", {"state": "acknowledged"}).json()["results"]] == [
        three["lag"].pk
    ]
    assert (
        viewer.get(BASE + "alerts/", {"kind": "trading_halted"})
        .json()["results"][0]["runbook_url"]
        .endswith("#trading-halted")
    )
    first = viewer.get(BASE + "alerts/", {"limit": 1}).json()
    assert first["count"] == 3
    assert len(first["results"]) == 1
    assert first["next"] is not None
    detail = viewer.get(BASE + f"alerts/{three['drift'].pk}/").json()
    assert (detail["fingerprint"], detail["count"], detail["state"]) == ("drift:version:1", 1, "firing")


def test_acknowledge_and_resolve_through_the_api_are_audited_with_the_user(staff: APIClient, three) -> None:  # type: ignore[no-untyped-def]
    pk = three["drift"].pk
    body = staff.post(BASE + f"alerts/{pk}/acknowledge/", {"note": "on it"}, format="json").json()
    assert (body["state"], body["acknowledged_by"]) == ("acknowledged", "user:staff")
    body = staff.post(BASE + f"alerts/{pk}/resolve/", {"note": "fixed the feed"}, format="json").json()
    assert (body["state"], body["resolved_by"]) == ("resolved", "user:staff")
    trail = audit_trail(Alert.objects.get(pk=pk))
    assert [(r.actor, r.reason) for r in trail[1:]] == [("user:staff", "on it"), ("user:staff", "fixed the feed")]


def test_silence_create_list_and_expire(staff: APIClient, viewer: APIClient, three) -> None:  # type: ignore[no-untyped-def]
    response = staff.post(
        BASE + "silences/", {"kind": "drift", "reason": "retraining", "duration_minutes": 60}, format="json"
    )
    assert response.status_code == 201, response.content
    silence_id = response.json()["id"]
    assert Alert.objects.get(pk=three["drift"].pk).silence_id == silence_id
    listed = viewer.get(BASE + "silences/", {"active": "true"}).json()
    assert [s["id"] for s in listed["results"]] == [silence_id]
    expired = staff.post(BASE + f"silences/{silence_id}/expire/", {}, format="json")
    assert expired.status_code == 200
    assert viewer.get(BASE + "silences/", {"active": "true"}).json()["count"] == 0
    assert not alerts.alert_is_silenced(Alert.objects.get(pk=three["drift"].pk))


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "alerts/?state=burning", None, 400),
        ("get", "alerts/?severity=loud", None, 400),
        ("get", "alerts/?kind=nope", None, 400),
        ("get", "alerts/999999/", None, 404),
        ("post", "alerts/999999/acknowledge/", {}, 404),
        ("post", "alerts/999999/resolve/", {}, 404),
        ("post", "alerts/{drift}/acknowledge/", {"note": "x" * 3000}, 400),
        ("post", "alerts/{resolved}/acknowledge/", {}, 409),
        ("post", "silences/", {"reason": "no matcher", "duration_minutes": 5}, 400),
        ("post", "silences/", {"kind": "nope", "reason": "r", "duration_minutes": 5}, 400),
        ("post", "silences/", {"kind": "drift", "duration_minutes": 5}, 400),
        ("post", "silences/", {"kind": "drift", "reason": "r"}, 400),
        ("post", "silences/", {"kind": "drift", "reason": "r", "duration_minutes": 0}, 400),
        ("post", "silences/", {"kind": "drift", "reason": "r", "duration_minutes": 10**9}, 400),
        ("post", "silences/", {"kind": "drift", "reason": "r", "ends_at": "yesterday"}, 400),
        ("post", "silences/", {"kind": "drift", "reason": "r", "ends_at": "2000-01-01T00:00:00Z"}, 400),
        (
            "post",
            "silences/",
            {"kind": "drift", "reason": "r", "duration_minutes": 5, "ends_at": "2099-01-01T00:00Z"},
            400,
        ),
        ("post", "silences/", ["not", "an", "object"], 400),
        ("post", "silences/999999/expire/", {}, 404),
    ],
)
def test_bad_input_is_a_4xx_in_the_error_shape_and_changes_nothing(  # type: ignore[no-untyped-def]
    staff: APIClient, three, method, path, body, status
) -> None:
    resolved = alerts.alert_raise(kind="balance_low", severity="warning", message="b", fingerprint="balance_low:USD")
    alerts.alert_resolve(fingerprint="balance_low:USD")
    before = snapshot()
    url = BASE + path.format(drift=three["drift"].pk, resolved=resolved.pk)
    response = staff.get(url) if method == "get" else staff.post(url, body, format="json")
    error(response, status)
    assert snapshot() == before


def test_readers_cannot_change_anything(viewer: APIClient, three) -> None:  # type: ignore[no-untyped-def]
    before = snapshot()
    pk = three["drift"].pk
    assert error(viewer.post(BASE + f"alerts/{pk}/acknowledge/", {}, format="json"), 403)["code"] == "permission_denied"
    error(viewer.post(BASE + f"alerts/{pk}/resolve/", {}, format="json"), 403)
    error(viewer.post(BASE + "silences/", {"kind": "drift", "reason": "r", "duration_minutes": 5}, format="json"), 403)
    assert snapshot() == before
    error(APIClient().get(BASE + "alerts/"), 401)


def test_the_old_trading_alert_list_still_answers(viewer: APIClient, three) -> None:  # type: ignore[no-untyped-def]
    alerts.alert_acknowledge(alert_id=three["lag"].pk, actor="user:ann")
    alerts.alert_resolve(fingerprint="drift:version:1")
    firing = viewer.get("/api/trading/alerts/", {"unacknowledged": "true"}).json()
    assert [r["id"] for r in firing["results"]] == [three["halt"].pk]
    assert firing["results"][0]["state"] == "firing"


def test_silence_ends_at_in_the_future_is_accepted(staff: APIClient) -> None:
    ends = (timezone.now() + timedelta(hours=2)).isoformat()
    response = staff.post(
        BASE + "silences/", {"fingerprint": "drift:version:9", "reason": "known", "ends_at": ends}, format="json"
    )
    assert response.status_code == 201, response.content
    assert AlertSilence.objects.get().fingerprint == "drift:version:9"
