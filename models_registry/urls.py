from django.urls import path

from models_registry.apis import (
    AliasListApi,
    AliasRemoveApi,
    HistoryApi,
    ModelDetailApi,
    ModelListApi,
    ProductionAtApi,
    VersionArchiveApi,
    VersionArtifactApi,
    VersionCalibrationApi,
    VersionDetailApi,
    VersionListApi,
    VersionLiveMetricsApi,
    VersionMetricsApi,
    VersionOutcomesApi,
    VersionPromoteApi,
)
from models_registry.drift.apis import DriftReportDetailApi, DriftReportListApi, DriftThresholdsApi
from models_registry.retraining.apis import RetrainApi, RetrainingPolicyApi, RetrainingRunDetailApi

app_name = "models_registry"

urlpatterns = [
    path("", ModelListApi.as_view(), name="model-list"),
    path("<str:name>/", ModelDetailApi.as_view(), name="model-detail"),
    path("<str:name>/versions/", VersionListApi.as_view(), name="version-list"),
    path("<str:name>/versions/<int:version>/", VersionDetailApi.as_view(), name="version-detail"),
    path("<str:name>/versions/<int:version>/metrics/", VersionMetricsApi.as_view(), name="version-metrics"),
    path("<str:name>/versions/<int:version>/promote/", VersionPromoteApi.as_view(), name="version-promote"),
    path("<str:name>/versions/<int:version>/archive/", VersionArchiveApi.as_view(), name="version-archive"),
    path("<str:name>/versions/<int:version>/artifact/", VersionArtifactApi.as_view(), name="version-artifact"),
    path(
        "<str:name>/versions/<int:version>/live-metrics/", VersionLiveMetricsApi.as_view(), name="version-live-metrics"
    ),
    path("<str:name>/versions/<int:version>/outcomes/", VersionOutcomesApi.as_view(), name="version-outcomes"),
    path("<str:name>/versions/<int:version>/calibration/", VersionCalibrationApi.as_view(), name="version-calibration"),
    path("<str:name>/versions/<int:version>/drift/", DriftReportListApi.as_view(), name="version-drift"),
    path(
        "<str:name>/versions/<int:version>/drift/<int:report_id>/",
        DriftReportDetailApi.as_view(),
        name="version-drift-report",
    ),
    path("<str:name>/drift-thresholds/", DriftThresholdsApi.as_view(), name="drift-thresholds"),
    path("<str:name>/aliases/", AliasListApi.as_view(), name="alias-list"),
    path("<str:name>/aliases/<str:alias>/remove/", AliasRemoveApi.as_view(), name="alias-remove"),
    path("<str:name>/history/", HistoryApi.as_view(), name="history"),
    path("<str:name>/retrain/", RetrainApi.as_view(), name="retrain"),
    path("<str:name>/retrain/<int:run_id>/", RetrainingRunDetailApi.as_view(), name="retraining-run"),
    path("<str:name>/retraining-policy/", RetrainingPolicyApi.as_view(), name="retraining-policy"),
    path("<str:name>/production/", ProductionAtApi.as_view(), name="production"),
]
