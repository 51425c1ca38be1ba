"""Admin: models, versions (read-only lineage and metrics), aliases and the stage history. Stages and aliases
move only through the "Change stage or alias" page of a version, which calls the same services as the API:
gates, permissions, reasons and history are the same whichever door is used."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from core.admin import StaffReadOnlyMixin
from core.errors import ApplicationError
from models_registry import services

# the drift admin (reports, a check on demand, thresholds) lives with drift; importing it registers it
from models_registry.drift import admin as drift_admin  # noqa: F401
from models_registry.models import (
    ModelAlias,
    ModelVersion,
    Prediction,
    PredictionOutcome,
    RegisteredModel,
    Stage,
    StageEvent,
)
from models_registry.outcomes.rules import OUTCOME_FIELDS

# the retraining admin lives with retraining (registered on import); its action retrains a model now
from models_registry.retraining import admin as retraining_admin
from models_registry.selectors import promotion_gate_report


class StageChangeForm(forms.Form):
    ACTIONS = [
        ("promote:staging", "promote to staging"),
        ("promote:production", "promote to production"),
        ("archive", "archive"),
        ("alias", "point alias at this version"),
    ]
    action = forms.ChoiceField(choices=ACTIONS)
    alias = forms.CharField(required=False, max_length=64, help_text="for the alias action, e.g. champion")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    override = forms.BooleanField(required=False, help_text="promote despite failed gates (needs the permission)")


@admin.register(RegisteredModel)
class RegisteredModelAdmin(SimpleHistoryAdmin):
    history_list_display = ["actor", "promotion_gates"]
    list_display = ["name", "description", "created_at", "updated_at"]
    search_fields = ["name"]
    fields = ["name", "description", "promotion_gates"]
    actions = [retraining_admin.retrain_now]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["name"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StageEventInline(StaffReadOnlyMixin, admin.TabularInline):
    model = StageEvent
    fk_name = "version"
    extra = 0
    ordering = ["at", "id"]
    fields = readonly_fields = ("at", "kind", "from_stage", "to_stage", "alias", "actor", "reason", "gate_overridden")


@admin.register(ModelVersion)
class ModelVersionAdmin(StaffReadOnlyMixin, SimpleHistoryAdmin):
    history_list_display = ["actor", "stage"]
    list_display = ["model", "version", "stage", "gates", "feature_set_name", "n_trials", "created_at"]
    list_filter = ["stage", "model"]
    search_fields = ["model__name", "artifact_sha256", "code_version"]
    readonly_fields = ["stage_link", "gate_failures"]

    @admin.display(description="production gates")
    def gates(self, obj: ModelVersion) -> str:
        report = obj.gate_report or {}
        if "passed" not in report:
            return "not evaluated"
        return "passed" if report["passed"] else f"failed ({sum(1 for r in report['results'] if not r['passed'])})"

    @admin.display(description="why it may not serve production")
    def gate_failures(self, obj: ModelVersion) -> str:
        report = obj.gate_report or {}
        failed = [r["detail"] for r in report.get("results", []) if not r["passed"]]
        if "passed" not in report:
            return "the production gates have not been evaluated for this version"
        return "; ".join(failed) if failed else f"every production gate passed ({report.get('evaluated_at', '')})"

    inlines = [StageEventInline]

    @admin.display(description="stage or alias")
    def stage_link(self, obj: ModelVersion) -> str:
        url = reverse("admin:models_registry_modelversion_stage", args=[obj.pk])
        return format_html('<a class="button" href="{}">Change stage or alias</a>', url)

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path(
                "<int:pk>/stage/",
                self.admin_site.admin_view(self.stage_view),
                name="models_registry_modelversion_stage",
            )
        ]
        return extra + super().get_urls()

    def stage_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        version = get_object_or_404(ModelVersion.objects.select_related("model"), pk=pk)
        form = StageChangeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            common = {"model_name": version.model.name, "version": version.version, "reason": data["reason"]}
            try:
                if data["action"].startswith("promote:"):
                    services.model_version_promote(
                        **common, stage=data["action"].split(":", 1)[1], user=request.user, override=data["override"]
                    )
                elif data["action"] == "archive":
                    services.model_version_archive(**common, user=request.user)
                else:
                    services.model_alias_set(
                        **common, alias=data["alias"], user=request.user, override=data["override"]
                    )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"{version.model.name} v{version.version}: done", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:models_registry_modelversion_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Change stage or alias of {version}",
            "version": version,
            "form": form,
            "gate_report": promotion_gate_report(version=version, target=Stage.PRODUCTION).as_json(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/models_registry/modelversion/stage_form.html", context)


@admin.register(ModelAlias)
class ModelAliasAdmin(StaffReadOnlyMixin, SimpleHistoryAdmin):
    history_list_display = ["actor", "version"]
    list_display = ["model", "name", "version", "updated_at"]
    list_filter = ["model", "name"]


@admin.register(StageEvent)
class StageEventAdmin(StaffReadOnlyMixin, admin.ModelAdmin):
    list_display = ["at", "model", "version", "kind", "from_stage", "to_stage", "alias", "actor", "gate_overridden"]
    list_filter = ["model", "kind", "to_stage", "gate_overridden"]
    search_fields = ["actor", "reason", "alias"]
    date_hierarchy = "at"


class PredictionOutcomeInline(StaffReadOnlyMixin, admin.StackedInline):
    model = PredictionOutcome
    fk_name = "prediction"
    extra = 0
    fields = readonly_fields = OUTCOME_FIELDS


@admin.register(Prediction)
class PredictionAdmin(StaffReadOnlyMixin, admin.ModelAdmin):
    """Recorded predictions with their outcome (read-only: written by the prediction service and maturation)."""

    list_display = ["decision_id", "version", "symbol", "bar_time", "horizon", "signal", "confidence", "outcome_status"]
    list_filter = ["signal", "version__model"]
    search_fields = ["decision_id", "symbol"]
    date_hierarchy = "created_at"
    list_select_related = ["version__model", "outcome"]
    readonly_fields = ["feature_row"]
    exclude = ["features"]
    inlines = [PredictionOutcomeInline]

    @admin.display(description="outcome")
    def outcome_status(self, obj: Prediction) -> str:
        outcome = getattr(obj, "outcome", None)
        if outcome is None:
            return "-"
        if outcome.status == PredictionOutcome.Status.MATURED:
            return f"label {outcome.realised_label:+d}, net {outcome.net_return:+.4%}"
        return f"pending ({outcome.pending_reason})"

    @admin.display(description="features (float32, signature order)")
    def feature_row(self, obj: Prediction) -> str:
        row = obj.feature_vector()
        if row is None:
            return "-"
        names = obj.version.feature_names
        return ", ".join(f"{n}={v:.6g}" for n, v in zip(names, row, strict=False))


@admin.register(PredictionOutcome)
class PredictionOutcomeAdmin(StaffReadOnlyMixin, SimpleHistoryAdmin):
    """What each prediction's horizon turned out to be (read-only: written by the maturation service)."""

    list_display = [
        "prediction",
        "version",
        "symbol",
        "bar_time",
        "status",
        "realised_label",
        "direction_hit",
        "net_return",
        "revisions",
    ]
    list_filter = ["status", "direction_hit", "version__model"]
    search_fields = ["prediction__decision_id", "symbol"]
    list_select_related = ["prediction", "version__model"]
    date_hierarchy = "bar_time"
