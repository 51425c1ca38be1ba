"""Outcome intake and results: each outcome counts exactly once (a replayed intake changes nothing, a revised
outcome replaces its old contribution, in the arm's statistics and in the paired differences), the results come
from the sufficient statistics with intervals and always-valid p-values, a guardrail breach stops the experiment
with an alert, the maximum duration concludes it without a winner, and an A/A experiment concludes nothing."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from experiments.intake import SERIES_POINTS, experiments_intake, thin
from experiments.models import ArmStatistics, Comparison, ExperimentObservation, Status
from experiments.results import experiment_results
from models_registry.models import PredictionOutcome
from tests.experiments.support import cheap_model, shadow_experiment, synthetic_outcomes
from tests.models_registry.factories import registry_settings  # noqa: F401
from trading.models import Alert

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]


def _pair(experiment, control_nets, treatment_nets, **kwargs):  # type: ignore[no-untyped-def]
    control = experiment.arms.get(role="control")
    treatment = experiment.arms.get(role="treatment")
    synthetic_outcomes(experiment, control, control_nets, **kwargs)
    return synthetic_outcomes(experiment, treatment, treatment_nets, **kwargs)


def test_each_outcome_counts_once_and_a_revision_replaces_its_contribution() -> None:
    model, _ = cheap_model(2)
    experiment = shadow_experiment(model, [2], burn_in=10, minimum_sample=10_000)
    keys = _pair(experiment, [0.01] * 30, [0.02] * 30, hits=[True] * 30)
    first = experiments_intake()
    assert (first.folded, first.pairs, first.revised) == (60, 30, 0)
    again = experiments_intake()  # a replayed pass: nothing new
    assert (again.folded, again.pairs, again.revised) == (0, 0, 0)
    treatment = experiment.arms.get(role="treatment")
    stats = ArmStatistics.objects.get(arm=treatment)
    assert stats.n_outcomes == 30
    comparison = Comparison.objects.get(treatment=treatment)
    assert comparison.n == 30
    assert comparison.state["streams"]["net_return"]["all"]["n"] == 30

    # a late bar revises one treatment outcome: its old contribution goes, the new one counts, n stays
    outcome = PredictionOutcome.objects.get(prediction__decision_id=keys[0], version_id=treatment.version_id)
    outcome.net_return, outcome.revisions = -0.04, 1
    outcome.save()
    revised = experiments_intake()
    assert (revised.folded, revised.revised, revised.pairs) == (0, 1, 1)
    results = experiment_results(experiment.pk)
    arm = next(a for a in results["arms"] if a["name"] == "treatment-1")
    assert arm["n_outcomes"] == 30
    assert arm["metrics"]["net_return"]["mean"] == pytest.approx((0.02 * 29 - 0.04) / 30)
    delta = arm["comparison"]["metrics"]["net_return"]
    assert delta["n"] == 30
    assert delta["estimate"] == pytest.approx((0.01 * 29 - 0.05) / 30)
    assert experiments_intake().revised == 0  # and it is not counted again
    assert ExperimentObservation.objects.filter(experiment=experiment, counted_revision=1).count() == 1


def test_results_shape_intervals_and_a_clear_winner() -> None:
    model, _ = cheap_model(2)
    experiment = shadow_experiment(model, [2], burn_in=50, minimum_sample=200)
    rng = np.random.default_rng(11)
    base = rng.normal(0.0, 0.01, 400)
    hits_c = (rng.random(400) < 0.5).tolist()
    hits_t = (rng.random(400) < 0.6).tolist()
    control = experiment.arms.get(role="control")
    treatment = experiment.arms.get(role="treatment")
    synthetic_outcomes(experiment, control, base.tolist(), hits=hits_c)
    synthetic_outcomes(experiment, treatment, (base + 0.003 + rng.normal(0, 0.003, 400)).tolist(), hits=hits_t)
    intake = experiments_intake()
    assert intake.transitions[0]["action"] == "conclude"
    results = experiment_results(experiment.pk)
    assert results["experiment"]["status"] == Status.CONCLUDED
    assert results["experiment"]["winner"] == "treatment-1"
    assert results["srm"]["status"] == "not_applicable"
    arm = next(a for a in results["arms"] if a["role"] == "treatment")
    net = arm["comparison"]["metrics"]["net_return"]
    assert net["ready"]
    assert net["ci_low"] > 0  # the always-valid interval excludes no difference...
    assert net["p_value"] < 0.05  # ...exactly when the always-valid p is below alpha
    assert net["p_holm"] >= net["p_value"]
    assert net["better"] == "treatment"
    assert net["fixed"]["p_value"] is not None
    assert 0.003 - 4 * 0.003 / 20 < net["estimate"] < 0.003 + 4 * 0.003 / 20
    hit = arm["metrics"]["hit_rate"]
    assert hit["ci_low"] < hit["mean"] < hit["ci_high"]
    assert "mcnemar" in arm["comparison"]
    assert {e["action"] for e in results["events"]} == {"create", "start", "conclude"}
    assert results["series"]
    assert len(thin([[i] for i in range(SERIES_POINTS + 1)])) <= SERIES_POINTS


def test_an_aa_experiment_concludes_nothing_before_its_maximum_duration_then_ends_without_a_winner() -> None:
    model, _ = cheap_model(2)
    experiment = shadow_experiment(model, [2], burn_in=50, minimum_sample=100, maximum_duration=timedelta(days=1))
    rng = np.random.default_rng(3)
    _pair(experiment, rng.normal(0, 0.01, 500).tolist(), rng.normal(0, 0.01, 500).tolist())
    assert experiments_intake().transitions == []
    experiment.refresh_from_db()
    assert experiment.status == Status.RUNNING
    assert experiment_results(experiment.pk)["decision"]["state"] == "collecting"
    later = experiment.started_at + timedelta(days=1, seconds=1)
    transitions = experiments_intake(now=later).transitions
    assert transitions == [
        {
            "experiment": experiment.pk,
            "action": "conclude",
            "winner": None,
            "reason": "maximum duration reached without a decisive difference",
        }
    ]


def test_a_drawdown_breach_stops_the_experiment_and_raises_an_alert() -> None:
    model, _ = cheap_model(2)
    experiment = shadow_experiment(model, [2], max_treatment_drawdown=0.05, minimum_sample=10_000)
    _pair(experiment, [0.001] * 40, [-0.002] * 40)  # the treatment loses 0.2 % a decision: 8 % down
    result = experiments_intake()
    assert result.transitions[0]["action"] == "stop"
    experiment.refresh_from_db()
    assert (experiment.status, experiment.stopped_guardrail) == (Status.STOPPED, "max_drawdown")
    assert experiment.evidence["treatments"]["treatment-1"]["guardrails"]["max_drawdown"]["breached"]
    alert = Alert.objects.get(kind="experiment_guardrail")
    assert alert.severity == "critical"
    assert "max_drawdown" in alert.message
    stop = experiment.events.get(action="stop")
    assert stop.actor == "experiments:evaluation"
    assert stop.details["guardrail"] == "max_drawdown"


def test_the_registrys_maturation_pass_feeds_the_experiment(settings) -> None:  # type: ignore[no-untyped-def]
    """Real outcome tracking: predictions of both arms on stored bars mature in the registry's task, whose
    `outcomes_matured` signal folds them into the experiment, paired on the same decisions."""
    from models_registry.models import Prediction
    from models_registry.tasks import outcomes_mature_task
    from tests.experiments.support import BARS
    from tests.models_registry.conftest import store_bars

    settings.INFLUXDB_URL = ""
    store_bars(BARS)
    model, _ = cheap_model(2)
    experiment = shadow_experiment(model, [2], burn_in=10, minimum_sample=10_000)
    arms = list(experiment.arms.order_by("position"))
    times = [t.to_pydatetime() for t in BARS.index[100:160]]
    for arm, p_up in zip(arms, (0.2, 0.7), strict=True):
        Prediction.objects.bulk_create(
            Prediction(
                decision_id=f"BTC/USD:{t.isoformat()}", version_id=arm.version_id, symbol="BTC/USD",
                features_hash="0" * 64, probabilities={"-1": 0.8 - p_up, "0": 0.2, "1": p_up},
                predicted_class=1 if p_up > 0.5 else -1, signal=1 if p_up > 0.5 else -1, confidence=0.7,
                bar_time=t, horizon=1,
            )
            for t in times
        )  # fmt: skip
        ExperimentObservation.objects.bulk_create(
            ExperimentObservation(
                experiment=experiment, arm=arm, version_id=arm.version_id, decision_key=f"BTC/USD:{t.isoformat()}",
                symbol="BTC/USD", bar_time=t, latency_ms=1.0,
            )
            for t in times
        )  # fmt: skip
    result = outcomes_mature_task()
    assert result["matured"] == 120
    treatment = arms[1]
    assert ArmStatistics.objects.get(arm=treatment).n_outcomes == 60
    comparison = Comparison.objects.get(treatment=treatment)
    assert comparison.n == 60
    nets = PredictionOutcome.objects.filter(version_id=treatment.version_id).values_list("net_return", flat=True)
    control_nets = PredictionOutcome.objects.filter(version_id=arms[0].version_id).values_list("net_return", flat=True)
    expected = (sum(nets) - sum(control_nets)) / 60
    assert comparison.state["streams"]["net_return"]["all"]["n"] == 60
    arm = next(a for a in experiment_results(experiment.pk)["arms"] if a["role"] == "treatment")
    assert arm["comparison"]["metrics"]["net_return"]["estimate"] == pytest.approx(expected)
    assert outcomes_mature_task()["matured"] == 0  # a replayed pass: nothing new, nothing counted again
    assert ArmStatistics.objects.get(arm=treatment).n_outcomes == 60


def test_a_split_experiment_compares_its_arms_unpaired_and_concludes_on_a_clear_difference() -> None:
    from experiments.services import experiment_create, experiment_start

    model, _ = cheap_model(2)
    draft = experiment_create(
        model_name=model.name, name="split", mode="split", control_allocation_percent="50",
        treatments=[{"version": 2, "allocation_percent": "50"}], burn_in=50, minimum_sample=300,
        actor="user:tester", reason="split test",
    )  # fmt: skip
    experiment = experiment_start(experiment_id=draft.pk, actor="user:tester", reason="go")
    control = experiment.arms.get(role="control")
    treatment = experiment.arms.get(role="treatment")
    rng = np.random.default_rng(8)
    synthetic_outcomes(experiment, control, rng.normal(0.0, 0.01, 600).tolist())
    synthetic_outcomes(experiment, treatment, rng.normal(0.004, 0.01, 600).tolist(), start=100_000)
    experiments_intake()
    results = experiment_results(experiment.pk)
    assert results["srm"]["status"] == "ok"
    arm = next(a for a in results["arms"] if a["role"] == "treatment")
    net = arm["comparison"]["metrics"]["net_return"]
    assert net["n"] == 600
    assert net["fixed"]["method"] == "welch"
    assert net["ci_low"] > 0
    assert results["experiment"]["status"] == Status.CONCLUDED
    assert results["experiment"]["winner"] == "treatment-1"
