from django.urls import path

from experiments.apis import (
    ExperimentAbortApi,
    ExperimentConcludeApi,
    ExperimentDetailApi,
    ExperimentListApi,
    ExperimentPauseApi,
    ExperimentPromoteApi,
    ExperimentResultsApi,
    ExperimentResumeApi,
    ExperimentStartApi,
    ExperimentStopApi,
)

app_name = "experiments"

urlpatterns = [
    path("", ExperimentListApi.as_view(), name="experiment-list"),
    path("<int:experiment_id>/", ExperimentDetailApi.as_view(), name="experiment-detail"),
    path("<int:experiment_id>/results/", ExperimentResultsApi.as_view(), name="experiment-results"),
    path("<int:experiment_id>/start/", ExperimentStartApi.as_view(), name="experiment-start"),
    path("<int:experiment_id>/pause/", ExperimentPauseApi.as_view(), name="experiment-pause"),
    path("<int:experiment_id>/resume/", ExperimentResumeApi.as_view(), name="experiment-resume"),
    path("<int:experiment_id>/stop/", ExperimentStopApi.as_view(), name="experiment-stop"),
    path("<int:experiment_id>/abort/", ExperimentAbortApi.as_view(), name="experiment-abort"),
    path("<int:experiment_id>/conclude/", ExperimentConcludeApi.as_view(), name="experiment-conclude"),
    path("<int:experiment_id>/promote/", ExperimentPromoteApi.as_view(), name="experiment-promote"),
]
