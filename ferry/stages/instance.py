"""What every stage instance in `pipeline.stages` declares (kind, inputs, outputs, workers) and the routes
of the stages that choose an output per record (parser, router).

pydantic only: imported with the config before any role runs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StageInstance(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: str = Field(description="The stage kind (ferry/registry.py): parser, router, writer.")
    inputs: list[str] = Field(min_length=1, description="Topics read, as one consumer group named after the instance.")
    outputs: list[str] = Field([], description="Topics written.")
    workers: int | None = Field(
        None, ge=1, description="Processes running this instance under `ferry run` (unset: `parser.workers`)."
    )


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Counted under this name (ferry_routed_records_total).")
    when: str = Field(description="A predicate in ferry's search language.")
    to: list[str] = Field(min_length=1, description="Output topics of matching records.")
    continue_: bool = Field(
        False, alias="continue",
        description="Matching records also go on to later routes and, if none stops them, to the default output "
                    "(a copy, as the SIEM fork sends security events to their SIEM topic and to log_commit).",
    )

    @field_validator("when")
    @classmethod
    def _query(cls, v: str) -> str:
        from ferry.query.language import parse

        try:
            parse(v)
        except Exception as e:
            raise ValueError(f"not a valid query: {e}") from None
        return v


class Routed(StageInstance):
    routes: list[Route] = Field([], description="Tried in order; the first match without `continue` stops.")
    default: str | None = Field(None, description="Where records no route took go (unset: the first output).")

    @model_validator(mode="after")
    def _names_unique(self) -> Routed:
        names = [r.name for r in self.routes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"route names must be unique: {', '.join(sorted(dup))}")
        return self

    @property
    def default_output(self) -> str | None:
        return self.default or (self.outputs[0] if self.outputs else None)
