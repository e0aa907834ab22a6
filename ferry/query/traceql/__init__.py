"""TraceQL (Tempo's trace query language): parser and compiler to SQL over otel_traces, plus the
trace reads the Tempo and Jaeger APIs share.
"""

from ferry.query.traceql.compile import Plan, candidates_sql, evaluate, plan, spans_sql
from ferry.query.traceql.parser import parse

__all__ = ["Plan", "candidates_sql", "evaluate", "parse", "plan", "spans_sql"]
