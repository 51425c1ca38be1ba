"""The Overview and Market pages and their read endpoints, through the Django test client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from dashboard.formatting import format_decimal, format_time
from tests.dashboard import scenario
from trading import performance
from trading.models import EquitySnapshot, RiskLimit

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client, django_user_model):  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user(username="op", password="pw-op-12345", is_staff=True)
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", ["/", "/market/"])
def test_pages_need_a_login(client, path: str) -> None:  # type: ignore[no-untyped-def]
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_overview_renders_the_state_and_the_drawdown_limit_of_the_risk_limits(operator_client) -> None:  # type: ignore[no-untyped-def]
    global_limits = {
        "max_order_notional": 1000,
        "max_position_notional": 5000,
        "max_gross_exposure": 10000,
        "price_band": Decimal("0.05"),
        "max_orders_per_minute": 10,
        "max_data_age_seconds": 10,
        "daily_loss_limit": 500,
        "max_drawdown": Decimal("0.12"),
    }
    RiskLimit.objects.update_or_create(instrument=None, defaults=global_limits)
    response = operator_client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="state-badge"' in body
    assert "12.00 %" in body  # the limit of the global row, not the default 15 %
    assert '"max_drawdown": "0.120000"' in body


def test_market_page_selects_the_requested_symbol_and_fill(operator_client) -> None:  # type: ignore[no-untyped-def]
    s = scenario.build(timezone.now())
    response = operator_client.get(f"/market/?symbol=BTC/USD&fill={s.fill.pk}")
    assert response.status_code == 200
    assert f'"fill": {s.fill.pk}' in response.content.decode()


def test_why_from_a_fill_reaches_the_prediction(operator_client) -> None:  # type: ignore[no-untyped-def]
    s = scenario.build(timezone.now())
    response = operator_client.get(f"/dashboard-api/market/why/?fill={s.fill.pk}")
    assert response.status_code == 200, response.content
    why = response.json()
    assert why["order"]["id"] == s.order.pk
    assert why["risk"]["status"] == "passed"
    assert why["decision"]["capped_by"] == "max_position_notional"
    assert why["decision"]["edge_net_of_cost"] == "-0.00210000"
    assert why["prediction"]["model_name"] == "btc-usd-1m-direction"
    assert why["prediction"]["version"] == 3
    assert [f["name"] for f in why["prediction"]["features"]] == list(scenario.FEATURE_NAMES)
    assert why["prediction"]["probabilities"]["1"] == 0.65
    assert isinstance(why["fill"]["price"], str)  # decimals as strings, never floats


def test_why_of_a_manual_order_says_no_decision_made_it(operator_client) -> None:  # type: ignore[no-untyped-def]
    s = scenario.build(timezone.now())
    s.decision.delete()
    why = operator_client.get(f"/dashboard-api/market/why/?fill={s.fill.pk}").json()
    assert why["decision"] is None
    assert "by hand" in why["no_decision"]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [("fill=999999", 404, "not_found"), ("", 400, "validation_error"), ("fill=1&decision=1", 400, "validation_error")],
)
def test_why_rejects_bad_queries_in_the_error_shape(operator_client, query: str, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    response = operator_client.get(f"/dashboard-api/market/why/?{query}")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_candles_of_an_unknown_symbol_is_a_400(operator_client) -> None:  # type: ignore[no-untyped-def]
    response = operator_client.get("/dashboard-api/market/candles/?symbol=NOPE/USD")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_symbol"


def test_pnl_splits_realised_unrealised_and_fees(operator_client) -> None:  # type: ignore[no-untyped-def]
    scenario.build(timezone.now())
    data = operator_client.get("/api/trading/pnl/").json()
    today = next(p for p in data["periods"] if p["name"] == "today")
    assert Decimal(today["fees"]) == Decimal("6.5")
    assert Decimal(today["realised"]) == 0
    # 0.05 BTC bought at 50,000 and marked at 51,000; no unrealised PnL in the snapshots before today began.
    assert Decimal(today["unrealised"]) == Decimal("50")
    assert Decimal(today["net"]) == Decimal("43.5")
    assert data["positions"][0]["mark"] == "51000.000000000000"


def test_equity_is_bucketed_with_the_worst_drawdown_and_the_limit(operator_client) -> None:  # type: ignore[no-untyped-def]
    scenario.build(timezone.now())
    data = operator_client.get("/api/trading/equity/").json()
    assert data["bucket"] == "hour"
    assert data["max_drawdown"] == "0.150000"  # the global row seeded by the migrations (or the same default)
    assert 24 <= len(data["points"]) <= 25
    assert max(Decimal(p["drawdown"]) for p in data["points"]) == Decimal("0.07407407")


def _snapshots(now: datetime, count: int, step: timedelta) -> None:
    EquitySnapshot.objects.bulk_create(
        EquitySnapshot(
            taken_at=now - step * (count - i), currency="USD", equity=Decimal(1000 + i % 7),
            realised_pnl=Decimal(0), unrealised_pnl=Decimal(0), fees=Decimal(0), high_water_mark=Decimal(1010),
            drawdown=Decimal(i % 7) / Decimal(1000),
        )
        for i in range(count)
    )  # fmt: skip


def test_a_long_equity_window_aggregates_a_sample_of_the_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(performance, "EQUITY_SAMPLE_ROWS", 100)
    now = timezone.now()
    _snapshots(now, 1000, timedelta(minutes=10))  # ~7 days: hourly buckets
    bucket, points = performance.equity_series(currency="USD", since=now - timedelta(days=7), until=now)
    assert bucket == "hour"
    assert 90 <= sum(p.snapshots for p in points) <= 100  # every 10th of the 1,000
    assert all(Decimal(1000) <= p.equity_low <= p.equity <= p.equity_high <= Decimal(1006) for p in points)


def test_a_minute_bucketed_equity_window_aggregates_every_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(performance, "EQUITY_SAMPLE_ROWS", 100)
    now = timezone.now()
    _snapshots(now, 1000, timedelta(seconds=10))
    bucket, points = performance.equity_series(currency="USD", since=now - timedelta(days=1), until=now)
    assert bucket == "minute"
    assert sum(p.snapshots for p in points) == 1000
    assert max(p.drawdown for p in points) == Decimal("0.006")


def test_equity_rejects_an_inverted_window(operator_client) -> None:  # type: ignore[no-untyped-def]
    now = timezone.now()
    response = operator_client.get(
        "/api/trading/equity/", {"since": now.isoformat(), "until": (now - timedelta(days=1)).isoformat()}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_formatting_never_shows_raw_decimals() -> None:
    assert format_decimal(Decimal("12345.678900000000000000"), 2) == "12,345.68"
    assert format_decimal(Decimal("-0.0000001"), 2) == "0.00"
    assert format_decimal(None, 2) == "–"
    assert format_time(datetime(2026, 12, 7, 18, 20, 15, 999, tzinfo=UTC)) == "2026-12-07 18:20:15 UTC"


def test_a_reader_sees_the_trading_switches_disabled(client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    client.force_login(django_user_model.objects.create_user(username="reader", password="pw-reader-123"))
    body = client.get("/").content.decode()
    assert body.count('disabled title="traders only"') == 3
    assert '"can_trade": false' in body
    # and the API refuses the reader anyway (the page is not the gate)
    assert client.post("/api/trading/state/halt/", {"reason": "x"}, content_type="application/json").status_code == 403
