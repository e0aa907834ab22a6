"""The selecting transforms: filter (keep or drop records by a query) and sample (keep a share of them).

Records left out are counted per transform: outcome `filtered` or `sampled` (the stage reports both as
ferry_sampled_out_records_total with reason filter / sample).

Decisions:
- sample `key`: the decision is MurmurHash3 (32-bit, seed 0, over the value's UTF-8 bytes: the hash
  Iceberg's bucket transform specifies, so it is the same in every process, on every restart and
  machine) below rate x 2^32. Two sample steps on the same key keep nested sets (rate 0.1 keeps a
  subset of what rate 0.5 keeps), so a trace is never half kept by one stage and half by another.
- A record whose key is absent or empty is sampled at random at the same rate: hashing "" would keep
  or drop every such record together.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ferry.transforms.chain import CompileContext, Step
from ferry.transforms.config import Filter, Sample
from ferry.transforms.frame import Frame, where
from ferry.transforms.predicate import compile_predicate

# Measured on 64 k loghub Linux+OpenSSH lines parsed as syslog (one core; test_select.py::test_speed):
# sample rate 0.3, by trace_id or at random, ~0.11 us a row, nearly all of it copying the kept rows of
# the ~20 columns; a filter costs its predicate (predicate.py) plus that copy when it drops any row
# (`drop: level:debug` that drops none: 0.03 us a row).
_SPACE = 2**32


def compile(model: Filter | Sample, ctx: CompileContext) -> Step:
    if isinstance(model, Filter):
        return _compile_filter(model)
    return _compile_sample(model)


def _compile_filter(model: Filter) -> Step:
    keep = model.keep is not None
    pred = compile_predicate(model.keep if model.keep is not None else model.drop or "")

    def step(frame: Frame) -> None:
        matches = pred(frame)
        frame.count("filtered", frame.filter(matches if keep else ~matches))

    return step


def _compile_sample(model: Sample) -> Step:
    rate = model.rate
    when = compile_predicate(model.when) if model.when is not None else None
    key = where(model.key) if model.key is not None else None
    threshold = int(rate * _SPACE)  # keep a hash h when h < threshold

    def step(frame: Frame) -> None:
        if rate >= 1.0:
            return
        # A fresh draw per batch: the random part must differ between batches and processes.
        draw = pl.Series("draw", np.random.default_rng().random(frame.height) < rate)
        if key is not None:
            value = frame.get(key).cast(pl.String)
            hashed = value._mm3_hash().reinterpret(signed=False) < threshold
            keep = pl.when(value.is_null() | (value == "")).then(pl.lit(draw)).otherwise(hashed)
        else:
            keep = pl.lit(draw)
        if when is not None:
            keep = keep | ~when(frame)
        frame.count("sampled", frame.filter(keep))

    return step
