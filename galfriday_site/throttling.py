"""DRF throttles whose rates are read when a request is checked (DRF's own classes read them once, at import), from
`REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`. Counts live in the default cache (Redis in production: shared by every
web process)."""

from __future__ import annotations

from typing import Any

from rest_framework import throttling
from rest_framework.settings import api_settings


def _rate(scope: str | None) -> str | None:
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope or "")
    return None if rate is None else str(rate)


class _RateReadPerRequest:
    scope: str | None

    def get_rate(self) -> str | None:
        return _rate(self.scope)


class UserRateThrottle(_RateReadPerRequest, throttling.UserRateThrottle):
    """Authenticated users, per user (anonymous requests are left to AnonRateThrottle)."""

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if not (request.user and request.user.is_authenticated):
            return None
        return super().get_cache_key(request, view)


class AnonRateThrottle(_RateReadPerRequest, throttling.AnonRateThrottle):
    """Anonymous requests, per client address."""


class AuthRateThrottle(_RateReadPerRequest, throttling.SimpleRateThrottle):
    """The token endpoint, per client address, whatever the outcome."""

    scope = "auth"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
