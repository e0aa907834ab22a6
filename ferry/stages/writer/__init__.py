"""Writer stage: *_commit topics -> store tables, with retry, spool and exactly-once batch ids."""

from ferry.stages.writer.spool import Spool, resubmit_forever
from ferry.stages.writer.stage import WriterStage

KIND = "writer"
__all__ = ["KIND", "Spool", "WriterStage", "resubmit_forever"]
