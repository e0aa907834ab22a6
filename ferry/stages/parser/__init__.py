"""Parser stage: raw topics (logging, syslog, tracing, metrics) -> *_commit topics.

Settings in config.py, `build` in component.py. ParserStage is loaded on first use, so that the
config (which imports config.py, and so this package) never pulls in polars.
"""

from __future__ import annotations

from typing import Any

KIND = "parser"
__all__ = ["KIND", "ParserStage"]


def __getattr__(name: str) -> Any:
    if name == "ParserStage":
        from ferry.stages.parser.stage import ParserStage

        return ParserStage
    raise AttributeError(name)
