"""Loki push receiver: `/loki/api/v1/push` (JSON, gzip or not, and snappy protobuf) to otel_logs rows.
Stream labels become resource attributes, structured metadata log attributes; answered once durable.
"""
