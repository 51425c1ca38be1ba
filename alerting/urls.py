"""The alerting API, mounted at `/api/alerting/` by galfriday_site.urls."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from alerting.apis import (
    AlertAcknowledgeApi,
    AlertDetailApi,
    AlertListApi,
    AlertResolveApi,
    SilenceExpireApi,
    SilenceListApi,
)

app_name = "alerting"

urlpatterns: list[URLPattern | URLResolver] = [
    path("alerts/", AlertListApi.as_view(), name="alert-list"),
    path("alerts/<int:alert_id>/", AlertDetailApi.as_view(), name="alert-detail"),
    path("alerts/<int:alert_id>/acknowledge/", AlertAcknowledgeApi.as_view(), name="alert-acknowledge"),
    path("alerts/<int:alert_id>/resolve/", AlertResolveApi.as_view(), name="alert-resolve"),
    path("silences/", SilenceListApi.as_view(), name="silence-list"),
    path("silences/<int:silence_id>/expire/", SilenceExpireApi.as_view(), name="silence-expire"),
]
