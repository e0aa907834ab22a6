"""ferry's self-telemetry as named events: one function per outcome of a record or batch, which counts
it in a self-metric with bounded labels and logs it in one consistent line, at most once an interval.

Every module reports an outcome here (`events.dropped("syslog_udp", "logs", "overload", n)`) instead of
moving counters and writing log lines of its own, so the counters, their labels and the words an
operator greps for are the same everywhere.

Labels (the decisions, once):
- `component` on every event: the registry's component kind (`otlp`, `syslog`, `parser`, `writer`),
  suffixed with the listener's transport where the event happens at one listener (`otlp_http`,
  `otlp_grpc`, `syslog_udp`, `syslog_tcp`), or an internal part (`publish`, `store`, `api`) and the
  coming stages (`router`, `sampler`, `exporter`). It replaced the older `receiver` and `stage` labels
  (same values): one name, so `sum by (component, reason)` works across every event, and
  `component=~"syslog.*"` selects a whole kind. The connection counters in metrics.py use it too.
- `signal` (logs, traces, metrics) on events that count records or bus batches; `table` instead on
  the writer's spool and dedupe counters, whose unit is a batch for one store table (as before).
- `reason` on the events that are a failure or a decision, from the fixed set declared next to each
  event below. An unknown reason or component is a programming error: with FERRY_STRICT_EVENTS=1
  (the test suite sets it, and every `ferry run` it starts inherits it) it raises ValueError; in
  production it is counted as `other` and logged once, since a telemetry slip must never turn a
  counted drop into a crash of the receiver.
Received, deduplicated, routed and exported records are never logged (no per-record logging);
sampled_out neither (a sampler's drop is its job). Any other event logs
"<event> <n> <signal> records at <component>: <reason> (<detail>)" the first time its (event,
component, reason) is seen, then at most once per `logs.repeat_interval_s` with everything counted in
between ("… [412 times in the last 60 s]"); the counters keep the exact figures, and a flood that
stops leaves its last window's line untold, as the repeat filter in runtime/logfiles.py does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import Counter

log = logging.getLogger("ferry.events")

SIGNALS = ("logs", "traces", "metrics")
COMPONENTS = frozenset({
    "otlp_http", "otlp_grpc", "syslog", "syslog_udp", "syslog_tcp", "prometheus", "loki",  # receivers
    "parser", "writer", "router", "spanmetrics", "sampler", "exporter",  # stages, present and coming
    "publish", "store", "api", "own_telemetry",  # internal parts (own_telemetry: ferry's logs and metrics into itself)
})
OTHER = "other"

received_records = Counter(
    "ferry_received_records_total", "Records taken from clients.", ["component", "signal"]
)
refused_records = Counter(
    "ferry_refused_records_total",
    "Records refused (client told), by reason: a bad record of a good request, or every record of a request "
    "refused after it was decoded. A request refused before its records could be counted (backpressure is "
    "checked before the body is read; a body over the limit, not decodable or not read in time) counts 1; "
    "ferry_refused_requests_total counts every refused request once.",
    ["component", "signal", "reason"],
)
refused_requests = Counter(
    "ferry_refused_requests_total",
    "OTLP requests answered with an error (refused whole), by reason; each counted once.",
    ["component", "signal", "reason"],
)
dropped_records = Counter(
    "ferry_dropped_records_total",
    "Records lost with no client to tell, by component and reason.",
    ["component", "signal", "reason"],
)
quarantined_records = Counter(
    "ferry_quarantined_records_total",
    "Records of batches a stage set aside in <data_dir>/quarantine: undecodable, or failed on every delivery.",
    ["component", "signal", "reason"],
)
retried_batches = Counter(
    "ferry_retried_batches_total", "Retries of a failed operation.", ["component", "signal", "reason"]
)
spooled_batches = Counter(
    "ferry_spooled_batches_total", "Batches written to the on-disk spool after retries failed.", ["component", "table"]
)
deduplicated_batches = Counter(
    "ferry_deduplicated_batches_total",
    "Redelivered batches skipped because the store already had them.",
    ["component", "table"],
)
routed_records = Counter(
    "ferry_routed_records_total", "Records a router sent on to a topic.", ["component", "signal"]
)
sampled_out_records = Counter(
    "ferry_sampled_out_records_total", "Records a sampler chose not to keep, by policy.", ["component", "signal", "reason"]
)
exported_records = Counter(
    "ferry_exported_records_total", "Records made durable at an exporter's peer.", ["component", "signal"]
)


@dataclass(frozen=True)
class Event:
    name: str
    counter: Counter
    reasons: frozenset[str]  # empty: the event has no reason label
    unit: str  # "records" | "batches"
    key: str  # the label after component: "signal", or "table" (a destination's name, from the catalogue)
    # reason -> log level; None: never logged
    levels: dict[str, int] | int | None

    def level(self, reason: str) -> int | None:
        if isinstance(self.levels, dict):
            return self.levels.get(reason, logging.WARNING)
        return self.levels


_W, _E, _I = logging.WARNING, logging.ERROR, logging.INFO
# The reasons each event may carry. A new reason is added here, with its docs/api.md line.
_REFUSED = {  # the client was told, so only what says something about ferry is above info
    "malformed": _I, "too_large": _I, "invalid_trace_id": _I, "invalid_span_id": _I, "invalid_value": _I,
    "invalid_label": _I, "native_histogram": _I,
    "read_timeout": _I, "backpressure": _W, "disk_full": _W, "unavailable": _W, "internal": _E,
}
_DROPPED = {
    "overload": _W, "disk_full": _W, "udp_overflow": _W, "truncated": _W, "too_large": _W, "size_limit": _W,
    "internal": _E, "shutdown": _E,
    # own_telemetry: its bounded queue of log records was full; a batch the bus refused twice
    "queue_full": _W, "unavailable": _W,
}
EVENTS: dict[str, Event] = {e.name: e for e in (
    Event("received", received_records, frozenset(), "records", "signal", None),
    Event("refused", refused_records, frozenset(_REFUSED), "records", "signal", _REFUSED),
    Event("dropped", dropped_records, frozenset(_DROPPED), "records", "signal", _DROPPED),
    Event("quarantined", quarantined_records, frozenset({"undecodable", "failed"}), "records", "signal", _E),
    # bus_unavailable: a publish to the bus; unavailable: a stage's batch nak'd; store_unavailable,
    # peer_unavailable: a sink's write; backpressure: syslog holding lines; internal: a failed publish.
    Event("retried", retried_batches,
          frozenset({"bus_unavailable", "unavailable", "store_unavailable", "peer_unavailable", "backpressure",
                     "internal"}), "batches", "signal", _W),
    Event("spooled", spooled_batches, frozenset(), "batches", "table", _E),
    Event("deduplicated", deduplicated_batches, frozenset(), "batches", "table", None),
    Event("routed", routed_records, frozenset(), "records", "signal", None),
    # head: a probability decided at once; tail: a policy over a whole trace; rate_limit: over a budget;
    # filter, sample: a parser's filter and sample transforms.
    Event("sampled_out", sampled_out_records, frozenset({"head", "tail", "rate_limit", "filter", "sample"}), "records", "signal", None),
    Event("exported", exported_records, frozenset(), "records", "signal", None),
)}


def _strict() -> bool:
    return os.environ.get("FERRY_STRICT_EVENTS", "") not in ("", "0")


class _Throttle:
    """One log line per (event, component, reason) per interval, carrying what was counted in between."""

    def __init__(self) -> None:
        self.interval_s = 60.0
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str, str], list[float]] = {}  # key -> [logged_at, n, times]

    def take(self, key: tuple[str, str, str], n: int) -> tuple[int, int] | None:
        """(n, times) to log now, or None while the key's interval runs."""
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(key)
            if entry is None or now - entry[0] >= self.interval_s or self.interval_s <= 0:
                total, times = (int(entry[1]) + n, int(entry[2]) + 1) if entry is not None else (n, 1)
                self._seen[key] = [now, 0, 0]
                return total, times
            entry[1] += n
            entry[2] += 1
            return None


_throttle = _Throttle()
_warned: set[tuple[str, str]] = set()


def configure(repeat_interval_s: float) -> None:
    """The interval of event lines: logs.repeat_interval_s, as for every other repeated line."""
    _throttle.interval_s = repeat_interval_s


def _check(event: Event, field: str, value: str, allowed: Iterable[str]) -> str:
    if value in allowed:
        return value
    if _strict():
        raise ValueError(f"event {event.name}: {field} {value!r} is not one of {sorted(allowed)}")
    if (event.name, value) not in _warned:  # once per process: the count goes on under `other`
        _warned.add((event.name, value))
        log.error("event %s: unknown %s %r counted as %r (a ferry bug; please report it)", event.name, field, value, OTHER)
    return OTHER


def _labels(event: Event, component: str, key: str, reason: str | None) -> tuple[str, ...]:
    component = _check(event, "component", component, COMPONENTS)
    if event.key == "signal":
        key = _check(event, "signal", key, SIGNALS)
    if reason is None:
        return (component, key)
    return (component, key, _check(event, "reason", reason, event.reasons))


def _emit(event: Event, component: str, key: str, reason: str | None, n: int, detail: str | None) -> None:
    labels = _labels(event, component, key, reason)
    if n:
        event.counter.labels(*labels).inc(n)
    level = event.level(labels[-1] if reason is not None else "")
    if level is None or not log.isEnabledFor(level):
        return
    taken = _throttle.take((event.name, labels[0], labels[-1] if reason is not None else ""), n)
    if taken is None:
        return
    total, times = taken
    line = f"{event.name} {total} {labels[1]} {event.unit} at {labels[0]}"
    if reason is not None:
        line += f": {labels[2]}"
    if detail:
        line += f" ({detail})"
    if times > 1:
        line += f" [{times} times in the last {_throttle.interval_s:g} s]"
    # The line is whole (no %-args): the repeat filter must not fold different events together.
    log.log(level, line.replace("%", "%%"))


def received(component: str, signal: str, n: int = 1) -> None:
    """Records taken from a client (counted, never logged)."""
    _emit(EVENTS["received"], component, signal, None, n, None)


def refused(component: str, signal: str, reason: str, n: int = 1, *, detail: str | None = None,
            request: bool = False) -> None:
    """Records refused with the client told; `request`: a whole request was refused, counted once more
    in ferry_refused_requests_total."""
    event = EVENTS["refused"]
    if request:
        refused_requests.labels(*_labels(event, component, signal, reason)).inc()
    _emit(event, component, signal, reason, n, detail)


def dropped(component: str, signal: str, reason: str, n: int = 1, *, detail: str | None = None) -> None:
    """Records lost with no client to tell."""
    _emit(EVENTS["dropped"], component, signal, reason, n, detail)


def quarantined(component: str, signal: str, reason: str, n: int, *, detail: str | None = None) -> None:
    """Records of a batch set aside in the quarantine directory."""
    _emit(EVENTS["quarantined"], component, signal, reason, n, detail)


def retried(component: str, signal: str, reason: str, n: int = 1, *, detail: str | None = None) -> None:
    """Batches whose failed operation is tried again."""
    _emit(EVENTS["retried"], component, signal, reason, n, detail)


def spooled(component: str, table: str, n: int = 1, *, detail: str | None = None) -> None:
    """Batches for `table` (a store table, an exporter's peer) parked in the on-disk spool."""
    _emit(EVENTS["spooled"], component, table, None, n, detail)


def deduplicated(component: str, table: str, n: int = 1) -> None:
    """Batches skipped because their destination already had them (counted, never logged)."""
    _emit(EVENTS["deduplicated"], component, table, None, n, None)


def routed(component: str, signal: str, n: int = 1) -> None:
    """Records a router sent on (counted, never logged)."""
    _emit(EVENTS["routed"], component, signal, None, n, None)


def sampled_out(component: str, signal: str, reason: str, n: int = 1) -> None:
    """Records a sampler chose not to keep (counted, never logged: that is its job)."""
    _emit(EVENTS["sampled_out"], component, signal, reason, n, None)


def exported(component: str, signal: str, n: int = 1) -> None:
    """Records made durable at an exporter's peer (counted, never logged)."""
    _emit(EVENTS["exported"], component, signal, None, n, None)


def declare(event: str, component: str, keys: Iterable[str] = SIGNALS, reasons: Iterable[str] | None = None,
            *, requests: Iterable[str] = ()) -> None:
    """Create an event's series at 0 (each key: a signal, or a table), so that rate() sees them before
    the first occurrence; reasons default to all the event's reasons, and `requests` names the refused
    reasons a whole request can have (ferry_refused_requests_total)."""
    requests = frozenset(requests)
    e = EVENTS[event]
    for key in keys:
        if not e.reasons:
            e.counter.labels(*_labels(e, component, key, None))
            continue
        for reason in e.reasons if reasons is None else reasons:
            e.counter.labels(*_labels(e, component, key, reason))
            if reason in requests:
                refused_requests.labels(*_labels(e, component, key, reason))
