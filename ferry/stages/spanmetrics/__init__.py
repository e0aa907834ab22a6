"""Span metrics stage: RED metrics and the service graph computed from spans at ingest.

Settings in config.py; built by component.py; the work is in stage.py.
"""

KIND = "spanmetrics"
