"""`/metrics` for experiments: experiments per status, and per running experiment each arm's decisions, outcomes
and errors, each treatment's always-valid p-values and deltas, guardrail state and SRM, as the results say."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from experiments.intake import experiments_intake
from experiments.results import experiment_results
from experiments.services import experiment_create, experiment_start
from tests.experiments.interface_support import broken_split_experiment, feed_shadow, model_with_champion
from tests.models_registry.factories import registry_settings  # noqa: F401

pytestmark = [pytest.mark.usefixtures("registry_settings"), pytest.mark.django_db, pytest.mark.services("postgres")]


def scrape(client: Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    assert not out.get("galfriday_metrics_collector_failed"), out.get("galfriday_metrics_collector_failed")
    return out


def by(samples: list[tuple[dict[str, str], float]], *names: str) -> dict[tuple[str, ...], float]:
    return {tuple(labels[n] for n in names): value for labels, value in samples}


def test_a_running_shadow_experiment_in_metrics(client: Client) -> None:
    model = model_with_champion()
    experiment = experiment_create(
        model_name=model,
        name="v2 and v3",
        treatments=[{"version": 2}, {"version": 3}],
        minimum_sample=10_000,  # stays running: evidence without a verdict
        burn_in=20,
        max_treatment_drawdown=0.9,
        actor="test",
    )
    experiment_start(experiment_id=experiment.pk, actor="test", reason="go")
    feed_shadow(experiment.pk, 200, edge=0.003)
    experiments_intake(experiment_id=experiment.pk)
    results = experiment_results(experiment.pk)
    metrics = scrape(client)

    eid = str(experiment.pk)
    assert by(metrics["galfriday_experiments"], "status")[("running",)] == 1
    assert by(metrics["galfriday_experiment_active"], "experiment", "model", "mode", "status") == {
        (eid, model, "shadow", "running"): 1.0
    }
    arms = ("experiment", "arm", "role", "version")
    expected_n = {(eid, "control", "control", "1"): 200, (eid, "treatment-1", "treatment", "2"): 200}
    expected_n[(eid, "treatment-2", "treatment", "3")] = 200
    assert by(metrics["galfriday_experiment_arm_decisions"], *arms) == expected_n
    assert by(metrics["galfriday_experiment_arm_outcomes"], *arms) == expected_n
    assert set(by(metrics["galfriday_experiment_arm_errors"], *arms).values()) == {0.0}
    p_values = by(metrics["galfriday_experiment_p_value"], "arm", "metric")
    for arm in results["arms"][1:]:
        primary = arm["comparison"]["metrics"]["net_return"]
        assert p_values[(arm["name"], "net_return")] == pytest.approx(primary["p_value"])
        assert primary["p_value"] < 0.05  # 200 paired outcomes with a 0.3 % edge: evident (the minimum is not met)
        deltas = by(metrics["galfriday_experiment_delta"], "arm", "metric")
        assert deltas[(arm["name"], "net_return")] == pytest.approx(primary["estimate"])
        holm = by(metrics["galfriday_experiment_p_value_holm"], "arm", "metric")
        assert holm[(arm["name"], "net_return")] == pytest.approx(primary["p_holm"])
    assert by(metrics["galfriday_experiment_comparison_n"], "arm") == {("treatment-1",): 200, ("treatment-2",): 200}
    breached = by(metrics["galfriday_experiment_guardrail_breached"], "arm", "guardrail")
    assert breached[("treatment-1", "max_drawdown")] == 0.0
    thresholds = by(metrics["galfriday_experiment_guardrail_threshold"], "arm", "guardrail")
    assert thresholds == {("treatment-1", "max_drawdown"): 0.9, ("treatment-2", "max_drawdown"): 0.9}
    observed = by(metrics["galfriday_experiment_guardrail_observed"], "arm", "guardrail")
    assert observed[("treatment-1", "max_drawdown")] == pytest.approx(
        results["arms"][1]["guardrails"]["max_drawdown"]["observed"]
    )
    assert by(metrics["galfriday_experiment_srm_status"], "status")[("not_applicable",)] == 1.0
    assert "galfriday_experiment_srm_p_value" not in metrics


def test_a_broken_split_router_and_a_tripped_guardrail_in_metrics(client: Client) -> None:
    split_model = model_with_champion(2)
    split = broken_split_experiment(split_model)

    guarded_model = model_with_champion(2)
    guarded = experiment_create(
        model_name=guarded_model,
        name="guarded",
        treatments=[{"version": 2}],
        max_treatment_drawdown=0.01,
        minimum_sample=10_000,
        actor="test",
    )
    experiment_start(experiment_id=guarded.pk, actor="test", reason="go")
    feed_shadow(guarded.pk, 100, edge=-0.01)  # the treatment loses: its drawdown crosses 1 %
    experiments_intake(experiment_id=guarded.pk)

    metrics = scrape(client)
    assert by(metrics["galfriday_experiments"], "status") == {
        ("draft",): 0,
        ("running",): 1,
        ("paused",): 0,
        ("concluded",): 0,
        ("stopped",): 1,
        ("aborted",): 0,
    }
    active = by(metrics["galfriday_experiment_active"], "experiment")
    assert active == {(str(split.pk),): 1.0}  # the stopped one is no longer active
    srm = by(metrics["galfriday_experiment_srm_status"], "experiment", "status")
    assert srm[(str(split.pk), "flag")] == 1.0
    assert srm[(str(split.pk), "ok")] == 0.0
    [(_, p)] = metrics["galfriday_experiment_srm_p_value"]
    assert p < 0.001
    assert by(metrics["galfriday_experiment_arm_decisions"], "arm") == {("control",): 360, ("treatment-1",): 40}
