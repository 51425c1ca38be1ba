from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from galfriday_site.health import run_health_checks


class HealthApi(APIView):
    """Checks the database, broker, cache, channel layer and time-series store for real.

    Open to anyone (load balancers and orchestrators call it). HTTP 200 when every required component is ok,
    503 otherwise.
    """

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    class ComponentSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["ok", "failing"])
        latency_ms = serializers.FloatField()
        backend = serializers.CharField()
        required = serializers.BooleanField()  # type: ignore[assignment]  # a field named like Field.required
        error = serializers.CharField(required=False)
        details = serializers.JSONField(required=False)  # the ingest worker's rates, lag, queues and repairs

    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["ok", "failing"])
        components = serializers.DictField(child=serializers.JSONField())

    @extend_schema(responses={200: OutputSerializer, 503: OutputSerializer})
    def get(self, request: Request) -> Response:
        report = run_health_checks()
        healthy = all(c.ok for c in report if c.required)
        body = {
            "status": "ok" if healthy else "failing",
            "components": {c.name: self.ComponentSerializer(c.as_dict()).data for c in report},
        }
        return Response(body, status=status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE)
