from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from galfriday_site.health import run_health_checks


class HealthApi(APIView):
    """Checks the database, broker, cache, channel layer and time-series store for real.

    Open to anyone (load balancers and orchestrators call it), unthrottled: HTTP 200 when every required component
    is ok, 503 otherwise, with the overall status only. Authenticated staff also see each component (backend,
    latency, error, the ingest worker's details) and when they were checked: addresses, hosts and exception texts
    are not for anonymous eyes. A round of checks serves the web process for HEALTH_CHECK_CACHE_S (1 s).
    """

    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    class ComponentSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["ok", "failing"])
        latency_ms = serializers.FloatField()
        backend = serializers.CharField()
        required = serializers.BooleanField()  # type: ignore[assignment]  # a field named like Field.required
        error = serializers.CharField(required=False)
        details = serializers.JSONField(required=False)  # the ingest worker's rates, lag, queues and repairs

    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["ok", "failing"])
        components = serializers.DictField(child=serializers.JSONField(), required=False, help_text="staff only")
        checked_at = serializers.DateTimeField(required=False, help_text="staff only: when the checks ran")

    @extend_schema(responses={200: OutputSerializer, 503: OutputSerializer})
    def get(self, request: Request) -> Response:
        report = run_health_checks()
        healthy = all(c.ok for c in report if c.required)
        body: dict[str, Any] = {"status": "ok" if healthy else "failing"}
        user = request.user
        if user and user.is_authenticated and user.is_staff:
            body["components"] = {c.name: self.ComponentSerializer(c.as_dict()).data for c in report}
            checked_at = min((c.checked_at for c in report if c.checked_at), default=None)
            if checked_at is not None:
                body["checked_at"] = serializers.DateTimeField().to_representation(checked_at)
        return Response(body, status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE)


class _LoginInProduction:
    """The schema and its documentation pages: open in development (DEBUG), for authenticated users otherwise (a
    session from the admin login, or a token). Decided per request, so the setting is read when it is asked."""

    def get_permissions(self) -> list[BasePermission]:
        return [AllowAny() if settings.DEBUG else IsAuthenticated()]


class SchemaApi(_LoginInProduction, SpectacularAPIView):
    pass


class SchemaDocsApi(_LoginInProduction, SpectacularSwaggerView):
    pass


class SchemaRedocApi(_LoginInProduction, SpectacularRedocView):
    pass
