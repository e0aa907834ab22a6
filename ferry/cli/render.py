"""Human-readable rendering of log lines and span trees for the terminal.

One line per log: time, level, service, body, then the attributes a reader needs to act.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def ts(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def log_line(r: dict[str, Any]) -> str:
    level = (r.get("level") or "-").upper()[:5]
    svc = r.get("service") or (r.get("resource") or {}).get("host.name") or "-"
    extra = ""
    if r.get("trace_id"):
        extra = f"  trace={r['trace_id']}"
    return f"{ts(int(r['time_ns']))} {level:<5} {svc}: {r.get('body', '')}{extra}"


def _dur(ns: int) -> str:
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f}s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e3:.0f}µs"


def trace_tree(data: dict[str, Any]) -> list[str]:
    spans = data["spans"]
    logs = data["logs"]
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for s in spans:
        parent = s["parent_span_id"]
        if parent and parent in by_id:
            children.setdefault(parent, []).append(s)
        else:
            roots.append(s)
    logs_of: dict[str, list[dict[str, Any]]] = {}
    for lg in logs:
        logs_of.setdefault(lg["span_id"], []).append(lg)
    out = [f"trace {data['trace_id']}: {len(spans)} spans, {len(logs)} log lines"]
    t0 = min((int(s["start_ns"]) for s in spans), default=0)

    def walk(s: dict[str, Any], depth: int) -> None:
        status = {"STATUS_CODE_ERROR": " ERROR", "STATUS_CODE_OK": " OK"}.get(s["status"], "")
        msg = f" ({s['status_message']})" if s.get("status_message") else ""
        offset = _dur(int(s["start_ns"]) - t0)
        out.append(f"{'  ' * depth}├─ {s['name']} [{s['service']}] {_dur(int(s['duration_ns']))} +{offset}{status}{msg}")
        for lg in sorted(logs_of.get(s["span_id"], []), key=lambda x: int(x["time_ns"])):
            out.append(f"{'  ' * depth}│    {ts(int(lg['time_ns']))} {(lg['level'] or '-').upper()}: {lg['body']}")
        for ch in sorted(children.get(s["span_id"], []), key=lambda x: int(x["start_ns"])):
            walk(ch, depth + 1)

    for r in sorted(roots, key=lambda x: int(x["start_ns"])):
        walk(r, 0)
    orphans = [lg for lg in logs if lg["span_id"] not in by_id]
    for lg in orphans:
        out.append(f"   (no span) {ts(int(lg['time_ns']))} {(lg['level'] or '-').upper()}: {lg['body']}")
    return out
