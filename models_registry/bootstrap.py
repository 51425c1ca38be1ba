"""First model for a fresh installation: when the default model of a symbol has no production version, backfill
history from the exchange, train, register, and promote through the gates. Idempotent: with a production
version in place it does nothing, and a run that finds too little history writes no version and says how much
is missing (run it again later: the ingest worker adds a bar a minute).

History: ``MODELS_REGISTRY_BOOTSTRAP_LOOKBACK_DAYS`` (default 14) days of 1-minute bars, rebuilt from the
exchange's public trades (`history.backfill_from_trades`: ``OHLC`` serves only the last 720 bars), then the
last 720 from ``OHLC`` (`history.backfill_history`) where the trades left a bar out.

Gates are never bypassed, and they are the same as for any model: ``MODELS_REGISTRY_PROMOTION_GATES`` (by
default an edge net of costs: PSR and DSR, baselines, calibration, trades; see the settings), which
``MODELS_REGISTRY_BOOTSTRAP_GATES`` can only tighten. A version that fails them goes to staging (if the staging
gates pass) with its gate report, and the result lists every failed gate; while no version passes, the symbol
is not traded and each decision says why.

Labels: the bootstrap uses ``MODELS_REGISTRY_BOOTSTRAP_DEAD_ZONE`` (default ``"auto"``: balanced classes), since
one-minute moves rarely cover a round trip of fees, and a fee-sized dead zone would leave one class to learn; the
trading decision still weighs the expected move against the round-trip cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from ingest.bars import BAR_MEASUREMENT
from models_registry import selectors, services
from models_registry.history import HistoryError, backfill_from_trades, backfill_history, bar_tags
from models_registry.labels import DEFAULT_TAKER_FEE
from models_registry.models import RegisteredModel, Stage
from models_registry.training import (
    InsufficientDataError,
    TrainingConfig,
    TrainingResult,
    default_model_name,
    min_training_samples,
    train_model,
)
from timeseries import get_store
from trading.models import Instrument

logger = logging.getLogger(__name__)

ACTOR = "bootstrap"


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


def bootstrap_config(symbol: str | None = None) -> TrainingConfig:
    """Logistic regression by default: its single-row prediction stays far under the 2 ms p99 budget (the
    gradient-boosted model does not; see BENCHMARKS.md); MODELS_REGISTRY_BOOTSTRAP_MODEL=hgb chooses it. The
    evaluation charges the instrument's taker fee (from the exchange's fee schedule) when it is known."""
    fee = instrument_taker_fee(symbol) if symbol else None
    zone = settings.MODELS_REGISTRY_BOOTSTRAP_DEAD_ZONE
    return TrainingConfig(
        model=settings.MODELS_REGISTRY_BOOTSTRAP_MODEL,
        horizon=int(settings.MODELS_REGISTRY_BOOTSTRAP_HORIZON),
        dead_zone=zone if zone in ("auto", None) else float(zone),
        n_splits=int(settings.MODELS_REGISTRY_BOOTSTRAP_FOLDS),
        min_samples=min_training_samples(),
        taker_fee=fee if fee is not None else DEFAULT_TAKER_FEE,
    )


def instrument_taker_fee(symbol: str) -> float | None:
    fee = Instrument.objects.filter(symbol=symbol).values_list("taker_fee", flat=True).first()
    return float(fee) if fee is not None else None


def _ensure_model(name: str, symbol: str) -> RegisteredModel:
    model = RegisteredModel.objects.filter(name=name).first()
    if model is not None:
        return model
    gates = settings.MODELS_REGISTRY_BOOTSTRAP_GATES or {}
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
    client: Any = None,
    backfill: bool = True,
    config: TrainingConfig | None = None,
    lookback: timedelta | None = None,
) -> BootstrapResult:
    name = default_model_name(symbol)
    current = selectors.production_version(model_name=name)
    if current is not None:
        return BootstrapResult("exists", name, f"{name} v{current.version} is already in production", current.version)

    config = config or bootstrap_config(symbol)
    span: timedelta = lookback or timedelta(days=float(settings.MODELS_REGISTRY_BOOTSTRAP_LOOKBACK_DAYS))
    backfill_report: dict[str, Any] | None = None
    if backfill:
        until = timezone.now().replace(second=0, microsecond=0)
        try:
            backfill_report = {
                "trades": backfill_from_trades(symbol=symbol, start=until - span, end=until, client=client).as_dict(),
                "ohlc": backfill_history(symbol=symbol, client=client).as_dict(),
            }
        except HistoryError as exc:
            logger.warning("bootstrap backfill failed; training on what the store has", extra={"error": str(exc)})
            backfill_report = {"error": str(exc)}

    latest = get_store().latest(BAR_MEASUREMENT, bar_tags(symbol))
    if latest is None:
        return BootstrapResult(
            "insufficient_history",
            name,
            f"no 1-minute bars of {symbol} in the store; {config.bars_needed()} are needed to train",
            backfill=backfill_report,
        )
    end = latest.time + timedelta(minutes=1)
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
