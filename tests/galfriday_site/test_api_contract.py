"""One error shape for every API error; authenticated read, staff write; the OpenAPI schema."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from core.errors import ConflictError
from galfriday_site.urls import urlpatterns as site_urlpatterns

pytestmark = pytest.mark.django_db


class ThingApi(APIView):
    class InputSerializer(serializers.Serializer):
        quantity = serializers.DecimalField(max_digits=20, decimal_places=8, min_value=0)

    def get(self, request):  # type: ignore[no-untyped-def]
        return Response({"things": []})

    def post(self, request):  # type: ignore[no-untyped-def]
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["quantity"] == 7:
            raise ConflictError("seven is taken", details={"quantity": "7"})
        if data.validated_data["quantity"] == 8:
            raise DjangoValidationError({"quantity": ["model-level rule"]})
        return Response({"quantity": str(data.validated_data["quantity"])}, status=201)


urlpatterns = [*site_urlpatterns, path("api/test/things/", ThingApi.as_view())]


@pytest.fixture(autouse=True)
def _urls(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ROOT_URLCONF = __name__


def assert_error(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_anonymous_request_gets_the_error_shape() -> None:
    assert_error(APIClient().get("/api/test/things/"), 401, "not_authenticated")


def test_authenticated_user_may_read_but_not_write(plain_user) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(plain_user)
    assert client.get("/api/test/things/").status_code == 200
    assert_error(client.post("/api/test/things/", {"quantity": "1"}, format="json"), 403, "permission_denied")


def test_staff_may_write(staff_user) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(staff_user)
    response = client.post("/api/test/things/", {"quantity": "1.5"}, format="json")
    assert response.status_code == 201
    assert response.json() == {"quantity": "1.50000000"}


def test_validation_error_names_the_field(staff_user) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(staff_user)
    error = assert_error(client.post("/api/test/things/", {"quantity": "-1"}, format="json"), 400, "validation_error")
    assert "quantity" in error["details"]


def test_malformed_json_is_a_clear_400(staff_user) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(staff_user)
    response = client.post("/api/test/things/", "{not json", content_type="application/json")
    assert_error(response, 400, "malformed_request")


def test_application_error_keeps_its_code_status_and_details(staff_user) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(staff_user)
    error = assert_error(client.post("/api/test/things/", {"quantity": "7"}, format="json"), 409, "conflict")
    assert error["details"] == {"quantity": "7"}


def test_django_validation_error_maps_to_the_same_shape(staff_user) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(staff_user)
    error = assert_error(client.post("/api/test/things/", {"quantity": "8"}, format="json"), 400, "validation_error")
    assert error["details"] == {"quantity": ["model-level rule"]}


def test_token_authentication_works(plain_user) -> None:  # type: ignore[no-untyped-def]
    token = APIClient().post("/api/auth/token/", {"username": "viewer", "password": "pw-viewer-123"}).json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/test/things/").status_code == 200


def test_openapi_schema_and_docs_are_served(plain_user) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(plain_user)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/health/" in schema.json()["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_openapi_schema_is_valid_and_free_of_warnings(embedded_env: dict[str, str]) -> None:
    from tests.conftest import run_manage

    result = run_manage("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null", env=embedded_env)
    assert result.returncode == 0, result.stderr[-3000:]
