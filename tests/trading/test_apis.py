"""Read endpoints: orders (filters, detail with events and fills), fills, positions, balances, trading state."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.trading.factories import placed_order, status, trade
from trading.execution_reports import execution_report_apply
from trading.executions import ExecType
from trading.kill_switch import trading_state_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(plain_user) -> APIClient:  # type: ignore[no-untyped-def]
    api = APIClient()
    api.force_authenticate(plain_user)
    return api


@pytest.fixture
def filled_and_open() -> tuple[int, int]:
    filled = placed_order(side="buy", qty="1", price="100")
    execution_report_apply(event=status("OF-1", ExecType.NEW, cl_ord_id=filled.client_order_id))
    execution_report_apply(event=trade("OF-1", "T-1", "1", "100", fee="0.26"))
    open_order = placed_order(side="sell", qty="2", price="120")
    return filled.pk, open_order.pk


def test_anonymous_reads_are_refused_in_the_error_shape() -> None:
    response = APIClient().get("/api/trading/orders/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_order_list_filters(client: APIClient, filled_and_open: tuple[int, int]) -> None:
    filled_id, open_id = filled_and_open
    body = client.get("/api/trading/orders/").json()
    assert body["count"] == 2
    assert [o["id"] for o in client.get("/api/trading/orders/?state=filled").json()["results"]] == [filled_id]
    assert [o["id"] for o in client.get("/api/trading/orders/?open=true").json()["results"]] == [open_id]
    assert [o["id"] for o in client.get("/api/trading/orders/?side=sell&symbol=BTC/USD").json()["results"]] == [open_id]
    bad = client.get("/api/trading/orders/?state=sleeping")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "validation_error"


def test_order_detail_has_events_and_fills_with_decimal_strings(
    client: APIClient, filled_and_open: tuple[int, int]
) -> None:
    filled_id, _ = filled_and_open
    body = client.get(f"/api/trading/orders/{filled_id}/").json()
    assert body["state"] == "filled"
    assert body["filled_qty"] == "1.0000000000"
    assert [(e["kind"], e["source"], e["to_state"]) for e in body["events"]] == [
        ("created", "system", "created"),
        ("submitted", "system", "submitted"),
        ("accepted", "exchange", "accepted"),
        ("fill", "exchange", "filled"),
    ]
    assert body["fills"][0]["exec_id"] == "T-1"
    assert body["fills"][0]["fee"] == "0.260000000000"
    missing = client.get("/api/trading/orders/999999/")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_fills_positions_balances_and_state(client: APIClient, filled_and_open: tuple[int, int]) -> None:
    filled_id, _ = filled_and_open
    fills = client.get(f"/api/trading/fills/?order_id={filled_id}").json()["results"]
    assert [f["exec_id"] for f in fills] == ["T-1"]
    positions = client.get("/api/trading/positions/").json()["results"]
    assert [(p["symbol"], p["quantity"], p["net_realised_pnl"]) for p in positions] == [
        ("BTC/USD", "1.0000000000", "-0.260000000000")
    ]
    balances = {b["asset"]: b["total"] for b in client.get("/api/trading/balances/").json()["results"]}
    assert balances == {"BTC": "1.000000000000", "USD": "-100.260000000000"}
    assert client.get("/api/trading/state/").json()["state"] == "active"
    trading_state_set(state="reducing", reason="volatility", actor="user:ann")
    state = client.get("/api/trading/state/").json()
    assert (state["state"], state["changed_by"], state["reason"]) == ("reducing", "user:ann", "volatility")


def test_admin_shows_orders_with_their_history(admin_user, filled_and_open: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    from django.test import Client

    filled_id, _ = filled_and_open
    browser = Client()
    browser.force_login(admin_user)
    assert browser.get(f"/admin/trading/order/{filled_id}/change/").status_code == 200
    history = browser.get(f"/admin/trading/order/{filled_id}/history/")
    assert history.status_code == 200
    assert b"trading:system" in history.content  # the actor column
    assert b"filled" in history.content
