"""Grafana Tempo's API on a running ferry: traces sent by the OpenTelemetry SDK over OTLP, read back by
id (OTLP JSON and protobuf), searched with TraceQL and tags, tag names and values, tenants kept apart.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from ferry.testing import FerryProcess

MS = 1_000_000
TENANT, OTHER = "acme", "globex"
Kind, Status, StatusCode = otel_trace.SpanKind, otel_trace.Status, otel_trace.StatusCode


def _hex(span: Any) -> str:
    return format(span.get_span_context().span_id, "016x")


def _tid(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


class Sent:
    """What the test sent: trace ids by name, and each trace's spans as {span id: (name, parent id)}."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.spans: dict[str, dict[str, tuple[str, str]]] = {}

    def add(self, label: str, *spans: Any) -> None:
        self.ids[label] = _tid(spans[0])
        self.spans[label] = {_hex(s): (s.name, format(s.parent.span_id, "016x") if s.parent else "") for s in spans}


def send_traces(ferry: FerryProcess) -> Sent:
    """Four traces as two instrumented services would send them (two TracerProviders, one resource
    each), over OTLP/HTTP with X-Scope-OrgID; the fourth under another tenant.
    checkout: frontend `GET /checkout` > `call payment` (client) > payment `charge` (error, event,
              typed attributes) > `db query`.  report: frontend `GET /report` > `render` (800 ms).
    health: payment `healthcheck` (status ok, 5 ms).  other: tenant globex, frontend `GET /checkout`."""
    sent = Sent()
    providers = []

    def tracer(service: str, tenant: str) -> Any:
        exporter = OTLPSpanExporter(endpoint=f"{ferry.otlp_http}/v1/traces", headers={"X-Scope-OrgID": tenant})
        tp = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "test"}))
        tp.add_span_processor(BatchSpanProcessor(exporter))
        providers.append(tp)
        return tp.get_tracer("shop", "1.0")

    front, pay, other = tracer("frontend", TENANT), tracer("payment", TENANT), tracer("frontend", OTHER)
    t0 = time.time_ns() - 120_000 * MS
    ends: dict[int, int] = {}  # span id -> end time: spans end after their children are made

    def span(tr: Any, name: str, start_ms: int, end_ms: int, parent: Any = None, kind: Any = Kind.INTERNAL,
             **attrs: Any) -> Any:
        ctx = otel_trace.set_span_in_context(parent) if parent is not None else None
        s = tr.start_span(name, context=ctx, kind=kind, start_time=t0 + start_ms * MS, attributes=attrs or None)
        ends[s.get_span_context().span_id] = t0 + end_ms * MS
        return s

    root = span(front, "GET /checkout", 0, 300, kind=Kind.SERVER, **{"http.method": "POST"})
    call = span(front, "call payment", 10, 250, root, Kind.CLIENT)
    charge = span(pay, "charge", 20, 240, call, Kind.SERVER, **{"payment.amount": 12.5, "retry": True, "attempt": 3})
    charge.add_event("declined", {"reason": "insufficient funds"}, timestamp=t0 + 200 * MS)
    charge.set_status(Status(StatusCode.ERROR, "card declined"))
    db = span(pay, "db query", 30, 80, charge, **{"db.system": "postgres"})
    report = span(front, "GET /report", 1000, 1900, kind=Kind.SERVER, **{"http.status_code": 200})
    render = span(front, "render", 1050, 1850, report)
    health = span(pay, "healthcheck", 2000, 2005, kind=Kind.SERVER)
    health.set_status(Status(StatusCode.OK))
    foreign = span(other, "GET /checkout", 3000, 3100, kind=Kind.SERVER)
    foreign.set_status(Status(StatusCode.ERROR, "boom"))
    spans = [root, call, charge, db, report, render, health, foreign]
    for s in reversed(spans):
        s.end(end_time=ends[s.get_span_context().span_id])
    sent.add("checkout", root, call, charge, db)
    sent.add("report", report, render)
    sent.add("health", health)
    sent.add("other", foreign)
    for tp in providers:
        tp.force_flush()
        tp.shutdown()
    # Stored once every span of every trace is readable.
    for label, tenant in (("checkout", TENANT), ("report", TENANT), ("health", TENANT), ("other", OTHER)):
        want = len(sent.spans[label])
        ferry.wait_for(lambda label=label, tenant=tenant, want=want: _stored(ferry, sent.ids[label], tenant) == want)
    return sent


def _stored(ferry: FerryProcess, trace_id: str, tenant: str) -> int:
    """Spans of a trace stored so far (404 until its first span is)."""
    r = _get(ferry, f"/tempo/api/traces/{trace_id}", tenant=tenant)
    return len(_spans_of(r.json())) if r.status_code == 200 else 0


def _get(ferry: FerryProcess, path: str, tenant: str = TENANT, accept: str | None = None, **params: Any) -> httpx.Response:
    headers = {"X-Scope-OrgID": tenant}
    if accept:
        headers["Accept"] = accept
    return httpx.get(ferry.api + path, params=params, headers=headers, timeout=30)


def _spans_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for b in body.get("batches", []) for ss in b["scopeSpans"] for s in ss["spans"]]


def _b64hex(v: str) -> str:
    return base64.b64decode(v).hex() if v else ""


@pytest.fixture(scope="module")
def sent(ferry: FerryProcess) -> Iterator[Sent]:
    yield send_traces(ferry)


def _search(ferry: FerryProcess, q: str | None = None, tenant: str = TENANT, **params: Any) -> list[str]:
    if q is not None:
        params["q"] = q
    r = _get(ferry, "/tempo/api/search", tenant=tenant, **params)
    assert r.status_code == 200, r.text
    return sorted(t["traceID"] for t in r.json()["traces"])


def _ids(sent: Sent, *labels: str) -> list[str]:
    return sorted(sent.ids[x] for x in labels)


def test_trace_by_id_json_matches_what_was_sent(ferry: FerryProcess, sent: Sent) -> None:
    """The v1 JSON answer: Tempo's `batches` of resourceSpans, one per service, every span with its
    parent, kind, status, typed attributes (as text), events; ids base64 as Tempo encodes them."""
    body = _get(ferry, f"/tempo/api/traces/{sent.ids['checkout']}").json()
    services = sorted(next(a["value"]["stringValue"] for a in b["resource"]["attributes"] if a["key"] == "service.name")
                      for b in body["batches"])
    assert services == ["frontend", "payment"]
    spans = _spans_of(body)
    got = {_b64hex(s["spanId"]): (s["name"], _b64hex(s.get("parentSpanId", ""))) for s in spans}
    assert got == sent.spans["checkout"]
    assert {_b64hex(s["traceId"]) for s in spans} == {sent.ids["checkout"]}
    charge = next(s for s in spans if s["name"] == "charge")
    assert charge["kind"] == "SPAN_KIND_SERVER"
    assert charge["status"] == {"code": "STATUS_CODE_ERROR", "message": "card declined"}
    attrs = {a["key"]: a["value"]["stringValue"] for a in charge["attributes"]}
    assert attrs == {"payment.amount": "12.5", "retry": "true", "attempt": "3"}
    assert [e["name"] for e in charge["events"]] == ["declined"]
    assert charge["events"][0]["attributes"] == [{"key": "reason", "value": {"stringValue": "insufficient funds"}}]
    assert int(charge["endTimeUnixNano"]) - int(charge["startTimeUnixNano"]) == 220 * MS
    scope = body["batches"][0]["scopeSpans"][0]["scope"]
    assert scope == {"name": "shop", "version": "1.0"}
    v2 = _get(ferry, f"/tempo/api/v2/traces/{sent.ids['checkout']}").json()
    assert sorted(s["name"] for b in v2["trace"]["resourceSpans"] for ss in b["scopeSpans"] for s in ss["spans"]) == \
        sorted(n for n, _ in sent.spans["checkout"].values())


def test_trace_by_id_protobuf_parses_as_otlp(ferry: FerryProcess, sent: Sent) -> None:
    """Accept: application/protobuf gives an OTLP TracesData (v1) and a TraceByIDResponse wrapping it (v2)."""
    r = _get(ferry, f"/tempo/api/traces/{sent.ids['checkout']}", accept="application/protobuf")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/protobuf")
    data = trace_pb2.TracesData.FromString(r.content)
    spans = [s for rs in data.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert {s.span_id.hex(): (s.name, s.parent_span_id.hex()) for s in spans} == sent.spans["checkout"]
    charge = next(s for s in spans if s.name == "charge")
    assert charge.status.code == trace_pb2.Status.STATUS_CODE_ERROR and charge.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert [e.name for e in charge.events] == ["declined"]

    r2 = _get(ferry, f"/tempo/api/v2/traces/{sent.ids['report']}", accept="application/protobuf")
    raw = r2.content
    assert raw[0] == 0x0A  # field 1 (trace), length-delimited
    length, shift, i = 0, 0, 1
    while True:
        length |= (raw[i] & 0x7F) << shift
        shift += 7
        i += 1
        if raw[i - 1] < 0x80:
            break
    inner = trace_pb2.TracesData.FromString(raw[i:i + length])
    assert sorted(s.name for rs in inner.resource_spans for ss in rs.scope_spans for s in ss.spans) == ["GET /report", "render"]


def test_trace_by_id_absent_or_bad(ferry: FerryProcess, sent: Sent) -> None:
    assert _get(ferry, "/tempo/api/traces/" + "ab" * 16).status_code == 404
    assert _get(ferry, "/tempo/api/v2/traces/" + "ab" * 16).status_code == 404
    r = _get(ferry, "/tempo/api/traces/not-a-trace-id")
    assert r.status_code == 400 and "hex" in r.text


@pytest.mark.parametrize(("q", "want"), [
    ('{ resource.service.name = "payment" && status = error }', ["checkout"]),
    ("{ duration > 500ms }", ["report"]),
    ("{ duration >= 220ms && duration <= 220ms }", ["checkout"]),
    ("{ status = ok }", ["health"]),
    ("{ status != unset && status != error }", ["health"]),
    ('{ span.db.system = "postgres" }', ["checkout"]),
    ('{ .db.system = "postgres" }', ["checkout"]),
    ('{ .deployment.environment = "test" && name = "render" }', ["report"]),
    ('{ resource.db.system = "postgres" }', []),
    ('{ kind = server && resource.service.name = "frontend" }', ["checkout", "report"]),
    ("{ kind = client }", ["checkout"]),
    ('{ name =~ "GET .*" }', ["checkout", "report"]),
    ('{ name =~ "GET" }', []),
    ('{ name !~ "GET.*|render|call.*|charge|db.*" }', ["health"]),
    ("{ span.attempt >= 3 }", ["checkout"]),
    ("{ span.attempt > 3 }", []),
    ("{ span.retry = true }", ["checkout"]),
    ("{ span.payment.amount > 12 && span.payment.amount < 12.6 }", ["checkout"]),
    ("{ span.http.status_code = 200 }", ["report"]),
    ('{ span.http.status_code = "200" }', ["report"]),
    ('{ span.http.method != "GET" }', ["checkout"]),
    ('{ statusMessage = "card declined" }', ["checkout"]),
    ('{ name = "render" || name = "healthcheck" }', ["health", "report"]),
    ('{ resource.service.name = "frontend" } && { resource.service.name = "payment" }', ["checkout"]),
    ("{ status = ok } || { duration > 500ms }", ["health", "report"]),
    ('{ resource.service.name = "frontend" } >> { span.db.system = "postgres" }', ["checkout"]),
    ('{ resource.service.name = "frontend" } > { span.db.system = "postgres" }', []),
    ('{ name = "charge" } > { name = "db query" }', ["checkout"]),
    ('{ name = "db query" } << { kind = server }', ["checkout"]),
    ('{ name = "db query" } < { name = "charge" }', ["checkout"]),
    ('{ name = "render" } ~ { name = "call payment" }', []),
    ("{ }", ["checkout", "report", "health"]),
])
def test_traceql_search(ferry: FerryProcess, sent: Sent, q: str, want: list[str]) -> None:
    """Each TraceQL feature finds exactly the traces that, as sent, satisfy it (tenant acme only)."""
    assert _search(ferry, q) == _ids(sent, *want)


def test_search_answer_shape_and_spansets(ferry: FerryProcess, sent: Sent) -> None:
    """A hit names the root service and span, start and duration; its span set lists the matched
    spans (structural: the right-hand side only) with the attributes the query named."""
    r = _get(ferry, "/tempo/api/search", q='{ resource.service.name = "frontend" } >> { span.db.system = "postgres" }')
    body = r.json()
    (hit,) = body["traces"]
    assert hit["traceID"] == sent.ids["checkout"]
    assert hit["rootServiceName"] == "frontend" and hit["rootTraceName"] == "GET /checkout"
    assert hit["durationMs"] == 300
    (ss,) = hit["spanSets"]
    assert ss["matched"] == 1
    (span,) = ss["spans"]
    assert span["name"] == "db query" and span["durationNanos"] == str(50 * MS)
    assert {"key": "db.system", "value": {"stringValue": "postgres"}} in span["attributes"]
    assert {"key": "service.name", "value": {"stringValue": "payment"}} in span["attributes"]
    assert int(span["startTimeUnixNano"]) == int(hit["startTimeUnixNano"]) + 30 * MS
    assert "metrics" in body

    hit = _get(ferry, "/tempo/api/search", q="{ }", spss=2, limit=1).json()["traces"]
    assert len(hit) == 1 and hit[0]["traceID"] == sent.ids["health"], "newest trace first"
    many = _get(ferry, "/tempo/api/search", q='{ resource.service.name = "payment" }', spss=2).json()["traces"]
    checkout = next(t for t in many if t["traceID"] == sent.ids["checkout"])
    assert checkout["spanSets"][0]["matched"] == 2 and len(checkout["spanSets"][0]["spans"]) == 2


def test_search_tags_and_durations(ferry: FerryProcess, sent: Sent) -> None:
    """The non-TraceQL search: logfmt tags on one span, min/maxDuration on the trace's duration, time range."""
    assert _search(ferry, tags="service.name=frontend http.status_code=200") == _ids(sent, "report")
    assert _search(ferry, tags='name="db query"') == _ids(sent, "checkout")
    assert _search(ferry, tags="status=error") == _ids(sent, "checkout")
    assert _search(ferry, tags="service.name=frontend", minDuration="500ms") == _ids(sent, "report")
    assert _search(ferry, tags="service.name=payment", maxDuration="100ms") == _ids(sent, "health")
    assert _search(ferry, q="{ kind = server }", minDuration="250ms", maxDuration="1s") == _ids(sent, "checkout", "report")
    now = int(time.time())
    assert _search(ferry, q="{ }", start=now - 3600, end=now) == _ids(sent, "checkout", "report", "health")
    assert _search(ferry, q="{ }", start=now - 7200, end=now - 3600) == []


@pytest.mark.parametrize(("params", "named"), [
    ({"q": "{ status = bogus }"}, "status takes one of"),
    ({"q": "{ duration > 5 }"}, "duration takes a duration"),
    ({"q": '{ .a = "x" '}, "expected '}'"),
    ({"q": '{ .a = "x" } | count() > 1'}, "pipelines"),
    ({"q": '{ name =~ "(" }'}, "invalid regular expression"),
    ({"q": "{ foo = 1 }"}, "unknown field"),
    ({"tags": "service.name"}, "logfmt"),
    ({"minDuration": "fast"}, "minDuration"),
    ({"limit": "0"}, "limit"),
    ({"start": "10", "end": "5"}, "start"),
])
def test_search_errors_are_400_naming_the_problem(ferry: FerryProcess, sent: Sent, params: dict[str, str], named: str) -> None:
    r = _get(ferry, "/tempo/api/search", **params)
    assert r.status_code == 400 and named in r.text, r.text


def test_tag_names_and_values(ferry: FerryProcess, sent: Sent) -> None:
    names = _get(ferry, "/tempo/api/search/tags").json()["tagNames"]
    assert {"db.system", "attempt", "http.status_code", "service.name", "deployment.environment"} <= set(names)
    scopes = {s["name"]: s["tags"] for s in _get(ferry, "/tempo/api/v2/search/tags").json()["scopes"]}
    assert "db.system" in scopes["span"] and "service.name" not in scopes["span"]
    assert {"service.name", "deployment.environment"} <= set(scopes["resource"])
    assert {"duration", "name", "status", "kind"} <= set(scopes["intrinsic"])
    only = _get(ferry, "/tempo/api/v2/search/tags", scope="resource").json()["scopes"]
    assert [s["name"] for s in only] == ["resource"]

    v2 = _get(ferry, "/tempo/api/v2/search/tag/resource.service.name/values").json()["tagValues"]
    assert v2 == [{"type": "string", "value": "frontend"}, {"type": "string", "value": "payment"}]
    assert _get(ferry, "/tempo/api/search/tag/service.name/values").json()["tagValues"] == ["frontend", "payment"]
    names_q = _get(ferry, "/tempo/api/v2/search/tag/name/values", q='{ resource.service.name = "payment" }').json()
    assert [v["value"] for v in names_q["tagValues"]] == ["charge", "db query", "healthcheck"]
    status = _get(ferry, "/tempo/api/v2/search/tag/status/values").json()["tagValues"]
    assert {"type": "keyword", "value": "error"} in status
    assert _get(ferry, "/tempo/api/v2/search/tag/span.attempt/values").json()["tagValues"] == \
        [{"type": "string", "value": "3"}]
    assert _get(ferry, "/tempo/api/v2/search/tag/bogus/values").status_code == 400


def test_echo_and_buildinfo(ferry: FerryProcess) -> None:
    r = _get(ferry, "/tempo/api/echo")
    assert r.status_code == 200 and r.text == "echo"
    assert _get(ferry, "/tempo/api/status/buildinfo").json()["version"].startswith("2.")


def test_tenants_are_kept_apart(ferry: FerryProcess, sent: Sent) -> None:
    """X-Scope-OrgID picks the tenant on write (OTLP) and on every read."""
    assert _search(ferry, "{ }", tenant=OTHER) == _ids(sent, "other")
    assert _search(ferry, '{ resource.service.name = "frontend" && status = error }', tenant=OTHER) == _ids(sent, "other")
    assert _get(ferry, f"/tempo/api/traces/{sent.ids['checkout']}", tenant=OTHER).status_code == 404
    assert _get(ferry, f"/tempo/api/traces/{sent.ids['other']}").status_code == 404
    v = _get(ferry, "/tempo/api/v2/search/tag/resource.service.name/values", tenant=OTHER).json()["tagValues"]
    assert v == [{"type": "string", "value": "frontend"}]
    assert "db.system" not in _get(ferry, "/tempo/api/search/tags", tenant=OTHER).json()["tagNames"]


def test_ferry_own_reads_keep_tenants_apart(ferry: FerryProcess, sent: Sent) -> None:
    """ferry's own API (what the CLI and the web UI read) answers from the request's tenant as the
    compatibility APIs do: a trace, a log line and the service list of one tenant are not another's,
    and a request naming no tenant reads the configured default (which holds none of these)."""
    now = time.time_ns()
    line = {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ledger"}}]},
                              "scopeLogs": [{"logRecords": [{"timeUnixNano": str(now - 5_000 * MS), "severityText": "ERROR",
                                                             "body": {"stringValue": "tenantmarker overdraft"},
                                                             "traceId": sent.ids["checkout"]}]}]}]}
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", json=line, headers={"X-Scope-OrgID": TENANT}, timeout=30)
    assert r.status_code == 200, r.text

    def native(path: str, tenant: str | None, **params: Any) -> Any:
        headers = {"X-Scope-OrgID": tenant} if tenant else {}
        got = httpx.get(ferry.api + path, params=params, headers=headers, timeout=30)
        assert got.status_code == 200, got.text
        return got.json()

    ferry.wait_for(lambda: native("/api/v1/logs", TENANT, q="tenantmarker", since="1h")["logs"])
    for tenant in (OTHER, None):
        assert native("/api/v1/logs", tenant, q="tenantmarker", since="1h")["logs"] == []
        assert native("/api/v1/logs/count", tenant, q="tenantmarker", since="1h")["count"] == 0
        assert native(f"/api/v1/traces/{sent.ids['checkout']}", tenant)["found"] is False
        assert "payment" not in {s["service"] for s in native("/api/v1/services", tenant)["services"]}
    assert native("/api/v1/logs/count", TENANT, q="tenantmarker", since="1h")["count"] == 1
    mine = native(f"/api/v1/traces/{sent.ids['checkout']}", TENANT)
    assert len(mine["spans"]) == len(sent.spans["checkout"])
    assert [x["body"] for x in mine["logs"]] == ["tenantmarker overdraft"]
    # The other tenant's trace is theirs alone: acme asking for it finds nothing.
    assert native(f"/api/v1/traces/{sent.ids['other']}", TENANT)["found"] is False
    assert native(f"/api/v1/traces/{sent.ids['other']}", OTHER)["found"] is True
    assert {"frontend", "payment", "ledger"} <= {s["service"] for s in native("/api/v1/services", TENANT)["services"]}
