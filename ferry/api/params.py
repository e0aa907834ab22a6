"""The API's query parameters: one reader that answers 400 naming the parameter, and the parsers of
ferry's own routes (numbers, steps, time ranges, search cursors) that every API module shares.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from starlette.requests import Request

from ferry.errors import BadRequest
from ferry.query.timerange import parse_since, parse_time, shown

# Points (buckets) one answer may hold, as Prometheus bounds a range query: a step of 1 s over a
# month would otherwise build millions of groups in the store and in the answer.
MAX_POINTS = 11_000
MAX_STEP_S = 10**9

T = TypeVar("T")


def param(request: Request, name: str, parse: Callable[[str], T], default: T) -> T:
    """Query parameter `name` read by `parse`; a BadRequest from it names the parameter. An empty
    value counts as absent (as HTML forms send unset fields, and as Prometheus reads them)."""
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    try:
        return parse(raw)
    except BadRequest as e:
        raise BadRequest(f"{name}: {e}") from None


def whole(least: int, most: int) -> Callable[[str], int]:
    """A parser of a whole number from `least` to `most` (ASCII digits only: no sign, no exponent)."""

    def parse(raw: str) -> int:
        # Length first: int() of a 5000-digit string is refused (ValueError), not a 400.
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 20 and least <= int(raw) <= most):
            raise BadRequest(f"must be a whole number from {least} to {most}, got {shown(raw)}")
        return int(raw)

    return parse


def cursor(raw: str) -> tuple[int, str]:
    """A search page's `cursor` (`<_cursor_ts>:<_cursor_key>` of the last row of the page before)."""
    ts, sep, key = raw.partition(":")
    if not (sep and ts.isascii() and ts.isdigit() and len(ts) <= 19 and key.isascii() and key.isalnum()
            and len(key) <= 32):
        raise BadRequest(f"must be the cursor of a previous answer (<_cursor_ts>:<_cursor_key>), got {shown(raw)}")
    return int(ts), key


def seconds(raw: str) -> int:
    """Whole seconds (`60`) or a duration (`5m`, `1h30m`)."""
    if raw.isascii() and raw.isdigit():
        return whole(1, MAX_STEP_S)(raw)
    try:
        n = parse_since(raw)
    except BadRequest:
        raise BadRequest(f"must be whole seconds (60) or a duration (5m, 1h), got {shown(raw)}") from None
    if n > MAX_STEP_S:
        raise BadRequest(f"must be at most {MAX_STEP_S} seconds")
    return n


def time_range(request: Request, default_since: str = "1h") -> tuple[int, int | None]:
    """(start, end) in ns. With no explicit end the range is open: a host whose clock runs ahead
    must not have its lines hidden from "the last hour"."""
    end = param(request, "end", parse_time, None)
    start = param(request, "start", parse_time, None)
    if start is None:
        since = param(request, "since", parse_since, None) or parse_since(default_since)
        # A `since` reaching back before 1970 means everything there is.
        start = max(0, (end or time.time_ns()) - since * 1_000_000_000)
    if end is not None and start > end:
        raise BadRequest("start is after end")
    return start, end


def limit(request: Request, default: int = 100, most: int = 10_000) -> int:
    return param(request, "limit", whole(1, most), default)


def step(request: Request, start_ns: int, end_ns: int | None, default: int | None = None) -> int | None:
    """`step` in whole seconds (or a duration), at most MAX_POINTS buckets over [start, end or now]."""
    step = param(request, "step", seconds, default)
    if step is None:
        return None
    span_s = max(0, (end_ns or time.time_ns()) - start_ns) // 1_000_000_000
    if span_s // step > MAX_POINTS:
        raise BadRequest(f"step: {step} s over {span_s} s makes {span_s // step} points, more than {MAX_POINTS}; "
                         "raise step or narrow the time range")
    return step
