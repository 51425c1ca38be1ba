"""Admin of drift: reports (read-only, the per-feature table drifted first), checks on demand (the reports'
"Add" page runs a check of the chosen version now and opens its report; an action checks the selected reports'
versions again), and each model's thresholds (through `drift.services.drift_policy_set`, validated and
audited). Registered by `models_registry.admin`."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from core.audit import audit_actor
from core.errors import ApplicationError
from models_registry.drift.checks import drift_check
from models_registry.drift.services import drift_policy_set
from models_registry.drift.thresholds import thresholds_validate
from models_registry.models import DriftPolicy, DriftReport


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


def _run(request: HttpRequest, version_ids: list[int]) -> list[DriftReport]:
    actor = _actor(request)
    done = []
    with audit_actor(actor):
        for version_id in version_ids:
            report = drift_check(version_id=version_id, trigger=DriftReport.Trigger.OPERATOR, actor=actor)
            if report is None:
                messages.warning(request, f"version id {version_id}: a check is already running")
            else:
                done.append(report)
    return done


@admin.register(DriftReport)
class DriftReportAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "model",
        "version_number",
        "as_of",
        "status",
        "kinds_display",
        "confirmed",
        "drift_share",
        "prediction_psi",
        "trigger",
    )
    list_filter = ("status", "confirmed", "trigger", "model")
    date_hierarchy = "as_of"
    actions = ["check_again"]
    readonly_fields = (
        "model",
        "version",
        "trigger",
        "actor",
        "as_of",
        "status",
        "kinds",
        "confirmed",
        "confirmed_by",
        "consecutive",
        "change_point_at",
        "dataset_drift",
        "drift_share",
        "n_features",
        "n_drifted",
        "prediction_psi",
        "feature_table",
        "prediction_json",
        "label_json",
        "concept_json",
        "windows_json",
        "thresholds_json",
        "alert_id",
        "error",
        "duration_ms",
        "created_at",
    )
    exclude = ("features", "prediction", "label", "concept", "windows", "thresholds")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # "Add" runs a check now: the report is the check's (nothing typed in is stored)
        return bool(request.user.is_active and request.user.is_staff)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            return DriftCheckForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["version"] if obj is None else super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: DriftReport, form: Any, change: bool) -> None:
        """The add page: check the chosen version now; the page then shows the check's report."""
        report = _run(request, [obj.version_id])
        if not report:
            raise ApplicationError("a drift check of this version is already running", code="drift_check_running")
        obj.__dict__.update({k: v for k, v in report[0].__dict__.items() if not k.startswith("_")})

    def response_add(self, request: HttpRequest, obj: DriftReport, post_url_continue: str | None = None) -> Any:
        messages.info(request, f"{obj}: {', '.join(obj.kinds) or 'no drift'}")
        return HttpResponseRedirect(reverse("admin:models_registry_driftreport_change", args=[obj.pk]))

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        try:
            return super().add_view(
                request, form_url, {**(extra_context or {}), "title": "Check a version for drift now"}
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(reverse("admin:models_registry_driftreport_changelist"))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def get_queryset(self, request: HttpRequest) -> QuerySet[DriftReport]:
        return super().get_queryset(request).select_related("model", "version")

    @admin.display(description="version", ordering="version__version")
    def version_number(self, obj: DriftReport) -> int:
        return obj.version.version

    @admin.display(description="kinds")
    def kinds_display(self, obj: DriftReport) -> str:
        return ", ".join(obj.kinds) or "-"

    @admin.display(description="features (drifted first)")
    def feature_table(self, obj: DriftReport) -> str:
        rows = [
            (
                r.get("feature", ""),
                r.get("test") or "-",
                f"{r['statistic']:.4g}" if isinstance(r.get("statistic"), float) else "-",
                f"{r['p_value']:.3g}" if isinstance(r.get("p_value"), float) else "-",
                r.get("threshold", "-"),
                "DRIFT" if r.get("drifted") else "ok",
                f"{r['psi']:.4f} ({r.get('psi_level', '')})" if isinstance(r.get("psi"), float) else "-",
            )
            for r in obj.features
        ]
        if not rows:
            return "-"
        head = format_html_join(
            "", "<th>{}</th>", [(h,) for h in ("feature", "test", "statistic", "p", "threshold", "verdict", "PSI")]
        )
        body = format_html_join("", "<tr>" + "<td>{}</td>" * 7 + "</tr>", rows)
        return format_html("<table><tr>{}</tr>{}</table>", head, body)

    def _json(self, value: Any) -> str:
        return format_html("<pre>{}</pre>", json.dumps(value, indent=2, default=str))

    @admin.display(description="prediction")
    def prediction_json(self, obj: DriftReport) -> str:
        return self._json(obj.prediction)

    @admin.display(description="label")
    def label_json(self, obj: DriftReport) -> str:
        return self._json(obj.label)

    @admin.display(description="concept")
    def concept_json(self, obj: DriftReport) -> str:
        return self._json(obj.concept)

    @admin.display(description="windows")
    def windows_json(self, obj: DriftReport) -> str:
        return self._json(obj.windows)

    @admin.display(description="thresholds")
    def thresholds_json(self, obj: DriftReport) -> str:
        return self._json(obj.thresholds)

    @admin.action(description="Check these reports' versions for drift again now")
    def check_again(self, request: HttpRequest, queryset: QuerySet[DriftReport]) -> None:
        if not request.user.is_staff:
            return
        done = _run(request, sorted(set(queryset.values_list("version_id", flat=True))))
        for report in done:
            messages.info(request, f"{report}: {', '.join(report.kinds) or 'no drift'}")


class DriftCheckForm(forms.ModelForm):
    """The version to check now (the admin's add page for drift reports)."""

    class Meta:
        model = DriftReport
        fields = ("version",)


class DriftPolicyForm(forms.ModelForm):
    class Meta:
        model = DriftPolicy
        fields = ("model", "thresholds")

    def clean_thresholds(self) -> dict[str, Any]:
        try:
            return thresholds_validate(self.cleaned_data.get("thresholds") or {})
        except ApplicationError as exc:
            raise forms.ValidationError(f"{exc.message}: {exc.details}") from exc


@admin.register(DriftPolicy)
class DriftPolicyAdmin(SimpleHistoryAdmin):
    form = DriftPolicyForm
    list_display = ("model", "thresholds", "updated_at")

    def save_model(self, request: HttpRequest, obj: DriftPolicy, form: Any, change: bool) -> None:
        saved = drift_policy_set(model=obj.model, thresholds=obj.thresholds, actor=_actor(request))
        obj.pk = saved.pk
