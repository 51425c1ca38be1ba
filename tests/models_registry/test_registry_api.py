"""Registry API and admin: reads for authenticated users, promote/archive/alias and artifact download for
staff only, errors in the one API shape, and the admin's stage page going through the same gated service."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from models_registry.artifacts import sha256_hex
from models_registry.models import ModelVersion, StageEvent
from tests.models_registry.factories import (
    blob_path,
    make_model,
    make_version,
    registry_settings,  # noqa: F401
)

pytestmark = [pytest.mark.usefixtures("registry_settings"), pytest.mark.django_db]


def api(user=None) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def model_with_versions() -> str:
    model = make_model()
    make_version(model)
    make_version(model, metrics={"sharpe": 0.2, "max_drawdown": 0.1})
    return model.name


def test_reads_need_authentication_and_show_versions_and_lineage(plain_user, model_with_versions: str) -> None:  # type: ignore[no-untyped-def]
    name = model_with_versions
    anonymous = api().get("/api/models/")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    client = api(plain_user)
    assert [m["name"] for m in client.get("/api/models/").json()["results"]] == [name]
    detail = client.get(f"/api/models/{name}/").json()
    assert (detail["latest_version"], detail["production_version"], detail["aliases"]) == (2, None, {})
    versions = client.get(f"/api/models/{name}/versions/").json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    v1 = client.get(f"/api/models/{name}/versions/1/").json()
    assert v1["symbols"] == ["BTC/USD"]
    assert v1["n_trials"] == 12
    assert v1["feature_set_name"] == "bars_1m"
    assert [c["name"] for c in v1["signature"]] == ["ret_1", "vol_15", "rsi_14"]
    assert client.get(f"/api/models/{name}/versions/2/metrics/").json()["metrics"]["sharpe"] == 0.2
    missing = client.get("/api/models/ghost/versions/")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert client.get(f"/api/models/{name}/versions/9/").status_code == 404


def test_promote_archive_and_alias_are_staff_only(plain_user, staff_user, model_with_versions: str) -> None:  # type: ignore[no-untyped-def]
    name = model_with_versions
    refused = api(plain_user).post(f"/api/models/{name}/versions/1/promote/", {"reason": "me"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert api(plain_user).post(f"/api/models/{name}/versions/1/archive/", {"reason": "x"}).status_code == 403
    assert (
        api(plain_user).post(f"/api/models/{name}/aliases/", {"alias": "a", "version": 1, "reason": "x"}).status_code
        == 403
    )
    assert not StageEvent.objects.exists()

    staff = api(staff_user)
    promoted = staff.post(f"/api/models/{name}/versions/1/promote/", {"reason": "good"}, format="json")
    assert promoted.status_code == 200
    assert promoted.json()["stage"] == "production"
    no_reason = staff.post(f"/api/models/{name}/versions/2/promote/", {"stage": "staging"}, format="json")
    assert no_reason.status_code == 400
    assert no_reason.json()["error"]["code"] == "validation_error"
    gated = staff.post(f"/api/models/{name}/versions/2/promote/", {"reason": "try"}, format="json")
    assert gated.status_code == 422
    assert gated.json()["error"]["code"] == "promotion_gate_failed"
    assert {g["name"]: g["passed"] for g in gated.json()["error"]["details"]["gates"]} == {
        "max:max_drawdown": True,
        "min:sharpe": False,
    }
    override = staff.post(
        f"/api/models/{name}/versions/2/promote/", {"reason": "I insist on it", "override": True}, format="json"
    )
    assert override.status_code == 403
    assert override.json()["error"]["code"] == "permission_denied"
    alias = staff.post(f"/api/models/{name}/aliases/", {"alias": "challenger", "version": 2, "reason": "A/B"})
    assert alias.json() == {"alias": "challenger", "version": 2, "updated_at": alias.json()["updated_at"]}
    assert api(plain_user).get(f"/api/models/{name}/aliases/").json()[0]["alias"] == "challenger"
    assert staff.post(f"/api/models/{name}/aliases/challenger/remove/", {"reason": "done"}).status_code == 204
    archived = staff.post(f"/api/models/{name}/versions/1/archive/", {"reason": "retire"})
    assert archived.json()["stage"] == "archived"

    history = api(plain_user).get(f"/api/models/{name}/history/").json()["results"]
    assert [(h["kind"], h["version"], h["actor"]) for h in history] == [
        ("stage", 1, "user:staff"),
        ("alias_set", 2, "user:staff"),
        ("alias_removed", 2, "user:staff"),
        ("stage", 1, "user:staff"),
    ]
    at = history[0]["at"]
    production = api(plain_user).get(f"/api/models/{name}/production/", {"at": at}).json()
    assert production["version"]["version"] == 1
    assert api(plain_user).get(f"/api/models/{name}/production/").json()["version"] is None


def test_artifact_download_is_staff_only_and_verified(  # type: ignore[no-untyped-def]
    plain_user,
    staff_user,
    model_with_versions: str,
    registry_settings: Path,  # noqa: F811
) -> None:
    name = model_with_versions
    url = f"/api/models/{name}/versions/1/artifact/"
    assert api().get(url).status_code == 401
    assert api(plain_user).get(url).status_code == 403
    response = api(staff_user).get(url)
    version = ModelVersion.objects.get(model__name=name, version=1)
    assert response.status_code == 200
    assert response["X-Artifact-SHA256"] == version.artifact_sha256 == sha256_hex(response.content)

    path = blob_path(registry_settings, version.artifact_sha256)
    blob = path.read_bytes()
    path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))  # flip the last byte (never a no-op)
    tampered = api(staff_user).get(url)
    assert tampered.status_code == 409
    assert tampered.json()["error"]["code"] == "artifact_integrity_failed"


def test_model_creation_via_api_is_staff_only(plain_user, staff_user) -> None:  # type: ignore[no-untyped-def]
    body = {"name": "eth-direction", "promotion_gates": {"production": {"sharpe": {"min": 1}}}}
    assert api(plain_user).post("/api/models/", body, format="json").status_code == 403
    created = api(staff_user).post("/api/models/", body, format="json")
    assert created.status_code == 201
    assert created.json()["promotion_gates"] == body["promotion_gates"]
    assert api(staff_user).post("/api/models/", body, format="json").status_code == 409
    bad = api(staff_user).post("/api/models/", {"name": "x", "promotion_gates": {"live": {}}}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "validation_error"


def test_admin_stage_page_uses_the_gated_service(admin_user, staff_user, model_with_versions: str) -> None:  # type: ignore[no-untyped-def]
    name = model_with_versions
    v1 = ModelVersion.objects.get(model__name=name, version=1)
    v2 = ModelVersion.objects.get(model__name=name, version=2)
    browser = Client()
    browser.force_login(staff_user)
    assert browser.get(f"/admin/models_registry/modelversion/{v1.pk}/change/").status_code == 200
    page = browser.get(f"/admin/models_registry/modelversion/{v2.pk}/stage/")
    assert page.status_code == 200
    assert b"min:sharpe" in page.content

    refused = browser.post(
        f"/admin/models_registry/modelversion/{v2.pk}/stage/",
        {"action": "promote:production", "reason": "from the admin"},
    )
    assert refused.status_code == 200
    assert b"fails its gates" in refused.content
    assert ModelVersion.objects.get(pk=v2.pk).stage == "none"

    done = browser.post(
        f"/admin/models_registry/modelversion/{v1.pk}/stage/",
        {"action": "promote:production", "reason": "from the admin"},
    )
    assert done.status_code == 302
    event = StageEvent.objects.get()
    assert (event.version_id, event.to_stage, event.actor, event.reason) == (
        v1.pk,
        "production",
        "user:staff",
        "from the admin",
    )
    superuser = Client()
    superuser.force_login(admin_user)  # the superuser holds the override permission
    overridden = superuser.post(
        f"/admin/models_registry/modelversion/{v2.pk}/stage/",
        {"action": "promote:production", "reason": "override approved by risk", "override": "on"},
    )
    assert overridden.status_code == 302
    assert StageEvent.objects.filter(version=v2, gate_overridden=True).count() == 1
    assert browser.get("/admin/models_registry/stageevent/").status_code == 200


def test_list_limits_are_capped_like_every_other_list(plain_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_API_MAX_LIMIT = 2
    for _ in range(3):
        make_model()
    body = api(plain_user).get("/api/models/", {"limit": 5000}).json()
    assert body["count"] == 3
    assert len(body["results"]) == 2
