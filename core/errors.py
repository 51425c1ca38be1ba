"""One error contract for the API.

Every API error answers with the same JSON shape:

    {"error": {"code": "validation_error", "message": "...", "details": {...}}}

Application code raises `ApplicationError` (or a subclass) from services; DRF's own exceptions (validation,
authentication, permission, not found, throttling) are mapped to the same shape by `api_exception_handler`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from core.parsers import RequestTooLarge

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """An error the caller can act on: a stable `code`, a human `message`, optional structured `details`."""

    code = "application_error"
    http_status: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}


class NotFoundError(ApplicationError):
    code = "not_found"
    http_status = status.HTTP_404_NOT_FOUND


class ConflictError(ApplicationError):
    code = "conflict"
    http_status = status.HTTP_409_CONFLICT


class ServiceUnavailableError(ApplicationError):
    code = "service_unavailable"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField()


class ErrorSerializer(serializers.Serializer):
    """The one error shape (for the OpenAPI schema)."""

    error = ErrorDetailSerializer()


_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "malformed_request",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _malformed(exc: Exception) -> exceptions.APIException | None:
    """A request the client got wrong that surfaces as a Python or Django error rather than an APIException: the
    matching 4xx, or None."""
    if isinstance(exc, RequestDataTooBig):
        return RequestTooLarge()
    if isinstance(exc, SuspiciousOperation):  # TooManyFieldsSent, TooManyFilesSent, ...
        return exceptions.ParseError(f"Malformed request: {exc}")
    if isinstance(exc, RecursionError):
        return exceptions.ParseError("Malformed request: nested too deeply.")
    if isinstance(exc, UnicodeError):
        return exceptions.ParseError("Malformed request: not valid UTF-8.")
    if isinstance(exc, DataError):  # a value the database cannot hold or compare (a NUL character, for one)
        set_rollback()
        return exceptions.ValidationError(
            {"non_field_errors": ["A value cannot be stored or compared (a NUL character, for instance)."]}
        )
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    replacement = _malformed(exc)
    if replacement is not None:
        # The client's fault: a line at WARNING, no traceback.
        logger.warning(
            "malformed request refused: %s",
            type(exc).__name__,
            extra={"view": type(context.get("view")).__name__, "status": replacement.status_code},
        )
        exc = replacement
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
    if isinstance(exc, DjangoValidationError):
        errors: Any = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(error_body("validation_error", "Invalid input.", errors), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        # Unhandled: let Django's 500 handling log it; the API still answers in the same shape.
        logger.exception("unhandled API error", extra={"view": type(context.get("view")).__name__})
        return Response(error_body("internal_error", "Internal server error."), status=500)

    assert isinstance(exc, exceptions.APIException)
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), None) or str(exc.default_code)
    if isinstance(exc, exceptions.ValidationError):
        detail: Any = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = error_body(code, "Invalid input.", detail)
    else:
        response.data = error_body(code, str(exc.detail))
    return response
