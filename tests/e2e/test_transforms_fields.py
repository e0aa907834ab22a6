"""set, cast, enrich and redact in a running ferry: an OTLP record goes in, the log store holds it transformed,
and /metrics counts what each transform changed."""

from __future__ import annotations

from pathlib import Path

import httpx

from ferry.testing import FerryProcess
from ferry.testing.otlp import logs_request


def test_a_record_is_stored_set_cast_enriched_and_redacted(tmp_path: Path) -> None:
    owners = tmp_path / "owners.csv"
    owners.write_text("host,team\nbench-host,payments\n")
    transforms = [
        {"type": "set", "field": "level", "value": "error", "when": "status:>=500"},
        {"type": "cast", "fields": {"latency_ms": "int", "retry": "bool"}},
        {
            "type": "enrich",
            "static": {"cluster": "eu-1"},
            "table": {"path": str(owners), "key": "host", "field": "host", "prefix": "resource.owner."},
            "maps": [{"field": "service", "into": "tier", "values": {"checkout": "gold"}}],
        },
        {"type": "redact"},
    ]
    config = {"pipeline": {"stages": {"log_parser": {"transforms": transforms}}}}
    with FerryProcess(tmp_path / "data", config) as f:
        attrs = {"status": "503", "latency_ms": "042", "retry": "maybe", "contact": "bob@example.com"}
        body = "charge 4111 1111 1111 1111 from 10.0.0.1 tag-e2e-fields"
        r = httpx.post(
            f.otlp_http + "/v1/logs",
            content=logs_request([body], service="checkout", attrs=attrs),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        rows = f.wait_for(lambda: f.search("tag-e2e-fields"), timeout=60)
        row = rows[0]
        assert row["body"] == "charge [REDACTED:card] from [REDACTED:ipv4] tag-e2e-fields", row
        assert row["attributes"] == {"status": "503", "latency_ms": "42", "contact": "[REDACTED:email]", "tier": "gold"}
        assert row["resource"]["cluster"] == "eu-1" and row["resource"]["owner.team"] == "payments"
        assert row["level"].lower() == "error"
        assert f.search("level:error tag-e2e-fields"), "SeverityNumber follows the level set"

        def counted(transform: str, outcome: str) -> float:
            return f.metric("ferry_transform_records_total", stage="log_parser", transform=transform, outcome=outcome)

        assert counted("1:cast", "ignore_malformed") == 1  # retry=maybe is no bool: dropped, record kept
        assert counted("3:redact", "redacted_card") == 1
        assert counted("3:redact", "redacted_ipv4") >= 1  # ferry's own log records (127.0.0.1:port) pass here too
        assert counted("3:redact", "redacted_email") == 1
