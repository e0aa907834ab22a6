"""What a dashboard file may say: the YAML model of ferry's dashboards as code (docs/dashboards.md).

Unknown keys are errors (extra="forbid"); checks no field can make alone are in ferry/dashboards/load.py.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PanelType = Literal["timeseries", "stat", "table", "logs", "traces", "heatmap"]
Language = Literal["promql", "logql", "search", "traceql"]
Unit = Literal["s", "ms", "bytes", "percent", "ops/s", "none"]

# Which query languages each panel type can draw (checked by the loader, at the query's `language` key).
LANGUAGES: dict[str, tuple[str, ...]] = {
    "timeseries": ("promql", "logql"),
    "stat": ("promql",),
    "table": ("promql",),
    "heatmap": ("promql",),
    "logs": ("search", "logql"),
    "traces": ("traceql",),
}

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<metric>[^,()]+?)\s*,\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")
_TIME = re.compile(r"^(now(-\d+(\.\d+)?[smhdw])?|\d{16,}|\d{4}-\d\d-\d\d.*)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Query(_Model):
    language: Language = Field(
        "promql",
        description="promql (Prometheus API), logql (Loki API), search (ferry's search language, /api/v1/logs) "
        "or traceql (Tempo search, for traces panels).",
    )
    expr: str = Field(
        min_length=1,
        description="The query. May use $variable (or ${variable}) and the built-ins $__interval, "
        "$__rate_interval, $__range and $__range_s.",
    )
    legend: str | None = Field(
        None, description="Series name with {{label}} placeholders, e.g. '{{reason}}'; default: the series' labels."
    )
    limit: int = Field(50, ge=1, le=1000, description="Rows of a logs, traces or table panel.")


class Threshold(_Model):
    value: float = Field(description="From this value up (inclusive) the colour applies.")
    colour: str = Field(
        pattern=r"^(#[0-9a-fA-F]{3,8}|[a-z]+)$", description="A CSS colour name (green, orange, red) or #hex."
    )


class Panel(_Model):
    type: PanelType = Field(description="timeseries, stat, table, logs, traces or heatmap.")
    title: str = Field(min_length=1, description="Shown at the top of the panel.")
    query: Query = Field(description="The one query this panel draws.")
    unit: Unit = Field("none", description="How values are shown: s, ms, bytes, percent (0-100), ops/s or none.")
    thresholds: list[Threshold] = Field(
        [], description="Colours by value (stat numbers, timeseries lines); the highest value not above wins."
    )
    width: int = Field(6, ge=1, le=12, description="Grid columns the panel spans, of 12 in a row.")
    description: str = Field("", description="Shown as the title's tooltip.")


class Row(_Model):
    title: str = Field("", description="Heading above the row's panels (none when empty).")
    panels: list[Panel] = Field(min_length=1, description="The panels, left to right; they wrap past 12 columns.")


class Variable(_Model):
    name: str = Field(description="Used in queries as $name; in the URL as var-name.")
    label: str | None = Field(None, description="The select's label (default: the name).")
    query: str | None = Field(
        None, description="Where the values come from: label_values(metric, label) or label_values(label)."
    )
    values: list[str] | None = Field(None, description="A fixed list of values (instead of query).")
    multi: bool = Field(False, description="More than one value may be chosen; they are joined with |.")
    include_all: bool = Field(False, description="Offer 'All', substituted as .* (use the variable in =~ matchers).")
    default: str | list[str] | None = Field(
        None, description="Chosen when the URL names none; default: All if offered, else the first value."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v) or v.startswith("__"):
            raise ValueError(f"{v!r} is not a variable name (letters, digits and _, not starting with a digit or __)")
        return v

    @field_validator("query")
    @classmethod
    def _label_values(cls, v: str | None) -> str | None:
        if v is not None and not LABEL_VALUES.match(v):
            raise ValueError(f"{v!r} is not label_values(metric, label) or label_values(label)")
        return v

    def source(self) -> tuple[str | None, str] | None:
        """(metric or None, label) of a label_values() variable; None for a fixed list."""
        m = LABEL_VALUES.match(self.query or "")
        return (m.group("metric"), m.group("label")) if m else None


class TimeRange(_Model):
    start: str = Field("now-1h", alias="from", description="Start of the default range: now-6h, an ISO date or ns.")
    end: str = Field("now", alias="to", description="End of the default range: now, an ISO date or ns.")

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        if not _TIME.match(v.strip()):
            raise ValueError(f"{v!r} is not a time: use now, now-15m, now-6h, an ISO date or nanoseconds")
        return v.strip()


class Dashboard(_Model):
    title: str = Field(min_length=1, description="The dashboard's name in the list and at the top of its page.")
    description: str = Field("", description="One line under the title in the list.")
    tags: list[str] = Field([], description="Words shown next to the title in the list.")
    time: TimeRange = Field(TimeRange(), description="The range shown when the URL names none.")
    refresh_s: float | None = Field(None, ge=5, description="Reload the panels every this many seconds (none: off).")
    variables: list[Variable] = Field([], description="Selects above the panels; their values are in the URL.")
    rows: list[Row] = Field(min_length=1, description="Rows of panels, top to bottom.")
