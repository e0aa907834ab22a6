"""Settings of a router stage instance (`pipeline.stages.NAME` with `kind: router`).

Imported by ferry.config.model and the registry before any role runs: pydantic only, nothing heavy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ferry.stages.instance import Routed


class RouterConfig(Routed):
    """Routes records between topics by predicate; counted per route (ferry_routed_records_total)."""

    kind: Literal["router"] = Field("router", description="The stage kind.")


Config = RouterConfig  # a stage instance's model, as the registry finds it
