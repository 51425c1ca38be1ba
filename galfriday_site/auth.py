"""API authentication: expiring tokens stored as digests (knox-style), issued by a login endpoint that django-axes
guards against password guessing.

- `POST /api/auth/token/` (username, password) issues a token and shows it once; only its SHA-256 digest is
  stored. Failed attempts are counted per client address and per username by django-axes (the same counter as
  the admin login form); at `AXES_FAILURE_LIMIT` both are locked out (429 `locked_out`) for `AXES_COOLOFF_S`.
  Requests are also rate-limited per client address (`GALFRIDAY_THROTTLE_AUTH`).
- `Authorization: Token <token>` authenticates while the token is unexpired (`GALFRIDAY_API_TOKEN_TTL_S`), its user
  active and the user's password unchanged since it was issued; otherwise the token is deleted and refused.
- `POST /api/auth/token/revoke/` deletes the token that authenticates the request (`all`: every token of the user).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, user_logged_in
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from galfriday_site.models import ApiToken
from galfriday_site.throttling import AuthRateThrottle
from galfriday_site.tokens import api_token_issue, api_token_revoke_all


class LockedOut(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Too many failed logins: locked out for a while."
    default_code = "locked_out"


class TokenObtainApi(APIView):
    """Issue an API token for a username and password (shown once; only its digest is kept)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [AuthRateThrottle]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # The DRF request goes to the backends: django-axes reads the client address from it and marks a lockout
        # on it (not on Django's request, so AxesMiddleware leaves this API's error shape alone).
        user = authenticate(
            request=request, username=data.validated_data["username"], password=data.validated_data["password"]
        )
        if getattr(request, "axes_locked_out", False):
            raise LockedOut()
        if user is None or not user.is_active:
            raise ApplicationError("Unable to log in with the provided credentials.", code="invalid_credentials")
        user_logged_in.send(sender=user.__class__, request=request, user=user)  # last_login; axes resets its count
        raw, row = api_token_issue(user=user)
        return Response(self.OutputSerializer({"token": raw, "expires_at": row.expires_at}).data)


class TokenRevokeApi(APIView):
    """Delete the token this request authenticates with (`all`: every token of the user)."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        all = serializers.BooleanField(default=False)

    class OutputSerializer(serializers.Serializer):
        revoked = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["all"]:
            revoked = api_token_revoke_all(user=request.user)
        elif isinstance(request.auth, ApiToken):
            revoked, _ = ApiToken.objects.filter(pk=request.auth.pk).delete()
        else:
            revoked = 0
        return Response({"revoked": revoked})
