"""Admin for alerts (acknowledge, resolve) and silences (create, expire). Every change goes through the
`trading.alerts` services, so it is audited and announced like a change made through the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from core.errors import ApplicationError
from trading import alerts
from trading.models import Alert, AlertSilence
from trading.permissions import actor_name


@admin.register(Alert)
class AlertAdmin(SimpleHistoryAdmin):
    list_display = ["created_at", "severity", "kind", "state", "count", "last_seen_at", "message", "silence"]
    list_filter = ["state", "severity", "kind"]
    search_fields = ["fingerprint", "message"]
    readonly_fields = [
        "kind", "severity", "fingerprint", "state", "message", "context", "count", "created_at", "last_seen_at",
        "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at", "silence", "runbook",
    ]  # fmt: skip
    actions = ["acknowledge", "resolve"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="runbook")
    def runbook(self, obj: Alert) -> str:
        url = alerts.runbook_url(obj.kind)
        return format_html('<a href="{}">{}</a>', url, url)

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done = skipped = 0
        for alert in queryset.order_by("pk"):
            try:
                alerts.alert_acknowledge(alert_id=alert.pk, actor=actor_name(request.user))
                done += 1
            except ApplicationError:  # resolved meanwhile: nothing to acknowledge
                skipped += 1
        self.message_user(request, f"Acknowledged {done}; {skipped} already resolved.", messages.SUCCESS)

    @admin.action(description="Resolve selected alerts")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        for alert in queryset.order_by("pk"):
            alerts.alert_resolve(alert_id=alert.pk, actor=actor_name(request.user), note="resolved from the admin")
        self.message_user(request, "Resolved.", messages.SUCCESS)


class SilenceForm(forms.ModelForm):
    duration_minutes = forms.IntegerField(min_value=1, initial=60, help_text="from now")

    class Meta:
        model = AlertSilence
        fields = ["kind", "fingerprint", "reason"]
        widgets = {"kind": forms.Select(choices=[("", "any kind"), *Alert.Kind.choices])}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("kind") and not data.get("fingerprint"):
            raise forms.ValidationError("A silence needs a kind or a fingerprint to match.")
        return data


@admin.register(AlertSilence)
class AlertSilenceAdmin(SimpleHistoryAdmin):
    list_display = ["kind", "fingerprint", "starts_at", "ends_at", "reason", "created_by"]
    list_filter = ["kind"]
    actions = ["expire"]
    form = SilenceForm

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: AlertSilence, form: Any, change: bool) -> None:
        try:
            created = alerts.alert_silence_create(
                kind=obj.kind,
                fingerprint=obj.fingerprint,
                reason=obj.reason,
                actor=actor_name(request.user),
                duration=timedelta(minutes=form.cleaned_data["duration_minutes"]),
            )
        except ApplicationError as exc:
            self.message_user(request, f"{exc.message} {exc.details}", messages.ERROR)
            return
        for name in ("pk", "starts_at", "ends_at", "created_by", "created_at"):  # the admin logs and shows `obj`
            setattr(obj, name, getattr(created, name))

    @admin.action(description="Expire selected silences now")
    def expire(self, request: HttpRequest, queryset: QuerySet[AlertSilence]) -> None:
        for silence in queryset.order_by("pk"):
            alerts.alert_silence_expire(silence_id=silence.pk, actor=actor_name(request.user))
        self.message_user(request, "Expired.", messages.SUCCESS)
