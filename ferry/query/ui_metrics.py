"""The metrics explorer's catalogue: every Prometheus series name with its type, unit, help, series count
and the cardinality of each label, read through the PromQL store so names match what queries see.

Names, types and units come from query/prom_store.py (PromStore families and metadata), never re-derived.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ferry.query.prom_store import PromStore, unit_suffix

# A label with more values than this, or a metric with more series, is shown as a cardinality warning.
LABEL_WARN_VALUES = 100
SERIES_WARN = 1_000


async def catalogue(store: PromStore, start_ms: int, end_ms: int, search: str = "") -> dict[str, Any]:
    """One entry per series name with points in [start, end] whose name contains `search` (any case),
    in name order, with its series count and each label's number of values."""
    fams = await store.families(start_ms, end_ms)
    info: dict[str, dict[str, str]] = {}
    for f in fams:
        unit = f.unit if f.kind == "rw" else unit_suffix(f.unit, f.kind)
        for series_name in f.series_names():
            info.setdefault(series_name, {"type": f.prom_type, "unit": unit, "help": f.help, "family": f.name})
    # remote_write senders' own TYPE/HELP/UNIT (prom_metadata) name their families.
    for family, entries in (await store.metadata(None, None)).items():
        e = entries[0]
        for series_name in (family, f"{family}_bucket", f"{family}_sum", f"{family}_count", f"{family}_total"):
            known = info.get(series_name)
            if known is not None and known["type"] == "unknown":
                known.update(type=e.get("type") or "unknown", help=e.get("help") or known["help"],
                             unit=e.get("unit") or known["unit"], family=family)
    needle = search.lower()
    wanted = [n for n in info if needle in n.lower()]
    series: dict[str, int] = defaultdict(int)
    values: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    if wanted:
        # One label set per series: counting them is per series, never per sample.
        for labels in await store.series_labels([], start_ms, end_ms):
            name = labels.get("__name__", "")
            if needle and needle not in name.lower():
                continue
            series[name] += 1
            per = values[name]
            for k, v in labels.items():
                if k != "__name__":
                    per[k].add(v)
    out = []
    for name in sorted(set(wanted) | {n for n in series if needle in n.lower()}):
        meta = info.get(name, {"type": "gauge" if name == "target_info" else "unknown", "unit": "", "help": "",
                               "family": name})
        labels = sorted(({"name": k, "values": len(v), "warn": len(v) > LABEL_WARN_VALUES}
                         for k, v in values[name].items()), key=lambda x: (-x["values"], x["name"]))
        out.append({"name": name, **meta, "series": series.get(name, 0), "labels": labels,
                    "warn": series.get(name, 0) > SERIES_WARN or any(x["warn"] for x in labels)})
    return {"metrics": out, "label_warn_values": LABEL_WARN_VALUES, "series_warn": SERIES_WARN}
