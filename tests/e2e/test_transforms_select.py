"""filter, link and metric_from_logs in a running ferry: syslog lines go in over TCP; the log store holds
what the filter kept with the ids as attributes, /api/v1/related walks the link, the derived metric
is queryable, and /metrics counts the filtered records."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

from ferry.testing import FerryProcess


def test_filter_link_and_metric_from_logs(tmp_path: Path) -> None:
    transforms = [
        {"type": "filter", "drop": "tag-e2e-noise"},
        {"type": "link", "name": "mail",
         "ids": {"queue_id": r"(?:queued as|report for) ([0-9A-F]{5,})", "report_id": r"dlr=(\w+)"}},
        {"type": "metric_from_logs", "name": "mail_lines", "by": ["app"], "when": "app:postfix*", "interval_s": 10},
    ]
    config = {"pipeline": {"stages": {"log_parser": {
        "outputs": ["log_commit", "siemapp_commit", "siemos_commit", "metrics_commit"], "transforms": transforms}}}}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lines = [
        f"<22>1 {now} mx postfix/cleanup 12 - - message queued as 4F2A1 tag-e2e-select",
        f"<22>1 {now} mx postfix/bounce 13 - - delivery report for 4F2A1 dlr=9Z8Y tag-e2e-select",
        f"<14>1 {now} mx chatty 14 - - tag-e2e-noise heartbeat",
    ]
    with FerryProcess(tmp_path / "data", config) as f:
        with socket.create_connection(("127.0.0.1", f.syslog_port), timeout=10) as s:
            s.sendall("".join(line + "\n" for line in lines).encode())
        rows = f.wait_for(lambda: len(f.search("tag-e2e-select")) == 2 and f.search("tag-e2e-select"), timeout=60)
        by_app = {r["service"]: r["attributes"] for r in rows}
        assert by_app["postfix/cleanup"]["queue_id"] == "4F2A1" and "report_id" not in by_app["postfix/cleanup"]
        assert (by_app["postfix/bounce"]["queue_id"], by_app["postfix/bounce"]["report_id"]) == ("4F2A1", "9Z8Y")

        assert f.search("tag-e2e-noise") == []  # dropped by the filter, and counted
        filtered = f.wait_for(lambda: f.metric("ferry_transform_records_total", stage="log_parser",
                                               transform="0:filter", outcome="filtered"), timeout=30)
        assert filtered >= 1

        related = f.wait_for(lambda: f.get("/api/v1/related", id="9Z8Y")["related"], timeout=60)
        assert [(r["id"], r["via"]) for r in related] == [("4F2A1", "mail")]
        assert len(f.get("/api/v1/related", id="4F2A1")["logs"]) == 2

        series = f.wait_for(lambda: f.get("/api/v1/metrics/series", name="mail_lines")["series"], timeout=60)
        assert {s["labels"].get("app") for s in series} == {"postfix/cleanup", "postfix/bounce"}
        assert sum(p[1] for s in series for p in s["points"]) == 2
