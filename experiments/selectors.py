"""Reads of experiments: lists, one experiment, the active experiment of a model, and the cache generation the
router compares to notice a transition made in another process."""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.db.models import QuerySet

from experiments.models import ACTIVE_STATUSES, Arm, Experiment

logger = logging.getLogger(__name__)

GENERATION_KEY = "experiments:generation"


def experiment_list(*, model_name: str | None = None, status: str | None = None) -> QuerySet[Experiment]:
    qs = Experiment.objects.select_related("model", "winner__version")
    if model_name:
        qs = qs.filter(model__name=model_name)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def experiment_get(*, experiment_id: int) -> Experiment | None:
    return (
        Experiment.objects.select_related("model", "winner__version")
        .prefetch_related("arms__version")
        .filter(pk=experiment_id)
        .first()
    )


def active_experiment(*, model_name: str) -> Experiment | None:
    """The running or paused experiment of the model (the database allows at most one)."""
    return Experiment.objects.select_related("model").filter(model__name=model_name, status__in=ACTIVE_STATUSES).first()


def experiment_arms(*, experiment: Experiment) -> list[Arm]:
    """The arms, control first."""
    return list(experiment.arms.select_related("version").order_by("position", "id"))


def experiments_generation() -> int:
    """A counter bumped after every committed transition: routers in any process reload when it moved."""
    try:
        return int(cache.get(GENERATION_KEY, 0) or 0)
    except Exception:  # a cache outage must not stop decisions; the router falls back to its TTL
        logger.warning("experiments generation unavailable", exc_info=True)
        return 0
