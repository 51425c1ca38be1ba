"""The operator's pages, mounted at `/` by galfriday_site.urls: overview and market here, the model-lifecycle and
operations pages in `dashboard.lifecycle`; the JSON their scripts fetch under `/dashboard-api/`."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from dashboard import apis, views

app_name = "dashboard"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.OverviewPage.as_view(), name="overview"),
    path("market/", views.MarketPage.as_view(), name="market"),
    path("dashboard-api/market/candles/", apis.CandlesApi.as_view(), name="market-candles"),
    path("dashboard-api/market/why/", apis.TradeExplanationApi.as_view(), name="market-why"),
    path("", include("dashboard.lifecycle.urls")),
]
