"""The read endpoints of the load mix (issue 18) cost a fixed number of SQL statements, whatever the rows: an order's
detail reads its fills with their instrument (no statement per fill), and a list page reads its rows and a bounded
count, not one statement per row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.trading.factories import placed_order, status, trade
from trading.execution_reports import execution_report_apply
from trading.executions import ExecType

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(plain_user) -> APIClient:  # type: ignore[no-untyped-def]
    api = APIClient()
    api.force_authenticate(plain_user)
    return api


def filled_in(parts: int, n: int) -> int:
    order = placed_order(side="buy", qty=str(parts), price="100")
    execution_report_apply(event=status(f"OQ-{n}", ExecType.NEW, cl_ord_id=order.client_order_id))
    for i in range(parts):
        execution_report_apply(event=trade(f"OQ-{n}", f"TQ-{n}-{i}", "1", "100", fee="0.26"))
    return order.pk


def statements(client: APIClient, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries.captured_queries)


def test_an_order_detail_costs_the_same_statements_with_one_fill_or_five(client: APIClient) -> None:
    one, five = filled_in(1, 1), filled_in(5, 2)
    assert statements(client, f"/api/trading/orders/{one}/") == statements(client, f"/api/trading/orders/{five}/") == 3


@pytest.mark.parametrize("path", ["/api/trading/orders/", "/api/trading/fills/", "/api/trading/decisions/"])
def test_a_list_page_costs_the_same_statements_with_few_rows_or_many(client: APIClient, path: str) -> None:
    filled_in(1, 1)
    few = statements(client, path)
    for n in range(2, 8):
        filled_in(2, n)
    assert statements(client, path) == few <= 2  # the bounded count and the page
