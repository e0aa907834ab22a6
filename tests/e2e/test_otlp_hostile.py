"""No OTLP sender can stop ferry: large batches land, slow or half-sent requests are cut, odd bodies are
refused precisely, and every refusal is counted in records and in requests.

One `ferry run` with short read timeouts and a 4 MiB gRPC limit; every exchange goes through the real ports.
"""

from __future__ import annotations

import base64
import gzip
import os
import socket
import time
import uuid
from collections.abc import Iterator

import grpc
import httpx
import orjson
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from ferry.testing import FerryProcess
from ferry.testing.otlp import logs_request

MiB = 1024**2
PB = {"content-type": "application/x-protobuf"}
READ_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def ferry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryProcess]:
    proc = FerryProcess(
        tmp_path_factory.mktemp("hostile") / "data",
        config={
            "receivers": {
                "otlp": {
                    "http": {"read_timeout_s": READ_TIMEOUT_S},
                    "grpc": {"read_timeout_s": READ_TIMEOUT_S, "idle_timeout_s": 3, "max_request_bytes": 4 * MiB},
                }
            }
        },
    ).start()
    try:
        yield proc
    finally:
        proc.stop_cleanly()


def _count(f: FerryProcess, tag: str) -> int:
    return int(f.get("/api/v1/logs/count", q=tag, since="1d")["count"])


def _json_logs(records: list[dict[str, object]], service: str = "hostile") -> bytes:
    res = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    return orjson.dumps({"resourceLogs": [{"resource": res, "scopeLogs": [{"scope": {"name": "t"}, "logRecords": records}]}]})


# ---- 1. large valid requests land ----


def test_large_json_batch_is_stored_whole(ferry: FerryProcess) -> None:
    """A 12.8 MiB OTLP/JSON batch of 30,000 records (over the bus's 8 MiB message) is 200 and stored
    once each: the batch is cut into several bus messages instead of failing with 500."""
    tag = f"big{uuid.uuid4().hex[:8]}"
    now = time.time_ns()
    # Random text, so the batch stays over the bus's 8 MiB message once LZ4-compressed on the bus.
    records = [
        {"timeUnixNano": str(now + i), "severityNumber": 9,
         "body": {"stringValue": f"{tag} rec-{i} {os.urandom(143).hex()}"},
         "attributes": [{"key": "n", "value": {"intValue": str(i)}}]}
        for i in range(30_000)
    ]
    body = _json_logs(records)
    assert 12 * MiB < len(body) < 14 * MiB, len(body)
    received0 = ferry.metric("ferry_received_records_total", signal="logs", component="otlp_http")
    split0 = ferry.metric("ferry_split_batches_total")
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 200, r.text[:500]
    assert "partialSuccess" not in r.json() or not r.json()["partialSuccess"].get("rejectedLogRecords")
    ferry.wait_for(lambda: _count(ferry, tag) >= 30_000, timeout=90, interval=1)
    time.sleep(1)
    assert _count(ferry, tag) == 30_000, "every record stored exactly once"
    assert ferry.metric("ferry_received_records_total", signal="logs", component="otlp_http") - received0 == 30_000
    assert ferry.metric("ferry_split_batches_total") > split0


def test_record_too_large_for_the_bus_is_413_counted_by_records(ferry: FerryProcess) -> None:
    """One record larger than a bus message on its own (14 MiB of incompressible text) cannot be
    stored: the request is 413 and its 10 records are counted as too_large, the request once."""
    tag = f"huge{uuid.uuid4().hex[:8]}"
    bodies = [f"{tag} small-{i}" for i in range(9)] + [f"{tag} " + base64.b64encode(os.urandom(int(10.5 * MiB))).decode()]
    payload = logs_request(bodies)
    assert len(payload) < 16 * MiB
    records0 = ferry.metric("ferry_refused_records_total", component="otlp_http", reason="too_large")
    requests0 = ferry.metric("ferry_refused_requests_total", component="otlp_http", reason="too_large")
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=payload, headers=PB, timeout=60)
    assert r.status_code == 413, r.text[:300]
    assert ferry.metric("ferry_refused_records_total", component="otlp_http", reason="too_large") - records0 == 10
    assert ferry.metric("ferry_refused_requests_total", component="otlp_http", reason="too_large") - requests0 == 1
    assert _count(ferry, tag) == 0, "nothing of a refused request is stored"


def test_request_refused_before_decoding_counts_one_request(ferry: FerryProcess) -> None:
    """An undecodable body's records cannot be counted: it counts 1 request (and 1 record, a lower bound)."""
    records0 = ferry.metric("ferry_refused_records_total", component="otlp_http", reason="malformed")
    requests0 = ferry.metric("ferry_refused_requests_total", component="otlp_http", reason="malformed")
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=b"\xff\xfenot protobuf", headers=PB, timeout=10)
    assert r.status_code == 400
    assert ferry.metric("ferry_refused_requests_total", component="otlp_http", reason="malformed") - requests0 == 1
    assert ferry.metric("ferry_refused_records_total", component="otlp_http", reason="malformed") - records0 == 1


# ---- 2. connections are bounded ----


def _half_requests(f: FerryProcess, n: int, data: bytes) -> list[socket.socket]:
    host, port = f.otlp_http.removeprefix("http://").rsplit(":", 1)
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(data)
        socks.append(s)
    return socks


def _wait_closed(socks: list[socket.socket], timeout: float) -> int:
    """How many of `socks` the server closed within `timeout` s (each read until EOF)."""
    deadline = time.monotonic() + timeout
    closed = 0
    for s in socks:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            while s.recv(4096):
                pass
            closed += 1
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            s.close()
    return closed


def test_half_sent_requests_neither_block_others_nor_stay_open(ferry: FerryProcess) -> None:
    """300 sockets that sent half a header (and 20 that sent half a body) do not keep a normal client
    from 200 at once; each is closed after read_timeout_s and counted."""
    timeouts0 = ferry.metric("ferry_refused_connections_total", component="otlp_http", reason="read_timeout")
    half_header = _half_requests(ferry, 300, b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Ty")
    head = b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n"
    half_body = _half_requests(ferry, 20, head + b"\x0a" * 10)
    try:
        tag = f"ok{uuid.uuid4().hex[:8]}"
        t0 = time.monotonic()
        r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=logs_request([f"{tag} a"]), headers=PB, timeout=10)
        took = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert took < 1.5, f"a normal request took {took:.2f}s beside 320 stalled sockets"
        closed = _wait_closed(half_header + half_body, READ_TIMEOUT_S + 15)
    finally:
        for s in half_header + half_body:
            s.close()
    assert closed == 320, f"only {closed} of 320 stalled sockets were closed"
    got = ferry.wait_for(
        lambda: (n := ferry.metric("ferry_refused_connections_total", component="otlp_http", reason="read_timeout")
                 - timeouts0) >= 320 and n,
        timeout=10,
    )
    assert got == 320
    ferry.wait_for(lambda: _count(ferry, tag) == 1)


def _grpc_addr(f: FerryProcess) -> tuple[str, int]:
    host, port = f.otlp_grpc.rsplit(":", 1)
    return host, int(port)


_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def _h2_headers(path: bytes) -> bytes:
    """A HEADERS frame (stream 1, END_HEADERS, no END_STREAM) opening a gRPC call; HPACK literals only."""

    def lit(name: bytes, value: bytes) -> bytes:
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value

    block = b"".join(
        lit(k, v)
        for k, v in ((b":method", b"POST"), (b":scheme", b"http"), (b":path", path), (b":authority", b"ferry"),
                     (b"content-type", b"application/grpc"), (b"te", b"trailers"))
    )
    return len(block).to_bytes(3, "big") + b"\x01\x04" + (1).to_bytes(4, "big") + block


def _read_until(s: socket.socket, want: bytes, timeout: float) -> bytes:
    s.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while want not in buf and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    except TimeoutError:
        pass
    return buf


def _export(f: FerryProcess, bodies: list[str], timeout: float = 10) -> ExportLogsServiceResponse:
    with grpc.insecure_channel(f.otlp_grpc) as ch:
        stub = logs_service_pb2_grpc.LogsServiceStub(ch)
        return stub.Export(ExportLogsServiceRequest.FromString(logs_request(bodies)), timeout=timeout)


def test_grpc_connections_and_calls_that_send_nothing_are_cut(ferry: FerryProcess) -> None:
    """Sockets that never finish the HTTP/2 preface, connections that open no call, and calls whose
    request never comes do not stop a real client; each is closed in time, the calls answered
    DEADLINE_EXCEEDED and counted as read_timeout."""
    host, port = _grpc_addr(ferry)
    timeouts0 = ferry.metric("ferry_refused_requests_total", component="otlp_grpc", reason="read_timeout")
    silent = [socket.create_connection((host, port), timeout=5) for _ in range(50)]
    idle = [socket.create_connection((host, port), timeout=5) for _ in range(20)]
    stalled = [socket.create_connection((host, port), timeout=5) for _ in range(20)]
    for s in idle:
        s.sendall(_PREFACE)
    for s in stalled:
        s.sendall(_PREFACE + _h2_headers(b"/opentelemetry.proto.collector.logs.v1.LogsService/Export"))
    try:
        tag = f"g{uuid.uuid4().hex[:8]}"
        t0 = time.monotonic()
        _export(ferry, [f"{tag} a"])
        assert time.monotonic() - t0 < 2, "a real client is answered at once beside 90 silent connections"
        # grpc-status 4 (DEADLINE_EXCEEDED) as a literal header in the trailers.
        answers = [_read_until(s, b"grpc-status\x014", READ_TIMEOUT_S + 10) for s in stalled]
        assert all(b"grpc-status\x014" in a for a in answers), "every stalled call is answered DEADLINE_EXCEEDED"
        assert _wait_closed(silent, READ_TIMEOUT_S + 10) == 50, "sockets that never finish the preface are closed"
        assert _wait_closed(idle, 3 + 10) == 20, "connections with no call are closed once idle"
    finally:
        for s in silent + idle + stalled:
            s.close()
    assert ferry.metric("ferry_refused_requests_total", component="otlp_grpc", reason="read_timeout") - timeouts0 == 20
    _export(ferry, [f"{tag} b"])
    ferry.wait_for(lambda: _count(ferry, tag) == 2)


# ---- 3. smaller ones ----


def test_grpc_message_over_its_own_limit_is_counted(ferry: FerryProcess) -> None:
    """receivers.otlp.grpc.max_request_bytes (4 MiB here, HTTP keeps 16 MiB) refuses a 5 MiB Export
    with RESOURCE_EXHAUSTED, counted as too_large like an HTTP 413."""
    requests0 = ferry.metric("ferry_refused_requests_total", component="otlp_grpc", reason="too_large")
    with pytest.raises(grpc.RpcError) as ei:
        _export(ferry, ["y" * (5 * MiB)])
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    ferry.wait_for(
        lambda: ferry.metric("ferry_refused_requests_total", component="otlp_grpc", reason="too_large") - requests0 == 1,
        timeout=10,
    )
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=logs_request(["y" * (5 * MiB)]), headers=PB, timeout=30)
    assert r.status_code == 200, "the HTTP limit is its own setting"


def test_gzip_with_trailing_junk_is_400_but_several_members_are_fine(ferry: FerryProcess) -> None:
    """A gzip body followed by junk, or cut short, is 400; gzip members back to back are one body."""
    tag = f"gz{uuid.uuid4().hex[:8]}"
    good = gzip.compress(logs_request([f"{tag} a"]))
    headers = {**PB, "content-encoding": "gzip"}
    requests0 = ferry.metric("ferry_refused_requests_total", component="otlp_http", reason="malformed")
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=good + b"JUNK" * 10, headers=headers, timeout=10)
    assert r.status_code == 400 and "trailing" in Status.FromString(r.content).message
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=good[:-6], headers=headers, timeout=10)
    assert r.status_code == 400 and "truncated" in Status.FromString(r.content).message
    assert ferry.metric("ferry_refused_requests_total", component="otlp_http", reason="malformed") - requests0 == 2
    # Two members: protobuf messages concatenate, so the body is one request of both records.
    two = gzip.compress(logs_request([f"{tag} b"])) + gzip.compress(logs_request([f"{tag} c"]))
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=two, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    ferry.wait_for(lambda: _count(ferry, tag) == 2)


def _deep(levels: int) -> AnyValue:
    v = AnyValue(string_value="bottom")
    for _ in range(levels):
        v = AnyValue(array_value=ArrayValue(values=[v]))
    return v


def test_a_bad_value_rejects_its_record_only(ferry: FerryProcess) -> None:
    """A record whose body nests arrays 40 deep (over the 32 allowed) is rejected alone (partial success, counted
    invalid_value); invalid UTF-8 in a record or in the scope name never fails anything: it is
    stored with U+FFFD, as the JSON side does."""
    tag = f"deep{uuid.uuid4().hex[:8]}"
    req = ExportLogsServiceRequest.FromString(logs_request([f"{tag} good-1", f"{tag} good-2", "placeholder"]))
    recs = req.resource_logs[0].scope_logs[0].log_records
    recs[2].body.CopyFrom(_deep(40))
    recs[2].attributes.append(KeyValue(key="tag", value=AnyValue(string_value=tag)))
    rejected0 = ferry.metric("ferry_refused_records_total", component="otlp_http", reason="invalid_value")
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=req.SerializeToString(), headers=PB, timeout=10)
    assert r.status_code == 200, r.text
    resp = ExportLogsServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_log_records == 1
    assert "invalid_value" in resp.partial_success.error_message
    assert ferry.metric("ferry_refused_records_total", component="otlp_http", reason="invalid_value") - rejected0 == 1
    ferry.wait_for(lambda: _count(ferry, tag) == 2)

    # Invalid UTF-8 where protobuf's own parser would refuse the whole message: a string field of
    # the scope and a string inside a kvlist.
    tag2 = f"utf{uuid.uuid4().hex[:8]}"
    raw = logs_request([f"{tag2} PLACEHOLDER-1", f"{tag2} kv"])
    raw = raw.replace(b"ferry.testing", b"ferry.te\xffting").replace(b"PLACEHOLDER-1", b"bad-\xc3\x28-utf8!!")
    req2 = ExportLogsServiceRequest.FromString(logs_request([f"{tag2} kv2"]))
    rec = req2.resource_logs[0].scope_logs[0].log_records[0]
    rec.attributes.append(KeyValue(key="nested", value=AnyValue(kvlist_value=KeyValueList(
        values=[KeyValue(key="x", value=AnyValue(string_value="PLACEHOLDER-2"))]))))
    raw2 = req2.SerializeToString().replace(b"PLACEHOLDER-2", b"bad-\xff-in-kv!!")  # same length
    for payload in (raw, raw2):
        r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=payload, headers=PB, timeout=10)
        assert r.status_code == 200, r.text
        assert not ExportLogsServiceResponse.FromString(r.content).partial_success.rejected_log_records
    rows = ferry.wait_for(lambda: len(rows := ferry.search(tag2)) == 3 and rows)
    bodies = sorted(row["body"] for row in rows)
    assert f"{tag2} bad-\ufffd(-utf8!!" in bodies, bodies
    assert any("\ufffd" in str(row["attributes"].get("nested", "")) for row in rows), rows

