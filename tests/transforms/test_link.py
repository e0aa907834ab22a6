"""link over real batches: ids as attributes on the records, links rows between ids one record holds."""

from __future__ import annotations

import time
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from pydantic import TypeAdapter, ValidationError

from ferry.errors import ConfigError
from ferry.schema.samples import raw_lines
from ferry.schema.tables import LINKS
from ferry.stages.parser.syslog import parse_syslog
from ferry.testing.datasets import loghub
from ferry.transforms.chain import Chain, CompileContext
from ferry.transforms.config import Transform
from ferry.transforms.frame import Frame

POSTFIX = {"type": "link", "name": "mail", "ids": {"queue_id": r"(?:queued as|report for) ([0-9A-F]{5,})",
                                                    "report_id": r"dlr=(\w+)"}}


def syslog(lines: list[str]) -> pa.Table:
    return parse_syslog(raw_lines(lines))


def run(models: list[dict[str, Any]], table: pa.Table) -> Frame:
    return Chain.compile(TypeAdapter(list[Transform]).validate_python(models), CompileContext("t", ("log_commit",))).run(table)


def attrs(frame: Frame) -> list[dict[str, str]]:
    return [dict(r["LogAttributes"]) for r in frame.to_table().to_pylist()]


def test_postfix_queue_and_report_ids() -> None:
    """The queue id is set on both lines; the line holding both ids links them, in `ids` order."""
    table = syslog([
        "<22>Mar  1 10:00:00 mx postfix/smtpd[11]: connect from unknown[10.0.0.9]",
        "<22>Mar  1 10:00:01 mx postfix/cleanup[12]: message queued as 4F2A1",
        "<22>Mar  1 10:00:05 mx postfix/bounce[13]: delivery report for 4F2A1 dlr=9Z8Y",
    ])
    frame = run([POSTFIX], table)
    a = attrs(frame)
    assert "queue_id" not in a[0] and "report_id" not in a[0]
    assert a[1]["queue_id"] == "4F2A1" and "report_id" not in a[1]
    assert (a[2]["queue_id"], a[2]["report_id"]) == ("4F2A1", "9Z8Y")
    assert a[2]["syslog.procid"] == "13"  # the record's other attributes stay
    assert [(e.target, e.topic) for e in frame.emitted] == [("links", None)]
    links = frame.emitted[0].table
    assert links.schema == LINKS
    [row] = links.to_pylist()
    assert (row["FromId"], row["ToId"], row["Kind"], row["Tenant"], row["Source"], row["BatchId"]) == (
        "4F2A1", "9Z8Y", "mail", "default", "syslog", "")
    assert row["Timestamp"] == table.column("Timestamp")[2].as_py()


def test_consecutive_ids_in_listed_order_and_once_per_batch() -> None:
    """a, b, c held: a->b, b->c; a and c held: a->c; the same link twice in a batch: stored once."""
    model = {"type": "link", "name": "chain", "ids": {"a": r"a=(\w+)", "b": r"b=(\w+)", "c": r"c=(\w+)"}}
    table = syslog(["<14>Mar  1 10:00:00 h app: c=3 b=2 a=1", "<14>Mar  1 10:00:01 h app: a=1 c=9",
                    "<14>Mar  1 10:00:02 h app: a=1 b=2", "<14>Mar  1 10:00:03 h app: nothing here"])
    frame = run([model], table)
    got = sorted((r["FromId"], r["ToId"]) for r in frame.emitted[0].table.to_pylist())
    assert got == [("1", "2"), ("1", "9"), ("2", "3")]


def test_existing_attribute_kept_where_no_match_and_whole_match_without_group() -> None:
    """A pattern without a group takes its whole match; a record it misses keeps its attribute."""
    table = syslog(["<14>Mar  1 10:00:00 h app: user 42 session s-77", "<14>Mar  1 10:00:00 h app: no id"])
    frame = Frame.from_table(table)
    frame.set({"session": pl.lit("old")})
    for _, step in Chain.compile(TypeAdapter(list[Transform]).validate_python(
            [{"type": "link", "name": "s", "ids": {"session": r"s-\d+"}}]), CompileContext("t", ())).steps:
        step(frame)
    assert [a["session"] for a in attrs(frame)] == ["s-77", "old"]
    assert frame.emitted == []  # one id per record: nothing to link


def test_bad_config() -> None:
    adapter = TypeAdapter(list[Transform])
    with pytest.raises(ValidationError, match="report_id: not a valid regular expression"):
        adapter.validate_python([{"type": "link", "name": "m", "ids": {"report_id": "dlr=(\\w+"}}])
    with pytest.raises(ValidationError, match="ids"):
        adapter.validate_python([{"type": "link", "name": "m", "ids": {}}])
    # Python's re takes look-behind, ferry's engine does not: refused when the stage starts, naming the id.
    with pytest.raises(ConfigError, match="ids.q: the pattern is not one ferry's regex engine takes"):
        run([{"type": "link", "name": "m", "ids": {"q": r"(?<=as )\w+"}}], syslog(["<14>x"]))


def test_speed() -> None:
    """Figure for the comment in link.py: 64 k OpenSSH lines, two ids."""
    lines = loghub("OpenSSH/OpenSSH_2k.log").read_text().splitlines()
    table = syslog([f"<38>{line}" for line in (lines * 33)[:65536]])
    chain = Chain.compile(TypeAdapter(list[Transform]).validate_python(
        [{"type": "link", "name": "ssh", "ids": {"port": r"port (\d+)", "ip": r"from ([\d.]+)"}}]), CompileContext("t", ()))
    best = float("inf")
    for _ in range(3):
        frame = Frame.from_table(table)
        t0 = time.perf_counter()
        chain.steps[0][1](frame)
        best = min(best, time.perf_counter() - t0)
    assert frame.emitted and frame.emitted[0].table.num_rows > 100
    print(f"link: {best / 65536 * 1e6:.3f} us/row")
    assert best / 65536 * 1e6 < 2.0
