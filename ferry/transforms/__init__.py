"""Transforms a parser stage runs over whole batches of log records: parse, fields, enrich, redact, filter,
sample, metric_from_logs and link. Config models in config.py; each compiles once to polars steps (chain.py).
"""
