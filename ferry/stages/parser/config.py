"""Settings of a parser stage instance (`pipeline.stages.NAME` with `kind: parser`) and of the parser role.

Imported by ferry.config.model and the registry before any role runs: pydantic only, nothing heavy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ferry.stages.instance import Routed
from ferry.transforms.config import Transform


class ParserRoleConfig(BaseModel):
    """`parser:` in the config file: the processes of the parser role under `ferry run`."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(1, ge=1, description="Parser processes; a stage instance without its own `workers` runs in each.")


class ParserConfig(Routed):
    """Normalises what receivers wrote (syslog lines parsed, OTLP conformed), runs `transforms` over log
    records in order, then `routes` them to its outputs."""

    kind: Literal["parser"] = Field("parser", description="The stage kind.")
    transforms: list[Transform] = Field([], description="Run in order over every batch of log records.")


Config = ParserConfig  # a stage instance's model, as the registry finds it
