"""Loki pushes reach ferry's log search: from the PyPI Loki client (python-logging-loki), and hand-built
JSON (gzip and not) and snappy protobuf bodies, with labels, times and structured metadata kept.
"""

from __future__ import annotations

import gzip
import logging
import time
import uuid
from typing import Any

import cramjam
import httpx
import logging_loki
import orjson

from ferry.receivers.loki import proto
from ferry.testing import FerryProcess


def _find(f: FerryProcess, word: str, n: int = 1) -> list[dict[str, Any]]:
    return f.wait_for(lambda: (rows := f.search(word, since="1h")) and len(rows) >= n and rows, timeout=30)


def test_the_python_loki_client(ferry: FerryProcess) -> None:
    tag = f"lokiclient{uuid.uuid4().hex[:8]}"
    handler = logging_loki.LokiHandler(url=ferry.loki_push_url, tags={"service_name": "billing", "env": "prod"},
                                       version="1")
    log = logging.getLogger(tag)
    log.propagate = False
    log.addHandler(handler)
    before = time.time_ns()
    log.warning("%s card declined", tag)  # the handler raises on any answer but 204
    handler.close()
    (row,) = _find(ferry, tag)
    assert row["body"] == f"{tag} card declined" and row["service"] == "billing" and row["source"] == "loki"
    assert row["resource"] == {"service_name": "billing", "env": "prod", "severity": "warning", "logger": tag}
    assert row["level"] == "warning"
    assert before - 10**9 <= row["time_ns"] <= time.time_ns()


def _json_push(streams: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"streams": streams})


def test_json_gzip_and_plain_with_structured_metadata(ferry: FerryProcess) -> None:
    tag = f"lokijson{uuid.uuid4().hex[:8]}"
    t0 = time.time_ns() - 600 * 10**9 + 123_456_789  # ten minutes ago, to the nanosecond
    body = _json_push([{"stream": {"job": "varlogs", "level": "error", "host": "web-1"},
                        "values": [[str(t0), f"{tag} one", {"trace_id": "5b8efff798038103d269b633813fc60c",
                                                            "span_id": "eee19b7ec3c1b174", "user": "ann"}],
                                   [str(t0 + 1), f"{tag} two"]]}])
    r = httpx.post(ferry.loki_push_url, content=gzip.compress(body),
                   headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 204, r.text
    r = httpx.post(ferry.loki_push_url, content=_json_push([{"stream": {"app": "x"}, "values": [[str(t0), f"{tag} plain"]]}]),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text
    rows = {r["body"]: r for r in _find(ferry, tag, 3)}
    one = rows[f"{tag} one"]
    assert one["time_ns"] == t0 and rows[f"{tag} two"]["time_ns"] == t0 + 1
    assert one["service"] == "varlogs" and one["level"] == "error"
    assert one["resource"] == {"job": "varlogs", "level": "error", "host": "web-1"}
    assert one["attributes"] == {"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174", "user": "ann"}
    assert one["trace_id"] == "5b8efff798038103d269b633813fc60c" and one["span_id"] == "eee19b7ec3c1b174"
    assert rows[f"{tag} plain"]["service"] == "unknown_service"


def test_snappy_protobuf_and_a_bad_stream(ferry: FerryProcess) -> None:
    tag = f"lokipb{uuid.uuid4().hex[:8]}"
    now = time.time_ns()
    req = proto.PushRequest()
    s = req.streams.add(labels=r'{service="pay", path="C:\\tmp \"q\""}')
    e = s.entries.add(line=f"{tag} kept")
    e.timestamp.seconds, e.timestamp.nanos = divmod(now, 10**9)
    e.structuredMetadata.add(name="order", value="17")
    req.streams.add(labels='{service="pay"').entries.add(line=f"{tag} refused")
    before = ferry.metric("ferry_refused_records_total", component="loki", reason="invalid_label")
    r = httpx.post(ferry.loki_push_url, content=bytes(cramjam.snappy.compress_raw(req.SerializeToString())),
                   headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400 and '{service="pay"' in r.text, r.text
    (row,) = _find(ferry, tag)
    assert row["body"] == f"{tag} kept" and row["time_ns"] == now
    assert row["resource"] == {"service": "pay", "path": 'C:\\tmp "q"'} and row["attributes"] == {"order": "17"}
    assert ferry.metric("ferry_refused_records_total", component="loki", reason="invalid_label") == before + 1


def test_unreadable_bodies_and_ready(ferry: FerryProcess) -> None:
    ready = httpx.get(ferry.loki_push_url.replace("/loki/api/v1/push", "/ready"))
    assert ready.status_code == 200
    r = httpx.post(ferry.loki_push_url, content=b"not snappy at all", headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 400 and "snappy" in r.text
    r = httpx.post(ferry.loki_push_url, content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.text
    r = httpx.post(ferry.loki_push_url, content=gzip.compress(b"{}")[:-4],
                   headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "gzip" in r.text
    assert ferry.metric("ferry_refused_requests_total", component="loki", reason="malformed") >= 3
