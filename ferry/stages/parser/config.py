"""Settings of the parser stage (`parser` in the config file).

Imported by ferry.config.model and the registry before any role runs: pydantic only, nothing heavy.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ParserConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(1, ge=1, description="Parser processes in the consumer group.")


Config = ParserConfig  # the section's model, as the registry finds it
