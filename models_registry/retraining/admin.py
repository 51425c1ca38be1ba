"""Retraining in the admin: runs with their triggers and steps (read-only), the loop's step log per model (the
model's lifecycle history), versions on probation, per-model policies (edited through the service), and the
"Retrain now" action on registered models (an operator's trigger; a running retraining is joined)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from core.admin import StaffReadOnlyMixin
from core.audit import audit_actor
from core.errors import ApplicationError
from models_registry.models import RegisteredModel
from models_registry.retraining.models import (
    Probation,
    RetrainingEvent,
    RetrainingPolicy,
    RetrainingRun,
    RetrainingTrigger,
    TriggerKind,
)
from models_registry.retraining.services import POLICY_FIELDS, retraining_policy_set, retraining_trigger


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


@admin.action(description="Retrain now (joins a running retraining)", permissions=["change"])
def retrain_now(modeladmin: Any, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> None:
    actor = _actor(request)
    for model in queryset.order_by("pk"):
        try:
            with audit_actor(actor):
                result = retraining_trigger(
                    model_name=model.name, kind=TriggerKind.OPERATOR, reason=f"requested in the admin by {actor}",
                    actor=actor,
                )  # fmt: skip
        except ApplicationError as exc:
            modeladmin.message_user(request, f"{model.name}: {exc.message}", messages.ERROR)
            continue
        what = "started" if result.started else "joined"
        run = result.run.pk if result.run else "-"
        modeladmin.message_user(request, f"{model.name}: retraining run {run} {what}", messages.SUCCESS)


class TriggerInline(StaffReadOnlyMixin, admin.TabularInline):
    model = RetrainingTrigger
    fk_name = "run"
    extra = 0
    fields = readonly_fields = ("at", "kind", "drift_report", "actor", "reason", "joined")


class StepInline(StaffReadOnlyMixin, admin.TabularInline):
    model = RetrainingEvent
    fk_name = "run"
    extra = 0
    ordering = ["at", "id"]
    fields = readonly_fields = ("at", "step", "version", "actor", "detail")


@admin.register(RetrainingRun)
class RetrainingRunAdmin(StaffReadOnlyMixin, SimpleHistoryAdmin):
    list_display = ["id", "model", "status", "trigger", "parent", "challenger", "experiment_id", "created_at"]
    list_filter = ["status", "trigger", "model"]
    search_fields = ["model__name", "reason", "outcome"]
    readonly_fields = [
        "model", "status", "trigger", "reason", "actor", "drift_report", "parent", "challenger",
        "training_request_id", "data_start", "data_end", "change_point_at", "experiment_id", "gate_report",
        "outcome", "attempts", "created_at", "started_at", "finished_at",
    ]  # fmt: skip
    inlines = [TriggerInline, StepInline]


@admin.register(RetrainingEvent)
class RetrainingEventAdmin(StaffReadOnlyMixin, admin.ModelAdmin):
    """The loop's steps of every model, oldest first: filter by model for its lifecycle history."""

    list_display = ["at", "model", "step", "run", "version", "actor", "detail"]
    list_filter = ["model", "step"]
    search_fields = ["detail"]
    ordering = ["at", "id"]
    readonly_fields = ["at", "model", "step", "run", "version", "actor", "detail", "data"]


@admin.register(RetrainingTrigger)
class RetrainingTriggerAdmin(StaffReadOnlyMixin, admin.ModelAdmin):
    list_display = ["at", "model", "kind", "run", "joined", "suppressed", "actor"]
    list_filter = ["kind", "joined", "model"]
    readonly_fields = ["at", "model", "kind", "run", "drift_report", "actor", "reason", "joined", "suppressed"]


@admin.register(Probation)
class ProbationAdmin(StaffReadOnlyMixin, SimpleHistoryAdmin):
    list_display = ["version", "model", "status", "previous", "started_at", "until", "checked_at"]
    list_filter = ["status", "model"]
    readonly_fields = [
        "model", "version", "previous", "run", "status", "started_at", "until", "checked_at", "last_report",
        "outcome", "alert_id",
    ]  # fmt: skip


@admin.register(RetrainingPolicy)
class RetrainingPolicyAdmin(SimpleHistoryAdmin):
    list_display = ["model", "enabled", "on_drift", "schedule_hours", "window_hours", "cooldown_hours"]
    fields = ["model", *POLICY_FIELDS]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["model"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: RetrainingPolicy, form: Any, change: bool) -> None:
        values = {name: form.cleaned_data.get(name) for name in POLICY_FIELDS}
        saved = retraining_policy_set(model=obj.model, values=values, actor=_actor(request))
        obj.pk = saved.pk

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
