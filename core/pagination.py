"""The API's pagination: limit/offset with `limit` capped at GALFRIDAY_API_MAX_LIMIT (larger values are served as
the maximum), described in the OpenAPI schema with its bounds.

`count` costs a bounded amount: the rows are counted up to GALFRIDAY_API_COUNT_AHEAD past the end of the page, not
over the whole table (a `COUNT(*)` of a long list grows with it: orders, fills and decisions only grow). Up to
there `count` is exact and `count_exact` true; beyond, `count` is the number counted (at least that many rows
exist) and `count_exact` false. `next` and `previous` are exact either way. Lists of a few rows are unaffected.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from rest_framework import pagination, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.rows import ValuesSerializer

MAX_COUNT_BOUND = 2**62


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    def __init__(self) -> None:
        self.max_limit = int(settings.GALFRIDAY_API_MAX_LIMIT)
        self.count_exact = True

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.offset = self.get_offset(request)
        self.count, self.count_exact = self.bounded_count(queryset, self.offset + self.limit)
        if self.count == 0 or self.offset > self.count:
            return []
        return list(queryset[self.offset : self.offset + self.limit])

    def bounded_count(self, queryset: Any, page_end: int) -> tuple[int, bool]:
        """The rows, counted up to GALFRIDAY_API_COUNT_AHEAD past `page_end`; whether that is all of them."""
        if not isinstance(queryset, QuerySet):
            return len(queryset), True
        # capped below PostgreSQL's bigint (a LIMIT past it is an error): a page that far out is empty anyway
        bound = min(page_end + int(settings.GALFRIDAY_API_COUNT_AHEAD), MAX_COUNT_BOUND)
        counted = queryset.order_by()[: bound + 1].count()  # COUNT(*) over a LIMITed subquery of the keys
        return counted, counted <= bound

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "count": self.count,
                "count_exact": self.count_exact,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        envelope = super().get_paginated_response_schema(schema)
        envelope["properties"] = {
            "count": {
                **envelope["properties"]["count"],
                "description": "The rows; exact when count_exact is true, otherwise at least this many.",
            },
            "count_exact": {
                "type": "boolean",
                "description": "false when the list goes on more than GALFRIDAY_API_COUNT_AHEAD rows past this page "
                "(not counted to its end); follow next.",
            },
            **{k: v for k, v in envelope["properties"].items() if k != "count"},
        }
        envelope["required"] = ["count", "count_exact", "results"]
        return envelope

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1, "maximum": self.max_limit}
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 0}
        return parameters


def paginated_response(
    request: Request,
    view: Any,
    queryset: Any,
    serializer: type[serializers.Serializer],  # type: ignore[type-arg]
    *,
    from_values: bool = False,
) -> Response:
    """A page of `queryset` in the envelope `{count, count_exact, next, previous, results}`.

    `from_values`: read the page with `values()` and represent it from the serializer's declaration
    (`core.rows.ValuesSerializer`: the same output, without building a model per row); for long lists whose
    serializer reads columns only."""
    paginator = LimitOffsetPagination()
    if from_values:
        plan = ValuesSerializer.of(serializer)
        rows: Any = paginator.paginate_queryset(queryset.values(*plan.lookups), request, view=view)
        return paginator.get_paginated_response(plan.represent_all(rows))
    page: Any = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)
