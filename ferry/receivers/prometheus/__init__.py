"""Prometheus remote_write 1.0 receiver: snappy `prometheus.WriteRequest` bodies to otel_metrics_gauge rows.
Sample series, exemplars and metadata; acknowledged once durable on the bus.
"""
