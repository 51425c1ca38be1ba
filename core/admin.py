"""Admin pieces every app uses."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


class StaffReadOnlyMixin:
    """Rows that change only through services (an actor, a reason and a history row each time): every active staff
    account may look (the API's read rule), nobody adds, changes or deletes them here."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
