"""The operator's doors to retraining: the API (trigger with a reason, single-flight, runs, run detail, the
model's history with the loop's steps), bad input as a clear 4xx that changes nothing, the command, the admin
action."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from models_registry.retraining.models import RetrainingRun, RetrainingTrigger
from models_registry.services import model_version_promote
from tests.models_registry.factories import make_model, make_version, registry_settings  # noqa: F401

pytestmark = [
    pytest.mark.usefixtures("registry_settings"),
    pytest.mark.django_db,
    pytest.mark.services("postgres", "redis"),
]


@pytest.fixture
def model_name() -> str:
    model = make_model()
    version = make_version(model)
    model_version_promote(model_name=model.name, version=version.version, reason="champion", actor="test")
    return model.name


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("ops", password="x", is_staff=True)


def test_operator_trigger_starts_then_joins_and_shows_on_the_history(model_name: str, staff: Any) -> None:
    api = _client(staff)
    first = api.post(f"/api/models/{model_name}/retrain/", {"reason": "regime changed"}, format="json")
    assert first.status_code == 202, first.content
    assert first.json()["started"] is True
    second = api.post(f"/api/models/{model_name}/retrain/", {"reason": "again"}, format="json")
    assert second.json()["joined"] is True
    assert second.json()["run_id"] == first.json()["run_id"]
    runs = api.get(f"/api/models/{model_name}/retrain/").json()["results"]
    assert [(r["id"], r["status"], r["trigger"], r["actor"]) for r in runs] == [
        (first.json()["run_id"], "queued", "operator", "user:ops")
    ]
    detail = api.get(f"/api/models/{model_name}/retrain/{first.json()['run_id']}/").json()
    assert sorted(t["joined"] for t in detail["triggers"]) == [False, True]
    assert [s["step"] for s in detail["steps"]] == ["triggered", "joined"]
    history = api.get(f"/api/models/{model_name}/history/", {"include": "retraining"}).json()["results"]
    assert [(h["origin"], h["kind"]) for h in history] == [
        ("stage", "stage"),
        ("retraining", "triggered"),
        ("retraining", "joined"),
    ]
    plain = api.get(f"/api/models/{model_name}/history/").json()["results"]
    assert [h["kind"] for h in plain] == ["stage"]


def test_bad_trigger_requests_are_refused_and_change_nothing(
    model_name: str, staff: Any, django_user_model: Any
) -> None:
    api = _client(staff)
    assert api.post(f"/api/models/{model_name}/retrain/", {}, format="json").status_code == 400
    missing = api.post("/api/models/no-such-model/retrain/", {"reason": "x"}, format="json")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    viewer = django_user_model.objects.create_user("viewer", password="x")
    assert _client(viewer).post(f"/api/models/{model_name}/retrain/", {"reason": "x"}, format="json").status_code == 403
    assert not RetrainingRun.objects.exists()
    assert not RetrainingTrigger.objects.exists()


def test_policy_is_read_and_replaced_through_the_api(model_name: str, staff: Any) -> None:
    api = _client(staff)
    put = api.put(
        f"/api/models/{model_name}/retraining-policy/", {"schedule_hours": 24, "on_drift": False}, format="json"
    )
    assert put.status_code == 200, put.content
    policy = api.get(f"/api/models/{model_name}/retraining-policy/").json()["policy"]
    assert policy["schedule_hours"] == 24.0
    assert policy["on_drift"] is False
    bad = api.put(f"/api/models/{model_name}/retraining-policy/", {"window_hours": -1}, format="json")
    assert bad.status_code == 400


def test_retrain_command_triggers_with_a_reason(model_name: str) -> None:
    with pytest.raises(CommandError, match="--reason"):
        call_command("retrain", model_name)
    out = StringIO()
    call_command("retrain", model_name, "--reason", "operator asked", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["started"] is True
    listed = StringIO()
    call_command("retrain", model_name, "--list", "--json", stdout=listed)
    assert [r["run"] for r in json.loads(listed.getvalue())] == [result["run_id"]]


def test_admin_action_retrains_the_selected_model(model_name: str, admin_client: Any) -> None:
    from models_registry.models import RegisteredModel  # reason: local to the one test that needs the pk

    pk = RegisteredModel.objects.get(name=model_name).pk
    response = admin_client.post(
        "/admin/models_registry/registeredmodel/", {"action": "retrain_now", "_selected_action": [pk]}, follow=True
    )
    assert response.status_code == 200
    run = RetrainingRun.objects.get(model__name=model_name)
    assert run.trigger == "operator"
    assert run.actor.startswith("user:")
    assert admin_client.get(f"/admin/models_registry/retrainingrun/{run.pk}/change/").status_code == 200
    assert admin_client.get("/admin/models_registry/retrainingevent/").status_code == 200
