"""Reads of experiments: lists, one experiment, the active experiment of a model, and the cache generation the
router compares to notice a transition made in another process."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db.models import Count, QuerySet, Sum

from core.generations import generation
from experiments.models import ACTIVE_STATUSES, Arm, Experiment
from trading.models import Decision, Fill

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
    """A counter bumped after every committed transition: routers in any process reload when it moved
    (`core.generations`)."""
    return generation(GENERATION_KEY)


def arm_trading(*, experiment: Experiment) -> dict[int, dict[str, Any]]:
    """Per arm (by version number): what its decisions traded while the experiment ran, from the decisions that
    record the model and version that decided (attribution), their orders and fills: decisions, orders, fills,
    filled notional, fees and realised PnL (Decimal strings). Split: every arm's real trading; shadow: the
    control's alone (treatments never trade)."""
    if experiment.started_at is None:
        return {}
    window = {"created_at__gte": experiment.started_at}
    if experiment.ended_at is not None:
        window["created_at__lt"] = experiment.ended_at
    decisions = (
        Decision.objects.filter(model_name=experiment.model.name, **window)
        .values("model_version_number")
        .annotate(decisions=Count("id"), orders=Count("order"))
        .order_by()
    )
    fills = (
        Fill.objects.filter(
            order__decision__model_name=experiment.model.name,
            **{f"order__decision__{k}": v for k, v in window.items()},
        )
        .values("order__decision__model_version_number")
        .annotate(fills=Count("id"), notional=Sum("cost"), fees=Sum("fee"), pnl=Sum("realised_pnl"))
        .order_by()
    )
    zero = Decimal(0)
    out: dict[int, dict[str, Any]] = {}
    for decided in decisions:
        if decided["model_version_number"] is None:
            continue
        out[decided["model_version_number"]] = {
            "decisions": decided["decisions"], "orders": decided["orders"], "fills": 0,
            "filled_notional": str(zero), "fees": str(zero), "realised_pnl": str(zero),
        }  # fmt: skip
    for filled in fills:
        number = filled["order__decision__model_version_number"]
        if number is None:
            continue
        entry = out.setdefault(number, {"decisions": 0, "orders": 0})
        entry.update(
            fills=filled["fills"],
            filled_notional=str(filled["notional"] or zero),
            fees=str(filled["fees"] or zero),
            realised_pnl=str(filled["pnl"] or zero),
        )
    return out
