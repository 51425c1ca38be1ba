"""Outcome tracking against the real stores (PostgreSQL, Redis cache lock, InfluxDB bars): outcome labels are the
training labels of the same stored bars, a replay writes nothing, a revised bar revises, a gap stays pending,
net returns after costs, live metrics with intervals, and the degradation alert."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.core.cache import cache

from core.audit import audit_actor, audit_trail
from ingest.bars import Bar
from models_registry.history import bar_tags, load_bars
from models_registry.labels import make_labels
from models_registry.models import ModelVersion, Prediction, PredictionOutcome
from models_registry.outcomes import (
    LOCK_KEY,
    OutcomeRule,
    outcomes_mature,
    pending_count,
    version_degradation_check,
    version_live_metrics,
)
from models_registry.outcomes.arrays import matured_arrays
from models_registry.tasks import outcomes_mature_task
from tests.models_registry.conftest import store_bars
from tests.models_registry.factories import make_model, make_version, registry_settings  # noqa: F401
from tests.models_registry.synthetic import make_bars
from timeseries import Point, get_store
from timeseries.base import query_fields

pytestmark = [
    pytest.mark.usefixtures("registry_settings", "no_lock"),
    pytest.mark.django_db,
    pytest.mark.services("postgres", "redis", "influxdb"),
]

HORIZON = 3
DEAD_ZONE = 0.001
HYPER = {"horizon": HORIZON, "label_dead_zone": DEAD_ZONE, "taker_fee": 0.004, "slippage_bps": 5.0}
COST = 2 * (0.004 + 0.0005)


@pytest.fixture
def no_lock() -> None:
    cache.delete(LOCK_KEY)


def _symbol() -> str:
    return f"T{uuid.uuid4().hex[:10].upper()}/USD"


def _bars(n: int = 60, seed: int = 4) -> pd.DataFrame:
    frame = make_bars(n, seed=seed, book=False)
    frame.index = pd.date_range("2025-02-03 10:00", periods=n, freq="min", tz="UTC")
    return frame


def _version(**overrides: Any) -> ModelVersion:
    fields = {"hyperparameters": HYPER, "metrics": {"direction_hit_rate": 0.6, "direction_n": 5000.0}}
    return make_version(make_model(gates={}), **{**fields, **overrides})


def _predict(version: ModelVersion, symbol: str, times: Any, *, signal: int = 1, up: float = 0.6) -> list[Prediction]:
    rows = []
    for i, t in enumerate(times):
        down = 0.9 - up if signal != 0 else up
        rows.append(
            Prediction(
                decision_id=f"d-{symbol}-{i}",
                version=version,
                symbol=symbol,
                features_hash="0" * 64,
                probabilities={"-1": down, "0": round(1 - up - down, 10), "1": up},
                predicted_class=1,
                signal=signal,
                confidence=up,
                bar_time=t.to_pydatetime() if hasattr(t, "to_pydatetime") else t,
                horizon=HORIZON,
            )
        )
    return Prediction.objects.bulk_create(rows)


def _now(frame: pd.DataFrame) -> datetime:
    return (frame.index[-1] + pd.Timedelta(minutes=30)).to_pydatetime()


def test_outcome_labels_equal_the_training_labels_on_the_same_bars() -> None:
    symbol, frame = _symbol(), _bars()
    store_bars(frame, symbol)
    version = _version()
    _predict(version, symbol, frame.index)
    result = outcomes_mature(now=_now(frame))
    assert (result.matured, result.pending) == (len(frame) - HORIZON, HORIZON)
    stored = load_bars(symbol=symbol, start=frame.index[0], end=frame.index[-1] + pd.Timedelta(minutes=1)).bars
    training = make_labels(stored["close"], HORIZON, dead_zone=DEAD_ZONE)
    matured = PredictionOutcome.objects.filter(version=version, status="matured").order_by("bar_time")
    got = pd.DataFrame(
        [(o.bar_time, o.forward_return, o.realised_label) for o in matured], columns=["t", "fwd", "label"]
    ).set_index("t")
    expected = training.dropna().loc[got.index]
    np.testing.assert_allclose(got["fwd"].to_numpy(), expected["forward_return"].to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(got["label"].to_numpy(), expected["label"].to_numpy())
    assert set(got["label"]) == {-1, 0, 1}  # the dead zone mattered
    first = matured[0]
    assert first.entry_close == Decimal(f"{frame['close'].iloc[0]:.2f}")
    assert first.exit_close == Decimal(f"{frame['close'].iloc[HORIZON]:.2f}")
    assert first.history.count() == 1  # audited
    # the last HORIZON predictions' windows end after the last stored bar: pending, not guessed
    pending = PredictionOutcome.objects.filter(version=version, status="pending")
    assert pending.count() == HORIZON
    assert all(o.forward_return is None and "no stored bar" in o.pending_reason for o in pending)


def test_a_replayed_maturation_changes_nothing() -> None:
    symbol, frame = _symbol(), _bars()
    store_bars(frame, symbol)
    version = _version()
    _predict(version, symbol, frame.index[:-HORIZON])
    now = _now(frame)
    first = outcomes_mature(now=now)
    assert first.matured == len(frame) - HORIZON
    before = list(PredictionOutcome.objects.order_by("id").values())
    audit_rows = PredictionOutcome.history.count()
    again = outcomes_mature(now=now + timedelta(minutes=1))
    assert (again.matured, again.revised, again.unchanged) == (0, 0, len(frame) - HORIZON)
    assert list(PredictionOutcome.objects.order_by("id").values()) == before
    assert PredictionOutcome.history.count() == audit_rows


def test_a_late_or_revised_bar_revises_the_matured_outcome() -> None:
    symbol, frame = _symbol(), _bars()
    store_bars(frame, symbol)
    version = _version()
    (prediction,) = _predict(version, symbol, [frame.index[10]])
    now = _now(frame)
    outcomes_mature(now=now)
    outcome = PredictionOutcome.objects.get(prediction=prediction)
    old = outcome.forward_return
    exit_time = frame.index[10 + HORIZON]
    revised = frame.loc[[exit_time]].copy()
    revised["close"] = frame["close"].iloc[10] * 1.05  # a late trade moved the exit bar's close
    store_bars(revised, symbol)
    result = outcomes_mature(now=now + timedelta(minutes=5))
    assert result.revised == 1
    outcome.refresh_from_db()
    assert outcome.revisions == 1
    assert outcome.revised_at is not None
    assert outcome.forward_return != old
    assert outcome.forward_return == pytest.approx(
        float(f"{revised['close'].iloc[0]:.2f}") / float(f"{frame['close'].iloc[10]:.2f}") - 1
    )
    assert outcome.realised_label == 1
    assert outcome.net_return == pytest.approx(outcome.forward_return - COST)
    # beyond the re-check horizon a matured outcome is left alone
    assert outcomes_mature(now=now + timedelta(hours=3)).examined == 0


def test_a_gap_leaves_the_outcome_pending_until_the_bar_arrives() -> None:
    symbol, frame = _symbol(), _bars()
    missing = frame.index[20]
    store_bars(frame.drop(index=missing), symbol)
    version = _version()
    predictions = _predict(version, symbol, frame.index[14:24])
    now = _now(frame)
    result = outcomes_mature(now=now)
    outcomes = {o.bar_time: o for o in PredictionOutcome.objects.filter(version=version)}
    covering = {t for t in frame.index[14:24] if t <= missing <= t + pd.Timedelta(minutes=HORIZON)}
    assert len(covering) == HORIZON + 1
    assert result.pending == len(covering)
    for t, o in outcomes.items():
        if t in covering:
            assert o.status == "pending"
            assert o.forward_return is None
            assert "missing" in o.pending_reason or "no stored bar" in o.pending_reason
        else:
            assert o.status == "matured"
    store_bars(frame.loc[[missing]], symbol)  # the ingest worker's repair writes it later
    later = outcomes_mature(now=now + timedelta(minutes=3))
    assert later.matured == len(covering)
    assert PredictionOutcome.objects.filter(version=version, status="matured").count() == len(predictions)


def test_every_state_change_of_an_outcome_leaves_an_audit_row_of_what_was_written() -> None:
    symbol, frame = _symbol(), _bars()
    missing = frame.index[20]
    store_bars(frame.drop(index=missing), symbol)
    version = _version()
    predictions = _predict(version, symbol, frame.index[18:22])
    now = _now(frame)
    with audit_actor("celery:outcomes_mature"):
        outcomes_mature(now=now)  # all four pending on the gap
        store_bars(frame.loc[[missing]], symbol)
        outcomes_mature(now=now + timedelta(minutes=1))  # late maturation
        exit_bar = frame.loc[[frame.index[18 + HORIZON]]].copy()
        exit_bar["close"] = frame["close"].iloc[18] * 1.05
        store_bars(exit_bar, symbol)
        outcomes_mature(now=now + timedelta(minutes=2))  # revision of the first
    revised = PredictionOutcome.objects.get(prediction=predictions[0])
    trail = audit_trail(revised)
    assert [e.action for e in trail] == ["created", "changed", "changed"]
    assert {e.actor for e in trail} == {"celery:outcomes_mature"}
    assert trail[0].changes["status"] == (None, "pending")
    assert trail[1].changes["status"] == ("pending", "matured")
    assert trail[2].changes["revisions"] == (0, 1)
    assert trail[2].changes["forward_return"][1] == revised.forward_return
    for outcome in PredictionOutcome.objects.filter(version=version):
        last = outcome.history.order_by("-history_date", "-history_id").first()
        for f in PredictionOutcome._meta.concrete_fields:
            assert getattr(last, f.attname) == getattr(outcome, f.attname), f.name
    assert PredictionOutcome.history.filter(prediction_id__in=[p.pk for p in predictions[1:]]).count() == 6


def test_net_return_is_long_only_after_the_round_trip_cost() -> None:
    symbol, frame = _symbol(), _bars()
    store_bars(frame, symbol)
    version = _version()
    long_ = _predict(version, symbol, frame.index[:5], signal=1)
    short = _predict(version, "X", [], signal=-1)  # nothing
    assert short == []
    flat = [
        Prediction.objects.create(
            decision_id=f"s-{i}",
            version=version,
            symbol=symbol,
            features_hash="0" * 64,
            probabilities={"-1": 0.6, "0": 0.1, "1": 0.3},
            predicted_class=-1,
            signal=-1,
            confidence=0.6,
            bar_time=frame.index[i].to_pydatetime(),
            horizon=HORIZON,
        )
        for i in range(5)
    ]
    outcomes_mature(now=_now(frame))
    assert OutcomeRule.of(HYPER).round_trip_cost == pytest.approx(COST)
    for p in long_:
        o = p.outcome
        assert (o.position, o.round_trip_cost) == (1, pytest.approx(COST))
        assert o.net_return == pytest.approx(o.forward_return - COST)
        assert o.direction_hit == (o.forward_return > 0)
    for p in flat:
        o = PredictionOutcome.objects.get(prediction=p)
        assert (o.position, o.net_return) == (0, 0.0)
        assert o.direction_hit == (o.forward_return < 0)


def test_predictions_wait_until_their_horizon_bar_has_closed() -> None:
    symbol, frame = _symbol(), _bars()
    store_bars(frame, symbol)
    version = _version()
    _predict(version, symbol, [frame.index[10]])
    exit_close = frame.index[10 + HORIZON] + pd.Timedelta(minutes=1)
    early = outcomes_mature(now=(exit_close - pd.Timedelta(seconds=1)).to_pydatetime())
    assert (early.not_due, early.examined) == (1, 0)
    assert not PredictionOutcome.objects.filter(version=version).exists()
    assert outcomes_mature(now=exit_close.to_pydatetime()).matured == 1


def test_the_task_is_safe_to_run_twice_and_a_held_lock_skips() -> None:
    symbol, frame = _symbol(), _bars(30)
    store_bars(frame, symbol)
    version = _version()
    base = frame.index[-1] - pd.Timedelta(minutes=HORIZON)
    _predict(version, symbol, [base])
    # the task uses the real clock: bars of a recent minute
    recent = pd.Timestamp.now(tz="UTC").floor("min") - pd.Timedelta(minutes=10)
    frame.index = pd.date_range(recent - pd.Timedelta(minutes=len(frame) - 1), periods=len(frame), freq="min")
    store_bars(frame, symbol)
    Prediction.objects.filter(version=version).update(bar_time=frame.index[-1 - HORIZON].to_pydatetime())
    first = outcomes_mature_task()
    second = outcomes_mature_task()
    assert first["matured"] == 1
    assert (second["matured"], second["revised"]) == (0, 0)
    assert PredictionOutcome.objects.filter(version=version).count() == 1
    cache.add(LOCK_KEY, "other", timeout=30)
    assert outcomes_mature_task()["skipped"] is True


# --- live metrics and degradation --------------------------------------------------------------------------


def _outcomes(version: ModelVersion, hits: np.ndarray, *, end: datetime, net: float = 0.001) -> None:
    """Matured outcomes one minute apart ending at `end`: P(up) 0.6 / P(down) 0.3, the move up on hits."""
    n = len(hits)
    preds = Prediction.objects.bulk_create(
        Prediction(
            decision_id=f"m-{version.pk}-{i}",
            version=version,
            symbol="BTC/USD",
            features_hash="0" * 64,
            probabilities={"-1": 0.3, "0": 0.1, "1": 0.6},
            predicted_class=1,
            signal=1,
            confidence=0.6,
            bar_time=end - timedelta(minutes=n - i),
            horizon=HORIZON,
        )
        for i in range(n)
    )
    PredictionOutcome.objects.bulk_create(
        PredictionOutcome(
            prediction=p,
            version=version,
            symbol="BTC/USD",
            bar_time=p.bar_time,
            horizon=HORIZON,
            window_end=p.bar_time + timedelta(minutes=HORIZON),  # type: ignore[operator]
            signal=1,
            p_down=0.3,
            p_flat=0.1,
            p_up=0.6,
            status="matured",
            forward_return=0.002 if hit else -0.002,
            realised_label=1 if hit else -1,
            dead_zone=DEAD_ZONE,
            direction_hit=bool(hit),
            position=1,
            round_trip_cost=COST,
            net_return=net if hit else -net,
            matured_at=end,
            checked_at=end,
        )
        for p, hit in zip(preds, hits, strict=True)
    )


def test_live_metrics_report_windows_with_intervals_beside_validation() -> None:
    version = _version()
    end = datetime.now(tz=UTC).replace(second=0, microsecond=0)
    hits = np.tile([1, 1, 0], 400)  # 1,200 outcomes, hit rate 2/3
    _outcomes(version, hits, end=end)
    metrics = version_live_metrics(version=version, now=end)
    assert metrics["validation"]["direction_hit_rate"] == 0.6
    everything = metrics["windows"]["all"]
    assert everything["n_outcomes"] == 1200
    hit = everything["hit_rate"]
    assert hit["value"] == pytest.approx(2 / 3)
    assert hit["low"] < 2 / 3 < hit["high"]
    assert hit["n_effective"] <= hit["n"]
    assert metrics["windows"]["1h"]["n_outcomes"] == 60
    assert metrics["windows"]["24h"]["n_outcomes"] == 1200
    assert metrics["windows"]["last_100"]["n_outcomes"] == 100
    # log loss of the true class: -log 0.6 on hits, -log 0.3 on misses
    assert everything["log_loss"]["mean"] == pytest.approx(-(2 * math.log(0.6) + math.log(0.3)) / 3)
    brier_hit, brier_miss = 0.3**2 + 0.1**2 + 0.4**2, 0.7**2 + 0.1**2 + 0.6**2
    assert everything["brier_multiclass"]["mean"] == pytest.approx((2 * brier_hit + brier_miss) / 3)
    # top-label confidence 0.6 everywhere, right 2/3 of the time
    assert everything["ece"] == pytest.approx(abs(2 / 3 - 0.6))
    net = everything["net_return"]
    assert net["mean"] == pytest.approx(0.001 / 3)
    assert net["total"] == pytest.approx(400 * 0.001)
    assert net["low"] < net["mean"] < net["high"]
    sharpe = everything["sharpe"]
    assert sharpe["low"] < sharpe["sharpe"] < sharpe["high"]
    assert everything["data_window"]["last_bar"] == (end - timedelta(minutes=1)).isoformat()
    assert metrics["degradation"]["degraded"] is False


def test_live_metric_arrays_are_the_matured_outcomes_in_bar_time_then_id_order() -> None:
    version = _version()
    end = datetime(2025, 3, 4, 12, 0, 7, 250_001, tzinfo=UTC)  # sub-second bar times survive the read
    _outcomes(version, np.array([1, 0, 1, 1, 0]), end=end)
    first = PredictionOutcome.objects.filter(version=version).order_by("bar_time", "id").first()
    assert first is not None
    twin = Prediction.objects.create(
        decision_id="twin", version=version, symbol="ETH/USD", features_hash="0" * 64, probabilities={},
        predicted_class=0, signal=0, confidence=0.5, bar_time=first.bar_time, horizon=HORIZON,
    )  # fmt: skip
    PredictionOutcome.objects.create(
        prediction=twin, version=version, symbol="ETH/USD", bar_time=first.bar_time, horizon=HORIZON,
        window_end=first.window_end, signal=0, p_down=0.25, p_flat=0.5, p_up=0.25, status="matured",
        forward_return=-0.0123456789012345, realised_label=-1, dead_zone=DEAD_ZONE, direction_hit=None, position=0,
        round_trip_cost=COST, net_return=0.0, matured_at=end, checked_at=end,
    )  # fmt: skip
    pending = _predict(version, _symbol(), [end + timedelta(minutes=5)])[0]
    PredictionOutcome.objects.create(
        prediction=pending, version=version, symbol=pending.symbol, bar_time=pending.bar_time, horizon=HORIZON,
        window_end=end + timedelta(minutes=8), signal=1, p_down=0.3, p_flat=0.1, p_up=0.6, checked_at=end,
    )  # fmt: skip
    _predict(version, _symbol(), [end + timedelta(minutes=6)])  # no outcome yet
    arrays = matured_arrays(version)
    rows = list(
        PredictionOutcome.objects.filter(version=version, status="matured")
        .order_by("bar_time", "id")
        .values_list("bar_time", "p_down", "p_flat", "p_up", "realised_label", "forward_return", "net_return")
    )
    assert len(rows) == 6
    assert arrays.bar_time.tolist() == [int(r[0].timestamp() * 1_000_000) for r in rows]
    assert arrays.proba.tolist() == [list(r[1:4]) for r in rows]
    assert arrays.label.tolist() == [float(r[4]) for r in rows]
    assert arrays.forward_return.tolist() == [r[5] for r in rows]
    assert arrays.net.tolist() == [r[6] for r in rows]
    assert arrays.forward_return[1] == -0.0123456789012345  # the tie on bar time, by id
    assert pending_count(version=version) == 2  # the pending outcome and the prediction without one
    assert version_live_metrics(version=version, now=end)["pending_outcomes"] == 2
    assert matured_arrays(_version()).label.shape == (0,)


def test_degradation_alert_is_raised_once_when_live_is_clearly_worse() -> None:
    from trading.models import Alert

    version = _version(metrics={"direction_hit_rate": 0.6, "net_return_per_prediction": 0.0005})
    end = datetime.now(tz=UTC).replace(second=0, microsecond=0)
    _outcomes(version, np.tile([1, 0, 0, 0, 1], 200), end=end)  # hit rate 0.4 over 1,000
    alert_id = version_degradation_check(version_id=version.pk)
    assert alert_id is not None
    alert = Alert.objects.get(pk=alert_id)
    assert alert.kind == "model_degraded"
    assert alert.context["version_id"] == version.pk
    assert any("hit rate" in r for r in alert.context["reasons"])
    assert any("net return" in r for r in alert.context["reasons"])
    assert version_degradation_check(version_id=version.pk) is None  # one open alert per version
    assert Alert.objects.filter(kind="model_degraded", context__version_id=version.pk).count() == 1
    alert.refresh_from_db()
    assert (alert.severity, alert.state, alert.count) == ("critical", "firing", 2)


def test_degradation_alert_resolves_when_live_matches_validation_again() -> None:
    from models_registry.models import ModelVersion
    from trading.models import Alert

    version = _version(metrics={"direction_hit_rate": 0.6, "net_return_per_prediction": 0.0005})
    end = datetime.now(tz=UTC).replace(second=0, microsecond=0)
    _outcomes(version, np.tile([1, 0, 0, 0, 1], 200), end=end)  # hit rate 0.4: more than 10 % below 0.6
    alert_id = version_degradation_check(version_id=version.pk)
    assert alert_id is not None
    # the same live record against a validation it matches: the condition cleared
    ModelVersion.objects.filter(pk=version.pk).update(metrics={"direction_hit_rate": 0.4})
    assert version_degradation_check(version_id=version.pk) is None
    alert = Alert.objects.get(pk=alert_id)
    assert (alert.state, alert.resolved_by) == ("resolved", "auto")


def test_no_degradation_alert_when_live_matches_validation_or_evidence_is_thin() -> None:
    from trading.models import Alert

    healthy = _version()
    end = datetime.now(tz=UTC).replace(second=0, microsecond=0)
    _outcomes(healthy, np.tile([1, 1, 0, 1, 0], 200), end=end)  # 0.6, as validated
    assert version_degradation_check(version_id=healthy.pk) is None
    thin = _version()
    _outcomes(thin, np.array([0] * 60), end=end)  # terrible, but 60 outcomes are not enough
    assert version_degradation_check(version_id=thin.pk) is None
    assert not Alert.objects.filter(kind="model_degraded", context__version_id__in=[healthy.pk, thin.pk]).exists()


def test_maturation_checks_the_versions_it_touched() -> None:
    from trading.models import Alert

    symbol, frame = _symbol(), _bars(400, seed=9)
    store_bars(frame, symbol)
    version = _version(metrics={"direction_hit_rate": 0.99})  # no model is right 99 % of the time live
    _predict(version, symbol, frame.index[:-HORIZON])
    result = outcomes_mature(now=_now(frame))
    assert result.matured == len(frame) - HORIZON
    assert len(result.alerts) == 1
    assert Alert.objects.get(pk=result.alerts[0]).context["version_id"] == version.pk


def test_store_bars_are_the_ingest_workers_bar_points() -> None:
    # guard for the fixtures above: outcomes read exactly what Bar.to_point() writes
    symbol = _symbol()
    t = datetime(2025, 2, 3, 10, 0, tzinfo=UTC)
    one = Bar(symbol, 60, t, *(Decimal("100.5"),) * 4, Decimal(1), Decimal("100.5"), 3)
    get_store().write_batch([one.to_point()])
    loaded = load_bars(symbol=symbol, start=t, end=t + timedelta(minutes=1), fill=False)
    assert loaded.bars["close"].tolist() == [100.5]


class _ClosesOnly:
    """The configured store, refusing full reads: what maturation asks of it is recorded."""

    def __init__(self) -> None:
        self.store = get_store()
        self.asked: list[tuple[tuple[str, ...], str | None]] = []

    def query_fields(self, measurement, start, end, tags, fields, *, require=None, last=None):  # type: ignore[no-untyped-def]
        self.asked.append((tuple(fields), require))
        return self.store.query_fields(measurement, start, end, tags, fields, require=require, last=last)  # type: ignore[attr-defined]

    def query_range(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("maturation read every field of every bar")


def test_maturation_reads_only_the_closes_and_labels_them_with_the_training_code() -> None:
    symbol, frame = _symbol(), _bars(30)
    store_bars(frame, symbol)
    version = _version()
    _predict(version, symbol, frame.index[: len(frame) - HORIZON])
    spy = _ClosesOnly()
    result = outcomes_mature(now=_now(frame), store=spy)
    assert spy.asked == [(("close",), "close")]  # one read for the symbol, the closes only
    assert result.matured == len(frame) - HORIZON
    stored = load_bars(symbol=symbol, start=frame.index[0], end=frame.index[-1] + pd.Timedelta(minutes=1)).bars
    training = make_labels(stored["close"], HORIZON, dead_zone=DEAD_ZONE)
    for o in PredictionOutcome.objects.filter(version=version):
        assert o.forward_return == training.loc[o.bar_time, "forward_return"]
        assert o.realised_label == training.loc[o.bar_time, "label"]


def test_a_stored_bar_without_a_close_is_a_missing_bar() -> None:
    symbol, frame = _symbol(), _bars(30)
    odd = frame.index[12]
    store_bars(frame.drop(index=odd), symbol)
    get_store().write_batch([Point("bars", odd.to_pydatetime(), {"volume": Decimal(1)}, bar_tags(symbol))])
    version = _version()
    _predict(version, symbol, frame.index[5:20])
    outcomes_mature(now=_now(frame))
    covering = {t for t in frame.index[5:20] if t <= odd <= t + pd.Timedelta(minutes=HORIZON)}
    for o in PredictionOutcome.objects.filter(version=version):
        assert (o.status == "pending") == (o.bar_time in covering), o.bar_time
        if o.status == "pending":
            assert o.forward_return is None
            assert "missing" in o.pending_reason or "no stored bar" in o.pending_reason


class _RangeOnly:
    """A store seen through `query_range` only: `timeseries.base.query_fields`'s generic narrowing, the
    reference for a store's own `query_fields`."""

    def __init__(self, store: Any) -> None:
        self.query_range = store.query_range


@pytest.mark.parametrize(
    ("fields", "require", "last"),
    [
        (("close",), "close", None),
        (("close",), "close", 4),  # LIMIT in the query
        (("close", "open"), "close", None),
        (("close", "open"), "close", 4),
        (("open",), "close", 3),
        (("open", "trades"), None, None),
        (("open",), None, 2),
    ],
)
def test_the_stores_narrowed_read_equals_the_full_read_narrowed(fields, require, last) -> None:  # type: ignore[no-untyped-def]
    # maturation's read (InfluxDB in these tests) against the generic narrowing of `query_range`
    store = get_store()
    symbol = _symbol()
    t0 = datetime(2025, 2, 3, 10, 0, tzinfo=UTC)
    points = []
    for i in range(12):
        values: dict[str, Any] = {"open": Decimal("100.25") + i, "trades": i}
        if i % 4 != 1:  # some points without a close
            values["close"] = Decimal("100.123456789") + Decimal(i) / 1000
        points.append(Point("bars", t0 + timedelta(minutes=i), values, bar_tags(symbol)))
    # a second series under the same tags (another tag value), older than the first's newest minutes
    extra = {**bar_tags(symbol), "source": "backfill"}
    points += [Point("bars", t0 + timedelta(minutes=i, seconds=30), {"close": Decimal(i)}, extra) for i in (2, 5)]
    store.write_batch(points)
    args = ("bars", t0, t0 + timedelta(hours=1), bar_tags(symbol), fields)
    own = query_fields(store, *args, require=require, last=last)
    reference = query_fields(_RangeOnly(store), *args, require=require, last=last)
    assert [(p.time, dict(p.fields), dict(p.tags)) for p in own] == [
        (p.time, dict(p.fields), dict(p.tags)) for p in reference
    ]
    assert own, "the case reads something"
    assert all(type(v) is Decimal for p in own for k, v in p.fields.items() if k != "trades")


# --- API, admin and /metrics -------------------------------------------------------------------------------


def _api(user: Any = None) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_outcome_api_serves_live_metrics_outcomes_and_calibration(plain_user) -> None:  # type: ignore[no-untyped-def]
    version = _version()
    end = datetime.now(tz=UTC).replace(second=0, microsecond=0)
    _outcomes(version, np.tile([1, 1, 0], 50), end=end)
    base = f"/api/models/{version.model.name}/versions/{version.version}"
    client = _api(plain_user)
    live = client.get(f"{base}/live-metrics/?last_n=50").json()
    assert live["windows"]["all"]["n_outcomes"] == 150
    assert live["windows"]["last_50"]["n_outcomes"] == 50
    assert live["validation"]["direction_hit_rate"] == 0.6
    page = client.get(f"{base}/outcomes/?status=matured&direction_hit=false&limit=5").json()
    assert page["count"] == 50
    assert {o["direction_hit"] for o in page["results"]} == {False}
    assert page["results"][0]["probabilities"] == {"-1": 0.3, "0": 0.1, "1": 0.6}
    calibration = client.get(f"{base}/calibration/?window=24h&bins=5").json()
    assert calibration["n_outcomes"] == 150
    assert [b["count"] for b in calibration["buckets"]] == [0, 0, 150, 0, 0]
    assert calibration["ece"] == pytest.approx(abs(2 / 3 - 0.6))


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("live-metrics", "last_n=0"),
        ("live-metrics", "bins=1"),
        ("outcomes", "status=done"),
        ("outcomes", "since=yesterday"),
        ("outcomes", "since=2025-01-02T00:00Z&until=2025-01-01T00:00Z"),
        ("outcomes", "signal=2"),
        ("calibration", "window=1y"),
        ("calibration", "bins=500"),
    ],
)
def test_outcome_api_refuses_bad_input(plain_user, path: str, query: str) -> None:  # type: ignore[no-untyped-def]
    version = _version()
    response = _api(plain_user).get(f"/api/models/{version.model.name}/versions/{version.version}/{path}/?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_outcome_api_needs_a_user_and_an_existing_version(plain_user) -> None:  # type: ignore[no-untyped-def]
    version = _version()
    assert _api().get(f"/api/models/{version.model.name}/versions/1/outcomes/").status_code == 401
    missing = _api(plain_user).get(f"/api/models/{version.model.name}/versions/9/live-metrics/")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_admin_shows_outcomes_and_metrics_export_gauges(admin_client, client) -> None:  # type: ignore[no-untyped-def]
    symbol, frame = _symbol(), _bars()
    store_bars(frame, symbol)
    version = _version()
    (prediction,) = _predict(version, symbol, [frame.index[5]])
    outcomes_mature(now=_now(frame))
    outcome = PredictionOutcome.objects.get(prediction=prediction)
    page = admin_client.get(f"/admin/models_registry/prediction/{prediction.pk}/change/")
    assert page.status_code == 200
    assert "matured" in page.content.decode()
    assert admin_client.get(f"/admin/models_registry/predictionoutcome/{outcome.pk}/change/").status_code == 200
    assert admin_client.get("/admin/models_registry/predictionoutcome/").status_code == 200
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    key = f'model="{version.model.name}",stage="none",version="{version.version}"'
    assert f"galfriday_model_outcomes{{{key}}} 1.0" in text
    assert f"galfriday_model_degraded{{{key}}} 0.0" in text
    assert f"galfriday_model_net_return_total{{{key}}} {outcome.net_return!r}" in text
