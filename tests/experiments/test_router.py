"""The experiment router in the decision pipeline: split routing is a deterministic hash within the allocation
(binomial bound), each decision is attributed to its arm and a replay goes to the same arm and trades once; shadow
treatments predict on the champion's decisions (same decision id, so their outcomes pair) and never trade; a
broken router trips the sample-ratio check; a guardrail breach stops the experiment and the treatment's trading."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from experiments.intake import experiments_intake
from experiments.models import Arm, ExperimentObservation, Status
from experiments.results import experiment_results
from experiments.router import ActiveExperiment, ArmRoute, active_for_model, route_arm, router_cache_clear
from experiments.services import experiment_create, experiment_start
from experiments.tasks import shadow_predict_task
from models_registry.models import Prediction
from models_registry.services import model_version_promote
from tests.experiments.support import BARS, cheap_model, served_version
from tests.models_registry.conftest import store_bars
from tests.models_registry.factories import make_model, registry_settings  # noqa: F401
from tests.trading.doubles import RecordingGateway
from tests.trading.factories import InstrumentFactory
from trading.accounts import balance_set, equity_snapshot_take
from trading.instruments import market_quote_set
from trading.models import Alert, Decision, Order
from trading.pipeline import decide_on_bar

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]

Z = 3.29  # two-sided 99.9 %
FIRST = 70  # decisions before the guardrail trips


def _routes(shares: list[int], experiment_id: int = 7) -> ActiveExperiment:
    arms, cumulative = [], 0
    for i, share in enumerate(shares):
        cumulative += share
        role = Arm.Role.CONTROL if i == 0 else Arm.Role.TREATMENT
        arms.append(ArmRoute(i + 1, f"arm-{i}", role, 100 + i, i + 1, cumulative * 100))
    return ActiveExperiment(experiment_id, "m", "split", Status.RUNNING, tuple(arms))


def test_split_routing_is_deterministic_and_within_the_allocation() -> None:
    active = _routes([50, 30, 20])
    start = timezone.now().replace(second=0, microsecond=0)
    times = [start + timedelta(minutes=i) for i in range(20_000)]
    first = [route_arm(active, "BTC/USD", t).name for t in times]
    assert first == [route_arm(active, "BTC/USD", t).name for t in times]  # a replay goes to the same arm
    counts = Counter(first)
    n = len(times)
    for share, name in ((0.5, "arm-0"), (0.3, "arm-1"), (0.2, "arm-2")):
        assert abs(counts[name] - n * share) <= Z * math.sqrt(n * share * (1 - share)), counts
    other = [route_arm(_routes([50, 30, 20], experiment_id=8), "BTC/USD", t).name for t in times]
    assert sum(a != b for a, b in zip(first, other, strict=True)) > n // 3  # each experiment hashes anew


def _observe(experiment, arm: Arm, n: int, start: int = 0) -> None:  # type: ignore[no-untyped-def]
    base = timezone.now().replace(second=0, microsecond=0)
    ExperimentObservation.objects.bulk_create(
        ExperimentObservation(
            experiment=experiment, arm=arm, version_id=arm.version_id, decision_key=f"BTC/USD:{start + i}",
            symbol="BTC/USD", bar_time=base + timedelta(minutes=start + i), latency_ms=2.0,
        )
        for i in range(n)
    )  # fmt: skip


def _split(model, **overrides):  # type: ignore[no-untyped-def]
    fields = {
        "model_name": model.name,
        "name": "split",
        "mode": "split",
        "control_allocation_percent": "50",
        "treatments": [{"version": 2, "allocation_percent": "50"}],
        "minimum_sample": 100,
        "actor": "user:tester",
        "reason": "split test",
        **overrides,
    }
    experiment = experiment_create(**fields)
    return experiment_start(experiment_id=experiment.pk, actor="user:tester", reason="go")


def test_a_broken_router_trips_the_sample_ratio_check() -> None:
    model, _ = cheap_model(2)
    experiment = _split(model)
    control, treatment = experiment.arms.order_by("position")
    broken = _routes([56, 44], experiment_id=experiment.pk)  # sends 56 % where 50 % was allocated
    start = timezone.now().replace(second=0, microsecond=0)
    sent = Counter(route_arm(broken, "BTC/USD", start + timedelta(minutes=i)).role for i in range(4000))
    _observe(experiment, control, sent[Arm.Role.CONTROL])
    _observe(experiment, treatment, sent[Arm.Role.TREATMENT], start=10_000)
    experiments_intake()
    results = experiment_results(experiment.pk)
    assert results["srm"]["status"] == "flag", results["srm"]
    assert results["srm"]["p_value"] < 0.001
    assert results["decision"]["state"] == "collecting"
    assert "sample ratio mismatch" in results["decision"]["reason"]
    alert = Alert.objects.get(kind="experiment_srm")  # an operator is told, once
    assert alert.context["experiment_id"] == experiment.pk
    experiments_intake()
    assert Alert.objects.filter(kind="experiment_srm").count() == 1


def test_a_correct_router_passes_the_sample_ratio_check() -> None:
    model, _ = cheap_model(2)
    experiment = _split(model)
    control, treatment = experiment.arms.order_by("position")
    active = active_for_model(model.name)
    assert active is not None
    start = timezone.now().replace(second=0, microsecond=0)
    sent = Counter(route_arm(active, "BTC/USD", start + timedelta(minutes=i)).role for i in range(4000))
    _observe(experiment, control, sent[Arm.Role.CONTROL])
    _observe(experiment, treatment, sent[Arm.Role.TREATMENT], start=10_000)
    experiments_intake()
    assert experiment_results(experiment.pk)["srm"]["status"] in ("ok", "warn")


# --- through the decision pipeline ---------------------------------------------------------------------------

BAR_TIMES = [t.to_pydatetime() for t in BARS.index[-100:]]


@pytest.fixture
def market(settings):  # type: ignore[no-untyped-def]
    """Bars in the relational store, the router as the predictor, a recording gateway, a quoted instrument and
    an account; the model: v1 (champion) stays flat, v2 buys with an edge well above the costs."""
    settings.INFLUXDB_URL = ""
    settings.GALFRIDAY_PREDICTOR = "experiments.router.ExperimentRouter"
    settings.GALFRIDAY_EXECUTION_GATEWAY = "tests.trading.doubles.RecordingGateway"
    RecordingGateway.calls.clear()
    router_cache_clear()
    store_bars(BARS)
    model = make_model(gates={})
    served_version(model, "flat")
    served_version(model, "buy")
    model_version_promote(model_name=model.name, version=1, reason="champion", actor="test")
    settings.MODELS_REGISTRY_SYMBOL_MODELS = {"BTC/USD": model.name}
    instrument = InstrumentFactory()
    last = Decimal(f"{BARS['close'].iloc[-1]:.1f}")
    market_quote_set(instrument=instrument, bid=last - Decimal("0.1"), ask=last + Decimal("0.1"), at=timezone.now())
    balance_set(asset="USD", total=Decimal("100000"))
    equity_snapshot_take(marks={"BTC/USD": last})
    return model


def _decide(bar_time):  # type: ignore[no-untyped-def]
    return decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))


def test_split_decisions_go_to_their_arm_trade_as_it_and_a_replay_trades_once(  # type: ignore[no-untyped-def]
    market, django_capture_on_commit_callbacks
) -> None:
    experiment = _split(market, max_latency_ms=1e-6, minimum_sample=10_000)
    active = active_for_model(market.name)
    assert active is not None
    with django_capture_on_commit_callbacks(execute=True):
        decisions = [_decide(t) for t in BAR_TIMES[:FIRST]]
    arms = {a.pk: a for a in experiment.arms.all()}
    by_arm = Counter()
    for t, decision in zip(BAR_TIMES[:FIRST], decisions, strict=True):
        arm = route_arm(active, "BTC/USD", t)
        by_arm[arm.role] += 1
        assert decision.model_version_number == arm.version  # attributed to the arm that decided
        if arm.role == Arm.Role.TREATMENT:
            assert decision.signal == 1
            assert decision.order is not None  # the treatment's orders are real
        else:
            assert decision.order is None  # the flat champion does not trade
    assert by_arm[Arm.Role.TREATMENT] >= 20  # binomial(70, 1/2) below 20: p ~ 1e-4
    trading = {a["role"]: a["trading"] for a in experiment_results(experiment.pk)["arms"]}
    assert (trading["treatment"]["decisions"], trading["treatment"]["orders"]) == (by_arm[Arm.Role.TREATMENT],) * 2
    assert (trading["control"]["decisions"], trading["control"]["orders"]) == (by_arm[Arm.Role.CONTROL], 0)
    observations = ExperimentObservation.objects.filter(experiment=experiment)
    assert observations.count() == FIRST
    assert {o.arm_id for o in observations} == set(arms)
    orders = Order.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        again = [_decide(t) for t in BAR_TIMES[:20]]
    assert [d.pk for d in again] == [d.pk for d in decisions[:20]]
    assert (Order.objects.count(), observations.count()) == (orders, FIRST)

    # Every treatment prediction took longer than the (absurd) latency guardrail: the experiment stops at once,
    # an alert is raised, and from the next decision the champion alone decides.
    with django_capture_on_commit_callbacks(execute=True):  # the stop commits: routers are told
        experiments_intake()
    experiment.refresh_from_db()
    assert (experiment.status, experiment.stopped_guardrail) == (Status.STOPPED, "max_latency_ms")
    alert = Alert.objects.get(kind="experiment_guardrail")
    assert alert.context["experiment_id"] == experiment.pk
    with django_capture_on_commit_callbacks(execute=True):
        later = [_decide(t) for t in BAR_TIMES[FIRST:]]
    assert {d.model_version_number for d in later} == {1}
    assert Order.objects.count() == orders
    assert not Decision.objects.filter(bar_time__in=BAR_TIMES[FIRST:], model_version_number=2).exists()


def test_shadow_treatments_predict_on_the_champions_decisions_and_never_trade(  # type: ignore[no-untyped-def]
    market, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    handed: list[tuple[int, str]] = []
    monkeypatch.setattr("experiments.router.shadow_handoff", lambda e, k: handed.append((e, k)))
    experiment = experiment_create(
        model_name=market.name, name="shadow", treatments=[{"version": 2}], actor="user:tester", reason="shadow"
    )
    experiment_start(experiment_id=experiment.pk, actor="user:tester", reason="go")
    with django_capture_on_commit_callbacks(execute=True):
        decisions = [_decide(t) for t in BAR_TIMES[:10]]
    assert {d.model_version_number for d in decisions} == {1}
    keys = [f"BTC/USD:{t.isoformat()}" for t in BAR_TIMES[:10]]
    assert handed == [(experiment.pk, k) for k in keys]  # after each decision committed
    for experiment_id, key in handed[:7]:
        assert shadow_predict_task(experiment_id=experiment_id, decision_key=key)["recorded"] == 1
        assert shadow_predict_task(experiment_id=experiment_id, decision_key=key)["recorded"] == 0  # a replay
    # the last three hand-offs were lost (a worker died): the intake predicts them once they are overdue
    assert experiments_intake().caught_up == 0
    assert experiments_intake(now=timezone.now() + timedelta(minutes=3)).caught_up == 3
    treatment = experiment.arms.get(role=Arm.Role.TREATMENT)
    shadowed = Prediction.objects.filter(version_id=treatment.version_id).order_by("bar_time")
    assert [p.decision_id for p in shadowed] == keys  # the champion's decision ids: outcomes pair up
    assert {p.signal for p in shadowed} == {1}  # it would buy...
    assert Order.objects.count() == 0  # ...but only the (flat) champion trades
    assert not Decision.objects.filter(model_version_number=2).exists()
    assert ExperimentObservation.objects.filter(experiment=experiment).count() == 20
    with django_capture_on_commit_callbacks(execute=True):
        [_decide(t) for t in BAR_TIMES[:10]]  # replayed decisions
    assert len(handed) == 10
    assert ExperimentObservation.objects.filter(experiment=experiment).count() == 20
