"""The whole of ferry's configuration as typed models; every default is set here or, for a receiver or
stage, in its package's config.py (ferry/registry.py lists them), once.

Unknown keys are errors (extra="forbid"), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from ferry.pipeline.model import PipelineConfig

# Imported back so that `from ferry.config.model import SyslogConfig` keeps working.
from ferry.receivers.otlp.config import OtlpConfig, OtlpGrpcConfig, OtlpHttpConfig
from ferry.receivers.syslog.config import SyslogConfig
from ferry.registry import config_fields
from ferry.stages.parser.config import ParserConfig, ParserRoleConfig
from ferry.stages.writer.config import WriterConfig

__all__ = [
    "ApiConfig", "BackpressureConfig", "BusConfig", "FerryConfig", "LogsConfig", "MetricsConfig", "OtlpConfig",
    "OtlpGrpcConfig", "OtlpHttpConfig", "ParserConfig", "ReceiversConfig", "RetentionConfig", "StoreConfig",
    "SyslogConfig", "WriterConfig",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BusConfig(_Section):
    url: str | None = Field(
        None,
        description="External NATS JetStream server(s): nats://HOST:PORT or tls://HOST:PORT, several as a YAML "
        "list or comma-separated (every node of a cluster, so a role can start while one is down); unset = "
        "ferry runs its own nats-server. Kept as one comma-separated string.",
    )
    port: int = Field(14222, description="Client port of the private nats-server (kept below 32768).")
    monitor_port: int = Field(18222, description="HTTP monitoring port of the private nats-server.")
    max_bytes_per_topic: int = Field(2 * 1024**3, description="Bytes a topic may hold before publishes are refused (backpressure).")
    max_payload: int = Field(8 * 1024**2, description="Largest bus message (one batch), bytes.")
    duplicate_window_s: float = Field(600.0, description="Batch-id dedupe window of every topic, seconds.")
    replicas: int = Field(1, description="Stream replicas (3 on a cluster).")

    @field_validator("url", mode="before")
    @classmethod
    def _server_urls(cls, v: object) -> object:
        # Checked here, not at connect: a URL the client cannot parse used to pass `ferry config
        # check` and then kill the role with a traceback.
        from urllib.parse import urlsplit

        if v is None or v == "":
            return None
        if isinstance(v, str):
            items = v.split(",")
        elif isinstance(v, list) and all(isinstance(u, str) for u in v):
            items = list(v)
        else:
            raise ValueError("expected a NATS URL, a list of them, or several comma-separated")
        urls = [u.strip() for u in items if u.strip()]
        if not urls:
            raise ValueError("no server URL given")
        for u in urls:
            want = f"{u!r} is not a NATS server URL; expected nats://HOST:PORT or tls://HOST:PORT"
            try:
                parts = urlsplit(u)
                port = parts.port  # raises on a port that is not a number from 0 to 65535
            except ValueError:
                raise ValueError(f"{want} (bad port)") from None
            if parts.scheme not in ("nats", "tls"):
                raise ValueError(want + (f" (scheme {parts.scheme!r})" if parts.scheme else " (no scheme)"))
            if not parts.hostname:
                raise ValueError(f"{want} (no host)")
            if port is None or port == 0:
                raise ValueError(f"{want} (no port)")
            if parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(f"{want} (unexpected path or query)")
        return ",".join(urls)


class _ReceiversCommon(_Section):
    max_inflight_requests: int = Field(
        64, description="Concurrent OTLP requests (HTTP and gRPC each); more get 429 / RESOURCE_EXHAUSTED with "
        "Retry-After (bounds memory)."
    )
    workers: int = Field(1, ge=1, description="Receiver processes; they share every port (SO_REUSEPORT).")


# Each receiver's own section (receivers.otlp, receivers.syslog) is its package's config.py model,
# added here from the registry: a new receiver needs no line in this file.
ReceiversConfig = create_model(
    "ReceiversConfig", __base__=_ReceiversCommon, __module__=__name__, **config_fields("receivers")  # type: ignore[call-overload]
)


class RetentionConfig(_Section):
    logs_days: int = Field(
        7,
        description="Days a row is kept, counted from the later of its timestamp and its arrival; "
        "0 keeps forever. A change applies to the existing store at the next start.",
    )
    traces_days: int = 7
    metrics_days: int = 30
    siem_days: int = Field(
        400,
        ge=0,
        description="Days security events (table siem_events) are kept; 0 keeps forever. Never shortened by "
        "ferry: a value lower than the store's keeps the longer retention (with a warning at start).",
    )


class StoreConfig(_Section):
    url: str | None = Field(
        None,
        description="Reserved for a ClickHouse server store; not supported yet (ferry stores into embedded chDB).",
    )
    retention: RetentionConfig = RetentionConfig()
    max_memory_bytes: int = Field(4 * 1024**3, description="chDB memory cap for queries and merges.")
    max_bytes: int = Field(
        0,
        ge=0,
        description="Disk the store may take; above it the oldest time partitions (hours of logs and traces, "
        "days of metrics) are dropped and counted. 0 = no limit (retention by age only).",
    )
    size_check_s: float = Field(30.0, gt=0, description="How often the store's size is checked against max_bytes.")
    @field_validator("url")
    @classmethod
    def _no_server_store_yet(cls, v: str | None) -> str | None:
        # Refused rather than ignored: a store setting that silently does nothing would send
        # every row to the embedded store while the operator believes it goes to their cluster.
        if v is not None:
            raise ValueError("a ClickHouse server store is not supported yet; remove store.url "
                             "(ferry keeps its data in embedded chDB under data_dir/store)")
        return v

    index_after_s: float = Field(
        10.0,
        description="Inserts leave the full-text and attribute indexes to merges; a part no merge has "
        "reached after this many seconds gets them built on its own. 0 = build them at every insert.",
    )


class BackpressureConfig(_Section):
    max_pending_batches: int = Field(2000, description="Unwritten batches on *_commit topics before receivers refuse.")
    retry_after_s: int = Field(2, description="Retry-After sent with 429 / RESOURCE_EXHAUSTED.")
    min_free_disk_bytes: int = Field(
        512 * 1024**2,
        ge=0,
        description="Receivers refuse (429, reason disk_full) while the data directory's disk has less free space "
        "than this, so neither the private bus nor the store runs out mid-write (not checked with bus.url). "
        "0 turns the check off.",
    )


class ApiConfig(_Section):
    port: int = 8686
    max_query_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest one API query may run in the store; a longer one is stopped and answered 504. "
        "Not applied to the writer's inserts or maintenance.",
    )
    max_query_memory_bytes: int | None = Field(
        None,
        gt=0,
        description="Memory one API query may use in the store (answered 422 above it); "
        "unset = a quarter of store.max_memory_bytes.",
    )
    max_result_bytes: int = Field(
        64 * 1024**2, gt=0, description="Largest answer one API query may produce (answered 422 above it)."
    )
    max_concurrent_queries: int = Field(
        4,
        ge=1,
        description="API queries run in the store at once; more wait up to half of max_query_seconds for a turn, "
        "then get 429 with Retry-After.",
    )
    allowed_hosts: list[str] = Field(
        [],
        description="Host names (no port; '*.example.com' for subdomains) the API answers besides localhost and "
        "IP addresses. With `listen` on a loopback address, a request naming any other host gets 403 "
        "(DNS rebinding); on other addresses the check is on only when this list is set.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _plain_host_names(cls, v: list[str]) -> list[str]:
        out = []
        for name in v:
            host = name.strip().lower().rstrip(".")
            try:
                out.append(ipaddress.ip_address(host.strip("[]")).compressed)
                continue
            except ValueError:
                pass
            if not host or any(c in host for c in "/:@ []") or "*" in host.removeprefix("*."):
                raise ValueError(f"{name!r} is not a host name (give names like ferry.example.com or "
                                 "*.example.com, without scheme or port)")
            out.append(host)
        return out


# /metrics of a lone ingest or parser role when metrics.port is unset: one port per role, so both
# roles can run on one host with the defaults (the store's API, 8686, serves its own /metrics).
ROLE_METRICS_PORTS = {"ingest": 9686, "parser": 9687}


class MetricsConfig(_Section):
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port (on `listen`) of GET /metrics and /healthz of `ferry run --role ingest|parser` "
        "on a host without the store, whose API serves /metrics otherwise. Unset = the role's own "
        "default (ingest 9686, parser 9687), so an ingest and a parser role share a host without a clash.",
    )

    def port_for(self, role: str) -> int:
        # A lone stage instance (`--role log_parser`) is a parser-role process.
        return self.port if self.port is not None else ROLE_METRICS_PORTS.get(role, ROLE_METRICS_PORTS["parser"])


class LogsConfig(_Section):
    max_bytes: int = Field(
        16 * 1024**2, ge=64 * 1024,
        description="Size at which a role's log (data_dir/run/ROLE-N.log) is rotated to ROLE-N.log.1.",
    )
    keep: int = Field(3, ge=0, description="Rotated log files kept per role, besides the current one.")
    repeat_interval_s: float = Field(
        60.0, ge=0,
        description="A log message repeated within this many seconds is left out and counted; the count is "
        "logged with its next occurrence after the interval. 0 logs every repeat.",
    )


class OwnTelemetryConfig(_Section):
    enabled: bool = Field(
        True,
        description="ferry's own logs go to the logging topic as service `ferry` and its /metrics into the metric "
        "tables, so `ferry query service:ferry` and `ferry metrics ferry_...` read them like any service's.",
    )
    logs_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Least severe of ferry's own log records stored (the role logs keep FERRY_LOG_LEVEL)."
    )
    metrics_interval_s: float = Field(15.0, gt=0, description="How often ferry's /metrics page is stored, seconds.")

    @field_validator("logs_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v


class UiConfig(_Section):
    dashboards_dir: Path | None = Field(
        None,
        description="Folder of dashboard YAML files (docs/dashboards.md), re-read within 2 s of a change; unset = "
        "<data_dir>/dashboards. The shipped dashboards are always served; a file of the same name replaces one.",
    )


class _FerryCommon(_Section):
    data_dir: Path = Field(Path("./ferry-data"), description="Where the bus and the store keep data.")
    listen: str = Field(
        "127.0.0.1",
        description="Address every receiver, the API and the metrics page bind to: IPv4 or IPv6 "
        "(0.0.0.0 for every IPv4 interface; :: for every interface, IPv4 clients included).",
    )
    tenant: str = Field("default", description="Tenant stamped on data that names none.")
    bus: BusConfig = BusConfig()
    receivers: ReceiversConfig = ReceiversConfig()
    store: StoreConfig = StoreConfig()
    api: ApiConfig = ApiConfig()
    metrics: MetricsConfig = MetricsConfig()
    backpressure: BackpressureConfig = BackpressureConfig()
    logs: LogsConfig = LogsConfig()
    parser: ParserRoleConfig = ParserRoleConfig()
    pipeline: PipelineConfig = PipelineConfig()
    own_telemetry: OwnTelemetryConfig = OwnTelemetryConfig()
    ui: UiConfig = UiConfig()


# The stages' sections (parser, writer) are their packages' config.py models, from the registry.
FerryConfig = create_model(
    "FerryConfig", __base__=_FerryCommon, __module__=__name__, **config_fields("")  # type: ignore[call-overload]
)
