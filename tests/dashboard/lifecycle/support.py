"""Builders of the lifecycle pages' tests: a registered model with versions in production and staging, matured
outcomes with known net returns, drift reports, a shadow experiment with folded outcomes, reconciliation runs and
discrepancies, an ingest heartbeat and alerts (the rows the domain services write, built as the apps' own tests
build them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from experiments.intake import experiments_intake
from experiments.models import Experiment
from ingest.models import IngestStatus
from models_registry.models import DriftReport, ModelVersion, Prediction, PredictionOutcome, RegisteredModel
from models_registry.services import model_version_promote
from reconciliation.models import Discrepancy, ReconciliationRun
from tests.experiments.support import cheap_model, shadow_experiment, synthetic_outcomes
from tests.trading.factories import InstrumentFactory
from trading.alerts import alert_raise
from trading.models import Alert

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def outcomes(version: ModelVersion, nets: Sequence[float], *, start: int = 0, symbol: str = "BTC/USD") -> None:
    """Matured outcomes of `version`, one a minute from T0 + `start` minutes, with the given net returns."""
    keys = [f"{symbol}:{(T0 + timedelta(minutes=start + i)).isoformat()}" for i in range(len(nets))]
    Prediction.objects.bulk_create(
        [
            Prediction(
                decision_id=key, version=version, symbol=symbol, features_hash="0" * 64,
                probabilities={"-1": 0.2, "0": 0.3, "1": 0.5}, predicted_class=1, signal=1, confidence=0.5,
                bar_time=T0 + timedelta(minutes=start + i), horizon=1,
            )
            for i, key in enumerate(keys)
        ]
    )  # fmt: skip
    stored = dict(Prediction.objects.filter(version=version, decision_id__in=keys).values_list("decision_id", "pk"))
    now = timezone.now()
    PredictionOutcome.objects.bulk_create(
        [
            PredictionOutcome(
                prediction_id=stored[key], version=version, symbol=symbol, bar_time=T0 + timedelta(minutes=start + i),
                horizon=1, window_end=T0 + timedelta(minutes=start + i + 1), signal=1, p_down=0.2, p_flat=0.3,
                p_up=0.5, status=PredictionOutcome.Status.MATURED, forward_return=net,
                realised_label=1 if net > 0 else -1, direction_hit=net > 0, position=1, net_return=net,
                matured_at=now, checked_at=now,
            )
            for i, (key, net) in enumerate(zip(keys, nets, strict=True))
        ]
    )  # fmt: skip


def drift_report(version: ModelVersion, *, status: str = "drift", as_of: datetime | None = None) -> DriftReport:
    """A drift report as `drift_check` records it: features drifted first."""
    features = [
        {"feature": "vol_15", "test": "ks", "statistic": 0.41, "p_value": 1e-9, "threshold": 0.01, "drifted": True,
         "psi": 0.52, "psi_level": "major", "reference_mean": 0.011, "current_mean": 0.034},
        {"feature": "ret_1", "test": "ks", "statistic": 0.03, "p_value": 0.62, "threshold": 0.01, "drifted": False,
         "psi": 0.01, "psi_level": "none", "reference_mean": 0.0, "current_mean": 0.0001},
    ]  # fmt: skip
    drifted = status == "drift"
    return DriftReport.objects.create(
        model=version.model, version=version, trigger="schedule", actor="celery:drift", status=status,
        as_of=as_of or timezone.now(), kinds=["feature"] if drifted else [], confirmed=drifted,
        confirmed_by=["sustained"] if drifted else [], consecutive=3 if drifted else 0, n_features=2,
        n_drifted=1 if drifted else 0, drift_share=0.5 if drifted else 0.0, prediction_psi=0.08, features=features,
    )  # fmt: skip


def model_with_history() -> tuple[RegisteredModel, list[ModelVersion]]:
    """v1 in production, then v2 to staging, v3 registered only; outcomes for v1 and v2; a drift report of v1."""
    model, versions = cheap_model(3, promote=1)
    model_version_promote(model_name=model.name, version=2, stage="staging", reason="shadow it", actor="user:alice")
    outcomes(versions[0], [0.01, -0.005, 0.02, 0.0] * 10)
    outcomes(versions[1], [0.002] * 30)
    drift_report(versions[0])
    return model, [ModelVersion.objects.get(pk=v.pk) for v in versions]


def running_experiment() -> Experiment:
    """A shadow experiment (control v1 against treatment v2) with 60 folded outcome pairs."""
    model, _ = cheap_model(2)
    experiment = shadow_experiment(model, [2], burn_in=10, minimum_sample=10_000)
    control = experiment.arms.get(role="control")
    treatment = experiment.arms.get(role="treatment")
    synthetic_outcomes(experiment, control, [0.001, -0.001] * 30, hits=[True, False] * 30)
    synthetic_outcomes(experiment, treatment, [0.004, 0.001] * 30, hits=[True, True] * 30)
    experiments_intake()
    return experiment


def discrepancy(**fields: Any) -> Discrepancy:
    now = timezone.now()
    run = ReconciliationRun.objects.create(
        trigger="schedule", status="halted", started_at=now - timedelta(seconds=5), finished_at=now,
        duration_ms=812.0, rest_calls=4, discrepancy_count=1,
    )  # fmt: skip
    values = {
        "run": run, "kind": Discrepancy.Kind.QUANTITY_MISMATCH, "severity": Discrepancy.Severity.CRITICAL,
        "instrument": InstrumentFactory(), "local_value": "0.123456789012345678", "exchange_value": "0.1200000000",
        "difference": Decimal("0.003456789012345678"),
    }  # fmt: skip
    values.update(fields)
    return Discrepancy.objects.create(**values)


def heartbeat(name: str = "ingest@host-1", *, age_s: float = 1.0) -> IngestStatus:
    now = timezone.now()
    health = {
        "messages_per_s": {"trade": 12.5, "book": 40.25},
        "lag_ms": {
            "trade": {"p50": 3.2, "p99": 18.7, "samples": 1500}, "book": {"p50": 2.1, "p99": 9.9, "samples": 2048}
        },
        "reconnects": 3, "checksum_failures": 2, "malformed_messages": 0, "unknown_messages": 1,
        "queues": {"timeseries_pending": 4}, "dropped": {"events": 0},
    }  # fmt: skip
    return IngestStatus.objects.create(
        name=name, connection_state="connected", exchange_status="online", symbols=["BTC/USD"],
        stats={"health": health}, last_message_at=now, started_at=now - timedelta(hours=1),
        updated_at=now - timedelta(seconds=age_s),
    )  # fmt: skip


def alert(message: str = "drawdown 12 % of equity") -> Alert:
    raised = alert_raise(kind="drawdown_breach", severity="warning", message=message)
    assert raised is not None
    return raised
