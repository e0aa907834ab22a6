"""ferry: a self-hosted telemetry system (logs, metrics, traces) in one command.

Receivers put batches on NATS JetStream topics; stages parse and write them into ClickHouse (chDB).
"""

__version__ = "0.1.0"
