"""metric_from_logs over real batches: the points a user would find in otel_metrics_sum, the records
passing through untouched, and the counts."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pyarrow as pa
import pytest
from pydantic import TypeAdapter, ValidationError

from ferry.schema.samples import raw_lines
from ferry.schema.tables import LOGS, METRICS_SUM, conform
from ferry.stages.parser.syslog import parse_syslog
from ferry.testing.datasets import loghub
from ferry.transforms.chain import Chain, CompileContext
from ferry.transforms.config import Transform
from ferry.transforms.frame import Frame

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)


def logs(*records: dict[str, Any]) -> pa.Table:
    rows = [{"Timestamp": T0 + dt.timedelta(seconds=r.get("t", 0)), "Body": r.get("body", ""),
             "ServiceName": r.get("service", "api"), "Tenant": "acme", "Source": "otlp",
             "LogAttributes": list(r.get("attrs", {}).items())} for r in records]
    return conform(pa.Table.from_pylist(rows, schema=pa.schema([LOGS.field(k) for k in rows[0]])), LOGS)


def run(models: list[dict[str, Any]], table: pa.Table) -> Frame:
    chain = Chain.compile(TypeAdapter(list[Transform]).validate_python(models),
                          CompileContext("t", ("log_commit", "metrics_commit")))
    return chain.run(table)


def points(frame: Frame) -> list[dict[str, Any]]:
    assert [(e.target, e.topic) for e in frame.emitted] == [("otel_metrics_sum", "metrics_commit")]
    table = frame.emitted[0].table
    assert table.schema == METRICS_SUM
    rows = table.to_pylist()
    for r in rows:
        r["Attributes"] = dict(r["Attributes"])
    return rows


def test_count_by_fields_and_bucket() -> None:
    """One delta point per service, by-values and 10 s bucket, with the bucket as its time span."""
    table = logs(
        {"t": 1, "service": "sshd", "attrs": {"user": "root"}},
        {"t": 3, "service": "sshd", "attrs": {"user": "root"}},
        {"t": 4, "service": "sshd", "attrs": {"user": "bob"}},
        {"t": 12, "service": "sshd", "attrs": {"user": "root"}},
        {"t": 5, "service": "sudo", "attrs": {"user": "root"}},
        {"t": 6, "service": "sshd"},
    )
    frame = run([{"type": "metric_from_logs", "name": "logins", "by": ["user"], "unit": "1"}], table)
    got = {(p["ServiceName"], p["Attributes"].get("user"), p["StartTimeUnix"], p["TimeUnix"]): p["Value"]
           for p in points(frame)}
    s = dt.timedelta(seconds=10)
    assert got == {
        ("sshd", "root", T0, T0 + s): 2.0,
        ("sshd", "bob", T0, T0 + s): 1.0,
        ("sshd", None, T0, T0 + s): 1.0,  # no `user`: its own series, without the attribute
        ("sshd", "root", T0 + s, T0 + 2 * s): 1.0,
        ("sudo", "root", T0, T0 + s): 1.0,
    }
    p = points(frame)[0]
    assert (p["MetricName"], p["MetricUnit"], p["AggregationTemporality"], p["IsMonotonic"]) == ("logins", "1", 1, True)
    assert (p["Tenant"], p["Source"]) == ("acme", "otlp")
    assert frame.to_table().equals(table)  # the records pass through unchanged
    assert dict(frame.counts) == {}


def test_sum_with_when_and_malformed_values() -> None:
    """kind sum adds a field's numbers; a non-number is left out and counted as ignore_malformed."""
    table = logs(
        {"attrs": {"bytes": "100", "method": "GET"}},
        {"attrs": {"bytes": "2.5", "method": "GET"}},
        {"attrs": {"bytes": "lots", "method": "GET"}},
        {"attrs": {"bytes": "nan", "method": "GET"}},
        {"attrs": {"method": "GET"}},  # absent: adds nothing, not malformed
        {"attrs": {"bytes": "7", "method": "POST"}},
        {"attrs": {"bytes": "-1", "method": "PUT"}},
    )
    frame = run([{"type": "metric_from_logs", "name": "bytes_out", "kind": "sum", "field": "bytes",
                  "by": ["method"], "when": "-method:POST", "interval_s": 60}], table)
    got = {p["Attributes"]["method"]: (p["Value"], p["IsMonotonic"]) for p in points(frame)}
    assert got == {"GET": (102.5, True), "PUT": (-1.0, False)}
    assert {o: n for (_, o), n in frame.counts.items()} == {"ignore_malformed": 2}


def test_nothing_matching_emits_nothing() -> None:
    frame = run([{"type": "metric_from_logs", "name": "x", "when": "service:none"}], logs({"body": "a"}))
    assert frame.emitted == [] and frame.height == 1


def test_bad_config_names_the_key() -> None:
    adapter = TypeAdapter(list[Transform])
    with pytest.raises(ValidationError, match="kind sum needs `field`"):
        adapter.validate_python([{"type": "metric_from_logs", "name": "x", "kind": "sum"}])
    with pytest.raises(ValidationError, match="name"):
        adapter.validate_python([{"type": "metric_from_logs", "name": "1 bad"}])
    with pytest.raises(ValidationError, match="interval_s"):
        adapter.validate_python([{"type": "metric_from_logs", "name": "x", "interval_s": 0}])
    with pytest.raises(ValidationError, match="not a valid query"):
        adapter.validate_python([{"type": "metric_from_logs", "name": "x", "when": "a:"}])


def test_speed() -> None:
    """Figure for the comment in metric_from_logs.py: 64 k real syslog rows."""
    lines = loghub("Linux/Linux_2k.log").read_text().splitlines() + loghub("OpenSSH/OpenSSH_2k.log").read_text().splitlines()
    table = parse_syslog(raw_lines([f"<38>{line}" for line in (lines * 17)[:65536]]))
    chain = Chain.compile(TypeAdapter(list[Transform]).validate_python(
        [{"type": "metric_from_logs", "name": "lines", "by": ["app", "facility"]}]), CompileContext("t", ("m",)))
    best = float("inf")
    for _ in range(3):
        frame = Frame.from_table(table)
        t0 = time.perf_counter()
        chain.steps[0][1](frame)
        best = min(best, time.perf_counter() - t0)
    assert sum(frame.emitted[0].table.column("Value").to_pylist()) == 65536
    print(f"metric_from_logs: {best / 65536 * 1e6:.3f} us/row")
    assert best / 65536 * 1e6 < 1.0
