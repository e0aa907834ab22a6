"""The topics of a pipeline (config `pipeline.topics`), each with its subject, stream and consumer groups.

A topic is a NATS JetStream stream with one subject; a consumer group is a durable pull consumer named
after the stage instance that reads it (config `pipeline.stages.NAME.inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferry.config.model import FerryConfig

# The raw topics receivers write (ferry/registry.py names them per receiver).
LOGGING = "logging"
SYSLOG = "syslog"
TRACING = "tracing"
METRICS = "metrics"
# The shipped pipeline's normalised topics and groups (ferry/pipeline/default.py).
LOG_COMMIT = "log_commit"
TRACE_COMMIT = "trace_commit"
METRICS_COMMIT = "metrics_commit"
LOG_PARSER = "log_parser"
WRITER = "writer"


def subject_of(name: str) -> str:
    return f"ferry.{name}"


def stream_of(name: str) -> str:
    return f"FERRY_{name.upper()}"


@dataclass(frozen=True)
class Topic:
    name: str
    consumers: tuple[str, ...]
    signal: str = "logs"

    @property
    def subject(self) -> str:
        return subject_of(self.name)

    @property
    def stream(self) -> str:
        return stream_of(self.name)


def topics(cfg: FerryConfig) -> dict[str, Topic]:
    """Every declared topic, in declaration order, with the stage instances that read it."""
    p = cfg.pipeline
    return {
        name: Topic(name, tuple(s for s, inst in p.stages.items() if name in inst.inputs), t.signal)
        for name, t in p.topics.items()
    }


def inputs_of(cfg: FerryConfig, group: str) -> list[Topic]:
    inst = cfg.pipeline.stages[group]
    every = topics(cfg)
    return [every[t] for t in inst.inputs if t in every]
