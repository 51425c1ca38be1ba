"""Builders for the experiments interface tests (API, admin, command, metrics), on top of the domain's
`tests.experiments.support`: a model with a champion, and the decisions of a shadow experiment with a known
paired edge (observations, predictions and matured outcomes for every arm, so the real intake and results run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from experiments.intake import experiments_intake
from experiments.models import Experiment, ExperimentObservation
from experiments.services import experiment_create, experiment_start
from tests.experiments.support import cheap_model, synthetic_outcomes


def model_with_champion(versions: int = 3) -> str:
    """A model with `versions` versions, v1 in production (the champion); its name."""
    model, _ = cheap_model(versions, promote=1)
    return model.name


def feed_shadow(experiment_id: int, n: int, *, edge: float, first_minute: int = 0, seed: int = 5) -> None:
    """Decisions first_minute..first_minute+n-1 of a shadow experiment: the control's net return N(0, 1 %), each
    treatment's the control's plus `edge` plus N(0, 0.5 %) (paired, on the same decisions)."""
    rng = np.random.default_rng(seed)
    experiment = Experiment.objects.get(pk=experiment_id)
    arms = list(experiment.arms.order_by("position"))
    control_net = rng.normal(0.0, 0.01, n)
    synthetic_outcomes(experiment, arms[0], control_net.tolist(), start=first_minute)
    for arm in arms[1:]:
        nets = control_net + edge + rng.normal(0.0, 0.005, n)
        synthetic_outcomes(experiment, arm, nets.tolist(), start=first_minute)


def broken_split_experiment(model_name: str) -> Experiment:
    """A running 50/50 split experiment whose router sent 400 decisions 90/10 (the intake has run): SRM flags it."""
    experiment = experiment_create(
        model_name=model_name,
        name="split",
        mode="split",
        control_allocation_percent="50",
        treatments=[{"version": 2, "allocation_percent": "50"}],
        actor="test",
    )
    experiment_start(experiment_id=experiment.pk, actor="test", reason="go")
    control, treatment = experiment.arms.order_by("position")
    start = datetime(2026, 11, 2, tzinfo=UTC)
    ExperimentObservation.objects.bulk_create(
        ExperimentObservation(
            experiment=experiment,
            arm=control if i % 10 else treatment,  # 90/10 for a 50/50 allocation
            version=(control if i % 10 else treatment).version,
            decision_key=f"BTC/USD:{i}",
            symbol="BTC/USD",
            bar_time=start + timedelta(minutes=i),
        )
        for i in range(400)
    )
    experiments_intake(experiment_id=experiment.pk)
    return experiment
