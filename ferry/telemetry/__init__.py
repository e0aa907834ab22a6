"""ferry's self-telemetry: counters for every outcome (metrics.py), served at /metrics."""
