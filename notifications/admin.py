"""Notifications in the admin (staff, read-only: rows change through services): the channels, with the "send a
test notification" action; the delivery log (every message, its state, attempts, last error and the events it
carried, with its audited history), with a "re-queue" action for failed messages; the alert event log."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from core.admin import StaffReadOnlyMixin
from core.audit import user_actor
from core.errors import ApplicationError
from notifications import config, services
from notifications.models import AlertEvent, ChannelState, Notification, NotificationItem


@admin.register(ChannelState)
class ChannelAdmin(StaffReadOnlyMixin, admin.ModelAdmin):
    list_display = ("channel", "configured", "routing", "last_sent_at", "last_error_at", "last_error")
    readonly_fields = ("channel", "last_sent_at", "last_error", "last_error_at")
    actions = ["send_test"]

    @admin.display(boolean=True)
    def configured(self, obj: ChannelState) -> bool:
        return config.channel_configured(obj.channel)

    @admin.display(description="routing (severities; kinds)")
    def routing(self, obj: ChannelState) -> str:
        route = config.route_of(obj.channel)
        kinds = ", ".join(sorted(route.kinds)) or "every kind"
        return f"{', '.join(sorted(route.severities))}; {kinds}"

    @admin.action(description="Send a test notification to the selected channels")
    def send_test(self, request: HttpRequest, queryset: QuerySet[ChannelState]) -> None:
        for state in queryset.order_by("channel"):
            try:
                services.notification_send_test(requested_by=user_actor(request.user), channel=state.channel)
            except ApplicationError as exc:
                self.message_user(request, f"{state.channel}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{state.channel}: test notification queued.", messages.SUCCESS)


class ItemInline(admin.TabularInline):
    model = NotificationItem
    fields = ("event",)
    readonly_fields = ("event",)
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(StaffReadOnlyMixin, SimpleHistoryAdmin):
    list_display = (
        "id",
        "channel",
        "kind",
        "state",
        "subject",
        "event_count",
        "attempts",
        "created_at",
        "sent_at",
        "last_error",
    )
    list_filter = ("state", "channel", "kind", "bucket")
    search_fields = ("subject", "body", "last_error")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Notification._meta.fields]
    inlines = [ItemInline]
    actions = ["requeue"]

    @admin.action(description="Re-queue the selected failed or pending messages")
    def requeue(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        done = 0
        for notification in queryset.exclude(state=Notification.State.SENT).order_by("pk"):
            services.notification_requeue(notification_id=notification.pk, actor=user_actor(request.user))
            done += 1
        self.message_user(request, f"{done} message(s) re-queued (sent ones are never sent twice).", messages.SUCCESS)


@admin.register(AlertEvent)
class AlertEventAdmin(StaffReadOnlyMixin, admin.ModelAdmin):
    list_display = ("occurred_at", "alert_id", "change", "severity", "kind", "count", "silenced", "routed_to")
    list_filter = ("change", "severity", "kind", "silenced")
    search_fields = ("message", "fingerprint")
    date_hierarchy = "occurred_at"
    readonly_fields = [f.name for f in AlertEvent._meta.fields]
