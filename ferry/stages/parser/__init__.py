"""Parser stage: raw topics (logging, syslog, tracing, metrics) -> *_commit topics."""

from ferry.stages.parser.stage import ParserStage

KIND = "parser"
__all__ = ["KIND", "ParserStage"]
