"""link: ids found by pattern in a record become its attributes, and the ids one record holds together
become rows of the links table (kind = the rule's name), which /api/v1/related walks.

Decisions:
- The id is a pattern's first group, or its whole match when it has none; an empty match is no id.
  A record the pattern does not match keeps the attribute it already had.
- A record holding two or more of the ids links each to the next one it holds, in the order `ids`
  lists them (a, b, c held: a->b, b->c; a and c held: a->c).
- Within a batch a link is stored once per (from, to, tenant, source), with the earliest record's
  time; nothing is remembered between batches (the store answers the walk whatever the repeats).
"""

from __future__ import annotations

import re
import time

import polars as pl

from ferry.errors import ConfigError
from ferry.schema.tables import LINKS, conform
from ferry.transforms.chain import CompileContext, Step
from ferry.transforms.config import Link
from ferry.transforms.frame import Frame, where

TARGET = "links"

# Measured on 64 k loghub OpenSSH lines (test_link.py::test_speed, one core), two ids
# (`port (\d+)`, `from ([\d.]+)`): ~0.5 us a row, nearly all of it the two regex extractions.


def compile(model: Link, ctx: CompileContext) -> Step:
    source = where(model.field)
    ids: list[tuple[str, str, int]] = []  # (attribute, pattern, group)
    for name, pattern in model.ids.items():
        group = 1 if re.compile(pattern).groups else 0
        try:  # polars' engine (Rust regex) takes a little less than Python's: say so at start, not per batch
            pl.Series([""], dtype=pl.String).str.extract(pattern, group)
        except Exception as e:
            raise ConfigError(f"link {model.name}: ids.{name}: the pattern is not one ferry's regex engine takes: {e}") from None
        ids.append((name, pattern, group))
    kind = model.name

    def step(frame: Frame) -> None:
        text = frame.get(source).cast(pl.String)
        found = {name: text.str.extract(pattern, group) for name, pattern, group in ids}
        found = {name: pl.when(v != "").then(v) for name, v in found.items()}
        got = frame.df.select([v.alias(f"id{i}") for i, v in enumerate(found.values())]
                              + [pl.col("Timestamp"), pl.col("Tenant"), pl.col("Source"), pl.col("IngestTime")])
        frame.set({name: pl.coalesce(pl.lit(got.get_column(f"id{i}")), frame.get(name))
                   for i, name in enumerate(found)})
        if len(ids) > 1:
            _emit_links(frame, got, len(ids), kind)

    return step


def _emit_links(frame: Frame, got: pl.DataFrame, k: int, kind: str) -> None:
    pairs = []
    for i in range(k):
        for j in range(i + 1, k):
            # i and j held, none listed between them: consecutive among the ids this record holds.
            held = pl.col(f"id{i}").is_not_null() & pl.col(f"id{j}").is_not_null()
            for m in range(i + 1, j):
                held &= pl.col(f"id{m}").is_null()
            pairs.append(got.filter(held).select(
                pl.col("Timestamp"), pl.col(f"id{i}").alias("FromId"), pl.col(f"id{j}").alias("ToId"),
                pl.col("Tenant"), pl.col("Source"), pl.col("IngestTime")))
    links = pl.concat(pairs)
    if links.height == 0:
        return
    links = (links.sort("Timestamp", nulls_last=True)
             .unique(["FromId", "ToId", "Tenant", "Source"], keep="first", maintain_order=True)
             .with_columns(pl.col("IngestTime").fill_null(pl.lit(time.time_ns()).cast(pl.Datetime("ns", "UTC"))),
                           pl.lit(kind).alias("Kind")))
    frame.emit(TARGET, conform(links.to_arrow(), LINKS))
