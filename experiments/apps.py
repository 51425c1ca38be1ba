from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig

from models_registry.signals import challenger_registered, outcomes_matured

logger = logging.getLogger(__name__)


def on_outcomes_matured(sender: Any = None, **kwargs: Any) -> None:
    """Fold the outcomes a maturation pass wrote into the active experiments (pull-based and idempotent)."""
    # Not at module level: apps.py is loaded while the app registry populates, before models can be imported.
    from experiments.intake import experiments_intake
    from experiments.models import ACTIVE_STATUSES, Experiment

    if not Experiment.objects.filter(status__in=ACTIVE_STATUSES).exists():
        return
    experiments_intake()


class ExperimentsConfig(AppConfig):
    """A/B and shadow experiments between model versions, outcomes, statistics and promotion."""

    name = "experiments"
    verbose_name = "Experiments"

    def ready(self) -> None:
        # Not at module level: the retraining hook imports models (see on_outcomes_matured).
        from experiments import retraining

        outcomes_matured.connect(on_outcomes_matured, dispatch_uid="experiments.outcomes_matured")
        # after the intake above: a concluded retraining experiment is promoted (gated) or its run rejected
        outcomes_matured.connect(retraining.on_outcomes_matured, dispatch_uid="experiments.retraining.advance")
        challenger_registered.connect(retraining.on_challenger_registered, dispatch_uid="experiments.retraining")
