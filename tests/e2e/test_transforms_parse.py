"""json then combined in a running ferry: a JSON log whose `line` key holds an Apache access line goes in
over OTLP/HTTP, the log store holds its keys as attributes, the access line's fields, and its time; a
record that is not JSON is stored as sent and counted on /metrics."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from ferry.testing import FerryProcess
from ferry.testing.otlp import logs_request


def test_json_and_access_log_parsed_into_attributes_and_time(tmp_path: Path) -> None:
    transforms = [{"type": "json"}, {"type": "combined", "field": "line", "prefix": "web."}]
    config = {"pipeline": {"stages": {"log_parser": {"transforms": transforms}}}}
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    line = (
        f'203.0.113.7 - alice [{at.strftime("%d/%b/%Y:%H:%M:%S +0000")}] "GET /cart?id=9 HTTP/1.1" 404 153 '
        '"https://shop.example/" "Mozilla/5.0"'
    )
    bodies = [
        json.dumps({"msg": "tagjsonparse served", "req": {"id": "r-1", "bytes": 153}, "line": line}),
        "tagjsonparse plain text, not JSON",
    ]
    with FerryProcess(tmp_path / "data", config) as f:
        r = httpx.post(
            f.otlp_http + "/v1/logs",
            content=logs_request(bodies, service="shop"),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        rows = f.wait_for(lambda: (got := f.search("tagjsonparse")) and len(got) == 2 and got, timeout=60)
        parsed = next(row for row in rows if row["body"] == bodies[0])
        assert parsed["attributes"] == {
            "msg": "tagjsonparse served",
            "req.id": "r-1",
            "req.bytes": "153",
            "line": line,
            "web.client.address": "203.0.113.7",
            "web.user.name": "alice",
            "web.http.request.method": "GET",
            "web.url.path": "/cart",
            "web.url.query": "id=9",
            "web.network.protocol.version": "1.1",
            "web.http.response.status_code": "404",
            "web.http.response.body.size": "153",
            "web.http.request.header.referer": "https://shop.example/",
            "web.user_agent.original": "Mozilla/5.0",
        }
        assert int(parsed["time_ns"]) == int(at.timestamp()) * 10**9, "the record's time is the access line's"
        plain = next(row for row in rows if row["body"] == bodies[1])
        assert plain["attributes"] == {}
        assert f.search('web.http.response.status_code:404 tagjsonparse'), "parsed attributes are searchable"

        def counted(transform: str, outcome: str) -> float:
            return f.metric("ferry_transform_records_total", stage="log_parser", transform=transform, outcome=outcome)

        # ferry's own log records pass through the chain too, so at least ours
        deadline = time.monotonic() + 30
        while counted("0:json", "not_json") < 1 and time.monotonic() < deadline:
            time.sleep(0.25)
        assert counted("0:json", "not_json") >= 1
