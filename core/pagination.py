"""The API's pagination: limit/offset with `limit` capped at GALFRIDAY_API_MAX_LIMIT (larger values are served as
the maximum), described in the OpenAPI schema with its bounds."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import pagination, serializers
from rest_framework.request import Request
from rest_framework.response import Response


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    def __init__(self) -> None:
        self.max_limit = int(settings.GALFRIDAY_API_MAX_LIMIT)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1, "maximum": self.max_limit}
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 0}
        return parameters


def paginated_response(
    request: Request, view: Any, queryset: Any, serializer: type[serializers.Serializer]
) -> Response:
    """A page of `queryset` in the envelope `{count, next, previous, results}`."""
    paginator = LimitOffsetPagination()
    page: Any = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)
