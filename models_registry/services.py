"""Writes to the model registry: create models, register versions (artifact verified before anything is
written), and move stages and aliases through one gated path used by the API, the admin and the commands.

Every stage or alias move runs under the model's row lock in one transaction, writes a `StageEvent` (who, when,
why, gate report, override) and an audit record of the changed rows, and, after commit, bumps the model's cache
generation and sends `model_stage_changed`. A refused move (unknown model or version, failed gate, missing
permission or reason) raises before anything is written.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from rest_framework import status

from core.audit import SYSTEM_ACTOR, audit_actor, current_actor
from core.errors import ApplicationError, ConflictError, NotFoundError
from core.generations import generation_bump
from models_registry import artifacts, lock_objects
from models_registry.models import (
    ALIAS_REGEX,
    NAME_REGEX,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    Stage,
    StageEvent,
)
from models_registry.selectors import (
    GATE_BOUNDS,
    GENERATION_KEY,
    SIGNATURE_TYPES,
    GateReport,
    promotion_gate_report,
)
from models_registry.signals import model_stage_changed

logger = logging.getLogger(__name__)

counters: Counter[str] = Counter()

OVERRIDE_PERMISSION = "models_registry.override_promotion_gate"
MIN_OVERRIDE_REASON = 10
# Aliases that serve traffic like production: moving them passes the production gates.
GATED_ALIASES = {"champion": Stage.PRODUCTION}


class PromotionGateFailed(ApplicationError):
    code = "promotion_gate_failed"
    http_status = status.HTTP_422_UNPROCESSABLE_ENTITY


class RegistryPermissionDenied(ApplicationError):
    code = "permission_denied"
    http_status = status.HTTP_403_FORBIDDEN


def _validation(message: str, **details: Any) -> ApplicationError:
    return ApplicationError(message, code="validation_error", details=details or None)


def _actor_name(user: Any, actor: str | None) -> str:
    if actor:
        return actor
    if user is not None:
        return f"user:{user.get_username()}"
    return current_actor() or SYSTEM_ACTOR


def _require_staff(user: Any) -> None:
    """A person acting must be active staff; `user=None` is a system actor (gates still apply, no override)."""
    if user is not None and not (user.is_active and user.is_staff):
        raise RegistryPermissionDenied("changing stages and aliases needs a staff account")


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise _validation("a reason is required for every stage or alias change")
    return reason


def _locked_model(name: str) -> RegisteredModel:
    try:
        return lock_objects.registered_model_lock(name=name)
    except RegisteredModel.DoesNotExist:
        raise NotFoundError(f"model {name!r} is not registered", details={"model": name}) from None


def _version_of(model: RegisteredModel, version: int) -> ModelVersion:
    found = ModelVersion.objects.select_related("model").filter(model=model, version=version).first()
    if found is None:
        raise NotFoundError(f"model {model.name!r} has no version {version}", details={"version": version})
    return found


# --- models ------------------------------------------------------------------------------------------------


def registered_model_create(
    *,
    name: str,
    description: str = "",
    promotion_gates: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> RegisteredModel:
    if not re.match(NAME_REGEX, name or ""):
        raise _validation(f"invalid model name {name!r}: letters, digits, '_', '.', '-' (max 100)")
    gates = _validate_gates(promotion_gates or {})
    with transaction.atomic(), audit_actor(_actor_name(None, actor), reason="model registered"):
        if RegisteredModel.objects.filter(name=name).exists():
            raise ConflictError(f"model {name!r} already exists", details={"model": name})
        return RegisteredModel.objects.create(name=name, description=description, promotion_gates=gates)


def _validate_gates(gates: Mapping[str, Any]) -> dict[str, Any]:
    for target, metrics in gates.items():
        if target not in (Stage.STAGING, Stage.PRODUCTION):
            raise _validation(f"promotion gates apply to 'staging' or 'production', not {target!r}")
        if not isinstance(metrics, Mapping):
            raise _validation(f"gates for {target} must map metric -> {{'min': x, 'max': y}}")
        for metric, bounds in metrics.items():
            if not isinstance(bounds, Mapping) or not bounds or set(bounds) - set(GATE_BOUNDS):
                raise _validation(
                    f"gate {target}.{metric} must be bounds among {{'min': x, 'gt': x, 'max': y, 'lt': y}}"
                )
            if any(not _is_number(v) for v in bounds.values()):
                raise _validation(f"gate {target}.{metric} bounds must be numbers")
    return dict(gates)


# --- versions ----------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool) and math.isfinite(float(value))


def _validate_signature(signature: Sequence[Mapping[str, str]] | Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    columns: list[dict[str, str]] = []
    for item in signature or []:
        name, kind = (item["name"], item["type"]) if isinstance(item, Mapping) else item
        if not isinstance(name, str) or not name:
            raise _validation(f"signature feature names must be non-empty strings, got {name!r}")
        if kind not in SIGNATURE_TYPES:
            raise _validation(f"feature {name!r} has type {kind!r}; allowed: {sorted(SIGNATURE_TYPES)}")
        columns.append({"name": name, "type": kind})
    if not columns:
        raise _validation("a model version needs a signature (ordered feature names and types)")
    names = [c["name"] for c in columns]
    if len(set(names)) != len(names):
        raise _validation(
            "signature feature names must be unique", duplicates=sorted({n for n in names if names.count(n) > 1})
        )
    return columns


def _check_model_matches_signature(model: Any, signature: list[dict[str, str]]) -> None:
    names = [c["name"] for c in signature]
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None and int(n_in) != len(names):
        raise artifacts.ArtifactUnloadableError(
            f"the model expects {n_in} features but the signature lists {len(names)}",
            details={"model_features": int(n_in), "signature_features": len(names)},
        )
    fitted_names = getattr(model, "feature_names_in_", None)
    if fitted_names is not None and [str(n) for n in fitted_names] != names:
        raise artifacts.ArtifactUnloadableError(
            "the model was fitted on other feature names (or another order) than the signature lists",
            details={"model": [str(n) for n in fitted_names], "signature": names},
        )


def _read_artifact(estimator: Any, artifact: bytes | None, artifact_path: str | Path | None) -> bytes:
    given = [x is not None for x in (estimator, artifact, artifact_path)]
    if sum(given) != 1:
        raise artifacts.ArtifactMissingError("register exactly one of: estimator, artifact bytes, artifact path")
    if estimator is not None:
        return artifacts.serialize(estimator)
    if artifact_path is not None:
        try:
            return Path(artifact_path).read_bytes()
        except OSError as exc:
            raise artifacts.ArtifactMissingError(f"artifact file {artifact_path} cannot be read: {exc}") from exc
    assert artifact is not None
    return bytes(artifact)


def code_version_detect() -> str:
    """The running code's git commit: GALFRIDAY_CODE_VERSION if set, else read from .git (no subprocess)."""
    configured = settings.GALFRIDAY_CODE_VERSION
    if configured:
        return str(configured)[:64]
    git = Path(settings.BASE_DIR) / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:64]
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:64]
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0][:64]
    except OSError:
        pass
    return ""


def model_version_register(
    *,
    model_name: str,
    signature: Sequence[Mapping[str, str]] | Sequence[tuple[str, str]],
    data_start: datetime,
    data_end: datetime,
    symbols: Sequence[str],
    feature_set_name: str,
    feature_set_version: str,
    estimator: Any = None,
    artifact: bytes | None = None,
    artifact_path: str | Path | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    n_trials: int = 1,
    parent_version: int | None = None,
    code_version: str | None = None,
    description: str = "",
    actor: str | None = None,
) -> ModelVersion:
    """Register a new version of `model_name` with the next free version number.

    The artifact (an estimator, skops bytes or a path to them) must load with only trusted types and agree with
    the signature before anything is written; it is then stored encrypted under its SHA-256 and read back."""
    data = _read_artifact(estimator, artifact, artifact_path)
    loaded = artifacts.deserialize(data)
    columns = _validate_signature(signature)
    _check_model_matches_signature(loaded, columns)
    if data_start.tzinfo is None or data_end.tzinfo is None:
        raise _validation("the training data window must be timezone-aware (UTC)")
    if data_start >= data_end:
        raise _validation("the training data window must start before it ends")
    symbol_list = list(symbols or [])
    if not symbol_list or not all(isinstance(s, str) and s for s in symbol_list):
        raise _validation("a version needs the symbol(s) it was trained on")
    if not feature_set_name or not feature_set_version:
        raise _validation("a version needs its feature set name and version")
    metric_values: dict[str, float] = {}
    for name, value in (metrics or {}).items():
        if not _is_number(value):
            raise _validation(f"metric {name!r} must be a finite number, got {value!r}")
        metric_values[str(name)] = float(value)
    if n_trials < 1:
        raise _validation("n_trials must be at least 1")
    who = _actor_name(None, actor)

    model = RegisteredModel.objects.filter(name=model_name).first()
    if model is None:
        raise NotFoundError(f"model {model_name!r} is not registered", details={"model": model_name})
    parent = None
    if parent_version is not None:
        parent = _version_of(model, parent_version)

    sha = artifacts.store(data)  # content-addressed and idempotent: safe before (and outside) the lock

    with transaction.atomic(), audit_actor(who, reason="version registered"):
        model = _locked_model(model_name)
        number = (model.versions.aggregate(m=Max("version"))["m"] or 0) + 1
        version = ModelVersion.objects.create(
            model=model,
            version=number,
            artifact_sha256=sha,
            artifact_size=len(data),
            artifact_format=artifacts.FORMAT_SKOPS,
            signature=columns,
            data_start=data_start,
            data_end=data_end,
            symbols=symbol_list,
            feature_set_name=feature_set_name,
            feature_set_version=str(feature_set_version),
            hyperparameters=dict(hyperparameters or {}),
            code_version=code_version if code_version is not None else code_version_detect(),
            metrics=metric_values,
            n_trials=n_trials,
            parent=parent,
            description=description,
            created_by=who,
        )
    logger.info("model version registered", extra={"model": model_name, "version": number, "sha256": sha})
    return version


# --- stages and aliases ------------------------------------------------------------------------------------


def model_version_gates_record(*, version: ModelVersion, actor: str | None = None) -> GateReport:
    """Evaluate the production gates of `version` now and keep the report on it (``gate_report``: target, passed,
    every result, when), so a version that is not promoted says why; audited like any change of a version."""
    report = promotion_gate_report(version=version, target=Stage.PRODUCTION)
    version.gate_report = {
        "target": report.target,
        "passed": report.passed,
        "results": report.as_json(),
        "evaluated_at": timezone.now().isoformat(),
    }
    with audit_actor(_actor_name(None, actor), reason="production gates evaluated"):
        version.save(update_fields=["gate_report"])
    return report


def _gate_or_override(report: GateReport, *, user: Any, override: bool, reason: str) -> bool:
    """Raise unless the gates pass or a permitted override is asked for; True when overridden."""
    if report.passed:
        return False
    failures = [r.detail for r in report.failures]
    if not override:
        raise PromotionGateFailed(
            f"promotion to {report.target} fails its gates: {'; '.join(failures)}",
            details={"gates": report.as_json()},
        )
    if user is None or not (user.is_active and user.is_staff and user.has_perm(OVERRIDE_PERMISSION)):
        raise RegistryPermissionDenied(
            "overriding a failed promotion gate needs a staff account with the 'override promotion gate' permission",
            details={"gates": report.as_json()},
        )
    if len(reason) < MIN_OVERRIDE_REASON:
        raise _validation(
            f"overriding a failed gate needs a written reason (at least {MIN_OVERRIDE_REASON} characters)"
        )
    return True


def _event_payload(event: StageEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "kind": event.kind,
        "version": event.version.version,
        "from_stage": event.from_stage,
        "to_stage": event.to_stage,
        "alias": event.alias,
        "actor": event.actor,
        "reason": event.reason,
        "gate_overridden": event.gate_overridden,
    }


def _notify_after_commit(model_name: str, events: list[StageEvent]) -> None:
    payload = [_event_payload(e) for e in events]

    def notify() -> None:
        key = GENERATION_KEY.format(name=model_name)
        generation: int | None
        try:
            generation = generation_bump(key)
        except Exception:
            counters["generation_bump_failed"] += 1
            logger.exception("model generation bump failed", extra={"model": model_name})
            generation = None
        for receiver, result in model_stage_changed.send_robust(
            sender=RegisteredModel, model_name=model_name, generation=generation, events=payload
        ):
            if isinstance(result, Exception):
                counters["stage_signal_receiver_failed"] += 1
                logger.error(
                    "model_stage_changed receiver failed",
                    extra={"model": model_name, "receiver": repr(receiver)},
                    exc_info=result,
                )

    transaction.on_commit(notify)


def _stage_event(version: ModelVersion, from_stage: str, to_stage: str, **fields: Any) -> StageEvent:
    return StageEvent.objects.create(
        model=version.model,
        version=version,
        kind=StageEvent.Kind.STAGE,
        from_stage=from_stage,
        to_stage=to_stage,
        **fields,
    )


def model_version_transition(
    *,
    model_name: str,
    version: int,
    stage: str,
    reason: str,
    user: Any = None,
    actor: str | None = None,
    override: bool = False,
) -> ModelVersion:
    """Move a version to `stage` (staging, production or archived), atomically.

    Promoting to production archives the previous production version in the same transaction, so readers see
    exactly one production version before and after. Promotions to staging or production pass the promotion
    gates; a failed gate needs `override=True` by staff holding the override permission, with a written reason.
    """
    if stage not in (Stage.STAGING, Stage.PRODUCTION, Stage.ARCHIVED):
        raise _validation(f"cannot move a version to {stage!r}; use staging, production or archived")
    reason = _require_reason(reason)
    _require_staff(user)
    who = _actor_name(user, actor)
    with transaction.atomic():
        model = _locked_model(model_name)
        target = _version_of(model, version)
        if target.stage == stage:
            raise ConflictError(f"{model_name} v{version} is already {stage}", details={"stage": stage})
        report = GateReport(target=stage)
        overridden = False
        if stage != Stage.ARCHIVED:
            report = promotion_gate_report(version=target, target=stage)
            overridden = _gate_or_override(report, user=user, override=override, reason=reason)
        now = timezone.now()
        events: list[StageEvent] = []
        with audit_actor(who, reason=reason):
            if stage == Stage.PRODUCTION:
                current = model.versions.filter(stage=Stage.PRODUCTION).exclude(pk=target.pk).first()
                if current is not None:
                    current.stage = Stage.ARCHIVED
                    current.save(update_fields=["stage"])
                    events.append(
                        _stage_event(
                            current,
                            Stage.PRODUCTION,
                            Stage.ARCHIVED,
                            actor=who,
                            at=now,
                            reason=f"replaced in production by v{target.version}: {reason}",
                        )
                    )
            from_stage = target.stage
            target.stage = stage
            target.save(update_fields=["stage"])
            events.append(
                _stage_event(
                    target,
                    from_stage,
                    stage,
                    actor=who,
                    at=now,
                    reason=reason,
                    gate_report=report.as_json(),
                    gate_overridden=overridden,
                )
            )
        _notify_after_commit(model_name, events)
    logger.info(
        "model stage changed",
        extra={"model": model_name, "version": version, "stage": stage, "actor": who, "overridden": overridden},
    )
    return target


def model_version_promote(
    *,
    model_name: str,
    version: int,
    stage: str = Stage.PRODUCTION,
    reason: str,
    user: Any = None,
    actor: str | None = None,
    override: bool = False,
) -> ModelVersion:
    if stage not in (Stage.STAGING, Stage.PRODUCTION):
        raise _validation(f"promote to staging or production, not {stage!r}")
    return model_version_transition(
        model_name=model_name, version=version, stage=stage, reason=reason, user=user, actor=actor, override=override
    )


def model_version_archive(
    *, model_name: str, version: int, reason: str, user: Any = None, actor: str | None = None
) -> ModelVersion:
    """Archive a version. Archiving the production version leaves the model with none (an explicit decision)."""
    return model_version_transition(
        model_name=model_name, version=version, stage=Stage.ARCHIVED, reason=reason, user=user, actor=actor
    )


def model_alias_set(
    *,
    model_name: str,
    alias: str,
    version: int,
    reason: str,
    user: Any = None,
    actor: str | None = None,
    override: bool = False,
) -> ModelAlias:
    """Point `alias` at `version` (one UPDATE: readers see the old or the new target). `champion` passes the
    production gates."""
    if not re.match(ALIAS_REGEX, alias or ""):
        raise _validation(f"invalid alias {alias!r}: lower-case letters, digits, '_' or '-', starting with a letter")
    reason = _require_reason(reason)
    _require_staff(user)
    who = _actor_name(user, actor)
    with transaction.atomic():
        model = _locked_model(model_name)
        target = _version_of(model, version)
        if target.stage == Stage.ARCHIVED:
            raise ConflictError(f"{model_name} v{version} is archived; an alias cannot point at it")
        row = lock_objects.model_alias_lock(model=model, name=alias)
        if row is not None and row.version_id == target.pk:
            raise ConflictError(f"alias {alias!r} already points at v{version}")
        report = GateReport(target=GATED_ALIASES.get(alias, ""))
        overridden = False
        if alias in GATED_ALIASES:
            report = promotion_gate_report(version=target, target=GATED_ALIASES[alias])
            overridden = _gate_or_override(report, user=user, override=override, reason=reason)
        previous = row.version if row is not None else None
        with audit_actor(who, reason=reason):
            if row is None:
                row = ModelAlias.objects.create(model=model, name=alias, version=target)
            else:
                row.version = target
                row.save(update_fields=["version", "updated_at"])
            event = StageEvent.objects.create(
                model=model,
                version=target,
                kind=StageEvent.Kind.ALIAS_SET,
                alias=alias,
                previous_version=previous,
                actor=who,
                reason=reason,
                gate_report=report.as_json(),
                gate_overridden=overridden,
                at=timezone.now(),
            )
        _notify_after_commit(model_name, [event])
    return row


def model_alias_remove(*, model_name: str, alias: str, reason: str, user: Any = None, actor: str | None = None) -> None:
    reason = _require_reason(reason)
    _require_staff(user)
    who = _actor_name(user, actor)
    with transaction.atomic():
        model = _locked_model(model_name)
        row = lock_objects.model_alias_lock(model=model, name=alias)
        if row is None:
            raise NotFoundError(f"model {model_name!r} has no alias {alias!r}", details={"alias": alias})
        with audit_actor(who, reason=reason):
            event = StageEvent.objects.create(
                model=model,
                version=row.version,
                kind=StageEvent.Kind.ALIAS_REMOVED,
                alias=alias,
                previous_version=row.version,
                actor=who,
                reason=reason,
                at=timezone.now(),
            )
            row.delete()
        _notify_after_commit(model_name, [event])


def artifacts_reencrypt(*, dry_run: bool = False, actor: str = SYSTEM_ACTOR) -> dict[str, Any]:
    """Finish a key rotation: rewrite every registered version's artifact that an older key encrypted under the
    newest key (`MODELS_REGISTRY_ARTIFACT_KEYS[0]`), so the old key can then be removed. Content, address and
    versions do not change; an artifact that is missing or fails its check is reported and left as it is (the
    others are still done). Safe to run again: a second run rewrites nothing."""
    report: dict[str, Any] = {"checked": 0, "reencrypted": 0, "current": 0, "failed": {}, "dry_run": dry_run}
    shas = ModelVersion.objects.order_by().values_list("artifact_sha256", flat=True).distinct()
    for sha in sorted(set(shas)):
        report["checked"] += 1
        try:
            rewritten = artifacts.reencrypt(sha, dry_run=dry_run)
        except artifacts.ArtifactError as exc:
            report["failed"][sha] = f"{exc.code}: {exc.message}"
            continue
        report["reencrypted" if rewritten else "current"] += 1
    logger.warning(
        "artifacts re-encrypted under the newest key",
        extra={"actor": actor, **{k: v for k, v in report.items() if k != "failed"}, "failed": len(report["failed"])},
    )
    return report
