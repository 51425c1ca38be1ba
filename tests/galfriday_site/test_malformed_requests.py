"""Every malformed request is a 4xx in the one error shape, logged at WARNING without a traceback; decimals take
plain ASCII digits only; `limit` is capped; the OpenAPI schema describes the page envelope and the 4xx answers."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
from django.db import DataError
from rest_framework import serializers
from rest_framework.test import APIClient

from core.errors import api_exception_handler
from core.fields import DecimalField
from trading.models import Alert

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(staff_user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    return dict(body["error"])


def assert_logged_as_warning_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "malformed" in r.getMessage()]
    assert warnings, [r.getMessage() for r in caplog.records]
    assert all(r.exc_info is None for r in warnings)


UPDATE = "/api/trading/risk-limits/update/"


def test_a_body_over_the_limit_is_413(staff: APIClient, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = b'{"reason": "' + b"x" * 20_000 + b'"}'
    with caplog.at_level(logging.WARNING):
        assert_error(staff.post(UPDATE, body, content_type="application/json"), 413, "payload_too_large")
    assert_logged_as_warning_without_traceback(caplog)
    # The same for a form, and for an anonymous caller.
    assert_error(APIClient().post("/api/auth/token/", {"username": "u" * 20_000}), 413, "payload_too_large")


def test_a_body_without_content_length_over_the_limit_is_413(staff: APIClient, settings) -> None:  # type: ignore[no-untyped-def]
    from core.parsers import JSONParser, RequestTooLarge

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    import io

    with pytest.raises(RequestTooLarge):
        JSONParser().parse(io.BytesIO(b'{"a": "' + b"x" * 200 + b'"}'), "application/json", {})


def test_json_nested_too_deep_is_400(staff: APIClient, caplog) -> None:  # type: ignore[no-untyped-def]
    body = "[" * 100_000 + "]" * 100_000
    with caplog.at_level(logging.WARNING):
        error = assert_error(staff.post(UPDATE, body, content_type="application/json"), 400, "malformed_request")
    assert "deep" in error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_too_many_form_fields_is_400(staff: APIClient, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    body = "&".join(f"f{i}=1" for i in range(5_000))
    with caplog.at_level(logging.WARNING):
        response = staff.post(UPDATE, body, content_type="application/x-www-form-urlencoded")
    assert_error(response, 400, "malformed_request")
    assert_logged_as_warning_without_traceback(caplog)


def test_a_body_that_is_not_utf8_is_400(staff: APIClient) -> None:
    response = staff.post(UPDATE, b'{"reason": "\xff\xfe\xfa"}', content_type="application/json")
    assert_error(response, 400, "malformed_request")


@pytest.mark.parametrize(
    "url",
    [
        "/api/models/abc%00def/",
        "/api/trading/orders/?symbol=BTC%00USD",
        "/api/reconciliation/discrepancies/?asset=X%00",
    ],
)
def test_a_nul_character_in_the_url_is_400(staff: APIClient, url: str, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING):
        assert_error(staff.get(url), 400, "malformed_request")
    assert_logged_as_warning_without_traceback(caplog)


def test_a_nul_character_in_a_body_string_is_400(staff: APIClient) -> None:
    response = staff.post(UPDATE, {"symbol": None, "reason": "a\x00b"}, format="json")
    assert "reason" in assert_error(response, 400, "validation_error")["details"]


def test_a_database_data_error_is_400_not_500(caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING):
        response = api_exception_handler(DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), {})
    assert response is not None
    assert response.status_code == 400
    assert response.data["error"]["code"] == "validation_error"
    assert "PostgreSQL" not in str(response.data)
    assert_logged_as_warning_without_traceback(caplog)


class _Amount(serializers.Serializer):
    amount = DecimalField(max_digits=20, decimal_places=8)


@pytest.mark.parametrize("text", ["1_000", "١٢٣", "１２", " 1", "1 ", "0x10", "1,5", "NaN", "Infinity", "", "+-1"])
def test_decimals_refuse_anything_but_plain_ascii(text: str) -> None:
    assert not _Amount(data={"amount": text}).is_valid()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1000", "1000"), ("0.5", "0.5"), ("-2.25", "-2.25"), (".5", "0.5"), ("1e3", "1000"), (3, "3"), (0.25, "0.25")],
)
def test_decimals_accept_plain_numbers(value: Any, expected: str) -> None:
    s = _Amount(data={"amount": value})
    assert s.is_valid(), s.errors
    assert s.validated_data["amount"] == Decimal(expected)


def test_order_quantity_with_underscores_or_other_digits_is_refused(django_user_model) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Group

    from trading.models import Order
    from trading.permissions import TRADERS_GROUP

    trader = django_user_model.objects.create_user(username="digits", password="pw-digits-123")
    trader.groups.add(Group.objects.get_or_create(name=TRADERS_GROUP)[0])
    client = APIClient()
    client.force_authenticate(trader)
    for quantity in ("1_000", "١"):
        order = {"symbol": "BTC/USD", "side": "buy", "order_type": "market", "quantity": quantity}
        response = client.post("/api/trading/orders/create/", order, format="json")
        assert "quantity" in assert_error(response, 400, "validation_error")["details"]
    assert not Order.objects.exists()


def test_limit_is_capped(staff: APIClient, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_API_MAX_LIMIT = 2
    for i in range(3):
        Alert.objects.create(kind="trading_halted", severity="warning", message=f"m{i}", fingerprint=f"m{i}")
    page = staff.get("/api/trading/alerts/", {"limit": 1_000_000}).json()
    assert page["count"] == 3
    assert len(page["results"]) == 2


@pytest.fixture
def schema(staff: APIClient) -> dict[str, Any]:
    response = staff.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return dict(response.json())


def _resolve(schema: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in ref_or_schema:
        return dict(schema["components"]["schemas"][ref_or_schema["$ref"].rsplit("/", 1)[-1]])
    return ref_or_schema


@pytest.mark.parametrize(
    "path",
    ["/api/trading/orders/", "/api/trading/alerts/", "/api/reconciliation/runs/", "/api/models/"],
)
def test_schema_describes_list_endpoints_as_pages(schema: dict[str, Any], path: str) -> None:
    operation = schema["paths"][path]["get"]
    body = _resolve(schema, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert body["type"] == "object"
    assert {"count", "next", "previous", "results"} <= set(body["properties"])
    assert body["properties"]["results"]["type"] == "array"
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] >= 1
    assert limit["schema"]["minimum"] == 1


def test_schema_documents_each_4xx_in_the_error_shape(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"error"}
    create = schema["paths"]["/api/trading/orders/create/"]["post"]["responses"]
    assert {"400", "401", "403", "409", "413", "415", "422", "429"} <= set(create)
    detail = schema["paths"]["/api/trading/orders/{order_id}/"]["get"]["responses"]
    assert {"400", "401", "403", "404", "429"} <= set(detail)
    for status in ("400", "404"):
        assert detail[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    health = schema["paths"]["/api/health/"]["get"]["responses"]
    assert "401" not in health
    assert "503" in health
