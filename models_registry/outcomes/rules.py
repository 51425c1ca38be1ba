"""How an outcome is computed from a version's recorded label parameters and costs, and the fields an outcome
carries (the maturation writes them, the admin shows them)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Field

from models_registry.labels import DEFAULT_TAKER_FEE
from models_registry.models import PredictionOutcome

BAR = timedelta(minutes=1)
OUTCOME_FIELDS = (
    "status",
    "pending_reason",
    "forward_return",
    "realised_label",
    "dead_zone",
    "direction_hit",
    "position",
    "round_trip_cost",
    "net_return",
    "entry_close",
    "exit_close",
    "matured_at",
    "revised_at",
    "revisions",
    "checked_at",
)


@dataclass(frozen=True)
class OutcomeRule:
    """How a version's outcomes are computed: its recorded label parameters and costs."""

    horizon: int | None
    dead_zone: float | None
    taker_fee: float
    slippage_bps: float

    @property
    def round_trip_cost(self) -> float:
        return 2.0 * (self.taker_fee + self.slippage_bps / 10_000.0)

    @property
    def effective_dead_zone(self) -> float:
        return self.dead_zone if self.dead_zone is not None else 2.0 * self.taker_fee

    @classmethod
    def of(cls, hyperparameters: Mapping[str, Any] | None) -> OutcomeRule:
        hyper = hyperparameters or {}

        def number(key: str, default: float | None) -> float | None:
            value = hyper.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                return float(value)
            return default

        horizon = hyper.get("horizon")
        return cls(
            horizon=horizon if isinstance(horizon, int) and not isinstance(horizon, bool) and horizon >= 1 else None,
            dead_zone=number("label_dead_zone", None),
            taker_fee=number("taker_fee", DEFAULT_TAKER_FEE) or 0.0,
            slippage_bps=number("slippage_bps", 0.0) or 0.0,
        )


def net_return(signal: int, forward_return: float, round_trip_cost: float) -> tuple[int, float]:
    """(position, net return) of a spot long-only signal: long one unit when the signal is +1, else flat."""
    position = 1 if signal == 1 else 0
    return position, position * forward_return - position * round_trip_cost


def outcome_column(name: str) -> str:
    """The database column of the PredictionOutcome field `name` (a concrete field, not a relation's other side)."""
    field = PredictionOutcome._meta.get_field(name)
    if not isinstance(field, Field) or not field.column:
        raise ValueError(f"PredictionOutcome.{name} is not a concrete field")
    return field.column
