"""The whole of ferry's configuration as typed models; every default is set here and only here.

Unknown keys are errors (extra="forbid"), so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BusConfig(_Section):
    url: str | None = Field(None, description="External NATS JetStream URL; unset = ferry runs its own nats-server.")
    port: int = Field(14222, description="Client port of the private nats-server (kept below 32768).")
    monitor_port: int = Field(18222, description="HTTP monitoring port of the private nats-server.")
    max_bytes_per_topic: int = Field(2 * 1024**3, description="Bytes a topic may hold before publishes are refused (backpressure).")
    max_payload: int = Field(8 * 1024**2, description="Largest bus message (one batch), bytes.")
    duplicate_window_s: float = Field(600.0, description="Batch-id dedupe window of every topic, seconds.")
    replicas: int = Field(1, description="Stream replicas (3 on a cluster).")


class OtlpGrpcConfig(_Section):
    enabled: bool = True
    port: int = 4317


class OtlpHttpConfig(_Section):
    enabled: bool = True
    port: int = 4318
    max_request_bytes: int = Field(16 * 1024**2, description="Larger requests get 413 (after decompression too).")


class OtlpConfig(_Section):
    grpc: OtlpGrpcConfig = OtlpGrpcConfig()
    http: OtlpHttpConfig = OtlpHttpConfig()


class SyslogConfig(_Section):
    enabled: bool = True
    udp_port: int = 5514
    tcp_port: int = 5514
    max_message_bytes: int = Field(64 * 1024, description="Longer messages are truncated and counted.")
    batch_lines: int = Field(5000, description="Lines per bus batch.")
    batch_wait_s: float = Field(0.2, description="Longest a line waits for its batch to fill.")


class ReceiversConfig(_Section):
    otlp: OtlpConfig = OtlpConfig()
    syslog: SyslogConfig = SyslogConfig()
    max_inflight_requests: int = Field(64, description="Concurrent OTLP requests; more wait (bounds memory).")
    workers: int = Field(1, ge=1, description="Receiver processes; they share every port (SO_REUSEPORT).")


class RetentionConfig(_Section):
    logs_days: int = Field(
        7,
        description="Days a row is kept, counted from the later of its timestamp and its arrival; "
        "0 keeps forever. A change applies to the existing store at the next start.",
    )
    traces_days: int = 7
    metrics_days: int = 30


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


class WriterConfig(_Section):
    max_rows: int = Field(100_000, description="Rows per store insert.")
    max_wait_s: float = Field(1.0, description="Longest a batch waits before an insert.")
    drained_wait_s: float = Field(
        0.3,
        description="Once nothing more is waiting on the bus and a tenth of max_rows is in hand (or the insert "
        "before held that many: a burst's remainder), insert after this long instead of max_wait_s.",
    )
    retries: int = Field(4, description="Insert attempts before a batch is spooled to disk.")
    backoff_s: float = Field(0.25, description="First retry delay; doubles each attempt.")
    spool_retry_s: float = Field(5.0, description="How often the spool worker tries to resubmit.")


class ParserConfig(_Section):
    workers: int = Field(1, ge=1, description="Parser processes in the consumer group.")


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


class MetricsConfig(_Section):
    port: int = Field(
        9686,
        description="Port (on `listen`) of GET /metrics and /healthz of `ferry run --role ingest|parser` "
        "on a host without the store, whose API serves /metrics otherwise.",
    )


class FerryConfig(_Section):
    data_dir: Path = Field(Path("./ferry-data"), description="Where the bus and the store keep data.")
    listen: str = Field(
        "127.0.0.1",
        description="Address every receiver, the API and the metrics page bind to: IPv4 or IPv6 "
        "(0.0.0.0 for every IPv4 interface; :: for every interface, IPv4 clients included).",
    )
    tenant: str = Field("default", description="Tenant stamped on data that names none.")
    bus: BusConfig = BusConfig()
    receivers: ReceiversConfig = ReceiversConfig()
    parser: ParserConfig = ParserConfig()
    writer: WriterConfig = WriterConfig()
    store: StoreConfig = StoreConfig()
    api: ApiConfig = ApiConfig()
    metrics: MetricsConfig = MetricsConfig()
    backpressure: BackpressureConfig = BackpressureConfig()
