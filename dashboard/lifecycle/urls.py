"""Routes of the model-lifecycle and operations pages (models, experiments, reconciliation, system), and the read
endpoints their scripts fetch (under `/dashboard-api/`: JSON, login required, the API's one error shape)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from dashboard.lifecycle import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("models/", views.ModelsPage.as_view(), name="models"),
    path("models/<str:name>/", views.ModelDetailPage.as_view(), name="model-detail"),
    path("experiments/", views.ExperimentsPage.as_view(), name="experiments"),
    path("experiments/<int:experiment_id>/", views.ExperimentDetailPage.as_view(), name="experiment-detail"),
    path("reconciliation/", views.ReconciliationPage.as_view(), name="reconciliation"),
    path("system/", views.SystemPage.as_view(), name="system"),
    path(
        "dashboard-api/models/<str:name>/cumulative-net-return/",
        views.CumulativeNetReturnApi.as_view(),
        name="model-cumulative",
    ),
    path("dashboard-api/system/health/", views.HealthComponentsApi.as_view(), name="system-health"),
    path("dashboard-api/system/celery/", views.CeleryOverviewApi.as_view(), name="system-celery"),
]
