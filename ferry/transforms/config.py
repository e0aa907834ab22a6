"""Every transform a parser stage may run, as its config model: `type` picks one, the rest are its settings.

pydantic only (imported with the config, before any role runs); each model's `compile` imports its
polars implementation from the module named in IMPLEMENTED_IN, on first use in a parser process.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from ferry.transforms.chain import CompileContext, Step


class _Transform(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str

    def compile(self, ctx: CompileContext) -> Step:
        """The transform as a step over a Frame, built once per stage start (polars imported here)."""
        module = importlib.import_module(f"ferry.transforms.{IMPLEMENTED_IN[self.type]}")
        return module.compile(self, ctx)  # type: ignore[no-any-return]


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"not a valid regular expression: {e}") from None
    return pattern


def _check_query(query: str) -> str:
    from ferry.query.language import parse

    try:
        parse(query)
    except Exception as e:  # BadRequest names the position
        raise ValueError(f"not a valid query: {e}") from None
    return query


Query = Annotated[str, Field(description="A predicate in ferry's search language, e.g. `level:>=error service:payments`.")]


# -- parse: a field's text into attributes ------------------------------------------------------


class _Parse(_Transform):
    field: str = Field("body", description="The field whose text is parsed (body, an attribute, resource.KEY).")
    prefix: str = Field("", description="Put before every attribute key this parse adds (e.g. `http.`).")


class JsonParse(_Parse):
    """A JSON object in `field` -> one attribute per leaf, nested keys joined with `separator`."""

    type: Literal["json"]
    separator: str = Field(".", description="Joins nested object keys (`{\"a\":{\"b\":1}}` -> `a.b`).")
    max_depth: int = Field(4, ge=1, le=16, description="Deeper objects are kept as JSON text in one attribute.")


class LogfmtParse(_Parse):
    """`key=value key2="quoted value"` pairs in `field` -> attributes."""

    type: Literal["logfmt"]


class KeyValueParse(_Parse):
    """Pairs with configurable separators (`a:1;b:2`) in `field` -> attributes."""

    type: Literal["key_value"]
    pair_separator: str = Field(" ", min_length=1, description="Between pairs.")
    kv_separator: str = Field("=", min_length=1, description="Between a key and its value.")
    quote: str = Field('"', max_length=1, description="Values may be wrapped in this character ('' for none).")


class RegexParse(_Parse):
    """Named groups of `pattern`, matched against `field` -> attributes named as the groups."""

    type: Literal["regex"]
    pattern: str = Field(
        description="A regular expression with named groups (?P<name>...); names may hold dots (?P<http.method>...). "
        "Rust regex syntax (no look-around, no backreferences)."
    )

    @field_validator("pattern")
    @classmethod
    def _named_groups(cls, v: str) -> str:
        from ferry.transforms.grok_patterns import name_groups

        compiled = name_groups(v)
        if not compiled.captures:
            raise ValueError("the pattern has no named group (?P<name>...), so it would set no attribute")
        _check_rust_regex(compiled.regex)
        return v


class GrokParse(_Parse):
    """A grok pattern (`%{IP:client} %{WORD:method}`) over `field` -> attributes named as its captures."""

    type: Literal["grok"]
    pattern: str = Field(description="Grok pattern; %{NAME:field} captures, the common pattern set is built in.")
    patterns: dict[str, str] = Field({}, description="Extra pattern definitions, NAME -> regex or grok.")

    @model_validator(mode="after")
    def _expands(self) -> GrokParse:
        from ferry.transforms.grok_patterns import expand

        compiled = expand(self.pattern, self.patterns)  # GrokError is a ValueError naming the pattern
        if not compiled.captures:
            raise ValueError("the pattern has no capture %{NAME:field}, so it would set no attribute")
        _check_rust_regex(compiled.regex)
        return self


def _check_rust_regex(pattern: str) -> None:
    """Refuse what polars' regex engine (Rust `regex`) refuses, at config time: pydantic-core compiles
    with the same crate, so look-around and backreferences are named here, not at the first batch."""
    from pydantic_core import SchemaError, SchemaValidator, core_schema

    try:
        SchemaValidator(core_schema.str_schema(pattern=pattern, regex_engine="rust-regex"))
    except SchemaError as e:
        detail = str(e).strip().splitlines()[-1].removeprefix("error: ")
        raise ValueError(f"not a regular expression polars can run (Rust regex syntax): {detail}") from None


class SyslogParse(_Parse):
    """A syslog line (RFC 5424 or 3164) in `field` -> timestamp, host, app, severity and syslog.* attributes."""

    type: Literal["syslog"]


class ClfParse(_Parse):
    """An Apache/NCSA Common Log Format line -> http.* attributes and the record's timestamp."""

    type: Literal["clf"]


class CombinedParse(_Parse):
    """Combined Log Format (CLF plus referer and user agent) -> http.* attributes and timestamp."""

    type: Literal["combined"]


# -- fields ------------------------------------------------------------------------------------

# Field names with a column of their own (frame.COLUMNS; tests/transforms/test_fields.py checks they agree):
# the rest are attributes. The record's time cannot be emptied, only set.
_COLUMN_FIELDS = frozenset({
    "body", "message", "service", "level", "severity", "severity_text", "severity_number", "timestamp",
    "observed_timestamp", "trace_id", "span_id", "source", "tenant",
})  # fmt: skip
_TIME_FIELDS = frozenset({"timestamp", "observed_timestamp"})


def _record_attribute(name: str, what: str) -> str:
    """`name` if it names a LogAttributes key (bare or `attributes.`), else a ValueError saying why."""
    lname = name.lower()
    if lname in _COLUMN_FIELDS or lname in ("host", "app") or name.startswith(("resource.", "scope.")):
        raise ValueError(f"{name}: {what} takes record attributes (LogAttributes keys), and {name} is not one")
    return name


class SetField(_Transform):
    """Set a field to a literal `value` or to another field's value (`from`), where `when` holds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["set"]
    field: str = Field(description="The field set.")
    value: str | int | float | bool | None = Field(None, description="The value (null: make the attribute absent).")
    from_: str | None = Field(None, alias="from", description="Copy this field's value instead of `value`.")
    when: Query | None = Field(None, description="Only records matching this predicate are changed.")

    @model_validator(mode="after")
    def _one_source(self) -> SetField:
        if self.from_ is not None and self.value is not None:
            raise ValueError("give `value` or `from`, not both")
        if self.when is not None:
            _check_query(self.when)
        if self.field.lower() in ("level", "severity", "severity_text") and self.from_ is None and self.value is not None:
            from ferry.query.language import LEVELS

            if str(self.value).lower() not in LEVELS:
                raise ValueError(f"value: {self.value!r} is not a level name (one of {', '.join(LEVELS)})")
        if self.field.lower() in _TIME_FIELDS and self.from_ is None and self.value is None:
            raise ValueError(f"field: {self.field} cannot be emptied, only set (`value` or `from`)")
        return self


class RenameFields(_Transform):
    type: Literal["rename"]
    fields: dict[str, str] = Field(min_length=1, description="old name -> new name; the old one becomes absent.")

    @field_validator("fields")
    @classmethod
    def _renames(cls, v: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for old, new in v.items():
            if old.lower() in _TIME_FIELDS:
                raise ValueError(f"{old}: the record's time cannot be renamed away; copy it with `set`")
            if new in seen:
                raise ValueError(f"{seen[new]} and {old} are both renamed to {new}")
            seen[new] = old
        return v


class DropFields(_Transform):
    type: Literal["drop"]
    fields: list[str] = Field(
        min_length=1, description="Attributes made absent (a column field is emptied); `*` matches any text in a key (`http.*`)."
    )

    @field_validator("fields")
    @classmethod
    def _droppable(cls, v: list[str]) -> list[str]:
        for name in v:
            if name.lower() in _TIME_FIELDS:
                raise ValueError(f"{name}: the record's time cannot be dropped")
            if "*" in name and name.lower() in _COLUMN_FIELDS | {"host", "app"}:
                raise ValueError(f"{name}: a pattern matches attribute keys only")
        return v


class KeepFields(_Transform):
    type: Literal["keep"]
    fields: list[str] = Field(
        min_length=1, description="Record attributes kept (`*` matches any text: `http.*`); every other LogAttributes key is dropped."
    )

    _check = field_validator("fields")(classmethod(lambda cls, v: [_record_attribute(n, "keep") for n in v]))


CastType = Literal["int", "float", "bool", "timestamp"]


class CastFields(_Transform):
    """Normalise values to a type; a value that does not convert drops that field (the record is kept),
    counted as outcome `ignore_malformed`."""

    type: Literal["cast"]
    fields: dict[str, CastType] = Field(min_length=1, description="attribute -> int | float | bool | timestamp.")

    @field_validator("fields")
    @classmethod
    def _attributes(cls, v: dict[str, CastType]) -> dict[str, CastType]:
        for name in v:
            if name.lower() in _COLUMN_FIELDS:
                raise ValueError(
                    f"{name}: cast normalises attribute text, and {name} is a column of its own (to set the "
                    "record's time from an attribute: `set: {field: timestamp, from: KEY}`)"
                )
        return v
    format: str | None = Field(None, description="strftime format for timestamp casts (default RFC 3339 / ISO 8601).")


# -- enrich, redact ----------------------------------------------------------------------------


class LookupTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="CSV file with a header row; relative paths are from the config file's folder.")
    key: str = Field(description="The CSV column matched against `field`.")
    field: str = Field(description="The record field looked up.")
    columns: list[str] | None = Field(None, description="CSV columns added as attributes (default: all but `key`).")
    prefix: str = Field("", description="Put before every attribute key added.")
    reload_s: float = Field(10.0, gt=0, description="How often the file is checked for changes (reloaded when changed).")


class ValueMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="The record field whose value is looked up, e.g. host.")
    into: str = Field(description="The field set from the map, e.g. resource.owner.team.")
    values: dict[str, str] = Field(description="value -> value set; a value not listed leaves `into` unchanged.")
    default: str | None = Field(None, description="Set when the value is not listed (unset: leave `into` as is).")


class Enrich(_Transform):
    """Add target metadata: static resource attributes, a CSV lookup, and value maps (host -> team)."""

    type: Literal["enrich"]
    static: dict[str, str] = Field({}, description="Resource attributes set on every record (cluster, region, …).")
    table: LookupTable | None = None
    maps: list[ValueMap] = []


RedactRule = Literal["email", "card", "ipv4", "ipv6", "bearer", "url_password"]


class CustomRedaction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Counted under this outcome name.")
    pattern: str = Field(description="Regular expression; each match is replaced.")
    replacement: str | None = Field(None, description="Default: the transform's replacement.")

    _check = field_validator("pattern")(classmethod(lambda cls, v: _check_regex(v)))


class Redact(_Transform):
    """Replace secrets and personal data in body and attributes; every change is counted by rule."""

    type: Literal["redact"]
    rules: list[RedactRule] = Field(
        ["email", "card", "ipv4", "ipv6", "bearer", "url_password"],
        description="Shipped rules: email, card (Luhn-checked numbers), ipv4, ipv6, bearer (tokens), url_password.",
    )
    custom: list[CustomRedaction] = []
    fields: list[str] = Field(["body", "attributes"], description="Fields redacted; `attributes` means every LogAttributes value.")
    replacement: str = Field("[REDACTED:{rule}]", description="What a match becomes; {rule} is the rule's name.")


# -- filter, sample ----------------------------------------------------------------------------


class Filter(_Transform):
    """Keep only records matching `keep`, or drop those matching `drop` (counted as sampled_out, reason filter)."""

    type: Literal["filter"]
    keep: Query | None = None
    drop: Query | None = None

    @model_validator(mode="after")
    def _one(self) -> Filter:
        if (self.keep is None) == (self.drop is None):
            raise ValueError("give exactly one of `keep` and `drop`")
        _check_query(self.keep or self.drop or "")
        return self


class Sample(_Transform):
    """Keep a share of the records (those matching `when`, all if unset); the rest are counted (reason sample).
    With `key`, the decision is a hash of that field, so all records of one trace are kept or dropped together."""

    type: Literal["sample"]
    rate: float = Field(gt=0, le=1, description="Share kept, 0 < rate <= 1.")
    when: Query | None = None
    key: str | None = Field(None, description="Field hashed for the decision (e.g. trace_id); unset: random.")

    _check = field_validator("when")(classmethod(lambda cls, v: v if v is None else _check_query(v)))


# -- metric_from_logs, link --------------------------------------------------------------------


class MetricFromLogs(_Transform):
    """Count records (or sum a numeric field) by chosen fields into a delta sum metric on `output`."""

    type: Literal["metric_from_logs"]
    name: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:.]*$", description="Metric name, e.g. ssh_logins.")
    kind: Literal["count", "sum"] = "count"
    field: str | None = Field(None, description="The numeric field summed (kind sum).")
    by: list[str] = Field([], description="Fields whose values become the metric's attributes.")
    when: Query | None = Field(None, description="Only matching records count.")
    interval_s: int = Field(10, ge=1, description="Points are per this many seconds of record time.")
    output: str = Field("metrics_commit", description="The topic the points go to (one of the stage's outputs).")
    unit: str = ""

    @model_validator(mode="after")
    def _sum_needs_field(self) -> MetricFromLogs:
        if self.kind == "sum" and not self.field:
            raise ValueError("kind sum needs `field`")
        if self.when is not None:
            _check_query(self.when)
        return self


class Link(_Transform):
    """Extract ids by pattern into attributes named by `ids`' keys, and link the ids found in one
    record (in the order `ids` lists them) into the links table, kind `name`."""

    type: Literal["link"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_.]*$", description="The link kind stored with each pair.")
    field: str = Field("body", description="Where the ids are searched.")
    ids: dict[str, str] = Field(min_length=1, description="attribute name -> regex whose first group (or whole match) is the id.")

    @field_validator("ids")
    @classmethod
    def _patterns(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            try:
                _check_regex(pattern)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        return v


IMPLEMENTED_IN: dict[str, str] = {
    "json": "parse", "logfmt": "parse", "key_value": "parse", "regex": "parse", "grok": "parse",
    "syslog": "parse", "clf": "parse", "combined": "parse",
    "set": "fields", "rename": "fields", "drop": "fields", "keep": "fields", "cast": "fields",
    "enrich": "enrich", "redact": "redact",
    "filter": "select", "sample": "select",
    "metric_from_logs": "metric_from_logs", "link": "link",
}  # fmt: skip

Transform = Annotated[
    JsonParse | LogfmtParse | KeyValueParse | RegexParse | GrokParse | SyslogParse | ClfParse | CombinedParse
    | SetField | RenameFields | DropFields | KeepFields | CastFields | Enrich | Redact | Filter | Sample
    | MetricFromLogs | Link,
    Field(discriminator="type"),
]

__all__ = ["IMPLEMENTED_IN", "Transform", "Any"]
