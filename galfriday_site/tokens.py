"""API tokens, knox-style: the secret is shown once; only its SHA-256 digest is stored. A token authenticates while
it is unexpired (GALFRIDAY_API_TOKEN_TTL_S), its user active and the user's password unchanged since it was issued.

Imported by DRF's settings when `rest_framework.views` loads: nothing here imports views, and models are imported
when used."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

if TYPE_CHECKING:
    from galfriday_site.models import ApiToken

TOKEN_PREFIX = "gf_"


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def api_token_issue(*, user: Any, now: datetime | None = None) -> tuple[str, ApiToken]:
    """A new token for `user`: the secret (to show once) and the stored row (its digest)."""
    # Not at module level: DRF's settings load this module, possibly before the app registry is ready.
    from galfriday_site.models import ApiToken

    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = now or timezone.now()
    row = ApiToken.objects.create(
        user=user,
        digest=token_digest(raw),
        prefix=raw[:10],
        session_hash=user.get_session_auth_hash(),
        expires_at=now + timedelta(seconds=settings.GALFRIDAY_API_TOKEN_TTL_S),
    )
    return raw, row


def api_token_revoke_all(*, user: Any) -> int:
    # Not at module level: DRF's settings load this module, possibly before the app registry is ready.
    from galfriday_site.models import ApiToken

    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted


class ExpiringTokenAuthentication(BaseAuthentication):
    """`Authorization: Token <token>`, looked up by its digest; refused once expired, for an inactive user, or after
    a password change (the deletion happens then: a refused token never works again)."""

    keyword = "Token"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        # Not at module level: DRF's settings load this module, possibly before the app registry is ready.
        from galfriday_site.models import ApiToken

        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: 'Token <token>' expected.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        token = ApiToken.objects.select_related("user").filter(digest=token_digest(raw)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user = token.user
        if not user.is_active:
            api_token_revoke_all(user=user)
            raise exceptions.AuthenticationFailed("Invalid token.")
        if token.expires_at <= timezone.now():
            token.delete()
            raise exceptions.AuthenticationFailed("Token expired: ask for a new one.")
        if not constant_time_compare(token.session_hash, user.get_session_auth_hash()):
            ApiToken.objects.filter(user=user).exclude(session_hash=user.get_session_auth_hash()).delete()
            raise exceptions.AuthenticationFailed("Token revoked: the password changed.")
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
