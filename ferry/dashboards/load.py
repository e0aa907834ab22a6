"""Read dashboard YAML files into Dashboard models, with every error naming its file, key path and line,
and substitute variables and built-ins into a panel's query.

Key paths and lines come from ferry/config/load.py's helpers, so a dashboard error reads like a config error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from pydantic import ValidationError

from ferry.config.load import _lines, _message
from ferry.dashboards.model import LANGUAGES, Dashboard
from ferry.errors import ConfigError

# `$name` or `${name}`; built-ins start with `$__`.
VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
BUILTINS = ("__interval", "__rate_interval", "__range", "__range_s")
ALL = "$__all"  # the value a variable takes when "All" is chosen
MAX_POINTS = 300  # points per series a panel asks for; the step follows from the range
MIN_STEP_S = 15  # ferry stores its own /metrics every 15 s: a finer step only repeats points


class DashboardError(ConfigError):
    """A dashboard file is invalid; the message names the file and every key at fault with its line."""


def parse(text: str, file: str) -> Dashboard:
    """The dashboard `text` (read from `file`) describes, or DashboardError listing every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DashboardError(f"{file}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise DashboardError(f"{file}: the top level must be a mapping of keys (title, variables, time, rows)")
    try:
        dash = Dashboard.model_validate(raw)
    except ValidationError as e:
        found = [(tuple(err["loc"]), _message(err)) for err in e.errors()]
        raise DashboardError(f"{file}: invalid dashboard:\n  " + "\n  ".join(_lines(root, found))) from None
    wrong = problems(dash)
    if wrong:
        raise DashboardError(f"{file}: invalid dashboard:\n  " + "\n  ".join(_lines(root, wrong)))
    return dash


def load_file(path: Path) -> Dashboard:
    try:
        text = path.read_text()
    except OSError as e:
        raise DashboardError(f"{path}: cannot read: {e.strerror}") from None
    return parse(text, str(path))


def problems(dash: Dashboard) -> list[tuple[tuple[Any, ...], str]]:
    """What no single field can check: each problem's key path and message."""
    out: list[tuple[tuple[Any, ...], str]] = []
    names: set[str] = set()
    for i, var in enumerate(dash.variables):
        if var.name in names:
            out.append((("variables", i, "name"), f"a second variable named {var.name!r}"))
        names.add(var.name)
        if (var.query is None) == (var.values is None):
            out.append((("variables", i), "give exactly one of query (label_values(...)) or values (a list)"))
        if isinstance(var.default, list) and len(var.default) > 1 and not var.multi:
            out.append((("variables", i, "default"), "several default values need multi: true"))
    for r, row in enumerate(dash.rows):
        for p, panel in enumerate(row.panels):
            at = ("rows", r, "panels", p, "query")
            q = panel.query
            if q.language not in LANGUAGES[panel.type]:
                fits = " or ".join(LANGUAGES[panel.type])
                out.append(((*at, "language"), f"a {panel.type} panel draws {fits} queries, not {q.language}"))
                continue
            unknown = sorted({n for n in used(q.expr) if n not in names and n not in BUILTINS})
            if unknown:
                out.append(((*at, "expr"), "unknown variable " + ", ".join("$" + n for n in unknown)
                            + (f" (defined: {', '.join('$' + n for n in sorted(names))})" if names else
                               " (this dashboard defines no variables)")))
                continue
            if q.language == "promql":
                sample = substitute(q.expr, {n: ["x"] for n in names}, 3600, 60)
                try:
                    promql_parser.parse(sample)
                except ValueError as e:
                    out.append(((*at, "expr"), f"not valid PromQL: {e}"))
    return out


def used(expr: str) -> set[str]:
    """The variable names (built-ins included, without `$`) a query uses."""
    return {m.group("braced") or m.group("plain") for m in VARIABLE.finditer(expr)}


def step_for(range_s: float) -> int:
    """Seconds between points for a range: about MAX_POINTS points, at least MIN_STEP_S."""
    return max(MIN_STEP_S, math.ceil(range_s / MAX_POINTS))


def duration(seconds: float) -> str:
    """A PromQL duration (`90s`, `6h`) for a number of seconds."""
    s = max(1, round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _quoted(value: str) -> str:
    # Values land inside the query's string literals ("..."): quotes and backslashes must not end them.
    return value.replace("\\", "\\\\").replace('"', '\\"')


def substitute(expr: str, values: Mapping[str, Sequence[str]], range_s: float, step_s: float) -> str:
    """`expr` with each `$variable` replaced by its chosen values and the built-ins by the panel's time:

    one value as written; several joined with `|` (for `=~` matchers); All (ALL) as `.*`;
    `$__interval` the step, `$__rate_interval` max(4 x step, 1m), `$__range` the range (PromQL
    durations), `$__range_s` the range in seconds. An unknown name is left as written.
    """
    builtins = {
        "__interval": duration(step_s),
        "__rate_interval": duration(max(4 * step_s, 60)),
        "__range": duration(range_s),
        "__range_s": str(max(1, round(range_s))),
    }

    def one(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("plain")
        if name in builtins:
            return builtins[name]
        if name not in values:
            return m.group(0)
        chosen = list(values[name])
        if ALL in chosen:
            return ".*"
        return "|".join(_quoted(v) for v in chosen)

    return VARIABLE.sub(one, expr)
