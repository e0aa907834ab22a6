"""set, rename, drop, keep and cast over real batches: the rows a user would find stored, and the counts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest
from pydantic import TypeAdapter, ValidationError

from ferry.schema.tables import LOGS, conform
from ferry.transforms.chain import Chain, CompileContext
from ferry.transforms.config import Transform
from ferry.transforms.frame import Frame

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)


def logs(*records: dict[str, Any]) -> pa.Table:
    """A LOGS table: each record gives body, attrs, resource, level, number (others default)."""
    rows = [
        {
            "Timestamp": T0,
            "Body": r.get("body", ""),
            "SeverityText": r.get("level", "INFO"),
            "SeverityNumber": r.get("number", 9),
            "ServiceName": r.get("service", "api"),
            "LogAttributes": list(r.get("attrs", {}).items()),
            "ResourceAttributes": list(r.get("resource", {"host.name": "web1"}).items()),
        }
        for r in records
    ]
    return conform(pa.Table.from_pylist(rows, schema=pa.schema([LOGS.field(k) for k in rows[0]])), LOGS)


def run(models: list[dict[str, Any]], table: pa.Table) -> tuple[list[dict[str, Any]], Frame]:
    chain = Chain.compile(TypeAdapter(list[Transform]).validate_python(models), CompileContext("t", ("logging",)))
    frame = chain.run(table)
    rows = frame.to_table().to_pylist()
    for r in rows:
        r["LogAttributes"] = dict(r["LogAttributes"])
        r["ResourceAttributes"] = dict(r["ResourceAttributes"])
    return rows, frame


def counts(frame: Frame) -> dict[str, int]:
    return {outcome: n for (_, outcome), n in frame.counts.items()}


# -- set -------------------------------------------------------------------------------------------


def test_set_literal_and_from_and_null() -> None:
    rows, _ = run(
        [
            {"type": "set", "field": "env", "value": "prod"},
            {"type": "set", "field": "attributes.retries", "value": 3},
            {"type": "set", "field": "attributes.sampled", "value": True},
            {"type": "set", "field": "resource.owner", "from": "team"},
            {"type": "set", "field": "gone", "value": None},
            {"type": "set", "field": "service", "from": "host"},
        ],
        logs({"attrs": {"team": "pay", "gone": "x"}}, {"attrs": {}}),
    )
    assert rows[0]["LogAttributes"] == {"team": "pay", "env": "prod", "retries": "3", "sampled": "true"}
    assert rows[0]["ResourceAttributes"] == {"host.name": "web1", "owner": "pay"}
    assert rows[0]["ServiceName"] == "web1"
    # A record without the `from` field keeps its target as it was.
    assert rows[1]["ResourceAttributes"] == {"host.name": "web1"}
    assert "gone" not in rows[1]["LogAttributes"]


def test_set_level_sets_the_severity_number_too() -> None:
    rows, _ = run(
        [{"type": "set", "field": "level", "from": "lvl"}],
        logs({"attrs": {"lvl": "ERROR"}}, {"attrs": {"lvl": "warning"}}, {"attrs": {"lvl": "SEVERE"}}, {"attrs": {}}),
    )
    assert [(r["SeverityText"], r["SeverityNumber"]) for r in rows] == [
        ("ERROR", 17), ("warning", 13), ("SEVERE", 0), ("INFO", 9),
    ]  # fmt: skip
    rows, _ = run([{"type": "set", "field": "level", "value": "crit"}], logs({}))
    assert (rows[0]["SeverityText"], rows[0]["SeverityNumber"]) == ("crit", 18)
    with pytest.raises(ValidationError, match="'eror' is not a level name"):
        run([{"type": "set", "field": "level", "value": "eror"}], logs({}))


def test_set_when_changes_only_matching_records() -> None:
    rows, _ = run(
        [{"type": "set", "field": "level", "value": "error", "when": "status:>=500"}],
        logs({"attrs": {"status": "503"}}, {"attrs": {"status": "200"}}, {"attrs": {}}),
    )
    assert [(r["SeverityText"], r["SeverityNumber"]) for r in rows] == [("error", 17), ("INFO", 9), ("INFO", 9)]


def test_set_timestamp_from_an_attribute_and_malformed_counted() -> None:
    rows, frame = run(
        [{"type": "set", "field": "timestamp", "from": "time"}],
        logs(
            {"attrs": {"time": "2024-01-02T03:04:05.250+02:00"}},
            {"attrs": {"time": "2024-01-02 03:04:05"}},
            {"attrs": {"time": "1704164645123"}},
            {"attrs": {"time": "yesterday"}},
            {"attrs": {}},
        ),
    )
    assert [r["Timestamp"] for r in rows] == [
        dt.datetime(2024, 1, 2, 1, 4, 5, 250000, tzinfo=UTC),
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
        T0,  # does not parse: the record keeps its time, counted
        T0,
    ]
    assert counts(frame) == {"ignore_malformed": 1}


def test_bad_set_config_is_a_validation_error_naming_the_key() -> None:
    with pytest.raises(ValidationError, match="give `value` or `from`, not both"):
        TypeAdapter(list[Transform]).validate_python([{"type": "set", "field": "a", "value": "1", "from": "b"}])
    with pytest.raises(ValidationError, match="when"):
        TypeAdapter(list[Transform]).validate_python([{"type": "set", "field": "a", "value": "1", "when": "level:>"}])
    with pytest.raises(ValidationError, match="fields"):
        TypeAdapter(list[Transform]).validate_python([{"type": "cast", "fields": {"a": "integer"}}])


# -- rename, drop, keep ------------------------------------------------------------------------------


def test_rename_attributes_and_columns() -> None:
    rows, _ = run(
        [{"type": "rename", "fields": {"msg": "body", "lvl": "level", "usr": "user.name"}}],
        logs({"body": "raw", "attrs": {"msg": "hello", "lvl": "warn", "usr": "bob"}}, {"body": "keep me", "attrs": {}}),
    )
    assert rows[0]["Body"] == "hello"
    assert (rows[0]["SeverityText"], rows[0]["SeverityNumber"]) == ("warn", 13)
    assert rows[0]["LogAttributes"] == {"user.name": "bob"}
    assert rows[1]["Body"] == "keep me"  # no `msg`: the body stays
    rows, _ = run([{"type": "rename", "fields": {"body": "original"}}], logs({"body": "text"}))
    assert rows[0]["Body"] == "" and rows[0]["LogAttributes"] == {"original": "text"}


def test_rename_swaps() -> None:
    rows, _ = run([{"type": "rename", "fields": {"a": "b", "b": "a"}}], logs({"attrs": {"a": "1", "b": "2"}}))
    assert rows[0]["LogAttributes"] == {"a": "2", "b": "1"}


def test_drop_and_keep_with_patterns() -> None:
    table = logs({"body": "x", "attrs": {"http.method": "GET", "http.status": "200", "user": "bob", "secret": "s"}})
    rows, _ = run([{"type": "drop", "fields": ["secret", "http.*", "body"]}], table)
    assert rows[0]["LogAttributes"] == {"user": "bob"} and rows[0]["Body"] == ""
    rows, _ = run([{"type": "keep", "fields": ["http.*", "attributes.user"]}], table)
    assert rows[0]["LogAttributes"] == {"http.method": "GET", "http.status": "200", "user": "bob"}
    with pytest.raises(ValidationError, match="host: keep takes record attributes"):
        run([{"type": "keep", "fields": ["host"]}], table)


# -- cast ------------------------------------------------------------------------------------------


def test_cast_normalises_text_and_drops_what_does_not_convert() -> None:
    rows, frame = run(
        [{"type": "cast", "fields": {"n": "int", "f": "float", "b": "bool", "t": "timestamp"}}],
        logs(
            {"attrs": {"n": " 042", "f": "1.50", "b": "YES", "t": "2024-01-02T03:04:05+02:00"}},
            {"attrs": {"n": "-7", "f": "1e3", "b": "0", "t": "1704164645"}},
            {"attrs": {"n": "4.5", "f": "nan", "b": "maybe", "t": "soon", "other": "x"}},
        ),
    )
    assert rows[0]["LogAttributes"] == {"n": "42", "f": "1.5", "b": "true", "t": "2024-01-02T01:04:05Z"}
    assert rows[1]["LogAttributes"] == {"n": "-7", "f": "1000.0", "b": "false", "t": "2024-01-02T03:04:05Z"}
    assert rows[2]["LogAttributes"] == {"other": "x"}
    assert counts(frame) == {"ignore_malformed": 1}  # one record, four values


def test_cast_timestamp_with_a_format() -> None:
    rows, _ = run(
        [{"type": "cast", "fields": {"t": "timestamp"}, "format": "%d/%b/%Y:%H:%M:%S %z"}],
        logs({"attrs": {"t": "10/Oct/2000:13:55:36 -0700"}}),
    )
    assert rows[0]["LogAttributes"] == {"t": "2000-10-10T20:55:36Z"}


def test_config_errors_name_the_field_and_say_what_to_do() -> None:
    def invalid(model: dict[str, Any], message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            TypeAdapter(list[Transform]).validate_python([model])

    invalid({"type": "cast", "fields": {"timestamp": "timestamp"}}, r"set: \{field: timestamp, from: KEY\}")
    invalid({"type": "rename", "fields": {"a": "x", "b": "x"}}, "a and b are both renamed to x")
    invalid({"type": "rename", "fields": {"timestamp": "t"}}, "cannot be renamed away")
    invalid({"type": "drop", "fields": ["timestamp"]}, "cannot be dropped")
    invalid({"type": "set", "field": "timestamp"}, "cannot be emptied")


def test_column_names_agree_with_the_frame() -> None:
    from ferry.transforms import config, frame

    assert config._COLUMN_FIELDS == set(frame.COLUMNS)
