"""Settings of a writer stage instance (`pipeline.stages.NAME` with `kind: writer`): insert sizes, retries, spool.

Imported by ferry.config.model and the registry before any role runs: pydantic only, nothing heavy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ferry.stages.instance import StageInstance


class WriterConfig(StageInstance):
    kind: Literal["writer"] = Field("writer", description="The stage kind.")
    table: str | None = Field(
        None, description="Store every batch in this table (siem_events for the SIEM writer); unset: the table the "
        "parser chose for each batch."
    )
    max_rows: int = Field(100_000, description="Rows per store insert.")
    max_wait_s: float = Field(1.0, description="Longest a batch waits before an insert.")
    drained_wait_s: float = Field(
        0.3,
        description="Once nothing more is waiting on the bus and a tenth of max_rows is in hand (or the insert "
        "before held that many: a burst's remainder), insert after this long instead of max_wait_s.",
    )
    retries: int = Field(4, description="Insert attempts before a batch is spooled to disk.")
    backoff_s: float = Field(0.25, description="First retry delay; doubles each attempt, up to backoff_max_s.")
    backoff_max_s: float = Field(5.0, description="Longest delay between insert retries.")
    spool_retry_s: float = Field(5.0, description="How often the spool worker tries to resubmit.")


Config = WriterConfig  # a stage instance's model, as the registry finds it
