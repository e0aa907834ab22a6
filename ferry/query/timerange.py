"""Parses the time bounds an operator gives a query: `--since 1h`, `--from 2024-05-01T12:00:00Z`.

Durations become whole seconds and instants nanoseconds since the Unix epoch, exactly (no floats).
"""

from __future__ import annotations

import calendar
import re

from ferry.errors import BadRequest

_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# re.ASCII: digits are 0-9 only (\d alone also takes "１" or "٣", which int() then reads).
_DURATION_RE = re.compile(r"(?:\d+[smhdw])+", re.ASCII)
_PART_RE = re.compile(r"(\d+)([smhdw])", re.ASCII)

_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2}))?",
    re.ASCII,
)
_UNIX_RE = re.compile(r"(\d+)(?:\.(\d{1,9}))?", re.ASCII)
# Twenty digits hold any int64 nanosecond count; a longer number is refused before int() reads it
# (int() of thousands of digits is slow, and refused outright past 4300).
_MAX_DIGITS = 20

# A bare integer's unit is read from its size: 1714564800 is seconds, 1714564800000 milliseconds.
# Seconds up to 1e11 reach the year 5138, so the bands cannot be confused for real timestamps.
_UNIX_BANDS = ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3))
_NS_MAX = 2**63 - 1


def shown(s: str) -> str:
    """The value as an error message quotes it: bounded, since it comes from a URL."""
    return repr(s) if len(s) <= 40 else repr(s[:40]) + "…"


def parse_since(s: str) -> int:
    """Seconds in a duration such as "30s", "15m", "1h", "2d", "1w" or "1h30m"; BadRequest otherwise."""
    text = s.strip()
    if not _DURATION_RE.fullmatch(text):
        raise BadRequest(f"bad duration {shown(s)}: expected a number and a unit s, m, h, d or w, e.g. 15m")
    parts = _PART_RE.findall(text)
    if any(len(n) > _MAX_DIGITS for n, _ in parts):
        raise BadRequest(f"bad duration {shown(s)}: too long")
    seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise BadRequest(f"bad duration {shown(s)}: must be longer than zero")
    if seconds * 10**9 > _NS_MAX:
        raise BadRequest(f"bad duration {shown(s)}: too long")
    return seconds


def parse_time(s: str) -> int:
    """Nanoseconds since the epoch for an RFC 3339 time, a date (midnight UTC) or a unix number.

    Unix numbers may be seconds (with an optional fraction), milliseconds, microseconds or
    nanoseconds, told apart by magnitude.
    """
    text = s.strip()
    m = _RFC3339_RE.fullmatch(text)
    if m:
        return _check(s, _rfc3339(s, m))
    m = _UNIX_RE.fullmatch(text)
    if m:
        if len(m.group(1)) > _MAX_DIGITS:
            raise BadRequest(f"bad time {shown(s)}: outside 1970..2262")
        whole, frac = int(m.group(1)), m.group(2)
        if frac is not None:
            return _check(s, whole * 10**9 + int(frac.ljust(9, "0")))
        for bound, scale in _UNIX_BANDS:
            if whole < bound:
                return _check(s, whole * scale)
        return _check(s, whole)
    raise BadRequest(f"bad time {shown(s)}: expected RFC 3339 (2024-05-01T12:00:00Z) or unix seconds, ms or ns")


def _rfc3339(s: str, m: re.Match[str]) -> int:
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    hour, minute, second = (int(g) if g else 0 for g in m.group(4, 5, 6))
    frac, zone = m.group(7), m.group(8)
    if year < 1970:
        raise BadRequest(f"bad time {shown(s)}: outside 1970..2262")
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise BadRequest(f"bad time {shown(s)}: no such date")
    # 60 is allowed for a leap second, which lands on the following second as in POSIX time.
    if hour > 23 or minute > 59 or second > 60:
        raise BadRequest(f"bad time {shown(s)}: no such time of day")
    offset_s = 0
    if zone and zone not in "Zz":
        oh, om = int(zone[1:3]), int(zone[4:6])
        if oh > 23 or om > 59:
            raise BadRequest(f"bad time {shown(s)}: bad UTC offset")
        offset_s = (oh * 3600 + om * 60) * (1 if zone[0] == "+" else -1)
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset_s
    return seconds * 10**9 + (int(frac.ljust(9, "0")) if frac else 0)


def _check(s: str, ns: int) -> int:
    if not 0 <= ns <= _NS_MAX:
        raise BadRequest(f"bad time {shown(s)}: outside 1970..2262")
    return ns
