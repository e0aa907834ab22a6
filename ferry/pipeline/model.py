"""`pipeline:` in the config file: topics and stage instances, merged onto the shipped default by name.

A stage instance's model is its kind's config.py model (the registry lists the kinds), picked by `kind`,
so an unknown kind or a misspelt setting is an error naming its key path.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ferry.pipeline import default
from ferry.registry import stage_models

Signal = Literal["logs", "traces", "metrics"]


class TopicConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal: Signal = Field(description="What the topic carries: logs, traces or metrics.")
    about: str = Field("", description="One line for `ferry pipeline`.")


StageConfig = Annotated[Union[tuple(stage_models())], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: bool = Field(
        True,
        description="Start from the shipped enterprise map: topics and stages given here are merged onto it by name "
        "(a stage's keys replace the default's; `NAME: null` removes it). false: only what is given here.",
    )
    topics: dict[str, TopicConfig] = {}
    stages: dict[str, StageConfig] = {}

    @model_validator(mode="before")
    @classmethod
    def _merge_default(cls, raw: Any) -> Any:
        raw = dict(raw or {})
        if raw.get("defaults", True) is False:
            raw["defaults"] = False
            return raw
        # Resolved once: the result says defaults=false, so a role re-reading it does not merge twice.
        raw["defaults"] = False
        for part, shipped in (("topics", default.TOPICS), ("stages", default.STAGES)):
            given = raw.get(part) or {}
            if not isinstance(given, dict):
                return raw  # reported by the field's own validation
            merged: dict[str, Any] = copy.deepcopy(shipped)
            for name, value in given.items():
                if value is None:
                    merged.pop(name, None)
                elif isinstance(value, dict) and isinstance(merged.get(name), dict):
                    merged[name] = {**merged[name], **value}
                else:
                    merged[name] = value
            raw[part] = merged
        return raw

    def signal_of(self, topic: str) -> str:
        t = self.topics.get(topic)
        return t.signal if t is not None else "logs"
