"""The model-lifecycle and operations pages: Models, Experiments, Reconciliation, System (login required), and the
few read endpoints their scripts fetch that the domain APIs do not already serve (a model's cumulative net return
per version, the health checks with every component, Celery's queues and workers). Pages read through selectors;
staff actions post to the domain apps' own APIs (audited services), never to a page view."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFoundError
from dashboard.lifecycle import selectors, system
from dashboard.pages import DashboardPage
from experiments.models import Guardrail, Status
from models_registry import selectors as registry_selectors


class ModelsPage(DashboardPage):
    template_name = "dashboard/lifecycle/models.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["rows"] = selectors.model_overview()
        context["limit"] = selectors.MODEL_LIMIT
        return context


class ModelDetailPage(DashboardPage):
    template_name = "dashboard/lifecycle/model_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        page = selectors.model_page(name=kwargs["name"])
        if page is None:
            raise Http404(f"model {kwargs['name']!r} is not registered")
        context["page"] = page
        context["limits"] = {
            "versions": selectors.VERSION_LIMIT,
            "events": selectors.EVENT_LIMIT,
            "drift": selectors.DRIFT_LIMIT,
            "features": selectors.FEATURE_LIMIT,
        }
        context["charts"] = {"model": page.model.name, "serving": page.serving, "chart": page.chart_versions}
        return context


class ExperimentsPage(DashboardPage):
    template_name = "dashboard/lifecycle/experiments.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        status = self.request.GET.get("status") or None
        model = self.request.GET.get("model") or None
        if status not in (None, *Status.values):
            status = None
        context.update(
            rows=selectors.experiment_rows(status=status, model_name=model),
            status=status or "",
            model=model or "",
            statuses=Status.values,
            models=selectors.experiment_model_names(),
            limit=selectors.EXPERIMENT_LIMIT,
        )
        return context


class ExperimentDetailPage(DashboardPage):
    template_name = "dashboard/lifecycle/experiment_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        page = selectors.experiment_page(experiment_id=kwargs["experiment_id"])
        if page is None:
            raise Http404(f"experiment {kwargs['experiment_id']} does not exist")
        context.update(page)
        context["guardrails"] = Guardrail.choices
        experiment = page["experiment"]
        context["chart"] = {
            "id": experiment.pk,
            "model": experiment.model.name,
            "primary": experiment.primary_metric,
            "series": page["results"]["series"],
            "arms": [{"name": a["name"], "version": a["version"]} for a in page["results"]["arms"]],
            "since": experiment.started_at.isoformat() if experiment.started_at else None,
            "until": experiment.ended_at.isoformat() if experiment.ended_at else None,
        }
        return context


class ReconciliationPage(DashboardPage):
    template_name = "dashboard/lifecycle/reconciliation.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(system.reconciliation_overview())
        context["limits"] = {"runs": system.RUN_LIMIT, "discrepancies": system.DISCREPANCY_LIMIT}
        return context


class SystemPage(DashboardPage):
    template_name = "dashboard/lifecycle/system.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(system.system_overview())
        return context


# --- what the pages' scripts fetch ------------------------------------------------------------------------------


class CumulativeNetReturnApi(APIView):
    """A model's cumulative net return per version (matured outcomes in bar-time order, downsampled)."""

    class FilterSerializer(serializers.Serializer):
        versions = serializers.RegexField(
            r"^\d{1,9}(,\d{1,9}){0,19}$", required=False, help_text="comma-separated version numbers"
        )
        since = serializers.DateTimeField(required=False, help_text="outcomes with a bar time from here")
        until = serializers.DateTimeField(required=False, help_text="outcomes with a bar time before this")

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
                raise serializers.ValidationError({"until": "must be after since"})
            return attrs

    @extend_schema(parameters=[FilterSerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, name: str) -> Response:
        model = registry_selectors.registered_model_get(name=name)
        if model is None:
            raise NotFoundError(f"model {name!r} is not registered", details={"model": name})
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        raw = filters.validated_data.get("versions")
        if raw:
            numbers = [int(v) for v in raw.split(",")]
        else:
            page = selectors.model_page(name=name)
            numbers = page.chart_versions if page else []
        return Response(
            {
                "model": name,
                "points": selectors.SERIES_POINTS,
                "versions": selectors.cumulative_net_returns(
                    model=model,
                    versions=numbers,
                    since=filters.validated_data.get("since"),
                    until=filters.validated_data.get("until"),
                ),
            }
        )


class HealthComponentsApi(APIView):
    """Every component's health check with its latency (always 200: the page shows the failures; staff also see
    the backend and the error)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response(system.health_components(details=bool(request.user.is_staff)))


class CeleryOverviewApi(APIView):
    """Celery queue depths from the broker and the workers that answer a ping."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response(system.celery_overview())
