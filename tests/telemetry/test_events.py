"""Self-telemetry events: bounded reasons and components, counters moved by n, and one log line per
(event, component, reason) per interval however large the flood."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import REGISTRY

from ferry import registry
from ferry.telemetry import events


@pytest.fixture(autouse=True)
def fresh_throttle(monkeypatch: pytest.MonkeyPatch) -> events._Throttle:
    throttle = events._Throttle()
    monkeypatch.setattr(events, "_throttle", throttle)
    return throttle


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ferry.events"]


def test_an_unknown_reason_or_component_is_refused_in_tests() -> None:
    with pytest.raises(ValueError, match="reason 'overflowed'"):
        events.dropped("syslog_udp", "logs", "overflowed")
    with pytest.raises(ValueError, match="component 'syslogd'"):
        events.dropped("syslogd", "logs", "overload")
    with pytest.raises(ValueError, match="signal 'log'"):
        events.received("otlp_http", "log")


def test_in_production_an_unknown_reason_counts_as_other_and_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FERRY_STRICT_EVENTS", "0")
    monkeypatch.setattr(events, "_warned", set())
    caplog.set_level(logging.INFO, logger="ferry.events")
    before = _count("ferry_dropped_records_total", component="syslog_udp", signal="logs", reason="other")
    for _ in range(5):
        events.dropped("syslog_udp", "logs", "gremlins", 2)
    assert _count("ferry_dropped_records_total", component="syslog_udp", signal="logs", reason="other") - before == 10
    assert sum("unknown reason 'gremlins'" in line for line in _lines(caplog)) == 1


def test_a_flood_logs_one_line_per_interval_with_its_count(
    fresh_throttle: events._Throttle, caplog: pytest.LogCaptureFixture
) -> None:
    fresh_throttle.interval_s = 0.5
    caplog.set_level(logging.INFO, logger="ferry.events")
    before = _count("ferry_dropped_records_total", component="syslog_udp", signal="logs", reason="overload")
    for _ in range(10_000):
        events.dropped("syslog_udp", "logs", "overload", 3, detail="receive queue over its high-water mark")
    # Another reason of the same event and component is its own line.
    events.dropped("syslog_udp", "logs", "disk_full", 7)
    assert _lines(caplog) == [
        "dropped 3 logs records at syslog_udp: overload (receive queue over its high-water mark)",
        "dropped 7 logs records at syslog_udp: disk_full",
    ]
    assert [r.levelno for r in caplog.records if r.name == "ferry.events"] == [logging.WARNING] * 2
    time.sleep(0.6)
    events.dropped("syslog_udp", "logs", "overload", 3, detail="receive queue over its high-water mark")
    # The line after the interval carries everything counted since the last one, this one included.
    assert _lines(caplog)[-1] == (
        "dropped 30000 logs records at syslog_udp: overload (receive queue over its high-water mark)"
        " [10000 times in the last 0.5 s]"
    )
    assert len(_lines(caplog)) == 3
    assert _count("ferry_dropped_records_total", component="syslog_udp", signal="logs", reason="overload") - before == 30_003


def test_each_event_counts_under_its_metric_and_levels_fit_the_event(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ferry.events")
    cases = [
        (lambda: events.received("syslog", "logs", 5), "ferry_received_records_total",
         {"component": "syslog", "signal": "logs"}, None),
        (lambda: events.refused("otlp_grpc", "traces", "malformed", 4, request=True), "ferry_refused_records_total",
         {"component": "otlp_grpc", "signal": "traces", "reason": "malformed"}, logging.INFO),
        (lambda: events.quarantined("parser", "metrics", "failed", 5, detail="batch b1"),
         "ferry_quarantined_records_total", {"component": "parser", "signal": "metrics", "reason": "failed"},
         logging.ERROR),
        (lambda: events.retried("writer", "logs", "store_unavailable", 5), "ferry_retried_batches_total",
         {"component": "writer", "signal": "logs", "reason": "store_unavailable"}, logging.WARNING),
        (lambda: events.spooled("writer", "otel_logs", 5), "ferry_spooled_batches_total",
         {"component": "writer", "table": "otel_logs"}, logging.ERROR),
        (lambda: events.deduplicated("writer", "otel_traces", 5), "ferry_deduplicated_batches_total",
         {"component": "writer", "table": "otel_traces"}, None),
        (lambda: events.routed("router", "logs", 5), "ferry_routed_records_total",
         {"component": "router", "signal": "logs"}, None),
        (lambda: events.sampled_out("sampler", "traces", "tail", 5), "ferry_sampled_out_records_total",
         {"component": "sampler", "signal": "traces", "reason": "tail"}, None),
        (lambda: events.exported("exporter", "metrics", 5), "ferry_exported_records_total",
         {"component": "exporter", "signal": "metrics"}, None),
    ]
    for fire, name, labels, level in cases:
        caplog.clear()
        before = _count(name, **labels)
        fire()
        expected = 4 if name == "ferry_refused_records_total" else 5
        assert _count(name, **labels) - before == expected, name
        assert [r.levelno for r in caplog.records if r.name == "ferry.events"] == ([level] if level else []), name
    before = _count("ferry_refused_requests_total", component="otlp_grpc", signal="traces", reason="malformed")
    events.refused("otlp_grpc", "traces", "malformed", 9, request=True)
    assert _count("ferry_refused_requests_total", component="otlp_grpc", signal="traces", reason="malformed") - before == 1


def test_declared_series_exist_at_zero_before_the_first_event() -> None:
    events.declare("sampled_out", "sampler", ("logs",))
    for reason in ("head", "tail", "rate_limit"):
        labels = {"component": "sampler", "signal": "logs", "reason": reason}
        assert REGISTRY.get_sample_value("ferry_sampled_out_records_total", labels) is not None
    events.declare("exported", "exporter")
    assert REGISTRY.get_sample_value("ferry_exported_records_total", {"component": "exporter", "signal": "traces"}) == 0
    with pytest.raises(ValueError):
        events.declare("dropped", "syslog", ("logs",), ("no_such_reason",))


def test_every_registry_component_has_a_component_label_and_declares_only_known_series() -> None:
    for role in {c.role for c in registry.COMPONENTS}:
        registry.declare_metrics(role)  # strict here: an unknown reason or component raises
    for c in registry.COMPONENTS:
        assert any(label == c.kind or label.startswith(c.kind + "_") for label in events.COMPONENTS), c.kind
