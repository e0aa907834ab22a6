"""Jaeger's query API on a running ferry: the traces test_tempo_api sends with the OpenTelemetry SDK,
read back as Jaeger's JSON model: services, operations, search with tags and durations, trace by id,
dependencies, tenants kept apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from test_tempo_api import OTHER, TENANT, Sent, send_traces

from ferry.testing import FerryProcess


@pytest.fixture(scope="module")
def sent(ferry: FerryProcess) -> Iterator[Sent]:
    yield send_traces(ferry)


def _get(ferry: FerryProcess, path: str, tenant: str = TENANT, **params: Any) -> httpx.Response:
    return httpx.get(ferry.api + "/jaeger" + path, params=params, headers={"X-Scope-OrgID": tenant}, timeout=30)


def _data(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["errors"] is None and set(body) == {"data", "total", "limit", "offset", "errors"}
    return body["data"]


def _found(ferry: FerryProcess, tenant: str = TENANT, **params: Any) -> list[str]:
    now_us = time.time_ns() // 1000
    params.setdefault("start", now_us - 3600 * 10**6)
    params.setdefault("end", now_us)
    return sorted(t["traceID"] for t in _data(_get(ferry, "/api/traces", tenant=tenant, **params)))


def _ids(sent: Sent, *labels: str) -> list[str]:
    return sorted(sent.ids[x] for x in labels)


def test_services_and_operations(ferry: FerryProcess, sent: Sent) -> None:
    assert _data(_get(ferry, "/api/services")) == ["frontend", "payment"]
    assert _data(_get(ferry, "/api/services", tenant=OTHER)) == ["frontend"]
    assert _data(_get(ferry, "/api/services/payment/operations")) == ["charge", "db query", "healthcheck"]
    ops = _data(_get(ferry, "/api/operations", service="frontend", spanKind="server"))
    assert ops == [{"name": "GET /checkout", "spanKind": "server"}, {"name": "GET /report", "spanKind": "server"}]
    all_ops = _data(_get(ferry, "/api/operations", service="frontend"))
    assert {"name": "call payment", "spanKind": "client"} in all_ops and len(all_ops) == 4


def test_trace_by_id_in_jaeger_model(ferry: FerryProcess, sent: Sent) -> None:
    """Spans with CHILD_OF references, µs times, kind and status as tags, events as logs; one
    process per service with the resource attributes as its tags."""
    (tr,) = _data(_get(ferry, f"/api/traces/{sent.ids['checkout']}"))
    assert tr["traceID"] == sent.ids["checkout"]
    procs = tr["processes"]
    assert sorted(p["serviceName"] for p in procs.values()) == ["frontend", "payment"]
    assert all({"key": "deployment.environment", "type": "string", "value": "test"} in p["tags"] for p in procs.values())
    got = {s["spanID"]: (s["operationName"], s["references"][0]["spanID"] if s["references"] else "") for s in tr["spans"]}
    assert got == sent.spans["checkout"]
    assert all(ref["refType"] == "CHILD_OF" and ref["traceID"] == sent.ids["checkout"]
               for s in tr["spans"] for ref in s["references"])
    charge = next(s for s in tr["spans"] if s["operationName"] == "charge")
    assert procs[charge["processID"]]["serviceName"] == "payment"
    assert charge["duration"] == 220_000
    root = next(s for s in tr["spans"] if s["operationName"] == "GET /checkout")
    assert charge["startTime"] - root["startTime"] == 20_000
    tags = {t["key"]: (t["type"], t["value"]) for t in charge["tags"]}
    assert tags["span.kind"] == ("string", "server")
    assert tags["otel.status_code"] == ("string", "ERROR")
    assert tags["otel.status_description"] == ("string", "card declined")
    assert tags["error"] == ("bool", True)
    assert tags["attempt"] == ("string", "3") and tags["payment.amount"] == ("string", "12.5")
    (log,) = charge["logs"]
    assert log["timestamp"] - root["startTime"] == 200_000
    assert {"key": "event", "type": "string", "value": "declined"} in log["fields"]
    assert {"key": "reason", "type": "string", "value": "insufficient funds"} in log["fields"]

    missing = _get(ferry, "/api/traces/" + "cd" * 16)
    assert missing.status_code == 404
    assert missing.json()["data"] is None and missing.json()["errors"][0]["code"] == 404
    assert _get(ferry, f"/api/traces/{sent.ids['checkout']}", tenant=OTHER).status_code == 404


def test_search_by_service_operation_tags_and_duration(ferry: FerryProcess, sent: Sent) -> None:
    assert _found(ferry, service="payment") == _ids(sent, "checkout", "health")
    assert _found(ferry, service="payment", tags=orjson.dumps({"error": "true"}).decode()) == _ids(sent, "checkout")
    assert _found(ferry, service="payment", tags='{"error": false}') == _ids(sent, "checkout", "health")
    assert _found(ferry, service="payment", tags='{"otel.status_code": "OK"}') == _ids(sent, "health")
    assert _found(ferry, service="payment", tags='{"db.system": "postgres"}') == _ids(sent, "checkout")
    assert _found(ferry, service="payment", tags='{"db.system": "mysql"}') == []
    assert _found(ferry, service="frontend", tags='{"span.kind": "client"}') == _ids(sent, "checkout")
    assert _found(ferry, service="frontend", tag="http.status_code:200") == _ids(sent, "report")
    assert _found(ferry, service="payment", operation="db query") == _ids(sent, "checkout")
    assert _found(ferry, service="frontend", minDuration="500ms") == _ids(sent, "report")
    assert _found(ferry, service="payment", maxDuration="10ms") == _ids(sent, "health")
    assert _found(ferry, service="frontend", minDuration="250ms", maxDuration="0.5s") == _ids(sent, "checkout")
    assert _found(ferry, service="frontend", tenant=OTHER) == _ids(sent, "other")
    old = time.time_ns() // 1000 - 7200 * 10**6
    assert _found(ferry, service="payment", start=old, end=old + 3600 * 10**6) == []
    assert len(_found(ferry, service="frontend", limit=1)) == 1
    full = _data(_get(ferry, "/api/traces", service="payment", tags='{"error":"true"}', lookback="2h"))
    assert len(full) == 1 and len(full[0]["spans"]) == 4, "a hit carries its whole trace"
    both = _data(_get(ferry, "/api/traces", traceID=[sent.ids["report"], sent.ids["health"]]))
    assert [t["traceID"] for t in both] == [sent.ids["report"], sent.ids["health"]]


@pytest.mark.parametrize(("params", "named"), [
    ({}, "service"),
    ({"service": "x", "tags": "error=true"}, "JSON object"),
    ({"service": "x", "tags": '{"error": "maybe"}'}, "error takes true or false"),
    ({"service": "x", "minDuration": "soon"}, "minDuration"),
    ({"service": "x", "limit": "-1"}, "limit"),
])
def test_search_errors_in_jaeger_shape(ferry: FerryProcess, sent: Sent, params: dict[str, str], named: str) -> None:
    r = _get(ferry, "/api/traces", **params)
    assert r.status_code == 400
    body = r.json()
    assert body["data"] is None and body["errors"][0]["code"] == 400 and named in body["errors"][0]["msg"], body


def test_dependencies(ferry: FerryProcess, sent: Sent) -> None:
    """Calls between services, from each span whose parent belongs to another service."""
    now_ms = time.time_ns() // 10**6
    deps = _data(_get(ferry, "/api/dependencies", endTs=now_ms, lookback=3_600_000))
    assert deps == [{"parent": "frontend", "child": "payment", "callCount": 1}]
    assert _data(_get(ferry, "/api/dependencies", tenant=OTHER, endTs=now_ms, lookback=3_600_000)) == []
    assert _data(_get(ferry, "/api/dependencies", endTs=now_ms - 3_600_000, lookback=60_000)) == []
