"""The Overview and Market & trades pages (login required). They render the frame and what the first paint needs;
their scripts load the rest over the API (`/api/trading/...`, `/dashboard-api/...`) and again on every
websocket (re)connection. Staff actions post to the trading API (audited services), never to a page view."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from dashboard import selectors
from dashboard.formatting import money_places
from dashboard.pages import DashboardPage
from trading import selectors as trading_selectors
from trading.permissions import can_trade


def alert_ack_url() -> str:
    """The alerting API's acknowledge URL with `{id}` in place of the alert's id."""
    return reverse("api:alerting:alert-acknowledge", kwargs={"alert_id": 987654321}).replace("987654321", "{id}")


# The health strip: these health checks (galfriday_site.health) and the Celery workers that answer a ping.
HEALTH_STRIP = ("exchange", "ingest", "workers", "database", "broker")


class OverviewPage(DashboardPage):
    template_name = "dashboard/overview.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        currency = trading_selectors.account_currency()
        user = self.request.user
        context["state"] = trading_selectors.trading_state_get()
        context["health_components"] = HEALTH_STRIP
        context["config"] = {
            "currency": currency,
            "money_places": money_places(currency),
            "max_drawdown": str(trading_selectors.risk_limits_effective().max_drawdown),
            "can_trade": can_trade(user),
            "alert_ack_url": alert_ack_url(),
        }
        return context


class MarketPage(DashboardPage):
    template_name = "dashboard/market.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        instruments = selectors.chartable_instruments()
        symbols = [i["symbol"] for i in instruments]
        wanted = self.request.GET.get("symbol", "")
        fill = self.request.GET.get("fill", "")
        context["instruments"] = instruments
        context["config"] = {
            "instruments": instruments,
            "symbol": wanted if wanted in symbols else (symbols[0] if symbols else ""),
            "fill": int(fill) if fill.isdigit() else None,
        }
        return context
