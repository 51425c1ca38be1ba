"""Who may trade: members of the `traders` group (created by a data migration) and superusers. Staff manage risk
limits (`galfriday_site.permissions.ReadAuthenticatedWriteStaff`); any authenticated user reads."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from core.audit import user_actor

TRADERS_GROUP = "traders"


def can_trade(user: Any) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    return bool(user.is_superuser) or user.groups.filter(name=TRADERS_GROUP).exists()


def actor_name(user: Any) -> str:
    return user_actor(user)


class IsTrader(BasePermission):
    message = "Trading actions need a member of the traders group."

    def has_permission(self, request: Any, view: Any) -> bool:
        return can_trade(request.user)
