"""Human-readable rendering of log lines and span trees for the terminal.

One line per log: time, level, service, body, then the attributes a reader needs to act.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def ts(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def log_line(r: dict[str, Any]) -> str:
    # The level as the sender wrote it, whole: syslog's CRIT, ERR, WARNING and NOTICE say more
    # than a name cut to five letters or mapped onto OTel's six.
    level = r.get("level") or "-"
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
            out.append(f"{'  ' * depth}│    {ts(int(lg['time_ns']))} {(lg['level'] or '-')}: {lg['body']}")
        for ch in sorted(children.get(s["span_id"], []), key=lambda x: int(x["start_ns"])):
            walk(ch, depth + 1)

    for r in sorted(roots, key=lambda x: int(x["start_ns"])):
        walk(r, 0)
    orphans = [lg for lg in logs if lg["span_id"] not in by_id]
    for lg in orphans:
        out.append(f"   (no span) {ts(int(lg['time_ns']))} {(lg['level'] or '-')}: {lg['body']}")
    return out


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return ""


def _uptime(s: float) -> str:
    s = int(s)
    d, h, m = s // 86400, s // 3600 % 24, s // 60 % 60
    return f"{d}d {h}h {m}m" if d else f"{h}h {m}m" if h else f"{m}m {s % 60}s"


def status(api: str, data: dict[str, Any]) -> list[str]:
    """`ferry status`: one line per concern, the one needing action first."""
    stored = data.get("stored", {})
    disk = data.get("disk") or {}
    refusing = data.get("refusing") or []
    lag = data.get("lag_batches") or {}
    lines = [f"ferry at {api}, up {_uptime(data.get('uptime_s', 0))} (pid {data.get('pid')})"]
    lines.append("receivers  " + (f"REFUSING data: {', '.join(refusing)}" if refusing else "taking data"))
    if disk.get("free_bytes") is not None:
        floor = disk.get("min_free_bytes") or 0
        low = " — UNDER THE FLOOR" if floor and disk["free_bytes"] < floor else ""
        lines.append(f"disk       {_size(disk['free_bytes'])} free on the data disk; receivers refuse under "
                     f"{_size(floor)} (backpressure.min_free_disk_bytes){low}")
    lines.append(f"stored     logs {stored.get('logs', 0):,}   spans {stored.get('spans', 0):,}   "
                 f"metric points {stored.get('metric_points', 0):,}   siem events {stored.get('siem_events', 0):,}")
    behind = {k: v for k, v in lag.items() if v}
    lines.append("lag        " + (", ".join(f"{k} {v:,} batches" for k, v in sorted(behind.items())) if behind
                                  else "none (every consumer group is caught up)"))
    lines.append(f"spool      {data.get('spool_pending_batches', 0):,} batches waiting for the store")
    lines.append(f"bus        {data.get('bus_restarts', 0)} nats-server restarts")
    return lines


def _num(v: float | int | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    return f"{v:,}{unit}"


def pipeline(data: dict[str, Any]) -> list[str]:
    """`ferry pipeline`: one table of topics, one of stage instances, in the order they are declared."""
    out = ["Topics                 signal   batches     bytes   in/s  written by                            read by"]
    for t in data["topics"]:
        size = "-" if t["bytes"] is None else f"{t['bytes'] / 1024**2:,.1f} MB" if t["bytes"] >= 1024**2 else f"{t['bytes']:,} B"
        out.append(f"  {t['name']:<20} {t['signal']:<8} {_num(t['batches']):>7} {size:>9} {_num(t['rate_in']):>6}  "
                   f"{', '.join(t['writers']) or '(nothing here)':<37} {', '.join(t['readers']) or '-'}")
    out.append("")
    out.append("Stages                 kind        workers  lag (batches)         out/s  inputs -> outputs")
    for s in data["stages"]:
        lag = sum(v for v in s["lag"].values() if v is not None) if s["lag"] else None
        outs = ", ".join(s["outputs"]) or f"store ({s.get('table') or 'the table each batch names'})"
        out.append(f"  {s['name']:<20} {s['kind']:<11} {s['workers']:>7}  {_num(lag):>13} {_num(s['rate_out']):>13}  "
                   f"{', '.join(s['inputs'])} -> {outs}")
        extra = []
        if s["transforms"]:
            extra.append("transforms " + ", ".join(s["transforms"]))
        if s["routes"]:
            extra.append("routes " + ", ".join(s["routes"]))
        if extra:
            out.append(f"  {'':<20} {'; '.join(extra)}")
    if not data.get("probed"):
        out.append("(the bus has not been probed yet: depth, lag and rates appear within a second or two)")
    out.append(f"Rates in {data['rate_unit']}.")
    return out
