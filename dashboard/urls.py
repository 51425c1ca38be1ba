"""The operator's pages, mounted at `/` by galfriday_site.urls."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

app_name = "dashboard"

urlpatterns: list[URLPattern | URLResolver] = []
