"""Experiments admin: a new experiment (created and started) and every status change go through the services (a
refusal shows the error and writes nothing); the change page shows the results, with a banner on a sample-ratio
mismatch; the audit history and the event log are there."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from experiments.intake import experiments_intake
from experiments.models import Arm, Experiment, ExperimentEvent
from experiments.services import experiment_create, experiment_start
from models_registry.models import ModelVersion
from tests.experiments.interface_support import broken_split_experiment, feed_shadow, model_with_champion
from tests.models_registry.factories import (
    registry_settings,  # noqa: F401
)

pytestmark = [pytest.mark.usefixtures("registry_settings"), pytest.mark.django_db, pytest.mark.services("postgres")]


@pytest.fixture
def model_name() -> str:
    """A model with v1 in production (the champion) and v2, v3 to test against it."""
    return model_with_champion()


@pytest.fixture
def browser(staff_user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(staff_user)
    return client


def form(model: str, **overrides: Any) -> dict[str, Any]:
    return {
        "model": model,
        "name": "v2 in shadow",
        "mode": "shadow",
        "treatments": "2",
        "allocations": "",
        "primary_metric": "net_return",
        "alpha": "0.05",
        "minimum_sample": "1000",
        "maximum_duration": "14 00:00:00",
        "burn_in": "100",
        "mixing_variance": "0.04",
        "reason": "retrained on November",
        "start_now": "on",
        **overrides,
    }


def test_a_shadow_test_is_created_and_started_from_the_admin(browser: Client, model_name: str) -> None:
    page = browser.get("/admin/experiments/experiment/add/")
    assert page.status_code == 200
    assert b"champion" in page.content
    done = browser.post("/admin/experiments/experiment/add/", form(model_name, treatments="2, 3"))
    assert done.status_code == 302
    experiment = Experiment.objects.get()
    assert (experiment.status, experiment.mode, experiment.created_by) == ("running", "shadow", "user:staff")
    assert [(a.name, a.version.version) for a in experiment.arms.order_by("position")] == [
        ("control", 1),
        ("treatment-1", 2),
        ("treatment-2", 3),
    ]
    assert [(e.action, e.actor, e.reason) for e in experiment.events.order_by("at", "id")] == [
        ("create", "user:staff", "retrained on November"),
        ("start", "user:staff", "retrained on November"),
    ]
    assert done["Location"] == f"/admin/experiments/experiment/{experiment.pk}/change/"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"treatments": "9"}, b"unknown_version"),
        ({"treatments": "1"}, b"treatment_is_control"),
        ({"alpha": "0.7"}, b"alpha_out_of_range"),
        ({"mode": "split", "allocations": "50, 40"}, b"allocation_not_100"),
        ({"mode": "split", "allocations": "50"}, b"allocation_not_100"),
        ({"treatments": "two"}, b"whole numbers"),
    ],
)
def test_a_refused_experiment_shows_why_and_writes_nothing(  # type: ignore[no-untyped-def]
    browser: Client, model_name: str, overrides: dict[str, Any], message: bytes
) -> None:
    page = browser.post("/admin/experiments/experiment/add/", form(model_name, **overrides))
    assert page.status_code == 200
    assert message in page.content
    assert not Experiment.objects.exists()
    assert not Arm.objects.exists()
    assert not ExperimentEvent.objects.exists()


def test_a_refused_start_leaves_no_draft_behind(browser: Client, model_name: str) -> None:
    running = experiment_create(model_name=model_name, name="first", treatments=[{"version": 3}], actor="test")
    experiment_start(experiment_id=running.pk, actor="test", reason="go")
    page = browser.post("/admin/experiments/experiment/add/", form(model_name))
    assert b"experiment_already_running" in page.content
    assert list(Experiment.objects.values_list("name", flat=True)) == ["first"]


def test_status_changes_from_the_admin_keep_who_and_why(browser: Client, model_name: str) -> None:
    experiment = experiment_create(model_name=model_name, name="v2", treatments=[{"version": 2}], actor="test")
    url = f"/admin/experiments/experiment/{experiment.pk}/action/"
    assert browser.get(url).status_code == 200
    started = browser.post(url, {"action": "start", "reason": "shadow test of v2"})
    assert started.status_code == 302
    refused = browser.post(url, {"action": "resume", "reason": "not paused"})
    assert refused.status_code == 200
    assert b"invalid_transition" in refused.content
    no_guardrail = browser.post(url, {"action": "stop", "reason": "drawdown"})
    assert b"stop needs the guardrail" in no_guardrail.content
    assert browser.post(url, {"action": "pause", "reason": "maintenance"}).status_code == 302
    stopped = browser.post(url, {"action": "stop", "guardrail": "max_drawdown", "reason": "v2 lost 6 %"})
    assert stopped.status_code == 302
    experiment.refresh_from_db()
    assert (experiment.status, experiment.stopped_guardrail) == ("stopped", "max_drawdown")
    assert [(e.action, e.actor, e.reason) for e in experiment.events.order_by("at", "id")][1:] == [
        ("start", "user:staff", "shadow test of v2"),
        ("pause", "user:staff", "maintenance"),
        ("stop", "user:staff", "v2 lost 6 %"),
    ]
    history = browser.get(f"/admin/experiments/experiment/{experiment.pk}/history/")
    assert history.status_code == 200
    assert b"user:staff" in history.content
    assert b"v2 lost 6 %" in history.content
    change = browser.get(f"/admin/experiments/experiment/{experiment.pk}/change/")
    assert b"maintenance" in change.content  # the event log inline
    assert browser.get("/admin/experiments/experimentevent/").status_code == 200


def test_the_change_page_shows_the_results_and_the_winner_is_promoted(  # type: ignore[no-untyped-def]
    browser: Client, model_name: str, settings
) -> None:
    settings.MODELS_REGISTRY_EXTRA_GATES = ["experiments.gates.experiment_won_gate"]
    experiment = experiment_create(
        model_name=model_name, name="v2", treatments=[{"version": 2}], minimum_sample=250, burn_in=20, actor="test"
    )
    experiment_start(experiment_id=experiment.pk, actor="test", reason="go")
    feed_shadow(experiment.pk, 150, edge=0.004)
    experiments_intake(experiment_id=experiment.pk)  # below the minimum sample: still running
    feed_shadow(experiment.pk, 150, edge=0.004, first_minute=150, seed=6)
    experiments_intake(experiment_id=experiment.pk)
    page = browser.get(f"/admin/experiments/experiment/{experiment.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert Experiment.objects.get().status == "concluded"  # decisive: the intake concluded it
    assert "winner <strong>treatment-1</strong>" in text
    assert "treatment-1 (v2) beats the control on net_return" in text
    assert "always-valid p" in text
    assert "net_return" in text
    assert "Sample ratio mismatch" not in text
    assert 'aria-label="always-valid p over time"' in text  # the series, charted
    assert "over 300 outcomes" in text

    url = f"/admin/experiments/experiment/{experiment.pk}/action/"
    assert browser.post(url, {"action": "promote", "reason": "won the shadow test"}).status_code == 302
    assert ModelVersion.objects.get(model__name=model_name, version=2).stage == "production"
    again = browser.post(url, {"action": "promote", "reason": "again"})
    assert b"already_promoted" in again.content


def test_a_broken_router_shows_the_srm_banner(browser: Client, model_name: str) -> None:
    experiment = broken_split_experiment(model_name)
    page = browser.get(f"/admin/experiments/experiment/{experiment.pk}/change/").content.decode()
    assert "Sample ratio mismatch (flag)" in page


def test_only_staff_see_the_experiments_admin(plain_user, model_name: str) -> None:  # type: ignore[no-untyped-def]
    experiment = experiment_create(model_name=model_name, name="v2", treatments=[{"version": 2}], actor="test")
    client = Client()
    client.force_login(plain_user)
    for url in (
        "/admin/experiments/experiment/",
        "/admin/experiments/experiment/add/",
        f"/admin/experiments/experiment/{experiment.pk}/action/",
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
    assert client.post(f"/admin/experiments/experiment/{experiment.pk}/action/", {"action": "start", "reason": "x"})
    assert Experiment.objects.get().status == "draft"
