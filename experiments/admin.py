"""Admin: experiments with their arms, their event log, the audit history (django-simple-history) and the results
on the change page. Rows change only through `experiments.services`, as from the API and the command line: the
"New experiment" page creates (and optionally starts) one, and each experiment's "Change status" page starts,
pauses, resumes, stops, aborts, concludes or promotes the winner, always with a reason. Observations and the
sufficient statistics are derived data, shown read-only."""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from simple_history.admin import SimpleHistoryAdmin

from core.admin import StaffReadOnlyMixin
from core.audit import user_actor
from core.errors import ApplicationError
from experiments import services
from experiments.models import (
    DEFAULT_BURN_IN,
    Arm,
    ArmStatistics,
    Experiment,
    ExperimentEvent,
    ExperimentObservation,
    Guardrail,
    Metric,
    Mode,
    Status,
)
from experiments.results import experiment_results
from models_registry.models import RegisteredModel

logger = logging.getLogger(__name__)


def _numbers(text: str, name: str) -> list[str]:
    parts = [p.strip() for p in (text or "").replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise forms.ValidationError(f"give at least one {name}")
    return parts


class ExperimentCreateForm(forms.Form):
    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.order_by("name"), to_field_name="name")
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    mode = forms.ChoiceField(choices=Mode.choices, initial=Mode.SHADOW)
    treatments = forms.CharField(
        help_text="version numbers of the model, comma separated (e.g. 7 or 7, 8); the champion is the control"
    )
    allocations = forms.CharField(
        required=False,
        help_text="split only: percents of the control then each treatment, comma separated, summing to 100 "
        "(e.g. 50, 25, 25)",
    )
    primary_metric = forms.ChoiceField(choices=Metric.choices, initial=Metric.NET_RETURN)
    alpha = forms.FloatField(initial=0.05, help_text="in (0, 0.5)")
    minimum_sample = forms.IntegerField(initial=1000, min_value=1)
    maximum_duration = forms.DurationField(initial=timedelta(days=14), help_text='e.g. "14 00:00:00" (days hh:mm:ss)')
    burn_in = forms.IntegerField(initial=DEFAULT_BURN_IN, min_value=1)
    mixing_variance = forms.FloatField(initial=0.04)
    max_treatment_drawdown = forms.FloatField(required=False, help_text="guardrail, e.g. 0.05 (blank: off)")
    max_error_rate = forms.FloatField(required=False, help_text="guardrail, e.g. 0.01 (blank: off)")
    max_latency_ms = forms.FloatField(required=False, help_text="guardrail, p99 in ms (blank: off)")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    start_now = forms.BooleanField(required=False, initial=True, help_text="start it at once (else a draft)")

    def clean_treatments(self) -> list[int]:
        try:
            return [int(v) for v in _numbers(self.cleaned_data["treatments"], "version")]
        except ValueError:
            raise forms.ValidationError("versions are whole numbers, comma separated") from None

    def clean_allocations(self) -> list[str]:
        text = self.cleaned_data.get("allocations") or ""
        return _numbers(text, "allocation") if text.strip() else []

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        treatments: list[dict[str, Any]] = [{"version": v} for v in data["treatments"]]
        control_share: str | None = None
        if data["allocations"]:
            if len(data["allocations"]) != len(treatments) + 1:
                raise ApplicationError(
                    "give one allocation for the control and one for each treatment", code="allocation_not_100"
                )
            control_share = data["allocations"][0]
            for row, share in zip(treatments, data["allocations"][1:], strict=True):
                row["allocation_percent"] = share
        return {
            "model_name": data["model"].name,
            "name": data["name"],
            "description": data["description"] or "",
            "mode": data["mode"],
            "treatments": treatments,
            "control_allocation_percent": control_share,
            "primary_metric": data["primary_metric"],
            "alpha": data["alpha"],
            "minimum_sample": data["minimum_sample"],
            "maximum_duration": data["maximum_duration"],
            "burn_in": data["burn_in"],
            "mixing_variance": data["mixing_variance"],
            "max_treatment_drawdown": data["max_treatment_drawdown"],
            "max_error_rate": data["max_error_rate"],
            "max_latency_ms": data["max_latency_ms"],
            "reason": data["reason"],
        }


class ExperimentActionForm(forms.Form):
    ACTIONS = [
        ("start", "start"),
        ("pause", "pause"),
        ("resume", "resume"),
        ("stop", "stop (a guardrail was breached)"),
        ("abort", "abort"),
        ("conclude", "conclude"),
        ("promote", "promote the winner"),
    ]
    action = forms.ChoiceField(choices=ACTIONS)
    guardrail = forms.ChoiceField(
        choices=[("", "---"), *Guardrail.choices], required=False, help_text="for stop: the guardrail breached"
    )
    winner = forms.CharField(
        required=False,
        max_length=64,
        help_text="for conclude: an arm's name; blank takes the statistical winner if the evidence is decisive",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    override = forms.BooleanField(
        required=False, help_text="for promote: despite failed registry gates (needs the override permission)"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("action") == "stop" and not data.get("guardrail"):
            self.add_error("guardrail", "stop needs the guardrail that was breached")
        return data


def _apply(experiment: Experiment, data: dict[str, Any], request: HttpRequest) -> str:
    """Run the chosen transition through its service; what was done, for the message."""
    common = {"experiment_id": experiment.pk, "actor": user_actor(request.user), "reason": data["reason"]}
    action = data["action"]
    if action == "start":
        services.experiment_start(**common)
    elif action == "pause":
        services.experiment_pause(**common)
    elif action == "resume":
        services.experiment_resume(**common)
    elif action == "stop":
        services.experiment_stop(**common, guardrail=data["guardrail"])
    elif action == "abort":
        services.experiment_abort(**common)
    elif action == "conclude":
        done = services.experiment_conclude(**common, winner=data["winner"] or None)
        return f"concluded ({'winner ' + done.winner.name if done.winner else 'no winner'})"
    else:
        version = services.experiment_promote_winner(**common, user=request.user, override=data["override"])
        return f"v{version.version} promoted to {version.stage}"
    return {"start": "started", "pause": "paused", "resume": "resumed", "stop": "stopped", "abort": "aborted"}[action]


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "—" if value is None else format(value, spec)


def _interval(row: dict[str, Any], key: str = "mean", spec: str = ".4g") -> str:
    if row.get(key) is None:
        return "—"
    if row.get("ci_low") is None or row.get("ci_high") is None:
        return _fmt(row[key], spec)
    return f"{format(row[key], spec)} [{format(row['ci_low'], spec)}, {format(row['ci_high'], spec)}]"


def _polyline(points: list[tuple[float, float]], width: int, height: int, low: float, high: float) -> str:
    """SVG polyline coordinates of (x, y) points scaled into width x height (y from low at the bottom)."""
    xs = [x for x, _ in points]
    x0, x1 = min(xs), max(xs)
    span_x = (x1 - x0) or 1.0
    span_y = (high - low) or 1.0
    return " ".join(
        f"{(x - x0) / span_x * width:.1f},{height - (min(max(y, low), high) - low) / span_y * height:.1f}"
        for x, y in points
    )


def series_svg(results: dict[str, Any]) -> SafeString:
    """Per treatment, two small charts over the outcomes counted: the primary metric's difference to the control
    (with zero marked) and its always-valid p on a log scale (with alpha marked)."""
    alpha = float(results.get("experiment", {}).get("alpha") or 0.05)
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for point in results.get("series") or []:
        by_arm.setdefault(str(point["arm"]), []).append(point)
    charts = []
    width, height = 360, 70
    for arm, points in by_arm.items():
        deltas = [(float(p["n"]), float(p["delta"])) for p in points if p.get("delta") is not None]
        ps = [(float(p["n"]), math.log10(max(float(p["p"]), 1e-12))) for p in points if p.get("p") is not None]
        if len(deltas) < 2 and len(ps) < 2:
            continue
        parts = []
        if len(deltas) >= 2:
            values = [y for _, y in deltas]
            low, high = min(0.0, *values), max(0.0, *values)
            zero = _polyline([(deltas[0][0], 0.0), (deltas[-1][0], 0.0)], width, height, low, high)
            parts.append(
                format_html(
                    '<svg width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="difference over time">'
                    '<polyline points="{}" fill="none" stroke="#999" stroke-dasharray="4"/>'
                    '<polyline points="{}" fill="none" stroke="#264b5d" stroke-width="1.5"/></svg>',
                    width,
                    height,
                    width,
                    height,
                    zero,
                    _polyline(deltas, width, height, low, high),
                )  # fmt: skip
            )
        if len(ps) >= 2:
            low = min(math.log10(alpha) - 1.0, *(y for _, y in ps))
            line = _polyline([(ps[0][0], math.log10(alpha)), (ps[-1][0], math.log10(alpha))], width, height, low, 0.0)
            parts.append(
                format_html(
                    '<svg width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="always-valid p over time">'
                    '<polyline points="{}" fill="none" stroke="#ba2121" stroke-dasharray="4"/>'
                    '<polyline points="{}" fill="none" stroke="#264b5d" stroke-width="1.5"/></svg>',
                    width,
                    height,
                    width,
                    height,
                    line,
                    _polyline(ps, width, height, low, 0.0),
                )  # fmt: skip
            )
        charts.append(
            format_html(
                "<p>{}: difference on the primary metric (dashed: 0) and always-valid p, log scale (dashed: alpha "
                "{}), over {} outcomes</p>{}",
                arm,
                alpha,
                int(points[-1]["n"]),
                format_html_join(" ", "{}", ((part,) for part in parts)),
            )
        )
    return format_html_join("", "{}", ((chart,) for chart in charts))


def results_html(results: dict[str, Any]) -> SafeString:
    """The results document as HTML tables (escaped): where the decision stands, SRM, per arm n and metrics with
    intervals, per treatment the difference with its always-valid interval and p-values, guardrails."""
    srm = results.get("srm") or {}
    decision = results.get("decision") or {}
    banner = ""
    if srm.get("status") in ("warn", "flag"):
        banner = format_html(
            '<p class="errornote">Sample ratio mismatch ({}): p = {}. The router may be broken; the comparison '
            "is not to be trusted until it is explained.</p>",
            srm["status"],
            _fmt(srm.get("p_value")),
        )
    head = format_html(
        "<p>Decision: <strong>{}</strong>{}{}. SRM: {} (p = {}). As of {}.</p>",
        decision.get("state", "—"),
        format_html(", winner <strong>{}</strong>", decision["winner"]) if decision.get("winner") else "",
        format_html(" — {}", decision["reason"]) if decision.get("reason") else "",
        srm.get("status", "—"),
        _fmt(srm.get("p_value")),
        results.get("as_of", ""),
    )
    arm_rows = []
    comparison_rows = []
    guardrail_rows = []
    for arm in results.get("arms") or []:
        metrics = arm.get("metrics") or {}
        arm_rows.append(
            (
                arm["name"],
                arm["role"],
                arm["version"],
                arm["allocation_percent"],
                arm["n_assigned"],
                arm["n_outcomes"],
                arm["n_errors"],
                "; ".join(f"{name} {_interval(row)}" for name, row in metrics.items()) or "—",
            )
        )
        comparison = arm.get("comparison")
        if comparison:
            for name, row in (comparison.get("metrics") or {}).items():
                comparison_rows.append(
                    (
                        arm["name"],
                        name,
                        comparison.get("n"),
                        _interval(row, "estimate"),
                        _fmt(row.get("p_value")),
                        _fmt(row.get("p_holm")),
                        "yes" if row.get("ready") else "burn-in",
                        row.get("better") or "—",
                    )
                )
        for name, row in (arm.get("guardrails") or {}).items():
            guardrail_rows.append(
                (
                    arm["name"],
                    name,
                    _fmt(row.get("observed")),
                    _fmt(row.get("threshold")) if row.get("threshold") is not None else "off",
                    "BREACHED" if row.get("breached") else "ok",
                )
            )

    def table(headers: list[str], rows: list[tuple[Any, ...]]) -> SafeString:
        if not rows:
            return SafeString("")
        cells = "".join("<td>{}</td>" for _ in headers)
        return format_html(
            "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<th>{}</th>", ((h,) for h in headers)),
            format_html_join("", f"<tr>{cells}</tr>", rows),
        )

    return format_html(
        "{}{}{}{}{}{}",
        banner,
        head,
        table(
            ["arm", "role", "version", "allocation %", "decisions", "outcomes", "errors", "metrics (95 %)"], arm_rows
        ),
        table(
            ["treatment", "metric", "n", "delta [always-valid CI]", "always-valid p", "Holm p", "ready", "better"],
            comparison_rows,
        ),
        table(["treatment", "guardrail", "observed", "threshold", "state"], guardrail_rows),
        series_svg(results),
    )


class ArmInline(StaffReadOnlyMixin, admin.TabularInline):
    model = Arm
    extra = 0
    fields = readonly_fields = ("name", "role", "version", "allocation_percent", "position")


class EventInline(StaffReadOnlyMixin, admin.TabularInline):
    model = ExperimentEvent
    extra = 0
    ordering = ["at", "id"]
    fields = readonly_fields = ("at", "action", "from_status", "to_status", "actor", "reason")


@admin.register(Experiment)
class ExperimentAdmin(StaffReadOnlyMixin, SimpleHistoryAdmin):
    history_list_display = ["actor", "status", "status_reason"]
    list_display = ["id", "name", "model", "mode", "status", "winner", "primary_metric", "started_at", "ended_at"]
    list_filter = ["status", "mode", "model"]
    search_fields = ["name", "model__name", "created_by"]
    list_select_related = ["model", "winner"]
    readonly_fields = ["action_link", "results"]
    exclude = ["evidence"]
    inlines = [ArmInline, EventInline]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    @admin.display(description="status")
    def action_link(self, obj: Experiment) -> str:
        url = reverse("admin:experiments_experiment_action", args=[obj.pk])
        return format_html('{} <a class="button" href="{}">Change status</a>', obj.status, url)

    @admin.display(description="results")
    def results(self, obj: Experiment) -> str:
        if obj.status == Status.DRAFT:
            return "not started"
        try:
            return results_html(experiment_results(obj.pk))
        except ApplicationError as exc:
            return f"results unavailable: {exc.message}"

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path(
                "<int:pk>/action/",
                self.admin_site.admin_view(self.action_view),
                name="experiments_experiment_action",
            ),
        ]
        return extra + super().get_urls()

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """A new experiment through `experiments.services.experiment_create` (and `experiment_start` with "start
        now", in the same transaction: a refusal writes nothing)."""
        form = ExperimentCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                with transaction.atomic():
                    arguments = form.service_arguments()
                    created = services.experiment_create(**arguments, actor=user_actor(request.user))
                    if form.cleaned_data["start_now"]:
                        services.experiment_start(
                            experiment_id=created.pk, actor=user_actor(request.user), reason=arguments["reason"]
                        )
            except ApplicationError as exc:
                form.add_error(None, f"{exc.code}: {exc.message}")
            else:
                self.message_user(request, f"{created}: created", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:experiments_experiment_change", args=[created.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "New experiment",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/experiments/experiment/create_form.html", context)

    def action_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        experiment = get_object_or_404(Experiment.objects.select_related("model", "winner"), pk=pk)
        form = ExperimentActionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                done = _apply(experiment, form.cleaned_data, request)
            except ApplicationError as exc:
                form.add_error(None, f"{exc.code}: {exc.message}")
            else:
                self.message_user(request, f"{experiment.name}: {done}", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:experiments_experiment_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Change status of {experiment}",
            "experiment": experiment,
            "form": form,
            "results": self.results(experiment),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/experiments/experiment/action_form.html", context)


@admin.register(ExperimentEvent)
class ExperimentEventAdmin(StaffReadOnlyMixin, admin.ModelAdmin):
    list_display = ["at", "experiment", "action", "from_status", "to_status", "actor", "reason"]
    list_filter = ["action", "to_status"]
    search_fields = ["actor", "reason", "experiment__name"]
    list_select_related = ["experiment"]
    date_hierarchy = "at"


@admin.register(Arm)
class ArmAdmin(StaffReadOnlyMixin, SimpleHistoryAdmin):
    history_list_display = ["actor", "allocation_percent"]
    list_display = ["experiment", "name", "role", "version", "allocation_percent", "n_outcomes"]
    list_filter = ["role"]
    search_fields = ["experiment__name", "name"]
    list_select_related = ["experiment", "version__model", "statistics"]

    @admin.display(description="outcomes")
    def n_outcomes(self, obj: Arm) -> int:
        statistics: ArmStatistics | None = getattr(obj, "statistics", None)
        return statistics.n_outcomes if statistics is not None else 0


@admin.register(ExperimentObservation)
class ExperimentObservationAdmin(StaffReadOnlyMixin, admin.ModelAdmin):
    """One arm on one decision (derived from the registry's predictions and outcomes; read-only)."""

    list_display = ["experiment", "arm", "decision_key", "symbol", "bar_time", "latency_ms", "error", "counted"]
    list_filter = ["experiment", "symbol"]
    search_fields = ["decision_key"]
    list_select_related = ["experiment", "arm"]
    date_hierarchy = "bar_time"
    exclude = ["contribution", "pair_contribution"]

    @admin.display(description="outcome counted", boolean=True)
    def counted(self, obj: ExperimentObservation) -> bool:
        return obj.contribution is not None
