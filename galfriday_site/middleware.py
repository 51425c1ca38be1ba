"""Refuse malformed requests before any view reads them, in the API's error shape: a body declared larger than
DATA_UPLOAD_MAX_MEMORY_SIZE (413) and a NUL character in the path or query string (400; PostgreSQL cannot hold
one in text, so it would fail in the database)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.errors import error_body

logger = logging.getLogger(__name__)


def _refuse(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    logger.warning("malformed request refused: %s", code, extra={"path": request.path[:200], "status": status})
    return JsonResponse(error_body(code, message), status=status)


class RequestLimitsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _refuse(request, 400, "malformed_request", "Malformed request: invalid Content-Length.")
        if limit is not None and length > limit:
            return _refuse(request, 413, "payload_too_large", f"The request body is larger than {limit} bytes.")
        raw_path = request.META.get("PATH_INFO", "")
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in raw_path or b"\x00" in unquote_to_bytes(query):
            return _refuse(request, 400, "malformed_request", "Malformed request: a NUL character in the URL.")
        return self.get_response(request)
