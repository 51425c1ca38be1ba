"""Write endpoints: manual orders (400s with nothing written, 422 risk rejections), cancels, the kill switch,
risk limits; permissions for traders, plain users and staff; admin actions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from core.audit import audit_trail
from tests.trading.factories import placed_order
from trading.models import Alert, Order, OrderEvent, RiskLimit
from trading.permissions import TRADERS_GROUP
from trading.selectors import trading_state_get

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def trader(django_user_model):  # type: ignore[no-untyped-def]
    user = django_user_model.objects.create_user(username="tess", password="pw-trader-123")
    user.groups.add(Group.objects.get_or_create(name=TRADERS_GROUP)[0])
    return user


def client_for(user: Any) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


ORDER = {"symbol": "BTC/USD", "side": "buy", "order_type": "limit", "quantity": "1", "limit_price": "100.0"}


def test_a_trader_places_a_manual_order_that_passes_risk(
    market, trader, gateway, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(trader).post("/api/trading/orders/create/", ORDER, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == "submitted"
    assert body["client_order_id"].startswith("manual-")
    assert gateway == [("submit", body["id"])]
    events = OrderEvent.objects.filter(order_id=body["id"]).order_by("sequence")
    assert [(e.kind, e.source, e.actor) for e in events] == [
        ("created", "operator", "user:tess"),
        ("submitted", "operator", "user:tess"),
    ]


def test_the_same_client_order_id_twice_returns_the_same_order(market, trader, gateway) -> None:  # type: ignore[no-untyped-def]
    api = client_for(trader)
    first = api.post("/api/trading/orders/create/", {**ORDER, "client_order_id": "mine-1"}, format="json")
    again = api.post("/api/trading/orders/create/", {**ORDER, "client_order_id": "mine-1"}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = api.post(
        "/api/trading/orders/create/", {**ORDER, "client_order_id": "mine-1", "quantity": "2"}, format="json"
    )
    assert other.status_code == 409
    assert Order.objects.count() == 1


def test_a_risk_rejection_answers_422_with_every_reason_and_keeps_the_rejected_order(market, trader, gateway) -> None:  # type: ignore[no-untyped-def]
    response = client_for(trader).post(
        "/api/trading/orders/create/", {**ORDER, "quantity": "150", "limit_price": "120.0"}, format="json"
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "risk_rejected"
    assert {f["code"] for f in error["details"]["failures"]} >= {"max_order_notional", "price_band"}
    order = Order.objects.get(pk=error["details"]["order_id"])
    assert order.state == "rejected"
    assert gateway == []


@pytest.mark.parametrize(
    ("payload", "status", "code", "where"),
    [
        ({**ORDER, "quantity": "0.00001"}, 400, "below_ordermin", "problems"),
        ({**ORDER, "limit_price": "100.05"}, 400, "price_off_tick", "problems"),
        ({**ORDER, "quantity": "0.001"}, 400, "below_costmin", "problems"),
        ({**ORDER, "quantity": "0.00000000001"}, 400, "validation_error", "quantity"),  # more places than stored
        ({**ORDER, "quantity": "-1"}, 400, "validation_error", "quantity"),
        ({**ORDER, "quantity": "0"}, 400, "validation_error", "quantity"),
        ({**ORDER, "quantity": "1e15"}, 400, "validation_error", "quantity"),
        ({**ORDER, "quantity": "NaN"}, 400, "validation_error", "quantity"),
        ({**ORDER, "limit_price": "-5"}, 400, "validation_error", "limit_price"),
        ({**ORDER, "symbol": "NOPE/USD"}, 400, "unknown_symbol", "symbol"),
        ({**ORDER, "side": "hold"}, 400, "validation_error", "side"),
        ({**ORDER, "order_type": "market"}, 400, "validation_error", "limit_price"),
        ({k: v for k, v in ORDER.items() if k != "quantity"}, 400, "validation_error", "quantity"),
        ({**ORDER, "limit_price": None}, 400, "validation_error", "limit_price"),
        (
            {**ORDER, "post_only": True, "order_type": "market", "limit_price": None},
            400,
            "validation_error",
            "post_only",
        ),
    ],
)
def test_bad_input_is_a_clear_400_and_writes_nothing(market, trader, gateway, payload, status, code, where) -> None:  # type: ignore[no-untyped-def]
    response = client_for(trader).post("/api/trading/orders/create/", payload, format="json")
    assert response.status_code == status, response.json()
    error = response.json()["error"]
    assert error["code"] == code
    assert where in error["details"]
    assert error["message"]
    assert not Order.objects.exists()
    assert not OrderEvent.objects.exists()


def test_malformed_json_is_a_400(market, trader) -> None:  # type: ignore[no-untyped-def]
    api = client_for(trader)
    broken = api.post("/api/trading/orders/create/", "{not json", content_type="application/json")
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "malformed_request")
    listed = api.post("/api/trading/orders/create/", "[1, 2]", content_type="application/json")
    assert (listed.status_code, listed.json()["error"]["code"]) == (400, "malformed_request")
    assert not Order.objects.exists()


def test_cancel_one_and_cancel_all(market, trader, gateway, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    one, two, unsent = (
        placed_order(instrument=market),
        placed_order(instrument=market),
        placed_order(instrument=market, submit=False),
    )
    api = client_for(trader)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/trading/orders/{one.pk}/cancel/", {"reason": "changed my mind"}, format="json")
    assert response.status_code == 200
    assert response.json()["state"] == "pending_cancel"
    assert gateway == [("cancel", one.pk)]
    with django_capture_on_commit_callbacks(execute=True):
        sweep = api.post("/api/trading/orders/cancel-all/", {}, format="json").json()
    assert sweep == {"canceled": [unsent.pk], "pending_cancel": [two.pk], "already_pending": [one.pk]}
    assert gateway == [("cancel", one.pk), ("cancel", two.pk)]
    filled_or_gone = api.post(f"/api/trading/orders/{unsent.pk}/cancel/", {}, format="json")
    assert (filled_or_gone.status_code, filled_or_gone.json()["error"]["code"]) == (409, "illegal_order_transition")
    assert api.post("/api/trading/orders/999999/cancel/", {}, format="json").status_code == 404


def test_halt_reduce_resume_need_a_reason(market, trader, gateway) -> None:  # type: ignore[no-untyped-def]
    open_order = placed_order(instrument=market)
    api = client_for(trader)
    missing = api.post("/api/trading/state/halt/", {}, format="json")
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "validation_error")
    assert "reason" in missing.json()["error"]["details"]
    assert api.post("/api/trading/state/halt/", {"reason": "   "}, format="json").status_code == 400
    assert trading_state_get().state == "active"

    halted = api.post("/api/trading/state/halt/", {"reason": "fat finger"}, format="json")
    assert halted.status_code == 200
    body = halted.json()
    assert body["state"]["state"] == "halted"
    assert body["sweep"]["pending_cancel"] == [open_order.pk]
    assert body["alert_id"] == Alert.objects.get().pk
    assert api.post("/api/trading/state/reduce/", {"reason": "unwind"}, format="json").json()["state"] == "reducing"
    resumed = api.post("/api/trading/state/resume/", {"reason": "all clear"}, format="json").json()
    assert (resumed["state"], resumed["changed_by"], resumed["reason"]) == ("active", "user:tess", "all clear")


@pytest.mark.parametrize(
    ("method", "url", "payload"),
    [
        ("post", "/api/trading/orders/create/", ORDER),
        ("post", "/api/trading/orders/cancel-all/", {}),
        ("post", "/api/trading/state/halt/", {"reason": "x"}),
        ("post", "/api/trading/state/reduce/", {"reason": "x"}),
        ("post", "/api/trading/state/resume/", {"reason": "x"}),
    ],
)
def test_trading_actions_are_for_traders_only(market, plain_user, staff_user, method, url, payload) -> None:  # type: ignore[no-untyped-def]
    for user in (plain_user, staff_user):
        response = getattr(client_for(user), method)(url, payload, format="json")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
    assert getattr(APIClient(), method)(url, payload, format="json").status_code == 401
    assert not Order.objects.exists()
    assert trading_state_get().state == "active"


class TestRiskLimitsApi:
    def test_everyone_authenticated_reads_and_only_staff_change(self, market, plain_user, trader, staff_user) -> None:  # type: ignore[no-untyped-def]
        listed = client_for(plain_user).get("/api/trading/risk-limits/").json()["results"]
        assert listed[0]["symbol"] is None
        assert D(listed[0]["max_drawdown"]) == D("0.15")
        change = {"symbol": "BTC/USD", "reason": "new pair", "max_order_notional": "500"}
        for user in (plain_user, trader):
            assert client_for(user).post("/api/trading/risk-limits/update/", change, format="json").status_code == 403
        response = client_for(staff_user).post("/api/trading/risk-limits/update/", change, format="json")
        assert response.status_code == 200, response.json()
        assert response.json()["max_order_notional"] == "500.000000000000"
        row = RiskLimit.objects.get(instrument=market)
        assert [(e.actor, e.reason) for e in audit_trail(row)] == [("user:staff", "new pair")]

    @pytest.mark.parametrize(
        "change",
        [
            {"symbol": None, "reason": "x", "max_drawdown": "1.2"},
            {"symbol": None, "reason": "x", "max_drawdown": "0"},
            {"symbol": None, "reason": "x", "max_order_notional": "-5"},
            {"symbol": "BTC/USD", "reason": "x", "daily_loss_limit": "10"},
            {"symbol": "NOPE/USD", "reason": "x", "max_order_notional": "5"},
            {"symbol": None, "max_order_notional": "5"},
        ],
    )
    def test_bad_limits_are_400_and_change_nothing(self, market, staff_user, change) -> None:  # type: ignore[no-untyped-def]
        before = list(RiskLimit.objects.values())
        response = client_for(staff_user).post("/api/trading/risk-limits/update/", change, format="json")
        assert response.status_code == 400, response.json()
        assert list(RiskLimit.objects.values()) == before


class TestAdmin:
    def test_trader_admin_cancels_orders_and_halts(self, market, trader, gateway) -> None:  # type: ignore[no-untyped-def]
        from django.test import Client

        trader.is_staff = True
        trader.is_superuser = True
        trader.save()
        order = placed_order(instrument=market)
        browser = Client()
        browser.force_login(trader)
        response = browser.post(
            "/admin/trading/order/", {"action": "cancel_orders", "_selected_action": [order.pk]}, follow=True
        )
        assert response.status_code == 200
        order.refresh_from_db()
        assert order.state == "pending_cancel"
        browser.post("/admin/trading/order/", {"action": "halt_trading", "_selected_action": [order.pk]}, follow=True)
        assert trading_state_get().state == "halted"
        assert browser.get(f"/admin/trading/order/{order.pk}/history/").status_code == 200

    def test_staff_without_the_traders_group_cannot_halt_from_the_admin(self, market, admin_user) -> None:  # type: ignore[no-untyped-def]
        from django.contrib.auth.models import Permission
        from django.test import Client

        staff = type(admin_user).objects.create_user(username="ops", password="pw-ops-1234", is_staff=True)
        staff.user_permissions.add(
            *Permission.objects.filter(codename__in=["view_order", "change_risklimit", "view_risklimit"])
        )
        order = placed_order(instrument=market)
        browser = Client()
        browser.force_login(staff)
        browser.post("/admin/trading/order/", {"action": "halt_trading", "_selected_action": [order.pk]}, follow=True)
        assert trading_state_get().state == "active"
        limit = RiskLimit.objects.filter(instrument__isnull=True).first()
        if limit is not None:  # the data migration's global row (flushed in transactional tests)
            assert browser.get(f"/admin/trading/risklimit/{limit.pk}/change/").status_code == 200
            assert browser.get(f"/admin/trading/risklimit/{limit.pk}/history/").status_code == 200
