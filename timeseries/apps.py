from django.apps import AppConfig


class TimeSeriesConfig(AppConfig):
    name = "timeseries"
    verbose_name = "Time series"
    default_auto_field = "django.db.models.BigAutoField"
