"""First model for a fresh installation: when the default model of a symbol has no production version, backfill
history from the exchange, train, register, and promote through the gates. Idempotent: with a production
version in place it does nothing, and a run that finds too little history writes no version and says how much
is missing (run it again later: the ingest worker adds a bar a minute).

Gates are never bypassed. A model the bootstrap creates gets the promotion gates of
``MODELS_REGISTRY_BOOTSTRAP_GATES`` (default :data:`DEFAULT_BOOTSTRAP_GATES`: a walk-forward backtest drawdown,
net of fees, of at most 25%, over at least 100 out-of-sample samples), merged as usual over
``MODELS_REGISTRY_PROMOTION_GATES``. A version that fails them goes to staging (if the staging gates pass) and
the result lists every failed gate.

Labels: the bootstrap uses ``MODELS_REGISTRY_BOOTSTRAP_DEAD_ZONE`` (default ``"auto"``: balanced classes), since
on a fresh exchange history (and on the simulator) one-minute moves rarely cover a round trip of fees, and a
fee-sized dead zone would leave a single class to learn. The default gates are risk gates only: on the 12 hours
of history the simulator serves, skill metrics are noise (out-of-sample AUC of up-moves ranged 0.30-0.85 between
runs, and no model beat the prior's log loss), so a skill gate would make the bootstrap a coin toss. Operators
add skill gates (``roc_auc_up``, ``log_loss_skill``, ``dsr``) through the settings or the model's gates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings

from ingest.bars import BAR_MEASUREMENT
from ingest.timeseries import get_store
from models_registry import selectors, services
from models_registry.history import HistoryError, OhlcClient, backfill_history, bar_tags
from models_registry.models import RegisteredModel, Stage
from models_registry.training import (
    InsufficientDataError,
    TrainingConfig,
    TrainingResult,
    default_model_name,
    min_training_samples,
    train_model,
)

logger = logging.getLogger(__name__)

ACTOR = "bootstrap"
DEFAULT_BOOTSTRAP_GATES: dict[str, Any] = {
    "production": {
        "max_drawdown": {"max": 0.25},
        "n_oos_samples": {"min": 100},
    }
}
DEFAULT_LOOKBACK = timedelta(days=7)


@dataclass(frozen=True)
class BootstrapResult:
    status: str  # exists | insufficient_history | production | staging | registered
    model_name: str
    message: str
    version: int | None = None
    backfill: dict[str, Any] | None = None
    failed_gates: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "model": self.model_name,
            "version": self.version,
            "message": self.message,
            "backfill": self.backfill,
            "failed_gates": self.failed_gates,
            "metrics": self.metrics,
        }


def bootstrap_config() -> TrainingConfig:
    """Logistic regression by default: its single-row prediction stays far under the 2 ms p99 budget (the
    gradient-boosted model does not; see BENCHMARKS.md); MODELS_REGISTRY_BOOTSTRAP_MODEL=hgb chooses it."""
    return TrainingConfig(
        model=getattr(settings, "MODELS_REGISTRY_BOOTSTRAP_MODEL", "logreg"),
        horizon=int(getattr(settings, "MODELS_REGISTRY_BOOTSTRAP_HORIZON", 15)),
        dead_zone=getattr(settings, "MODELS_REGISTRY_BOOTSTRAP_DEAD_ZONE", "auto"),
        n_splits=int(getattr(settings, "MODELS_REGISTRY_BOOTSTRAP_FOLDS", 3)),
        min_samples=min_training_samples(),
    )


def _ensure_model(name: str, symbol: str) -> RegisteredModel:
    model = RegisteredModel.objects.filter(name=name).first()
    if model is not None:
        return model
    gates = getattr(settings, "MODELS_REGISTRY_BOOTSTRAP_GATES", DEFAULT_BOOTSTRAP_GATES)
    try:
        return services.registered_model_create(
            name=name,
            description=f"Direction of {symbol} over the next bars (1-minute bars); created by the bootstrap",
            promotion_gates=gates,
            actor=ACTOR,
        )
    except services.ConflictError:
        return RegisteredModel.objects.get(name=name)


def bootstrap_model(
    *,
    symbol: str,
    client: OhlcClient | None = None,
    backfill: bool = True,
    config: TrainingConfig | None = None,
    lookback: timedelta | None = None,
) -> BootstrapResult:
    name = default_model_name(symbol)
    current = selectors.production_version(model_name=name)
    if current is not None:
        return BootstrapResult("exists", name, f"{name} v{current.version} is already in production", current.version)

    backfill_report = None
    if backfill:
        try:
            backfill_report = backfill_history(symbol=symbol, client=client).as_dict()
        except HistoryError as exc:
            logger.warning("bootstrap backfill failed; training on what the store has", extra={"error": str(exc)})
            backfill_report = {"error": str(exc)}

    config = config or bootstrap_config()
    latest = get_store().latest(BAR_MEASUREMENT, bar_tags(symbol))
    if latest is None:
        return BootstrapResult(
            "insufficient_history",
            name,
            f"no 1-minute bars of {symbol} in the store; {config.bars_needed()} are needed to train",
            backfill=backfill_report,
        )
    end = latest.time + timedelta(minutes=1)
    span: timedelta = lookback or getattr(settings, "MODELS_REGISTRY_BOOTSTRAP_LOOKBACK", None) or DEFAULT_LOOKBACK
    start = end - span
    model = _ensure_model(name, symbol)
    try:
        result = train_model(
            symbol=symbol,
            start=start,
            end=end,
            config=config,
            model_name=name,
            request_id=f"bootstrap:{name}:{end:%Y%m%dT%H%M}",
            actor=ACTOR,
        )
    except InsufficientDataError as exc:
        return BootstrapResult(
            "insufficient_history",
            name,
            f"{exc.message}. The exchange serves at most 720 one-minute bars; the ingest worker stores a bar a "
            "minute, so run the bootstrap again once enough have accumulated.",
            backfill=backfill_report,
        )
    assert isinstance(result, TrainingResult)
    version = result.version
    if version.stage == Stage.PRODUCTION:  # a concurrent bootstrap finished first
        return BootstrapResult("exists", name, f"{name} v{version.version} is in production", version.version)
    report = selectors.promotion_gate_report(version=version, target=Stage.PRODUCTION)
    if report.passed:
        services.model_version_promote(
            model_name=name,
            version=version.version,
            stage=Stage.PRODUCTION,
            reason="bootstrap: first model for the symbol, passed the production gates",
            actor=ACTOR,
        )
        message = f"{name} v{version.version} trained on {symbol} and promoted to production (gates passed)"
        logger.info(message)
        return BootstrapResult("production", name, message, version.version, backfill_report, [], result.metrics)

    failures = [r.detail for r in report.failures]
    explanation = f"{name} v{version.version} fails the production gates ({'; '.join(failures)})"
    staging = selectors.promotion_gate_report(version=version, target=Stage.STAGING)
    if version.stage != Stage.STAGING and staging.passed:
        services.model_version_promote(
            model_name=name,
            version=version.version,
            stage=Stage.STAGING,
            reason=f"bootstrap: production gates failed: {'; '.join(failures)}",
            actor=ACTOR,
        )
        status, where = "staging", "promoted to staging instead; it will not trade until a version passes"
    else:
        status, where = (
            "registered",
            "left unpromoted (staging gates: "
            + ("; ".join(r.detail for r in staging.failures) or "already staging")
            + ")",
        )
    message = f"{explanation}; {where}. Gates are not overridden automatically: {model.name} needs a better model"
    logger.warning(message)
    return BootstrapResult(status, name, message, version.version, backfill_report, failures, result.metrics)
