"""The alerting API, mounted at `/api/alerting/` by galfriday_site.urls."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
