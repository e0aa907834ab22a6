"""Aligned text tables for the terminal: metric series and names, services, fields and counts.

Numbers are rounded for reading (three significant digits, whole numbers kept whole).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from typing import Any


def number(v: Any) -> str:
    """`12.3456` -> `12.3`, `1234.5` -> `1,235`, `0.001234` -> `0.00123`, `5.0` -> `5`; `-` for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    x = float(v)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    text = f"{x:.3g}" if abs(x) >= 1e-4 else f"{x:.2e}"
    return text


def when(t_s: int) -> str:
    return dt.datetime.fromtimestamp(t_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def ago(ns: int, now_ns: int | None = None) -> str:
    s = max(0, ((now_ns or time.time_ns()) - ns) // 1_000_000_000)
    d, h, m = s // 86400, s // 3600 % 24, s // 60 % 60
    return (f"{d}d {h}h" if d else f"{h}h {m}m" if h else f"{m}m {s % 60}s" if m else f"{s}s") + " ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """Columns padded to their widest cell; numbers (right=True) aligned right. The last column
    is not padded, so lines carry no trailing blanks."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    out = []
    for r in [headers, *rows]:
        cells = [str(c).rjust(w) if ra else str(c).ljust(w) for c, w, ra in zip(r, widths, right, strict=True)]
        out.append("  ".join(cells).rstrip())
    return out


def _labels(s: dict[str, Any]) -> str:
    parts = [f"service={s['service']}"] if s.get("service") else []
    return "  ".join([*parts, *(f"{k}={v}" for k, v in sorted(s["labels"].items()))])


def metric_series(name: str, series: list[dict[str, Any]]) -> list[str]:
    """One block per series: a heading (name, kind, unit, labels), a row per step and, over more
    than one step, a row for the whole range; histograms show count, mean and percentiles."""
    out: list[str] = []
    for s in series:
        if out:
            out.append("")
        kind = s["kind"] + (f", {s['unit']}" if s.get("unit") else "")
        out.append(f"{name}  ({kind})  {_labels(s)}".rstrip())
        if s["kind"] == "histogram":
            cols = ("count", "mean", "p50", "p90", "p99")
            rows = [[when(x["t"]), *(number(x[c]) for c in cols)] for x in s.get("stats", [])]
            if len(rows) > 1 and s.get("window"):
                rows.append(["whole range", *(number(s["window"][c]) for c in cols)])
            out += table(["time (UTC)", *cols], rows, [False, *([True] * len(cols))])
        else:
            rows = [[when(int(t)), number(v)] for t, v in s["points"]]
            if len(rows) > 1 and s.get("window"):
                label = "whole range (last)" if s["kind"] == "sum" else "whole range (mean)"
                rows.append([label, number(s["window"]["value"])])
            out += table(["time (UTC)", "value"], rows, [False, True])
        if s.get("exemplars"):
            out.append("exemplar traces: " + " ".join(s["exemplars"][:3]) + "   (ferry trace ID)")
    return out


def metric_names(rows: list[dict[str, Any]]) -> list[str]:
    body = [[r["name"], r["kind"], r["unit"] or "-", number(r["series"]), ", ".join(r["services"]) or "-"]
            for r in rows]
    return table(["metric", "kind", "unit", "series", "services"], body, [False, False, False, True, False])


def services(rows: list[dict[str, Any]], now_ns: int | None = None) -> list[str]:
    body = [[r["service"] or "(none)", number(r["logs"]), number(r["spans"]), number(r["metric_points"]),
             ago(int(r["last_seen_ns"]), now_ns)] for r in rows]
    return table(["service", "logs", "spans", "metric points", "last seen"], body, [False, True, True, True, False])


def fields(data: dict[str, Any]) -> list[str]:
    body = []
    for f in data["fields"]:
        name = f["field"] + (f" ({', '.join(f['aliases'])})" if f["aliases"] else "")
        examples = ", ".join(f"{t['value']} ({number(t['lines'])})" for t in f["top"])
        body.append([name, f["kind"], number(f["lines"]), number(f["distinct_values"]), examples])
    return table(["field", "kind", "lines", "values", "commonest values (lines)"], body,
                 [False, False, True, True, False])


def counts(data: dict[str, Any], by: str | None) -> list[str]:
    if "groups" not in data:
        return [number(data["count"])]
    groups = data["groups"]
    heads = [*(["time (UTC)"] if groups and "bucket" in groups[0] else []), *([by] if by else []), "count"]
    body = [[*([when(int(g["bucket"]))] if "bucket" in g else []), *([g["key"] or "(none)"] if by else []),
             number(g["count"])] for g in groups]
    return table(heads, body, [False] * (len(heads) - 1) + [True])
