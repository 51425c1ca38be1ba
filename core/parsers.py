"""The API's JSON parser: DRF's, refusing what would otherwise reach the exception handler as a server error — a
body over DATA_UPLOAD_MAX_MEMORY_SIZE without a Content-Length (413) and JSON nested deeper than Python's
recursion limit allows (400)."""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers, status


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        if stream is None:  # no body
            return super().parse(io.BytesIO(b""), media_type, parser_context)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(body) > limit:
            raise RequestTooLarge()
        try:
            return super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from exc
