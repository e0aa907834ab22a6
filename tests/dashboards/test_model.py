"""The dashboard file format: valid files load; every kind of error names the file, the key path and
the line; variables and built-ins are substituted into queries; the folder reloads changed files and
keeps a broken file's last good version."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from ferry.dashboards.folder import SHIPPED, Folder
from ferry.dashboards.load import ALL, DashboardError, parse, step_for, substitute

GOOD = textwrap.dedent("""\
    title: shop
    time: {from: now-6h, to: now}
    variables:
      - name: service
        query: label_values(traces_span_metrics_calls_total, service_name)
        multi: true
        include_all: true
      - name: env
        values: [prod, staging]
    rows:
      - title: RED
        panels:
          - type: timeseries
            title: rate
            unit: ops/s
            width: 8
            query:
              expr: sum(rate(traces_span_metrics_calls_total{service_name=~"$service", env="${env}"}[$__rate_interval]))
          - type: stat
            title: errors
            unit: percent
            thresholds: [{value: 0, colour: green}, {value: 5, colour: red}]
            query: {expr: "sum(increase(x_total[$__range]))"}
          - type: logs
            title: errors
            width: 12
            query: {language: search, expr: "service:$service level:error"}
    """)


def error_of(text: str, file: str = "dash/shop.yaml") -> str:
    with pytest.raises(DashboardError) as e:
        parse(text, file)
    return str(e.value)


def test_a_valid_dashboard_loads_with_its_defaults() -> None:
    d = parse(GOOD, "shop.yaml")
    assert d.title == "shop" and d.time.start == "now-6h"
    assert [p.type for p in d.rows[0].panels] == ["timeseries", "stat", "logs"]
    assert d.rows[0].panels[1].width == 6 and d.rows[0].panels[1].query.language == "promql"
    assert d.variables[0].source() == ("traces_span_metrics_calls_total", "service_name")
    assert d.variables[1].source() is None


def test_the_shipped_dashboards_are_valid() -> None:
    f = Folder([SHIPPED])
    f.refresh()
    assert {e.name for e in f.listing()} == {"ferry", "services"}
    assert not f.errors(), [e.error for e in f.errors()]
    assert f.get("ferry").dashboard.title == "ferry itself"  # type: ignore[union-attr]


@pytest.mark.parametrize(("old", "new", "key", "line", "words"), [
    # a wrong value: pydantic's own check, at the key's line
    ("width: 8", "width: 20", "rows[0].panels[0].width", 16, "less than or equal to 12"),
    # an unknown key (a typo never falls back to a default silently)
    ("unit: ops/s", "unti: ops/s", "rows[0].panels[0].unti", 15, "unknown key"),
    # a panel type that does not exist
    ("type: timeseries", "type: graph", "rows[0].panels[0].type", 13, "'timeseries', 'stat'"),
    # a query language the panel cannot draw
    ("{language: search, expr", "{language: promql, expr", "rows[0].panels[2].query.language", 27,
     "a logs panel draws search or logql queries, not promql"),
    # a variable no one defined
    ("x_total[$__range]", 'x_total{a=\\"$nope\\"}[$__range]', "rows[0].panels[1].query.expr", 23,
     "unknown variable $nope (defined: $env, $service)"),
    # PromQL that does not parse
    ("[$__rate_interval]))", "[$__rate_interval])", "rows[0].panels[0].query.expr", 18, "not valid PromQL"),
    # a label_values() that is not one
    ("query: label_values(traces_span_metrics_calls_total, service_name)", "query: values_of(x)",
     "variables[0].query", 5, "is not label_values(metric, label)"),
    # both a query and a fixed list
    ("values: [prod, staging]", "values: [prod, staging]\n    query: label_values(env)", "variables[1]", 8,
     "exactly one of query"),
])
def test_each_error_names_file_key_path_and_line(old: str, new: str, key: str, line: int, words: str) -> None:
    assert GOOD.count(old) == 1
    msg = error_of(GOOD.replace(old, new))
    assert msg.startswith("dash/shop.yaml: invalid dashboard:"), msg
    assert f"{key} (line {line}): " in msg, msg
    assert words in msg, msg


def test_yaml_that_does_not_parse_names_file_and_line() -> None:
    msg = error_of("title: x\nrows: [\n  - nope: {\n")
    assert msg.startswith("dash/shop.yaml: not valid YAML") and "line" in msg


def test_every_error_is_listed_at_once() -> None:
    msg = error_of("title: ''\nrows: []\nextra: 1\n")
    assert "title (line 1)" in msg and "rows (line 2)" in msg and "extra (line 3): unknown key" in msg


def test_variables_and_builtins_are_substituted() -> None:
    expr = 'sum(rate(x{s=~"$service", e="${env}"}[$__rate_interval])) / $__range_s + increase(y[$__range]) # $__interval $other'
    one = substitute(expr, {"service": ["cart"], "env": ["prod"]}, 6 * 3600, 72)
    assert one == 'sum(rate(x{s=~"cart", e="prod"}[288s])) / 21600 + increase(y[6h]) # 72s $other'
    several = substitute('x{s=~"$service"}', {"service": ["cart", "pay"]}, 3600, 15)
    assert several == 'x{s=~"cart|pay"}'
    assert substitute('x{s=~"$service"}', {"service": [ALL]}, 3600, 15) == 'x{s=~".*"}'
    # a value cannot end the string literal it is put in
    assert substitute('x{s="$service"}', {"service": ['a"b\\c']}, 3600, 15) == 'x{s="a\\"b\\\\c"}'
    # $__rate_interval is never under a minute: two samples of ferry's 15 s self-metrics at least
    assert substitute("[$__rate_interval]", {}, 600, 15) == "[1m]"


def test_step_follows_the_range() -> None:
    assert step_for(3600) == 15 and step_for(6 * 3600) == 72 and step_for(7 * 86400) == 2016


def test_folder_reloads_changed_files_and_keeps_the_last_good_version(tmp_path: Path) -> None:
    f = Folder([SHIPPED, tmp_path])
    f.refresh()
    assert f.get("shop") is None
    (tmp_path / "shop.yaml").write_text(GOOD)
    assert f.refresh() and f.get("shop").dashboard.title == "shop"  # type: ignore[union-attr]
    assert not f.refresh()  # nothing changed: nothing re-read
    (tmp_path / "shop.yaml").write_text(GOOD.replace("title: shop", "title: [shop"))
    os.utime(tmp_path / "shop.yaml", ns=(1, 1))
    assert f.refresh()
    e = f.get("shop")
    assert e is not None and e.dashboard is not None and e.dashboard.title == "shop"  # the last good version
    assert e.error and str(tmp_path / "shop.yaml") in e.error and "line" in e.error
    assert [x.name for x in f.errors()] == ["shop"]
    # a user file named like a shipped one replaces it
    (tmp_path / "ferry.yaml").write_text(GOOD.replace("title: shop", "title: mine"))
    f.refresh()
    assert f.get("ferry").dashboard.title == "mine"  # type: ignore[union-attr]
    (tmp_path / "shop.yaml").unlink()
    f.refresh()
    assert f.get("shop") is None and not f.errors()
