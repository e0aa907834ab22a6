"""Settings of a spanmetrics stage instance (`pipeline.stages.NAME` with `kind: spanmetrics`).

Imported by ferry.config.model and the registry before any role runs: pydantic only, nothing heavy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ferry.stages.instance import StageInstance

# The OpenTelemetry Collector spanmetrics and servicegraph connectors' default bounds, in seconds.
DEFAULT_BUCKETS_S = [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0]


class SpanMetricsConfig(StageInstance):
    """Counts spans (calls, errors by status code, a duration histogram) by service, span name, kind and
    status, and the calls between services (client/server span pairs), as delta metrics in `outputs`."""

    kind: Literal["spanmetrics"] = Field("spanmetrics", description="The stage kind.")
    buckets_s: list[float] = Field(
        DEFAULT_BUCKETS_S, min_length=1, description="Explicit histogram bounds of span durations, in seconds, ascending."
    )
    window_s: float = Field(
        30.0, gt=0, description="How long a client or server span waits for its other half (it may come in a later batch)."
    )
    max_pending: int = Field(
        100_000, ge=0,
        description="Unpaired spans kept at most; past it the oldest are let go and counted as dropped "
                    "(ferry_dropped_records_total{component=\"spanmetrics\", reason=\"size_limit\"}).",
    )

    @field_validator("buckets_s")
    @classmethod
    def _ascending(cls, v: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("bounds must be strictly ascending")
        return v


Config = SpanMetricsConfig  # a stage instance's model, as the registry finds it
