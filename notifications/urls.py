"""The notifications API, mounted at `/api/notifications/` by galfriday_site.urls."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
