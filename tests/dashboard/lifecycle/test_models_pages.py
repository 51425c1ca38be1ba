"""The Models pages: every registered model with its serving versions and their latest drift check; a model's
page with its versions (validation metrics, gate reports), the stage timeline (who, when, why, gates), drift
reports with the drifted features first, its experiments; the cumulative net return per version it draws."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import Client

from dashboard.lifecycle.selectors import SERIES_POINTS, downsample
from models_registry.models import ModelVersion
from tests.dashboard.lifecycle.support import model_with_history, outcomes
from tests.experiments.support import cheap_model

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]


def test_anonymous_visitors_are_sent_to_log_in(client: Client) -> None:
    model, _ = model_with_history()
    for url in ("/models/", f"/models/{model.name}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=")
    assert client.get(f"/dashboard-api/models/{model.name}/cumulative-net-return/").status_code in (401, 403)


def test_models_page_lists_each_model_with_its_serving_versions_and_drift(viewer: Client) -> None:
    model, _ = model_with_history()
    body = viewer.get("/models/").content.decode()
    assert f'href="/models/{model.name}/"' in body
    assert "v1 production" in body
    assert "v2 staging" in body
    assert "drift (confirmed)" in body  # v1's latest drift check
    assert "(latest v3)" in body
    assert "v3 staging" not in body
    assert "v3 production" not in body


def test_model_page_shows_versions_timeline_drift_and_times_with_the_zone(viewer: Client) -> None:
    model, versions = model_with_history()
    response = viewer.get(f"/models/{model.name}/")
    assert response.status_code == 200
    body = response.content.decode()
    for v in versions:
        assert f'data-version="{v.version}"' in body
    # the timeline says who moved what, when and why
    assert "user:alice" in body
    assert "“shadow it”" in body
    assert "“champion”" in body
    assert f"{versions[1].stage_events.get().at:%Y-%m-%d %H:%M:%S} UTC" in body
    # drift: the drifted feature first, with its test
    drift = body.split('id="drift"', 1)[1]
    assert drift.index("vol_15") < drift.index("ret_1")
    assert "dataset drift" not in drift
    assert "1 of 2" in drift
    # live metrics, calibration and the cumulative chart are fetched by the page from the APIs
    assert 'id="live-metrics-body"' in body
    assert 'id="cumulative-chart"' in body
    assert "0.123456789" not in body


def test_unknown_model_is_a_404(viewer: Client) -> None:
    assert viewer.get("/models/no-such-model/").status_code == 404


def test_cumulative_net_return_is_the_running_sum_of_matured_net_returns(viewer: Client) -> None:
    model, versions = model_with_history()
    doc = viewer.get(f"/dashboard-api/models/{model.name}/cumulative-net-return/?versions=1,2").json()
    by_version = {v["version"]: v for v in doc["versions"]}
    assert set(by_version) == {1, 2}
    assert by_version[1]["n"] == 40
    assert by_version[1]["total"] == pytest.approx(0.025 * 10)
    assert by_version[1]["cumulative"] == pytest.approx(np.cumsum([0.01, -0.005, 0.02, 0.0] * 10).tolist())
    assert by_version[2]["cumulative"][-1] == pytest.approx(0.06)
    assert by_version[1]["t"] == sorted(by_version[1]["t"])


def test_cumulative_net_return_is_downsampled_and_keeps_the_last_point(viewer: Client) -> None:
    model, versions = model_with_history()
    outcomes(versions[2], [0.001] * (SERIES_POINTS * 3), start=10_000)
    doc = viewer.get(f"/dashboard-api/models/{model.name}/cumulative-net-return/?versions=3").json()
    series = doc["versions"][0]
    assert len(series["cumulative"]) <= SERIES_POINTS + 1
    assert series["cumulative"][-1] == pytest.approx(0.001 * SERIES_POINTS * 3)
    times, values = downsample(np.arange(5.0), np.arange(5) * 1_000_000)
    assert (times, values) == ([0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize(
    "query",
    ["versions=abc", "versions=1,,2", "since=yesterday", "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z"],
)
def test_cumulative_net_return_refuses_bad_input_with_the_error_shape(viewer: Client, query: str) -> None:
    model, _ = model_with_history()
    response = viewer.get(f"/dashboard-api/models/{model.name}/cumulative-net-return/?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_cumulative_net_return_of_an_unknown_model_is_a_404(viewer: Client) -> None:
    response = viewer.get("/dashboard-api/models/nope/cumulative-net-return/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_apis_the_model_page_fetches_answer_for_its_serving_versions(viewer: Client) -> None:
    model, _ = model_with_history()
    for version in (1, 2):
        live = viewer.get(f"/api/models/{model.name}/versions/{version}/live-metrics/")
        assert live.status_code == 200
        assert live.json()["windows"]["all"]["n_outcomes"] > 0
        calibration = viewer.get(f"/api/models/{model.name}/versions/{version}/calibration/")
        assert calibration.status_code == 200
    assert ModelVersion.objects.filter(model=model, stage="production").count() == 1


def test_a_serving_version_without_outcomes_still_answers_every_read_of_its_page(viewer: Client) -> None:
    model, _ = cheap_model(2, promote=1)
    assert viewer.get(f"/models/{model.name}/").status_code == 200
    for url in (
        f"/api/models/{model.name}/versions/1/live-metrics/",
        f"/api/models/{model.name}/versions/1/calibration/",
        f"/dashboard-api/models/{model.name}/cumulative-net-return/",
    ):
        assert viewer.get(url).status_code == 200, url
    doc = viewer.get(f"/dashboard-api/models/{model.name}/cumulative-net-return/").json()
    assert [(v["version"], v["n"], v["cumulative"]) for v in doc["versions"]] == [(2, 0, []), (1, 0, [])]
