"""The one place experiments take row locks (after Saleor's lock_objects.py): every transition and every intake
pass of an experiment first locks its `Experiment` row, so they serialise on one lock per experiment."""

from __future__ import annotations

from core.errors import NotFoundError
from experiments.models import Experiment


def experiment_lock(*, experiment_id: int) -> Experiment:
    """The experiment row, locked; NotFoundError when there is none."""
    found = Experiment.objects.select_for_update().select_related("model").filter(pk=experiment_id).first()
    if found is None:
        raise NotFoundError(f"experiment {experiment_id} does not exist", details={"experiment": experiment_id})
    return found
