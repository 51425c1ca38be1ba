"""The experiment's evidence as a promotion gate of the registry (wired by settings, so the registry never
imports experiments): ``MODELS_REGISTRY_EXTRA_GATES = ["experiments.gates.experiment_won_gate"]``.

A version moves into production only if it won a concluded experiment against the current champion (the control
of that experiment is the version in production now). The first production version of a model has no champion
to beat and passes; the version already in production passes. Anything else needs the registry's audited
override (staff with the override permission and a written reason)."""

from __future__ import annotations

from experiments.models import Arm, Experiment, Status
from models_registry.models import ModelVersion, Stage
from models_registry.selectors import GateResult

GATE_NAME = "experiment:won_against_champion"


def experiment_won_gate(*, version: ModelVersion, target: str) -> list[GateResult]:
    if target != Stage.PRODUCTION:
        return []
    champion = ModelVersion.objects.filter(model_id=version.model_id, stage=Stage.PRODUCTION).first()
    if champion is None:
        return [GateResult(GATE_NAME, True, "no champion in production: nothing to beat")]
    if champion.pk == version.pk:
        return [GateResult(GATE_NAME, True, f"v{version.version} is the champion")]
    won = (
        Experiment.objects.filter(
            model_id=version.model_id,
            status=Status.CONCLUDED,
            winner__version=version,
            winner__role=Arm.Role.TREATMENT,
            arms__role=Arm.Role.CONTROL,
            arms__version=champion,
        )
        .order_by("-ended_at", "-id")
        .first()
    )
    if won is None:
        return [
            GateResult(
                GATE_NAME,
                False,
                f"v{version.version} has not won a concluded experiment against the champion v{champion.version}",
            )
        ]
    return [
        GateResult(
            GATE_NAME,
            True,
            f"v{version.version} won experiment {won.pk} ({won.name}) against the champion v{champion.version}",
        )
    ]
