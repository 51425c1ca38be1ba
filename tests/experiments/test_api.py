"""Experiments API: reads for authenticated users, writes for staff; create with every refusal a clear 400 in the
one error shape with nothing written; the transitions with their reasons, event log and audit history; results
per arm; the OpenAPI schema documents every operation's 4xx."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from experiments.models import Arm, Experiment, ExperimentEvent
from models_registry.services import model_version_promote
from tests.experiments.interface_support import feed_shadow, model_with_champion
from tests.models_registry.factories import (
    make_model,
    make_version,
    registry_settings,  # noqa: F401
)

pytestmark = [pytest.mark.usefixtures("registry_settings"), pytest.mark.django_db, pytest.mark.services("postgres")]


def api(user: Any = None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def model_name() -> str:
    """A model with v1 in production (the champion) and v2, v3 to test against it."""
    return model_with_champion()


def body(model: str, /, **overrides: Any) -> dict[str, Any]:
    return {"model": model, "name": "v2 against the champion", "treatments": [{"version": 2}]} | overrides


def nothing_written() -> None:
    assert not Experiment.objects.exists()
    assert not Arm.objects.exists()
    assert not ExperimentEvent.objects.exists()
    assert not Experiment.history.exists()


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    payload = response.json()
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"code", "message", "details"}
    assert payload["error"]["code"] == code, payload
    assert payload["error"]["message"]
    return payload["error"]


def create(client: APIClient, model: str, **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/experiments/", body(model, **overrides), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_reads_need_authentication_and_writes_need_staff(plain_user, staff_user, model_name: str) -> None:  # type: ignore[no-untyped-def]
    assert_error(api().get("/api/experiments/"), 401, "not_authenticated")
    assert api(plain_user).get("/api/experiments/").json()["results"] == []
    assert_error(api(plain_user).post("/api/experiments/", body(model_name), format="json"), 403, "permission_denied")
    nothing_written()

    created = create(api(staff_user), model_name)
    for action in ("start", "pause", "resume", "abort", "conclude", "promote"):
        refused = api(plain_user).post(f"/api/experiments/{created['id']}/{action}/", {"reason": "me"}, format="json")
        assert_error(refused, 403, "permission_denied")
    assert Experiment.objects.get().status == "draft"
    assert api(plain_user).get(f"/api/experiments/{created['id']}/").json()["status"] == "draft"


def test_create_a_shadow_experiment_against_the_champion(staff_user, model_name: str) -> None:  # type: ignore[no-untyped-def]
    created = create(
        api(staff_user),
        model_name,
        treatments=[{"version": 2}, {"version": 3, "name": "wider-features"}],
        alpha=0.01,
        minimum_sample=500,
        maximum_duration="P7D",
        max_treatment_drawdown=0.05,
        reason="retrained on November",
    )
    assert created["model"] == model_name
    assert (created["mode"], created["status"], created["primary_metric"]) == ("shadow", "draft", "net_return")
    assert (created["alpha"], created["minimum_sample"], created["maximum_duration"]) == (0.01, 500, "7 00:00:00")
    assert created["guardrails"] == {"max_treatment_drawdown": 0.05, "max_error_rate": None, "max_latency_ms": None}
    assert [(a["name"], a["role"], a["version"], a["allocation_percent"]) for a in created["arms"]] == [
        ("control", "control", 1, "100.00"),
        ("treatment-1", "treatment", 2, "100.00"),
        ("wider-features", "treatment", 3, "100.00"),
    ]
    assert [(e["action"], e["to_status"], e["actor"], e["reason"]) for e in created["events"]] == [
        ("create", "draft", "user:staff", "retrained on November")
    ]
    experiment = Experiment.objects.get()
    assert experiment.created_by == "user:staff"
    assert [h.actor for h in experiment.history.all()] == ["user:staff"]


def test_create_a_split_experiment_with_allocations(staff_user, model_name: str) -> None:  # type: ignore[no-untyped-def]
    created = create(
        api(staff_user),
        model_name,
        mode="split",
        control_allocation_percent="50",
        treatments=[{"version": 2, "allocation_percent": "30"}, {"version": 3, "allocation_percent": "20"}],
    )
    assert [a["allocation_percent"] for a in created["arms"]] == ["50.00", "30.00", "20.00"]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"model": "ghost"}, "unknown_model"),
        ({"model": ""}, "validation_error"),
        ({"treatments": [{"version": 9}]}, "unknown_version"),
        ({"treatments": [{"version_id": 10**6}]}, "unknown_version"),
        ({"treatments": [{"version": 1}]}, "treatment_is_control"),
        ({"treatments": [{"version": 2}, {"version": 2}]}, "duplicate_version"),
        (
            {
                "mode": "split",
                "control_allocation_percent": "50",
                "treatments": [{"version": 2, "allocation_percent": 40}],
            },
            "allocation_not_100",
        ),
        (
            {
                "mode": "split",
                "control_allocation_percent": "60",
                "treatments": [{"version": 2, "allocation_percent": 50}],
            },
            "allocation_not_100",
        ),
        ({"mode": "split", "treatments": [{"version": 2, "allocation_percent": 50}]}, "allocation_not_100"),
        ({"alpha": 0}, "alpha_out_of_range"),
        ({"alpha": 0.5}, "alpha_out_of_range"),
        ({"alpha": -0.05}, "alpha_out_of_range"),
        ({"alpha": 0.7}, "alpha_out_of_range"),
        ({"alpha": "often"}, "validation_error"),
        ({"alpha": "NaN"}, "validation_error"),
        ({"mixing_variance": "inf"}, "validation_error"),
        ({"burn_in": 5}, "validation_error"),
        ({"minimum_sample": 0}, "validation_error"),
        ({"treatments": []}, "validation_error"),
        ({"treatments": [{}]}, "validation_error"),
        ({"treatments": [{"version": 2, "allocation_percent": "-5"}]}, "validation_error"),
        ({"mode": "bandit"}, "validation_error"),
        ({"primary_metric": "vibes"}, "validation_error"),
        ({"maximum_duration": "forever"}, "validation_error"),
        ({"max_error_rate": 1.5}, "validation_error"),
        ({"name": ""}, "validation_error"),
    ],
)
def test_bad_input_is_a_clear_400_and_writes_nothing(  # type: ignore[no-untyped-def]
    staff_user, model_name: str, overrides: dict[str, Any], code: str
) -> None:
    response = api(staff_user).post("/api/experiments/", body(model_name, **overrides), format="json")
    assert_error(response, 400, code)
    nothing_written()


def test_a_version_of_another_model_is_refused(staff_user, model_name: str) -> None:  # type: ignore[no-untyped-def]
    other = make_model(gates={})
    foreign = make_version(other)
    client = api(staff_user)
    by_id = client.post("/api/experiments/", body(model_name, treatments=[{"version_id": foreign.pk}]), format="json")
    assert "belongs to" in assert_error(by_id, 400, "version_of_another_model")["message"]
    named = client.post(
        "/api/experiments/", body(model_name, treatments=[{"model": other.name, "version": 1}]), format="json"
    )
    assert_error(named, 400, "version_of_another_model")
    nothing_written()


def test_a_model_without_a_champion_cannot_have_an_experiment(staff_user) -> None:  # type: ignore[no-untyped-def]
    model = make_model(gates={})
    make_version(model)
    make_version(model)
    assert_error(api(staff_user).post("/api/experiments/", body(model.name), format="json"), 400, "no_champion")
    nothing_written()


def test_a_second_running_experiment_for_the_model_is_refused(staff_user, model_name: str) -> None:  # type: ignore[no-untyped-def]
    client = api(staff_user)
    first = create(client, model_name)
    assert client.post(f"/api/experiments/{first['id']}/start/", {"reason": "go"}, format="json").status_code == 200
    before = (Experiment.objects.count(), Arm.objects.count(), ExperimentEvent.objects.count())
    second = client.post("/api/experiments/", body(model_name, treatments=[{"version": 3}]), format="json")
    assert "already has a running experiment" in assert_error(second, 400, "experiment_already_running")["message"]
    assert (Experiment.objects.count(), Arm.objects.count(), ExperimentEvent.objects.count()) == before

    # a draft made while none ran cannot start while another runs
    client.post(f"/api/experiments/{first['id']}/pause/", {"reason": "hold"}, format="json")
    assert_error(
        client.post("/api/experiments/", body(model_name, treatments=[{"version": 3}]), format="json"),
        400,
        "experiment_already_running",
    )
    client.post(f"/api/experiments/{first['id']}/abort/", {"reason": "wrong features"}, format="json")
    draft = create(client, model_name, treatments=[{"version": 3}])
    third = create(client, model_name, treatments=[{"version": 2}])
    assert client.post(f"/api/experiments/{draft['id']}/start/", {"reason": "go"}, format="json").status_code == 200
    refused = client.post(f"/api/experiments/{third['id']}/start/", {"reason": "go"}, format="json")
    assert_error(refused, 400, "experiment_already_running")
    assert Experiment.objects.get(pk=third["id"]).status == "draft"


def test_transitions_keep_who_when_and_why(staff_user, plain_user, model_name: str) -> None:  # type: ignore[no-untyped-def]
    client = api(staff_user)
    experiment_id = create(client, model_name)["id"]
    url = f"/api/experiments/{experiment_id}"

    assert_error(client.post(f"{url}/pause/", {"reason": "early"}, format="json"), 409, "invalid_transition")
    assert_error(client.post(f"{url}/start/", {}, format="json"), 400, "validation_error")
    assert_error(client.post(f"{url}/start/", {"reason": "   "}, format="json"), 400, "validation_error")
    assert Experiment.objects.get().status == "draft"

    started = client.post(f"{url}/start/", {"reason": "shadow test of v2"}, format="json").json()
    assert started["status"] == "running"
    assert started["started_at"] is not None
    assert client.post(f"{url}/pause/", {"reason": "exchange maintenance"}, format="json").json()["status"] == "paused"
    assert client.post(f"{url}/resume/", {"reason": "exchange back"}, format="json").json()["status"] == "running"
    assert_error(client.post(f"{url}/resume/", {"reason": "twice"}, format="json"), 409, "invalid_transition")
    winner = client.post(f"{url}/conclude/", {"reason": "done", "winner": "treatment-1"}, format="json")
    assert_error(winner, 400, "not_significant")
    concluded = client.post(f"{url}/conclude/", {"reason": "out of time"}, format="json").json()
    assert (concluded["status"], concluded["winner"], concluded["ended_at"] is not None) == ("concluded", None, True)
    assert_error(client.post(f"{url}/promote/", {"reason": "ship it"}, format="json"), 409, "no_winner")

    detail = api(plain_user).get(f"{url}/").json()
    assert [(e["action"], e["from_status"], e["to_status"], e["actor"], e["reason"]) for e in detail["events"]] == [
        ("create", "", "draft", "user:staff", "experiment created"),
        ("start", "draft", "running", "user:staff", "shadow test of v2"),
        ("pause", "running", "paused", "user:staff", "exchange maintenance"),
        ("resume", "paused", "running", "user:staff", "exchange back"),
        ("conclude", "running", "concluded", "user:staff", "out of time"),
    ]
    history = Experiment.objects.get().history.order_by("history_date", "history_id")
    assert [(h.status, h.actor, h.history_change_reason) for h in history] == [
        ("draft", "user:staff", "experiment created"),
        ("running", "user:staff", "shadow test of v2"),
        ("paused", "user:staff", "exchange maintenance"),
        ("running", "user:staff", "exchange back"),
        ("concluded", "user:staff", "out of time"),
    ]


def test_stop_names_the_guardrail_and_abort_ends_a_draft(staff_user, model_name: str) -> None:  # type: ignore[no-untyped-def]
    client = api(staff_user)
    running = create(client, model_name)["id"]
    client.post(f"/api/experiments/{running}/start/", {"reason": "go"}, format="json")
    bad = client.post(f"/api/experiments/{running}/stop/", {"guardrail": "vibes", "reason": "x"}, format="json")
    assert "guardrail" in assert_error(bad, 400, "validation_error")["details"]
    stopped = client.post(
        f"/api/experiments/{running}/stop/", {"guardrail": "max_drawdown", "reason": "v2 lost 6 %"}, format="json"
    ).json()
    assert (stopped["status"], stopped["stopped_guardrail"], stopped["status_reason"]) == (
        "stopped",
        "max_drawdown",
        "v2 lost 6 %",
    )
    assert_error(
        client.post(f"/api/experiments/{running}/start/", {"reason": "again"}, format="json"), 409, "invalid_transition"
    )

    draft = create(client, model_name, treatments=[{"version": 3}])["id"]
    aborted = client.post(f"/api/experiments/{draft}/abort/", {"reason": "typo in the name"}, format="json").json()
    assert aborted["status"] == "aborted"


def test_unknown_experiment_is_404_everywhere(plain_user, staff_user) -> None:  # type: ignore[no-untyped-def]
    assert_error(api(plain_user).get("/api/experiments/404/"), 404, "not_found")
    assert_error(api(plain_user).get("/api/experiments/404/results/"), 404, "not_found")
    for action in ("start", "pause", "resume", "abort", "conclude", "promote"):
        assert_error(
            api(staff_user).post(f"/api/experiments/404/{action}/", {"reason": "x"}, format="json"), 404, "not_found"
        )
    stop = api(staff_user).post(
        "/api/experiments/404/stop/", {"guardrail": "max_drawdown", "reason": "x"}, format="json"
    )
    assert_error(stop, 404, "not_found")


def test_list_filters_by_model_and_status_and_pages(staff_user, plain_user, model_name: str, settings) -> None:  # type: ignore[no-untyped-def]
    client = api(staff_user)
    first = create(client, model_name)
    create(client, model_name, treatments=[{"version": 3}])
    client.post(f"/api/experiments/{first['id']}/start/", {"reason": "go"}, format="json")
    other = make_model(gates={})
    make_version(other)
    make_version(other)
    model_version_promote(model_name=other.name, version=1, reason="champion", actor="test")
    create(client, other.name, treatments=[{"version": 2}])

    reader = api(plain_user)
    assert reader.get("/api/experiments/").json()["count"] == 3
    assert [e["id"] for e in reader.get("/api/experiments/", {"status": "running"}).json()["results"]] == [first["id"]]
    assert {e["model"] for e in reader.get("/api/experiments/", {"model": other.name}).json()["results"]} == {
        other.name
    }
    assert_error(reader.get("/api/experiments/", {"status": "dreaming"}), 400, "validation_error")
    settings.GALFRIDAY_API_MAX_LIMIT = 2
    page = reader.get("/api/experiments/", {"limit": 500}).json()
    assert (page["count"], len(page["results"])) == (3, 2)


def test_results_of_a_running_experiment_before_any_outcome(plain_user, staff_user, model_name: str) -> None:  # type: ignore[no-untyped-def]
    client = api(staff_user)
    experiment_id = create(client, model_name, treatments=[{"version": 2}, {"version": 3}])["id"]
    client.post(f"/api/experiments/{experiment_id}/start/", {"reason": "go"}, format="json")
    results = api(plain_user).get(f"/api/experiments/{experiment_id}/results/").json()
    assert results["experiment"]["id"] == experiment_id
    assert results["experiment"]["status"] == "running"
    assert [(a["name"], a["role"], a["version"]) for a in results["arms"]] == [
        ("control", "control", 1),
        ("treatment-1", "treatment", 2),
        ("treatment-2", "treatment", 3),
    ]
    assert all(a["n_outcomes"] == 0 for a in results["arms"])
    assert results["arms"][0]["comparison"] is None
    for treatment in results["arms"][1:]:
        comparison = treatment["comparison"]
        assert comparison["paired"] is True
        primary = comparison["metrics"]["net_return"]
        assert primary["ready"] is False
        assert primary["p_value"] in (None, 1.0)
    assert results["srm"]["status"] == "not_applicable"
    assert [e["action"] for e in results["events"]] == ["create", "start"]


def test_the_schema_documents_every_operation_and_its_errors(plain_user) -> None:  # type: ignore[no-untyped-def]
    schema = api(plain_user).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = {p: ops for p, ops in schema["paths"].items() if p.startswith("/api/experiments/")}
    expected = {
        "/api/experiments/": {"get", "post"},
        "/api/experiments/{experiment_id}/": {"get"},
        "/api/experiments/{experiment_id}/results/": {"get"},
        **{
            f"/api/experiments/{{experiment_id}}/{action}/": {"post"}
            for action in ("start", "pause", "resume", "stop", "abort", "conclude", "promote")
        },
    }
    assert {p: {m for m in ops if m != "parameters"} for p, ops in paths.items()} == expected
    for path, ops in paths.items():
        for method, operation in ops.items():
            if method == "parameters":
                continue
            documented = set(operation["responses"])
            assert {"400", "401", "403"} <= documented, (path, method)
            if "{" in path:
                assert "404" in documented, (path, method)
            if method == "post":
                assert "409" in documented, (path, method)
            for code in documented - {"200", "201"}:
                ref = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/Error"), (path, method, code)


# --- with outcomes ---------------------------------------------------------------------------------------------


def keys(value: Any) -> Any:
    """The nested key structure of a JSON document (lists by their first element)."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value else []
    return None


def test_results_accumulate_and_the_winner_is_promoted_through_the_gates(  # type: ignore[no-untyped-def]
    plain_user, staff_user, model_name: str, settings
) -> None:
    from experiments.intake import experiments_intake
    from experiments.results import experiment_results
    from models_registry.models import ModelVersion, StageEvent

    settings.MODELS_REGISTRY_EXTRA_GATES = ["experiments.gates.experiment_won_gate"]
    client = api(staff_user)
    experiment_id = create(client, model_name, minimum_sample=100, burn_in=20, reason="v2 retrained")["id"]
    client.post(f"/api/experiments/{experiment_id}/start/", {"reason": "shadow test"}, format="json")
    url = f"/api/experiments/{experiment_id}"

    feed_shadow(experiment_id, 60, edge=0.004)
    experiments_intake(experiment_id=experiment_id)
    early = api(plain_user).get(f"{url}/results/").json()
    assert [a["n_outcomes"] for a in early["arms"]] == [60, 60]
    assert early["experiment"]["status"] == "running"  # below the minimum sample: no verdict yet
    assert early["arms"][1]["comparison"]["n"] == 60

    feed_shadow(experiment_id, 340, edge=0.004, first_minute=60, seed=6)
    experiments_intake(experiment_id=experiment_id)
    experiments_intake(experiment_id=experiment_id)  # again: nothing counts twice
    results = api(plain_user).get(f"{url}/results/").json()
    assert keys(results) == keys(experiment_results(experiment_id))  # the API serves every field
    control, treatment = results["arms"]
    assert (control["n_outcomes"], treatment["n_outcomes"], control["n_assigned"]) == (400, 400, 400)
    net = control["metrics"]["net_return"]
    assert net["ci_low"] < net["mean"] < net["ci_high"]
    primary = treatment["comparison"]["metrics"]["net_return"]
    assert primary["ready"] is True
    assert 0.0 < primary["ci_low"] < 0.004 < primary["ci_high"]
    assert primary["p_value"] < 0.05
    assert primary["p_holm"] >= primary["p_value"]
    assert primary["better"] == "treatment"
    assert results["series"]
    assert results["series"][-1]["arm"] == "treatment-1"
    assert results["experiment"]["status"] == "concluded"
    assert results["experiment"]["winner"] == "treatment-1"

    assert_error(api(plain_user).post(f"{url}/promote/", {"reason": "ship"}, format="json"), 403, "permission_denied")
    promoted = client.post(f"{url}/promote/", {"reason": "won the shadow test"}, format="json")
    assert promoted.status_code == 200, promoted.content
    assert (promoted.json()["version"], promoted.json()["stage"]) == (2, "production")
    assert promoted.json()["experiment"]["promoted_at"] is not None
    assert ModelVersion.objects.get(model__name=model_name, version=2).stage == "production"
    event = StageEvent.objects.filter(version__version=2, to_stage="production").get()
    assert event.actor == "user:staff"
    assert "won experiment" in event.reason
    assert any(g["name"] == "experiment:won_against_champion" and g["passed"] for g in event.gate_report)
    assert_error(client.post(f"{url}/promote/", {"reason": "again"}, format="json"), 409, "already_promoted")
    assert [e["action"] for e in client.get(f"{url}/").json()["events"]][-2:] == ["conclude", "promote"]
