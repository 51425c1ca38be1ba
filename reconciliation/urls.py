from django.urls import path

from reconciliation.apis import (
    DiscrepancyAcknowledgeApi,
    DiscrepancyDetailApi,
    DiscrepancyListApi,
    DiscrepancyResolveApi,
    RunDetailApi,
    RunListApi,
    RunTriggerApi,
)

app_name = "reconciliation"

urlpatterns = [
    path("runs/", RunListApi.as_view(), name="run-list"),
    path("runs/trigger/", RunTriggerApi.as_view(), name="run-trigger"),
    path("runs/<int:run_id>/", RunDetailApi.as_view(), name="run-detail"),
    path("discrepancies/", DiscrepancyListApi.as_view(), name="discrepancy-list"),
    path("discrepancies/<int:discrepancy_id>/", DiscrepancyDetailApi.as_view(), name="discrepancy-detail"),
    path(
        "discrepancies/<int:discrepancy_id>/acknowledge/",
        DiscrepancyAcknowledgeApi.as_view(),
        name="discrepancy-acknowledge",
    ),
    path("discrepancies/<int:discrepancy_id>/resolve/", DiscrepancyResolveApi.as_view(), name="discrepancy-resolve"),
]
