from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission


class ReadAuthenticatedWriteStaff(BasePermission):
    """The API default: any authenticated user may read; only staff may write.

    Views that let other roles act (the trader group placing orders, for instance) say so themselves.
    """

    message = "Reading needs an authenticated user; changing anything needs a staff account."

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or bool(user.is_staff)
