"""The Experiments pages: the list with each treatment's always-valid p; an experiment's page with per-arm n and
metrics, deltas with their CI bars, the SRM check, guardrails and the event log; staff actions (start, stop,
conclude) through the experiments API refused for others (403) and for bad input (400), changing nothing."""

from __future__ import annotations

import pytest
from django.test import Client

from dashboard.lifecycle.selectors import ci_bars
from experiments.models import ArmStatistics, Experiment, ExperimentEvent, Status
from experiments.services import experiment_create
from tests.dashboard.lifecycle.support import running_experiment
from tests.experiments.support import cheap_model, shadow_experiment

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]


def test_anonymous_visitors_are_sent_to_log_in(client: Client) -> None:
    experiment = running_experiment()
    for url in ("/experiments/", f"/experiments/{experiment.pk}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_list_shows_status_arms_and_the_primary_p(viewer: Client) -> None:
    experiment = running_experiment()
    body = viewer.get("/experiments/").content.decode()
    assert f'data-experiment="{experiment.pk}"' in body
    assert 'data-status="running"' in body
    assert "treatment-1: " in body  # its primary always-valid p
    assert "(60)" in body  # outcomes of each arm


def test_list_filters_by_status_and_ignores_an_unknown_one(viewer: Client) -> None:
    experiment = running_experiment()
    assert f'data-experiment="{experiment.pk}"' not in viewer.get("/experiments/?status=draft").content.decode()
    assert f'data-experiment="{experiment.pk}"' in viewer.get("/experiments/?status=bogus").content.decode()


def test_detail_shows_arms_deltas_with_ci_bars_and_events(viewer: Client) -> None:
    experiment = running_experiment()
    response = viewer.get(f"/experiments/{experiment.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-arm="control"' in body
    assert 'data-arm="treatment-1"' in body
    assert 'data-n="60"' in body
    assert 'data-metric="net_return"' in body
    assert 'class="cibar"' in body
    assert "always-valid" in body
    assert "“go”" in body  # the start event's reason
    assert "srm-banner" not in body  # shadow: every arm sees every decision
    assert " UTC" in body
    assert 'data-pnl="control">0.00<' in body  # what the arm traded, to the quote currency's cents
    # staff buttons are not offered to a non-staff user
    assert 'data-action="conclude"' not in body


def test_staff_see_the_actions_of_the_experiments_state(staff: Client) -> None:
    experiment = running_experiment()
    body = staff.get(f"/experiments/{experiment.pk}/").content.decode()
    assert 'data-action="conclude"' in body
    assert 'data-action="stop"' in body
    assert 'data-action="start"' not in body


def test_ci_bar_puts_zero_in_the_middle_and_marks_an_interval_that_excludes_it() -> None:
    results = {
        "arms": [
            {"name": "control", "comparison": None},
            {"name": "t", "comparison": {"metrics": {"net_return": {"estimate": 2.0, "ci_low": 1.0, "ci_high": 3.0}}}},
        ]
    }
    bar = ci_bars(results)["t"]["net_return"]
    assert bar["low"] > 50
    assert bar["estimate"] > bar["low"]
    assert bar["high"] <= 100
    assert bar["excludes_zero"] is True
    open_ended = ci_bars(
        {"arms": [{"name": "t", "comparison": {"metrics": {"m": {"estimate": -1.0, "ci_low": None, "ci_high": 0.5}}}}]}
    )["t"]["m"]
    assert open_ended["open_low"] is True
    assert open_ended["excludes_zero"] is False


def test_unknown_experiment_is_a_404(viewer: Client) -> None:
    assert viewer.get("/experiments/999999/").status_code == 404


def test_non_staff_cannot_conclude_and_nothing_changes(viewer: Client) -> None:
    experiment = running_experiment()
    response = viewer.post(
        f"/api/experiments/{experiment.pk}/conclude/", {"reason": "enough"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert Experiment.objects.get(pk=experiment.pk).status == Status.RUNNING
    assert not ExperimentEvent.objects.filter(experiment=experiment, action="conclude").exists()


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("conclude", {}),  # no reason
        ("conclude", {"reason": "  "}),
        ("conclude", {"reason": "x", "winner": "no-such-arm"}),
        ("stop", {"reason": "x"}),  # no guardrail
        ("stop", {"reason": "x", "guardrail": "bogus"}),
        ("start", {"reason": "already running"}),
    ],
)
def test_bad_actions_are_refused_and_change_nothing(staff: Client, action: str, body: dict[str, str]) -> None:
    experiment = running_experiment()
    events = ExperimentEvent.objects.filter(experiment=experiment).count()
    response = staff.post(f"/api/experiments/{experiment.pk}/{action}/", body, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert "error" in response.json()
    assert Experiment.objects.get(pk=experiment.pk).status == Status.RUNNING
    assert ExperimentEvent.objects.filter(experiment=experiment).count() == events


def test_staff_conclude_is_audited_and_the_page_reflects_it(staff: Client) -> None:
    experiment = running_experiment()
    response = staff.post(
        f"/api/experiments/{experiment.pk}/conclude/", {"reason": "seen enough"}, content_type="application/json"
    )
    assert response.status_code == 200
    concluded = Experiment.objects.get(pk=experiment.pk)
    assert concluded.status == Status.CONCLUDED
    event = ExperimentEvent.objects.get(experiment=experiment, action="conclude")
    assert (event.actor, event.reason) == ("user:alice", "seen enough")
    assert concluded.history.latest().actor == "user:alice"
    body = staff.get(f"/experiments/{experiment.pk}/").content.decode()
    assert 'data-status="concluded"' in body
    assert 'data-action="conclude"' not in body
    assert "“seen enough”" in body


def test_staff_start_a_draft_from_its_page(staff: Client) -> None:
    model, _ = cheap_model(2)
    draft = experiment_create(
        model_name=model.name, name="draft", treatments=[{"version": 2}], actor="user:alice", reason="planned"
    )
    assert 'data-action="start"' in staff.get(f"/experiments/{draft.pk}/").content.decode()
    response = staff.post(f"/api/experiments/{draft.pk}/start/", {"reason": "go"}, content_type="application/json")
    assert response.status_code == 200
    assert Experiment.objects.get(pk=draft.pk).status == Status.RUNNING


def test_a_split_experiment_whose_arms_do_not_match_their_allocation_shows_the_srm_banner(viewer: Client) -> None:
    model, _ = cheap_model(2)
    experiment = shadow_experiment(
        model, [2], mode="split", control_allocation_percent=50, treatments=[{"version": 2, "allocation_percent": 50}]
    )
    counts = {"control": 1000, "treatment-1": 700}
    for arm in experiment.arms.all():
        ArmStatistics.objects.update_or_create(arm=arm, defaults={"n_assigned": counts[arm.name]})
    body = viewer.get(f"/experiments/{experiment.pk}/").content.decode()
    assert 'id="srm-banner"' in body
    assert "Sample ratio mismatch" in body
