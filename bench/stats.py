"""Latency summaries shared by the benchmarks: nanosecond samples → milliseconds at fixed percentiles."""

from __future__ import annotations


def percentiles(values_ns: list[int], *, count_key: str = "n") -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in ms (3 decimals) of nanosecond samples; `count_key` names the sample count."""
    values = sorted(values_ns)
    if not values:
        return {}

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(len(values) * q))] / 1e6, 3)

    return {
        count_key: len(values),
        "p50_ms": at(0.50),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": round(values[-1] / 1e6, 3),
        "mean_ms": round(sum(values) / len(values) / 1e6, 3),
    }
