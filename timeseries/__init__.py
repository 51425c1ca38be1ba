"""Time-series storage: InfluxDB when INFLUXDB_URL is set, a relational table otherwise."""

from __future__ import annotations

from django.conf import settings

from timeseries.base import InvalidPoint, Point, TimeSeriesError, TimeSeriesStore

__all__ = ["InvalidPoint", "Point", "TimeSeriesError", "TimeSeriesStore", "get_store"]


def get_store() -> TimeSeriesStore:
    """The configured store, built from settings at call time."""
    if settings.INFLUXDB_URL:
        # Backend chosen at call time: only the configured adapter (and its client library) is loaded.
        from timeseries.influx import InfluxStore

        return InfluxStore(
            url=settings.INFLUXDB_URL,
            database=settings.INFLUXDB_DATABASE,
            username=settings.INFLUXDB_USERNAME,
            password=settings.INFLUXDB_PASSWORD,
            token=settings.INFLUXDB_TOKEN,
            timeout=settings.INFLUXDB_TIMEOUT,
        )
    # Not at module level: relational.py loads timeseries.models, which this app package cannot import before
    # the app registry is ready.
    from timeseries.relational import RelationalStore

    return RelationalStore()
