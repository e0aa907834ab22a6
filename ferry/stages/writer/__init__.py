"""Writer stage: *_commit topics -> store tables, with retry, spool and exactly-once batch ids.

Settings in config.py, `build` in component.py. The stage and spool are loaded on first use: the
config imports config.py (and so this package), and stage.py imports the config back.
"""

from __future__ import annotations

from typing import Any

KIND = "writer"
__all__ = ["KIND", "Spool", "WriterStage"]


def __getattr__(name: str) -> Any:
    if name == "Spool":
        from ferry.stages.writer import spool

        return getattr(spool, name)
    if name == "WriterStage":
        from ferry.stages.writer.stage import WriterStage

        return WriterStage
    raise AttributeError(name)
