"""The decision pipeline: one closed bar → one decision, sized, risk-checked and handed to execution; a replay
never trades twice; stale bars expire; spot never goes short."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.trading.factories import equity_snapshot
from timeseries import Point
from timeseries.relational import RelationalStore
from trading.accounts import equity_snapshot_take
from trading.models import Decision, EquitySnapshot, Order
from trading.pipeline import (
    SizingPolicy,
    annualised_volatility,
    decide_on_bar,
    order_quantity,
    target_quantity,
)
from trading.predictor import Prediction
from trading.tasks import decide_on_bar as decide_on_bar_task

pytestmark = pytest.mark.django_db


def write_bars(closes: list[str], *, end: datetime, symbol: str = "BTC/USD") -> None:
    start = end - timedelta(minutes=len(closes) - 1)
    RelationalStore().write_batch(
        [
            Point(
                "bars",
                start + timedelta(minutes=i),
                {"close": Decimal(c), "open": Decimal(c), "high": Decimal(c), "low": Decimal(c), "trades": 1},
                {"symbol": symbol, "interval": "1m"},
            )
            for i, c in enumerate(closes)
        ]
    )


@pytest.fixture(autouse=True)
def _relational_time_series(settings) -> None:  # type: ignore[no-untyped-def]
    """Bars live in the relational store here (the InfluxDB adapter has its own tests against the real server);
    the served model is the momentum stand-in of tests.trading.doubles."""
    settings.INFLUXDB_URL = ""
    settings.GALFRIDAY_PREDICTOR = "tests.trading.doubles.MomentumTestModel"


@pytest.fixture
def bar_time() -> datetime:
    """The start of the bar that just closed."""
    now = timezone.now().replace(second=0, microsecond=0)
    return now - timedelta(minutes=1)


@pytest.fixture
def account(market):  # type: ignore[no-untyped-def]
    equity_snapshot_take(marks={"BTC/USD": Decimal("100")})
    return market


def rising(n: int = 61) -> list[str]:
    return [f"{100 + i * 0.1:.1f}" for i in range(n)]  # +6% over the hour, +1.5% over the last 15 bars


def test_rising_market_buys_once_through_risk_and_execution(  # type: ignore[no-untyped-def]
    account, gateway, bar_time, django_capture_on_commit_callbacks
) -> None:
    write_bars(rising(), end=bar_time)
    with django_capture_on_commit_callbacks(execute=True):
        decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1, seconds=2))
    assert decision.status == Decision.Status.ORDERED
    assert decision.signal == 1
    assert (decision.model_version, decision.model_name, decision.model_version_number) == (
        "test-momentum v1",
        "test-momentum",
        1,
    )
    assert decision.probabilities["1"] > decision.probabilities["-1"]
    assert decision.expected_edge is not None
    assert decision.expected_edge > decision.cost > 0
    assert decision.capped_by == "signal"
    order = decision.order
    assert order is not None
    assert (order.side, order.order_type, order.state) == ("buy", "market", "submitted")
    assert order.quantity == decision.order_qty > 0
    assert gateway == [("submit", order.pk)]

    with django_capture_on_commit_callbacks(execute=True):
        again = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1, seconds=3))
    assert again.pk == decision.pk
    assert Order.objects.count() == 1
    assert gateway == [("submit", order.pk)]


def test_task_runs_the_pipeline_and_is_safe_twice(account, gateway, bar_time) -> None:  # type: ignore[no-untyped-def]
    write_bars(rising(), end=bar_time)
    first = decide_on_bar_task("BTC/USD", bar_time.isoformat())
    second = decide_on_bar_task("BTC/USD", bar_time.isoformat())
    assert first == second
    assert Order.objects.count() == (1 if first["status"] == "ordered" else 0)


def test_stale_bar_expires_without_trading(account, gateway, bar_time) -> None:  # type: ignore[no-untyped-def]
    write_bars(rising(), end=bar_time)
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=5))
    assert decision.status == Decision.Status.EXPIRED
    assert Order.objects.count() == 0
    assert gateway == []


def test_flat_market_makes_no_trade(account, gateway, bar_time) -> None:  # type: ignore[no-untyped-def]
    write_bars(["100.0"] * 61, end=bar_time)
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))
    assert (decision.status, decision.signal) == (Decision.Status.NO_TRADE, 0)
    assert Order.objects.count() == 0


def test_sell_signal_without_a_position_stays_flat_on_spot(account, gateway, bar_time) -> None:  # type: ignore[no-untyped-def]
    write_bars(list(reversed(rising())), end=bar_time)
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))
    assert decision.signal == -1
    assert decision.status == Decision.Status.NO_TRADE
    assert decision.target_qty == 0
    assert Order.objects.count() == 0


def test_missing_equity_skips_with_a_reason(market, gateway, bar_time) -> None:  # type: ignore[no-untyped-def]
    write_bars(rising(), end=bar_time)
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))
    assert decision.status == Decision.Status.SKIPPED
    assert "equity" in decision.reason


def test_sizing_uses_the_equity_of_the_account_currency_only(account, gateway, bar_time) -> None:  # type: ignore[no-untyped-def]
    """A newer equity snapshot in another currency (a second valuation, say) is not the account's equity: the
    pipeline sizes with the latest snapshot in GALFRIDAY_ACCOUNT_CURRENCY, the same one the risk check reads."""
    usd = EquitySnapshot.objects.filter(currency="USD").latest("taken_at").equity
    equity_snapshot(equity="1", currency="EUR", at=timezone.now() + timedelta(seconds=1))
    write_bars(rising(), end=bar_time)
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1, seconds=2))
    assert decision.status == Decision.Status.ORDERED
    assert decision.equity == usd > 1


def test_sizing_math() -> None:
    policy = SizingPolicy(fraction=Decimal("0.10"), target_volatility=Decimal("0.5"), max_scale=Decimal("2"))
    buy = Prediction(1, 0.5, "m")
    # 10% of 10,000 at half confidence = 500 USD; volatility 1.0 vs target 0.5 halves it: 250 USD at 100 = 2.5.
    assert target_quantity(
        prediction=buy, equity=Decimal(10000), price=Decimal(100), policy=policy, volatility=Decimal("1.0")
    ) == Decimal("2.5")
    # Low volatility scales up, capped at 2x.
    assert target_quantity(
        prediction=buy, equity=Decimal(10000), price=Decimal(100), policy=policy, volatility=Decimal("0.01")
    ) == Decimal("10")
    assert target_quantity(
        prediction=Prediction(-1, 1.0, "m"), equity=Decimal(10000), price=Decimal(100), policy=policy, volatility=None
    ) == Decimal(0)


def test_order_quantity_respects_lot_precision_and_minimums(market) -> None:  # type: ignore[no-untyped-def]
    assert order_quantity(instrument=market, current=Decimal(0), target=Decimal("1.123456789"), price=Decimal(100)) == (
        Decimal("1.12345678")
    )
    assert order_quantity(instrument=market, current=Decimal(1), target=Decimal("1.00001"), price=Decimal(100)) == 0
    assert order_quantity(instrument=market, current=Decimal(1), target=Decimal("0.5"), price=Decimal(100)) == Decimal(
        "-0.5"
    )


def test_annualised_volatility_of_a_constant_series_is_zero_and_needs_data() -> None:
    assert annualised_volatility([Decimal(100)] * 10) == 0
    assert annualised_volatility([Decimal(100)]) is None
    assert annualised_volatility([Decimal(100), Decimal(101), Decimal(100), Decimal(101)]) > 0


def test_orders_are_sized_within_the_risk_limits(account, gateway, bar_time, settings) -> None:  # type: ignore[no-untyped-def]
    from trading.models import RiskLimit

    RiskLimit.objects.filter(instrument__isnull=True).update(max_order_notional=Decimal("50"))
    settings.GALFRIDAY_SIZING_FRACTION = "1.0"
    write_bars(rising(), end=bar_time)
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))
    assert decision.status == Decision.Status.ORDERED
    assert decision.order is not None
    assert decision.order.state == "submitted"
    assert decision.order.quantity * Decimal("100") <= Decimal("50")


def test_decisions_are_listed_over_the_api_with_filters(account, gateway, bar_time, plain_user) -> None:  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    write_bars(rising(), end=bar_time)
    decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))
    client = APIClient()
    client.force_authenticate(plain_user)
    body = client.get("/api/trading/decisions/", {"symbol": "BTC/USD"}).json()
    [row] = body["results"]
    assert (row["symbol"], row["signal"], row["status"]) == ("BTC/USD", 1, "ordered")
    assert row["order_id"] is not None
    # the decision explains itself: which model and version, its probabilities, the edge against the cost, the cap
    assert (row["model_version"], row["model_name"], row["model_version_number"]) == (
        "test-momentum v1",
        "test-momentum",
        1,
    )
    assert set(row["probabilities"]) == {"-1", "0", "1"}
    assert Decimal(row["expected_edge"]) > Decimal(row["cost"]) > 0
    assert row["capped_by"] == "signal"
    # and its order links back to it
    order = client.get(f"/api/trading/orders/{row['order_id']}/").json()
    assert order["decision_id"] == row["id"]
    listed = client.get("/api/trading/orders/").json()["results"]
    assert [o["decision_id"] for o in listed] == [row["id"]]
    assert client.get("/api/trading/decisions/", {"status": "expired"}).json()["results"] == []
    assert client.get("/api/trading/decisions/", {"status": "nonsense"}).status_code == 400


def served(signal: int, confidence: float, expected_return: float | None) -> Prediction:
    return Prediction(
        signal,
        confidence,
        "scripted v7",
        probabilities={-1: 0.1, 0: 0.2, 1: 0.7},
        expected_return=expected_return,
        model_name="scripted",
        version=7,
    )


@pytest.fixture
def scripted(settings):  # type: ignore[no-untyped-def]
    from tests.trading.doubles import ScriptedModel

    settings.GALFRIDAY_PREDICTOR = "tests.trading.doubles.ScriptedModel"
    yield ScriptedModel
    ScriptedModel.prediction = Prediction(0, 0.0, "none", reason="nothing scripted")


def test_an_edge_below_the_round_trip_cost_does_not_trade(account, gateway, bar_time, scripted) -> None:  # type: ignore[no-untyped-def]
    write_bars(rising(), end=bar_time)
    # Round trip at the default taker fee (0.40 %) and 5 bps slippage each way: 0.90 % plus the spread.
    scripted.prediction = served(1, 0.9, expected_return=0.0085)
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))
    assert decision.status == Decision.Status.NO_TRADE
    assert "does not beat the round-trip cost" in decision.reason
    assert decision.expected_edge == Decimal("0.0085")
    assert decision.cost >= Decimal("0.009")
    assert decision.target_qty > 0  # the signal wanted a position; the cost refused it
    assert Order.objects.count() == 0

    later = bar_time + timedelta(minutes=1)
    write_bars(rising(62), end=later)
    scripted.prediction = served(1, 0.9, expected_return=0.02)
    decision = decide_on_bar(symbol="BTC/USD", bar_time=later, now=later + timedelta(minutes=1))
    assert decision.status == Decision.Status.ORDERED
    assert Order.objects.count() == 1


def test_no_expected_return_means_no_entry(account, gateway, bar_time, scripted) -> None:  # type: ignore[no-untyped-def]
    write_bars(rising(), end=bar_time)
    scripted.prediction = served(1, 0.9, expected_return=None)
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))
    assert decision.status == Decision.Status.NO_TRADE
    assert "no expected return" in decision.reason


def test_a_rebalance_inside_the_no_trade_band_does_not_trade(account, gateway, bar_time, scripted, settings) -> None:  # type: ignore[no-untyped-def]
    write_bars(rising(), end=bar_time)
    scripted.prediction = served(1, 0.9, expected_return=0.05)
    settings.GALFRIDAY_NO_TRADE_BAND = "0.5"  # half of equity: the ~6 % position the signal asks for is inside it
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))
    assert decision.status == Decision.Status.NO_TRADE
    assert "inside the no-trade band" in decision.reason
    assert Order.objects.count() == 0

    later = bar_time + timedelta(minutes=1)
    write_bars(rising(62), end=later)
    settings.GALFRIDAY_NO_TRADE_BAND = "0.001"
    decision = decide_on_bar(symbol="BTC/USD", bar_time=later, now=later + timedelta(minutes=1))
    assert decision.status == Decision.Status.ORDERED


def test_the_band_never_goes_below_a_multiple_of_the_exchange_minimum() -> None:
    from trading.costs import NoTradeBand

    band = NoTradeBand(fraction=Decimal("0"), min_multiple=Decimal("3"))
    assert band.threshold(equity=Decimal(1000), price=Decimal(100), ordermin=Decimal("0.1"), costmin=None) == 30
    assert band.threshold(equity=Decimal(1000), price=Decimal(100), ordermin=Decimal("0.001"), costmin=Decimal(5)) == 15


def test_a_symbol_no_model_serves_is_not_traded_and_the_decision_says_why(account, gateway, bar_time, scripted) -> None:  # type: ignore[no-untyped-def]
    write_bars(rising(), end=bar_time)
    scripted.prediction = Prediction(0, 0.0, "none", reason="no model serves BTC/USD: m v3 failed psr = 0.41")
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))
    assert decision.status == Decision.Status.NO_TRADE
    assert decision.reason == "no model serves BTC/USD: m v3 failed psr = 0.41"
    assert Order.objects.count() == 0


def test_the_admin_shows_a_decisions_edge_cost_and_reason_and_an_orders_decision(  # type: ignore[no-untyped-def]
    account, gateway, bar_time, admin_client
) -> None:
    write_bars(rising(), end=bar_time)
    decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1))
    page = admin_client.get("/admin/trading/decision/")
    assert page.status_code == 200
    assert b"test-momentum v1" in page.content
    assert decision.order is not None
    order_page = admin_client.get(f"/admin/trading/order/{decision.order.pk}/change/")
    assert order_page.status_code == 200
    assert decision.decision_id.encode() in order_page.content
