"""OpenAPI schema generation.

- Views keep their serializers nested (`FooApi.InputSerializer`, STYLE.md), so component names are prefixed with
  the view's name (`FooInput`, `FooOutput`) to stay unique.
- A GET whose response is a list is served as a page (`core.pagination`): the schema says so (the
  `{count, next, previous, results}` envelope and the `limit`/`offset` parameters with their bounds).
- Every operation documents the 4xx statuses it can answer, each in the one error shape (`Error`).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.permissions import AllowAny

from core.errors import ErrorSerializer
from core.pagination import LimitOffsetPagination

_ERROR_DESCRIPTIONS = {
    "400": "Malformed request or invalid input.",
    "401": "Not authenticated.",
    "403": "Not permitted.",
    "404": "Not found.",
    "406": "Not acceptable (the Accept header).",
    "409": "Conflicts with the current state.",
    "413": "Request body too large.",
    "415": "Unsupported media type.",
    "422": "Refused by a business rule (the risk manager, for one).",
    "429": "Too many requests (throttled or locked out).",
}


class AutoSchema(SpectacularAutoSchema):
    def _get_serializer_name(self, serializer: Any, direction: Any, bypass_extensions: bool = False) -> str:
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        cls = serializer if isinstance(serializer, type) else type(serializer)
        outer, _, _ = cls.__qualname__.rpartition(".")
        if not outer or getattr(getattr(cls, "Meta", None), "ref_name", None):
            return str(name)
        prefix = outer.split(".")[-1].removesuffix("Api").removesuffix("View")
        return name if str(name).startswith(prefix) else f"{prefix}{name}"

    def _get_paginator(self) -> Any:
        paginator = super()._get_paginator()
        paged = getattr(self.view, "paged", True)  # a view that serves its list whole says `paged = False`
        if paginator is None and paged and self.method == "GET" and self._is_list_view():
            return LimitOffsetPagination()
        return paginator

    def _error_statuses(self) -> list[str]:
        codes = ["400", "406"]
        open_to_all = all(isinstance(p, AllowAny) for p in self.view.get_permissions())
        if not open_to_all:
            codes += ["401", "403"]
        if "{" in self.path or "404" in getattr(self.view, "error_statuses", ()):
            codes.append("404")  # a path parameter, or a view that looks its object up from the query
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            codes += ["409", "413", "415", "422"]
        if getattr(self.view, "throttle_classes", None):
            codes.append("429")
        return sorted(codes)

    def _get_response_bodies(self, direction: Any = "response") -> Any:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_statuses():
            if code not in responses:
                error = OpenApiResponse(response=ErrorSerializer, description=_ERROR_DESCRIPTIONS[code])
                responses[code] = self._get_response_for_code(error, code, direction=direction)
        return responses


class ExpiringTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "galfriday_site.tokens.ExpiringTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'Token-based authentication with required prefix "Token"',
        }
