"""LogQL, Grafana Loki's query language, over ferry's otel_logs: parser, SQL compiler and evaluator.

parser.parse -> ast; sql.py pushes selection and line filters to the store; pipeline.py and engine.py do the rest in polars.
"""
