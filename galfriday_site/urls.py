from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, URLResolver, include, path
from django.views.defaults import page_not_found

from core.errors import error_body
from galfriday_site.apis import HealthApi, SchemaApi, SchemaDocsApi, SchemaRedocApi
from galfriday_site.auth import TokenObtainApi, TokenRevokeApi
from galfriday_site.metrics import metrics_view

admin.site.site_header = "Gal-Friday"
admin.site.site_title = "Gal-Friday"
admin.site.index_title = "Operations"

api_patterns: list[URLPattern | URLResolver] = [
    path("health/", HealthApi.as_view(), name="health"),
    path("auth/token/", TokenObtainApi.as_view(), name="auth-token"),
    path("auth/token/revoke/", TokenRevokeApi.as_view(), name="auth-token-revoke"),
    path("schema/", SchemaApi.as_view(), name="schema"),
    path("docs/", SchemaDocsApi.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SchemaRedocApi.as_view(url_name="api:schema"), name="redoc"),
    path("trading/", include("trading.urls")),
    path("models/", include("models_registry.urls")),
    path("reconciliation/", include("reconciliation.urls")),
    path("experiments/", include("experiments.urls")),
    path("alerting/", include("alerting.urls")),
    path("notifications/", include("notifications.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("api/", include((api_patterns, "api"), namespace="api")),
    path("", include("dashboard.urls")),
]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A path that no route matches (DEBUG off): under /api/ the answer is the API's one error shape, not a page."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "No API route matches this path."), status=404)
    return page_not_found(request, exception)


handler404 = not_found
