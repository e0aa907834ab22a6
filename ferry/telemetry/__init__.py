"""ferry's self-telemetry: counters for every outcome (metrics.py), served at /metrics."""

# `log.warning(..., extra=FILE_ONLY)`: a line for the role's log file only, never stored where any API
# client can read it (own.py leaves it out of ferry's own logs: the engine's text and SQL of a failed
# API query are kept out of answers, docs/api.md).
FILE_ONLY = {"ferry_file_only": True}
