"""Authentication: expiring tokens stored as digests and refused after a password change or a deactivation; the token
endpoint and the admin login locked out per address and per username (django-axes); throttles; the schema and its
docs behind login in production."""

from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from galfriday_site.models import ApiToken

pytestmark = pytest.mark.django_db

_addresses = itertools.count(1)


def fresh_address() -> str:
    """Throttle counts live in the shared cache: each test speaks from its own address."""
    n = next(_addresses) + (timezone.now().microsecond % 50_000) * 100
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def obtain(username: str, password: str, address: str | None = None) -> Any:
    return APIClient().post(
        "/api/auth/token/", {"username": username, "password": password}, REMOTE_ADDR=address or fresh_address()
    )


def authed(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_token_is_shown_once_and_stored_as_a_digest(plain_user) -> None:  # type: ignore[no-untyped-def]
    response = obtain("viewer", "pw-viewer-123")
    assert response.status_code == 200, response.json()
    token = response.json()["token"]
    row = ApiToken.objects.get(user=plain_user)
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    stored = [str(v) for v in ApiToken.objects.values_list("digest", "prefix", "session_hash").get()]
    assert all(token not in value for value in stored)
    assert authed(token).get("/api/trading/orders/").status_code == 200


def test_token_expires(plain_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_API_TOKEN_TTL_S = 60
    token = obtain("viewer", "pw-viewer-123").json()["token"]
    assert authed(token).get("/api/trading/orders/").status_code == 200
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = authed(token).get("/api/trading/orders/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert not ApiToken.objects.exists()


def test_password_change_revokes_tokens(plain_user) -> None:  # type: ignore[no-untyped-def]
    token = obtain("viewer", "pw-viewer-123").json()["token"]
    plain_user.set_password("a-new-password-456")
    plain_user.save()
    assert authed(token).get("/api/trading/orders/").status_code == 401
    assert not ApiToken.objects.filter(user=plain_user).exists()


def test_deactivation_revokes_tokens(plain_user) -> None:  # type: ignore[no-untyped-def]
    token = obtain("viewer", "pw-viewer-123").json()["token"]
    plain_user.is_active = False
    plain_user.save()
    assert authed(token).get("/api/trading/orders/").status_code == 401
    assert not ApiToken.objects.filter(user=plain_user).exists()


def test_revoke_endpoint_deletes_the_token(plain_user) -> None:  # type: ignore[no-untyped-def]
    token = obtain("viewer", "pw-viewer-123").json()["token"]
    assert authed(token).post("/api/auth/token/revoke/", {}, format="json").json() == {"revoked": 1}
    assert authed(token).get("/api/trading/orders/").status_code == 401


def test_token_endpoint_locks_a_username_out_whatever_the_address(plain_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.AXES_FAILURE_LIMIT = 3
    assert [obtain("viewer", "wrong").status_code for _ in range(3)] == [400, 400, 429]  # locked at the limit
    locked = obtain("viewer", "pw-viewer-123")  # the right password, from another address
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "locked_out"
    assert not ApiToken.objects.exists()


def test_token_endpoint_locks_an_address_out_whatever_the_username(plain_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.AXES_FAILURE_LIMIT = 3
    address = fresh_address()
    assert [obtain(name, "wrong", address).status_code for name in ("a", "b", "c")] == [400, 400, 429]
    assert obtain("viewer", "pw-viewer-123", address).status_code == 429
    assert obtain("viewer", "pw-viewer-123").status_code == 200  # another address, a username with no failure


def test_admin_login_is_locked_out_too(staff_user, settings) -> None:  # type: ignore[no-untyped-def]
    from django.test import Client

    settings.AXES_FAILURE_LIMIT = 3
    browser = Client()
    for _ in range(3):
        browser.post("/admin/login/", {"username": "staff", "password": "wrong"}, REMOTE_ADDR=fresh_address())
    response = browser.post(
        "/admin/login/", {"username": "staff", "password": "pw-staff-123"}, REMOTE_ADDR=fresh_address()
    )
    assert response.status_code == 429
    assert "_auth_user_id" not in browser.session


def test_token_endpoint_is_throttled_per_address(plain_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": "3/min"}}
    address = fresh_address()
    for _ in range(3):
        assert obtain("viewer", "pw-viewer-123", address).status_code == 200
    response = obtain("viewer", "pw-viewer-123", address)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"


def test_authenticated_users_are_throttled_by_default(plain_user, settings) -> None:  # type: ignore[no-untyped-def]
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "user": "2/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    cache.delete(f"throttle_user_{plain_user.pk}")  # counts live in the shared cache, beyond this test's database
    client = APIClient()
    client.force_authenticate(plain_user)
    assert [client.get("/api/trading/orders/").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/", "/api/redoc/"])
def test_schema_and_docs_need_a_login_in_production(path: str, plain_user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = False
    assert APIClient().get(path).status_code == 401
    client = APIClient()
    client.force_authenticate(plain_user)
    assert client.get(path).status_code == 200
    settings.DEBUG = True
    assert APIClient().get(path).status_code == 200
