"""Pages of long lists count their rows only up to GALFRIDAY_API_COUNT_AHEAD past the page (issue 18, load): exact
below that (`count_exact` true), "at least" beyond it, with `next` and `previous` exact either way, and the count
statement bounded by a LIMIT whatever the table's size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.trading.factories import OrderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(plain_user) -> APIClient:  # type: ignore[no-untyped-def]
    api = APIClient()
    api.force_authenticate(plain_user)
    return api


def test_a_long_list_is_counted_up_to_the_bound_past_the_page(client: APIClient, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_API_COUNT_AHEAD = 3
    OrderFactory.create_batch(10)
    with CaptureQueriesContext(connection) as queries:
        first = client.get("/api/trading/orders/", {"limit": 2}).json()
    assert (first["count"], first["count_exact"]) == (6, False)  # at least 6: 2 + 3 + 1 counted
    assert len(first["results"]) == 2
    assert "offset=2" in first["next"]
    [count_sql] = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert "LIMIT 6" in count_sql
    near_the_end = client.get("/api/trading/orders/", {"limit": 2, "offset": 6}).json()
    assert (near_the_end["count"], near_the_end["count_exact"]) == (10, True)
    assert "offset=8" in near_the_end["next"]
    last = client.get("/api/trading/orders/", {"limit": 2, "offset": 8}).json()
    assert (last["count"], last["count_exact"], last["next"]) == (10, True, None)
    assert "offset=6" in last["previous"]


def test_every_row_is_reached_by_following_next(client: APIClient, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_API_COUNT_AHEAD = 1
    ids = {o.pk for o in OrderFactory.create_batch(7)}
    seen: list[int] = []
    url: str | None = "/api/trading/orders/?limit=3"
    while url:
        page = client.get(url).json()
        seen += [o["id"] for o in page["results"]]
        url = page["next"]
    assert sorted(seen) == sorted(ids)


def test_a_short_list_is_counted_exactly(client: APIClient) -> None:
    OrderFactory.create_batch(3)
    page = client.get("/api/trading/orders/").json()
    assert (page["count"], page["count_exact"], page["next"], page["previous"]) == (3, True, None, None)


def test_the_schema_describes_the_envelope(client: APIClient, staff_user) -> None:  # type: ignore[no-untyped-def]
    client.force_authenticate(staff_user)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    page = schema["components"]["schemas"]["PaginatedTradingOrderList"]
    assert page["required"] == ["count", "count_exact", "results"]
    assert page["properties"]["count_exact"]["type"] == "boolean"


def test_an_offset_past_any_table_is_an_empty_page(client: APIClient) -> None:
    OrderFactory.create_batch(2)
    response = client.get("/api/trading/orders/", {"offset": 9223372036854775000})  # near bigint's end
    assert response.status_code == 200, response.content
    page = response.json()
    assert (page["count"], page["results"], page["next"]) == (2, [], None)
