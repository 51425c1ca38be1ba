"""Writes of experiments: create (validated before anything is written), start, pause, resume, stop, abort,
conclude and promote the winner. Each transition locks the experiment row, checks the move is allowed from the
current status, saves it under `audit_actor(actor, reason)` (an audit row with who and why) and appends an
`ExperimentEvent`; after commit the experiments generation is bumped so routers in every process notice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from core.audit import audit_actor
from core.errors import ApplicationError, ConflictError
from core.generations import generation_bump
from experiments import lock_objects
from experiments.analysis import experiment_verdict
from experiments.models import (
    ACTIVE_STATUSES,
    DEFAULT_BURN_IN,
    Arm,
    ArmStatistics,
    Comparison,
    Experiment,
    ExperimentEvent,
    Guardrail,
    Metric,
    Mode,
    Status,
)
from experiments.router import router_cache_clear
from experiments.selectors import GENERATION_KEY
from models_registry import lock_objects as registry_locks
from models_registry.models import ModelVersion, RegisteredModel, Stage
from models_registry.services import model_version_promote

logger = logging.getLogger(__name__)

HUNDRED = Decimal(100)
MIN_BURN_IN = 10


class ExperimentInvalid(ApplicationError):
    code = "validation_error"
    http_status = status.HTTP_400_BAD_REQUEST


def _invalid(code: str, message: str, **details: Any) -> ExperimentInvalid:
    return ExperimentInvalid(message, code=code, details=details or None)


def _require_reason(reason: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise _invalid("validation_error", "a reason is required for every experiment transition")
    return text


def _require_actor(actor: str) -> str:
    if not (actor or "").strip():
        raise _invalid("validation_error", "an actor (who is acting) is required")
    return actor.strip()


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise _invalid("validation_error", f"{name} must be a number, got {value!r}", field=name)
    number = float(value)
    if not math.isfinite(number):
        raise _invalid("validation_error", f"{name} must be finite, got {value!r}", field=name)
    return number


def _integer(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _invalid("validation_error", f"{name} must be an integer >= {minimum}, got {value!r}", field=name)
    return int(value)


def _percent(value: Any, name: str) -> Decimal:
    try:
        percent = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise _invalid("validation_error", f"{name} must be a percentage, got {value!r}", field=name) from None
    if not percent.is_finite() or percent <= 0 or percent > HUNDRED or percent != percent.quantize(Decimal("0.01")):
        raise _invalid(
            "validation_error", f"{name} must be in (0, 100] with at most two decimals, got {value!r}", field=name
        )
    return percent


def _optional_guardrail(value: Any, name: str, *, below_one: bool = False) -> float | None:
    if value is None:
        return None
    number = _number(value, name)
    if number <= 0 or (below_one and number >= 1):
        bound = "in (0, 1)" if below_one else "> 0"
        raise _invalid("validation_error", f"guardrail {name} must be {bound}, got {value!r}", field=name)
    return number


def _treatment_version(model: RegisteredModel, spec: Mapping[str, Any], index: int) -> ModelVersion:
    """The version a treatment names: {"version": number} of this model, or {"version_id": pk} (which must be a
    version of this model), optionally with {"model": name} (which must be this model)."""
    if not isinstance(spec, Mapping):
        raise _invalid("validation_error", f"treatment {index} must be an object with a version", treatment=index)
    named_model = spec.get("model")
    if named_model is not None and named_model != model.name:
        raise _invalid(
            "version_of_another_model",
            f"treatment {index} names model {named_model!r}, not {model.name!r}",
            treatment=index,
        )
    if "version_id" in spec:
        pk = spec["version_id"]
        found = ModelVersion.objects.select_related("model").filter(pk=pk).first() if isinstance(pk, int) else None
        if found is None:
            raise _invalid("unknown_version", f"treatment {index}: no model version with id {pk!r}", treatment=index)
        if found.model_id != model.pk:
            raise _invalid(
                "version_of_another_model",
                f"treatment {index}: version id {pk} belongs to {found.model.name}, not {model.name}",
                treatment=index,
            )
        return found
    number = spec.get("version")
    if isinstance(number, bool) or not isinstance(number, int):
        raise _invalid("validation_error", f"treatment {index} needs a version number, got {number!r}", treatment=index)
    found = ModelVersion.objects.select_related("model").filter(model=model, version=number).first()
    if found is None:
        raise _invalid("unknown_version", f"model {model.name!r} has no version {number}", treatment=index)
    return found


def experiment_create(
    *,
    model_name: str,
    name: str,
    treatments: Sequence[Mapping[str, Any]],
    mode: str = Mode.SHADOW,
    primary_metric: str = Metric.NET_RETURN,
    alpha: float = 0.05,
    minimum_sample: int = 1000,
    maximum_duration: timedelta = timedelta(days=14),
    control_allocation_percent: Decimal | str | float | None = None,
    burn_in: int = DEFAULT_BURN_IN,
    mixing_variance: float = 0.04,
    max_treatment_drawdown: float | None = None,
    max_error_rate: float | None = None,
    max_latency_ms: float | None = None,
    description: str = "",
    actor: str,
    reason: str = "experiment created",
) -> Experiment:
    """A draft experiment of `model_name`: the control is the model's production version (the champion) now, the
    treatments the versions named. Everything is validated before anything is written (see the contract)."""
    actor = _require_actor(actor)
    reason = _require_reason(reason)
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise _invalid("validation_error", "an experiment needs a name (at most 200 characters)", field="name")
    if mode not in Mode.values:
        raise _invalid("validation_error", f"mode must be one of {Mode.values}, got {mode!r}", field="mode")
    if primary_metric not in Metric.values:
        raise _invalid("validation_error", f"primary_metric must be one of {Metric.values}, got {primary_metric!r}")
    alpha_value = _number(alpha, "alpha")
    if not 0.0 < alpha_value < 0.5:
        raise _invalid("alpha_out_of_range", f"alpha must be in (0, 0.5), got {alpha!r}", field="alpha")
    minimum = _integer(minimum_sample, "minimum_sample", 1)
    burn = _integer(burn_in, "burn_in", MIN_BURN_IN)
    mixing = _number(mixing_variance, "mixing_variance")
    if mixing <= 0:
        raise _invalid("validation_error", "mixing_variance must be > 0", field="mixing_variance")
    if not isinstance(maximum_duration, timedelta) or maximum_duration <= timedelta(0):
        raise _invalid("validation_error", "maximum_duration must be a positive duration", field="maximum_duration")
    guard_drawdown = _optional_guardrail(max_treatment_drawdown, "max_treatment_drawdown")
    guard_errors = _optional_guardrail(max_error_rate, "max_error_rate", below_one=True)
    guard_latency = _optional_guardrail(max_latency_ms, "max_latency_ms")

    model = RegisteredModel.objects.filter(name=model_name).first()
    if model is None:
        raise _invalid("unknown_model", f"model {model_name!r} is not registered", model=model_name)
    if not isinstance(treatments, Sequence) or isinstance(treatments, str | bytes) or not treatments:
        raise _invalid("validation_error", "an experiment needs at least one treatment version", field="treatments")
    versions = [_treatment_version(model, spec, i) for i, spec in enumerate(treatments)]
    champion = ModelVersion.objects.filter(model=model, stage=Stage.PRODUCTION).first()
    if champion is None:
        raise _invalid("no_champion", f"model {model.name!r} has no production version (champion) to test against")
    if any(v.pk == champion.pk for v in versions):
        raise _invalid("treatment_is_control", f"v{champion.version} is the champion: it is the control arm")
    if len({v.pk for v in versions}) != len(versions):
        raise _invalid("duplicate_version", "a version can be in only one treatment arm")
    names = [str(spec.get("name") or f"treatment-{i + 1}") for i, spec in enumerate(treatments)]
    if len(set(names)) != len(names) or "control" in names or any(not n.strip() or len(n) > 64 for n in names):
        raise _invalid("validation_error", "arm names must be unique, at most 64 characters, and not 'control'")

    if mode == Mode.SPLIT:
        given = [spec.get("allocation_percent") for spec in treatments]
        if control_allocation_percent is None or any(g is None for g in given):
            raise _invalid(
                "allocation_not_100",
                "a split experiment needs an allocation percent for the control and each treatment",
            )
        control_share = _percent(control_allocation_percent, "control_allocation_percent")
        shares = [_percent(g, f"treatments[{i}].allocation_percent") for i, g in enumerate(given)]
        total = control_share + sum(shares, Decimal(0))
        if total != HUNDRED:
            raise _invalid("allocation_not_100", f"allocations must sum to 100, got {total}", total=str(total))
    else:
        for value in [control_allocation_percent, *(spec.get("allocation_percent") for spec in treatments)]:
            if value is not None and _percent(value, "allocation_percent") != HUNDRED:
                raise _invalid(
                    "validation_error",
                    "in a shadow experiment every arm sees every decision: leave allocations out (or 100)",
                )
        control_share, shares = HUNDRED, [HUNDRED] * len(versions)

    with transaction.atomic(), audit_actor(actor, reason=reason):
        registry_locks.registered_model_lock(name=model.name)  # serialises creates (and stage moves) of the model
        if Experiment.objects.filter(model=model, status__in=ACTIVE_STATUSES).exists():
            raise _invalid("experiment_already_running", f"model {model.name!r} already has a running experiment")
        experiment = Experiment.objects.create(
            name=name,
            description=description,
            model=model,
            mode=mode,
            primary_metric=primary_metric,
            alpha=alpha_value,
            minimum_sample=minimum,
            maximum_duration=maximum_duration,
            burn_in=burn,
            mixing_variance=mixing,
            max_treatment_drawdown=guard_drawdown,
            max_error_rate=guard_errors,
            max_latency_ms=guard_latency,
            created_by=actor,
            status_reason=reason,
        )
        Arm.objects.create(
            experiment=experiment, name="control", role=Arm.Role.CONTROL, version=champion,
            allocation_percent=control_share, position=0,
        )  # fmt: skip
        for i, (version, share, arm_name) in enumerate(zip(versions, shares, names, strict=True)):
            Arm.objects.create(
                experiment=experiment, name=arm_name, role=Arm.Role.TREATMENT, version=version,
                allocation_percent=share, position=i + 1,
            )  # fmt: skip
        _event(experiment, "create", "", Status.DRAFT, actor, reason, {"control_version": champion.version})
    logger.info("experiment created", extra={"experiment": experiment.pk, "model": model.name, "actor": actor})
    return experiment


# --- transitions -------------------------------------------------------------------------------------------

ALLOWED: dict[str, tuple[tuple[str, ...], str]] = {
    "start": ((Status.DRAFT,), Status.RUNNING),
    "pause": ((Status.RUNNING,), Status.PAUSED),
    "resume": ((Status.PAUSED,), Status.RUNNING),
    "stop": ((Status.RUNNING, Status.PAUSED), Status.STOPPED),
    "abort": ((Status.DRAFT, Status.RUNNING, Status.PAUSED), Status.ABORTED),
    "conclude": ((Status.RUNNING, Status.PAUSED), Status.CONCLUDED),
}


def _event(
    experiment: Experiment, action: str, from_status: str, to_status: str, actor: str, reason: str, details: Any
) -> ExperimentEvent:
    return ExperimentEvent.objects.create(
        experiment=experiment,
        action=action,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        reason=reason,
        details=details or {},
        at=timezone.now(),
    )


def _bump_generation_after_commit() -> None:
    def bump() -> None:
        router_cache_clear()  # this process at once; others through the generation
        try:
            generation_bump(GENERATION_KEY)
        except Exception:  # routers fall back to their TTL
            logger.exception("experiments generation bump failed")

    transaction.on_commit(bump)


def _transition(
    *,
    experiment_id: int,
    action: str,
    actor: str,
    reason: str,
    change: Callable[[Experiment], dict[str, Any]] | None = None,
) -> Experiment:
    actor = _require_actor(actor)
    reason = _require_reason(reason)
    allowed, to_status = ALLOWED[action]
    with transaction.atomic():
        experiment = lock_objects.experiment_lock(experiment_id=experiment_id)
        if experiment.status not in allowed:
            raise ConflictError(
                f"cannot {action} an experiment that is {experiment.status}",
                code="invalid_transition",
                details={"status": experiment.status, "action": action},
            )
        from_status = experiment.status
        details = change(experiment) if change is not None else {}
        now = timezone.now()
        experiment.status = to_status
        experiment.status_reason = reason
        if action == "start":
            experiment.started_at = now
        if to_status in (Status.CONCLUDED, Status.STOPPED, Status.ABORTED):
            experiment.ended_at = now
            if experiment.started_at is None:
                experiment.started_at = now  # aborted as a draft: it "ran" for no time
        try:
            with transaction.atomic(), audit_actor(actor, reason=reason):
                experiment.save()
        except IntegrityError as exc:
            if "experiment_one_active_per_model" in str(exc):
                raise _invalid(
                    "experiment_already_running", f"model {experiment.model.name!r} already has a running experiment"
                ) from None
            raise
        _event(experiment, action, from_status, to_status, actor, reason, details)
        _bump_generation_after_commit()
    logger.info("experiment %s", action, extra={"experiment": experiment.pk, "status": to_status, "actor": actor})
    return experiment


def experiment_start(*, experiment_id: int, actor: str, reason: str) -> Experiment:
    """draft -> running, if the control is still the champion and the model has no other running experiment."""

    def check(experiment: Experiment) -> dict[str, Any]:
        control = experiment.arms.select_related("version").get(role=Arm.Role.CONTROL)
        if control.version.stage != Stage.PRODUCTION:
            raise ConflictError(
                f"the control v{control.version.version} is no longer the champion ({control.version.stage}): "
                "create a new experiment against the current champion",
                code="champion_changed",
            )
        if Experiment.objects.filter(model_id=experiment.model_id, status__in=ACTIVE_STATUSES).exists():
            raise _invalid(
                "experiment_already_running", f"model {experiment.model.name!r} already has a running experiment"
            )
        arms = list(experiment.arms.all())
        for arm in arms:
            ArmStatistics.objects.get_or_create(arm=arm)
            if arm.role == Arm.Role.TREATMENT:
                Comparison.objects.get_or_create(experiment=experiment, treatment=arm)
        return {"control_version": control.version.version}

    return _transition(experiment_id=experiment_id, action="start", actor=actor, reason=reason, change=check)


def experiment_pause(*, experiment_id: int, actor: str, reason: str) -> Experiment:
    """running -> paused: the router serves the champion alone; outcomes of earlier decisions still count."""
    return _transition(experiment_id=experiment_id, action="pause", actor=actor, reason=reason)


def experiment_resume(*, experiment_id: int, actor: str, reason: str) -> Experiment:
    return _transition(experiment_id=experiment_id, action="resume", actor=actor, reason=reason)


def experiment_abort(*, experiment_id: int, actor: str, reason: str) -> Experiment:
    """Ended by an operator without a verdict (from draft, running or paused)."""
    return _transition(experiment_id=experiment_id, action="abort", actor=actor, reason=reason)


def experiment_stop(
    *, experiment_id: int, guardrail: str, actor: str, reason: str, evidence: Mapping[str, Any] | None = None
) -> Experiment:
    """running/paused -> stopped by a guardrail (`Guardrail`): the treatments stop at once (the router serves
    the champion alone from the next decision)."""
    if guardrail not in Guardrail.values:
        raise _invalid("validation_error", f"guardrail must be one of {Guardrail.values}, got {guardrail!r}")

    def mark(experiment: Experiment) -> dict[str, Any]:
        experiment.stopped_guardrail = guardrail
        experiment.evidence = dict(evidence or {})
        return {"guardrail": guardrail, **({"evidence": dict(evidence)} if evidence else {})}

    return _transition(experiment_id=experiment_id, action="stop", actor=actor, reason=reason, change=mark)


def experiment_conclude(*, experiment_id: int, actor: str, reason: str, winner: str | None = None) -> Experiment:
    """running/paused -> concluded. The winner is the one the statistics support (`experiments.analysis`):
    `winner` None takes it (or concludes without a winner when the evidence is not decisive); a named winner
    the statistics do not support is refused."""

    def decide(experiment: Experiment) -> dict[str, Any]:
        verdict = experiment_verdict(experiment)
        supported = verdict.winner
        if winner is not None:
            named = experiment.arms.filter(name=winner).first()
            if named is None:
                raise _invalid("validation_error", f"experiment has no arm {winner!r}", winner=winner)
            if supported is None or supported.pk != named.pk:
                raise _invalid(
                    "not_significant",
                    f"the statistics do not support {winner!r} as the winner: {verdict.reason}",
                    winner=winner,
                )
        experiment.winner = supported
        experiment.evidence = verdict.evidence
        return {"winner": supported.name if supported else None, "verdict": verdict.reason}

    return _transition(experiment_id=experiment_id, action="conclude", actor=actor, reason=reason, change=decide)


def experiment_promote_winner(
    *, experiment_id: int, actor: str, reason: str, user: Any = None, override: bool = False
) -> ModelVersion:
    """Promote the concluded experiment's winning treatment to production through the registry's promotion
    (its gates, with `experiments.gates.experiment_won_gate` among them when configured; `override` is the
    registry's audited override, for staff with its permission)."""

    actor = _require_actor(actor)
    reason = _require_reason(reason)
    with transaction.atomic():
        experiment = lock_objects.experiment_lock(experiment_id=experiment_id)
        winner = experiment.winner
        if experiment.status != Status.CONCLUDED or winner is None or winner.role != Arm.Role.TREATMENT:
            raise ConflictError(
                f"experiment {experiment_id} has no winning treatment to promote ({experiment.status})",
                code="no_winner",
            )
        if experiment.promoted_at is not None:
            raise ConflictError(f"experiment {experiment_id}'s winner was already promoted", code="already_promoted")
        version = model_version_promote(
            model_name=experiment.model.name,
            version=winner.version.version,
            reason=f"won experiment {experiment.pk} ({experiment.name}): {reason}",
            user=user,
            actor=actor,
            override=override,
        )
        experiment.promoted_at = timezone.now()
        with audit_actor(actor, reason=reason):
            experiment.save(update_fields=["promoted_at"])
        _event(
            experiment, "promote", experiment.status, experiment.status, actor, reason,
            {"version": winner.version.version, "override": override},
        )  # fmt: skip
    return version
