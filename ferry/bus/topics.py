"""Every topic ferry knows, defined once: its subject, its stream and which consumer groups read it.

A topic is a NATS JetStream stream with one subject; a consumer group is a durable pull consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

# Raw topics, filled by receivers.
LOGGING = "logging"
SYSLOG = "syslog"
TRACING = "tracing"
METRICS = "metrics"
# Normalised topics, filled by the parser and read by writers (and later exporters).
LOG_COMMIT = "log_commit"
TRACE_COMMIT = "trace_commit"
METRICS_COMMIT = "metrics_commit"

PARSER = "parser"
WRITER = "writer"


@dataclass(frozen=True)
class Topic:
    name: str
    consumers: tuple[str, ...]

    @property
    def subject(self) -> str:
        return f"ferry.{self.name}"

    @property
    def stream(self) -> str:
        return f"FERRY_{self.name.upper()}"


TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        Topic(LOGGING, (PARSER,)),
        Topic(SYSLOG, (PARSER,)),
        Topic(TRACING, (PARSER,)),
        Topic(METRICS, (PARSER,)),
        Topic(LOG_COMMIT, (WRITER,)),
        Topic(TRACE_COMMIT, (WRITER,)),
        Topic(METRICS_COMMIT, (WRITER,)),
    )
}

# Which commit topic the parser sends each raw topic's output to.
COMMIT_OF: dict[str, str] = {
    LOGGING: LOG_COMMIT,
    SYSLOG: LOG_COMMIT,
    TRACING: TRACE_COMMIT,
    METRICS: METRICS_COMMIT,
}

# The signal each topic carries (the label self-telemetry counts its batches under).
SIGNAL_OF: dict[str, str] = {
    LOGGING: "logs", SYSLOG: "logs", LOG_COMMIT: "logs",
    TRACING: "traces", TRACE_COMMIT: "traces",
    METRICS: "metrics", METRICS_COMMIT: "metrics",
}


def inputs_of(consumer: str) -> list[Topic]:
    return [t for t in TOPICS.values() if consumer in t.consumers]
