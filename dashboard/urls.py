"""The operator's pages, mounted at `/` by galfriday_site.urls: overview and market here, the model-lifecycle and
operations pages in `dashboard.lifecycle`."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

app_name = "dashboard"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("dashboard.lifecycle.urls")),
]
