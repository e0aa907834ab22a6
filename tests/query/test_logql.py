"""LogQL: the parser, the polars pipeline, and queries evaluated against a real chDB otel_logs table.

Expected answers are worked out here from the rows the test inserts, never by the code under test.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import chdb
import numpy as np
import pyarrow as pa
import pytest
from chdb.state.sqlitelike import Connection

from ferry.errors import BadRequest
from ferry.query.logql import ast
from ferry.query.logql import pipeline as pipe
from ferry.query.logql.engine import Engine, Series, step_times
from ferry.query.logql.parser import parse, parse_bytes, parse_duration_ns
from ferry.schema.tables import LOGS, conform
from ferry.store.ddl import logs

S = 10**9

# -- parser ---------------------------------------------------------------------------------------


def test_selector_and_line_filters() -> None:
    e = parse('{service_name="api", level=~"err.*", host!="h1", app!~"x|y"} |= "a" or "b" != "c" |~ "d+" !~ `e\\d`')
    assert isinstance(e, ast.LogQuery)
    assert e.matchers == (ast.Matcher("service_name", "=", "api"), ast.Matcher("level", "=~", "err.*"),
                          ast.Matcher("host", "!=", "h1"), ast.Matcher("app", "!~", "x|y"))
    assert e.stages == (ast.LineFilter("|=", ("a", "b")), ast.LineFilter("!=", ("c",)),
                        ast.LineFilter("|~", ("d+",)), ast.LineFilter("!~", ("e\\d",)))


@pytest.mark.parametrize("text, value", [(r'"tab\there"', "tab\there"), (r'"q\"uote"', 'q"uote'),
                                         (r'"\u00e9"', "é"), ("`raw\\n`", "raw\\n")])
def test_string_escapes(text: str, value: str) -> None:
    e = parse('{a="b"} |= ' + text)
    assert isinstance(e, ast.LogQuery) and e.stages[0] == ast.LineFilter("|=", (value,))


def test_parsers_and_formatters() -> None:
    e = parse('{a="b"} | json | json x="a.b[0]", y | logfmt --strict k | regexp "(?P<ip>\\\\S+)" '
              '| pattern "<ip> - <_>" | unpack | line_format "{{.ip}}" | label_format n=ip, m="{{.x}}" '
              '| drop a, b="c" | keep d | decolorize')
    assert isinstance(e, ast.LogQuery)
    kinds = [type(s).__name__ for s in e.stages]
    assert kinds == ["Parser", "Parser", "Parser", "Parser", "Parser", "Parser", "LineFormat", "LabelFormat",
                     "Drop", "Drop", "Decolorize"]
    assert e.stages[1] == ast.Parser("json", "", (("x", "a.b[0]"), ("y", "y")))
    assert e.stages[2] == ast.Parser("logfmt", "", (("k", "k"),), ("strict",))
    assert e.stages[3] == ast.Parser("regexp", "(?P<ip>\\S+)")
    assert e.stages[7] == ast.LabelFormat((("n", "ip", False), ("m", "{{.x}}", True)))
    assert e.stages[8] == ast.Drop(False, ("a",), (ast.Matcher("b", "=", "c"),))


def test_label_filters_numbers_durations_bytes() -> None:
    e = parse('{a="b"} | logfmt | status >= 400 and took > 10ms, size <= 20MB or level="error" | x != -1.5')
    assert isinstance(e, ast.LogQuery)
    f = e.stages[1]
    assert isinstance(f, ast.LabelFilter) and isinstance(f.expr, ast.LabelOr)
    left = f.expr.left
    assert isinstance(left, ast.LabelAnd)
    assert left.right == ast.LabelCmp("size", "<=", "bytes", "20MB", 20e6)
    assert isinstance(left.left, ast.LabelAnd)
    assert left.left.left == ast.LabelCmp("status", ">=", "number", "400", 400.0)
    assert left.left.right == ast.LabelCmp("took", ">", "duration", "10ms", 0.01)
    assert f.expr.right == ast.LabelCmp("level", "=", "string", "error")
    assert e.stages[2] == ast.LabelFilter(ast.LabelCmp("x", "!=", "number", "1.5", -1.5))


def test_metric_queries() -> None:
    e = parse('sum by (level) (count_over_time({service_name="x"} |= "error" [1m]))')
    assert isinstance(e, ast.VectorAgg) and e.op == "sum" and e.grouping == ast.Grouping(False, ("level",))
    r = e.expr
    assert isinstance(r, ast.RangeAgg) and r.func == "count_over_time" and r.range_ns == 60 * S
    e = parse('topk(2, sum(rate({a="b"}[5m] offset 1h)) without (c)) > 0.5')
    assert isinstance(e, ast.BinOp) and e.op == ">" and e.right == ast.Number(0.5)
    assert isinstance(e.left, ast.VectorAgg) and e.left.param == 2
    inner = e.left.expr
    assert isinstance(inner, ast.VectorAgg) and inner.grouping == ast.Grouping(True, ("c",))
    assert isinstance(inner.expr, ast.RangeAgg) and inner.expr.offset_ns == 3600 * S
    e = parse('quantile_over_time(0.9, {a="b"} | logfmt | unwrap duration(took) | __error__="" [5m]) by (svc)')
    assert isinstance(e, ast.RangeAgg) and e.param == 0.9 and e.grouping == ast.Grouping(False, ("svc",))
    assert e.query.unwrap == ast.Unwrap("took", "duration")
    e = parse("1 + 2 * 3 ^ 2 ^ 1")  # ^ binds tightest and to the right
    assert e == ast.BinOp("+", ast.Number(1), ast.BinOp("*", ast.Number(2), ast.BinOp(
        "^", ast.Number(3), ast.BinOp("^", ast.Number(2), ast.Number(1)))))
    assert parse("vector(1)+vector(1)") == ast.BinOp("+", ast.VectorOf(1), ast.VectorOf(1))
    e = parse('count_over_time(({a="b"} |= "x")[1h30m])')
    assert isinstance(e, ast.RangeAgg) and e.range_ns == 5400 * S


@pytest.mark.parametrize("query, message", [
    ('{a=~".*"}', "empty-compatible"),
    ('{a=""}', "empty-compatible"),
    ("{}", "empty-compatible"),
    ('{a="b"', "expecting"),
    ('{a="b"} |= ', "quoted string"),
    ('{a="b"} | json | x > "s"', "not a string"),
    ('count_over_time({a="b"})', "range"),
    ('sum_over_time({a="b"}[5m])', "unwrap"),
    ('count_over_time({a="b"} | unwrap x [5m])', "takes no"),
    ('sum(count_over_time({a="b"}[5m]) by (x)', "only allowed with"),
    ('{a="b"} |~ "("', "regular expression"),
    ('{a="b"} | regexp "no groups"', "named capture"),
    ('{a="b"} + 1', "log query"),
    ('sum({a="b"})', "not a log query"),
    ('nosuch({a="b"}[1m])', "unknown function"),
    ('{a="b"} | x > 10zz', "not a number"),
    ('{a="b"} ^', "unexpected"),
    ("", "empty"),
])
def test_errors_name_the_problem(query: str, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse(query)
    assert message in str(err.value)


def test_error_position_is_line_and_column() -> None:
    with pytest.raises(BadRequest, match=r"line 2, col 3"):
        parse('{a="b"}\n| %')


@pytest.mark.parametrize("text, ns", [("5m", 300 * S), ("1h30m", 5400 * S), ("250ms", 250_000_000),
                                      ("1.5s", 1_500_000_000), ("2d", 172800 * S), ("10us", 10_000)])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("text, n", [("20MB", 20e6), ("1KiB", 1024), ("42b", 42), ("1.5GB", 1.5e9), ("3mib", 3 * 2**20)])
def test_bytes(text: str, n: float) -> None:
    assert parse_bytes(text) == n


# -- pipeline (polars) ----------------------------------------------------------------------------


def lines_of(*entries: tuple[str, dict[str, str]], meta: dict[str, str] | None = None) -> pipe.Lines:
    rows = [{"ts": i, "line": line, "labels": labels, "metadata": meta or {}} for i, (line, labels) in enumerate(entries)]
    return pipe.from_rows(rows)


def run(lines: pipe.Lines, stages: str) -> list[dict[str, Any]]:
    e = parse('{a="b"} ' + stages)
    assert isinstance(e, ast.LogQuery)
    out = pipe.run(lines, e.stages)
    return [{k: v for k, v in row.items() if v is not None and k != pipe.TS} for row in out.df.to_dicts()]


def test_json_flattens_nested_keys_and_marks_bad_lines() -> None:
    got = run(lines_of(('{"a": {"b-c": 1, "d": "x"}, "arr": [1], "ok": true}', {"app": "w"}), ("not json", {"app": "w"})),
              "| json")
    assert got[0] == {pipe.LINE: got[0][pipe.LINE], "app": "w", "a_b_c": "1", "a_d": "x", "ok": "true"}
    assert got[1]["__error__"] == "JSONParserErr"


def test_json_parameters_pick_paths() -> None:
    got = run(lines_of(('{"a": {"b": [{"c": "deep"}]}, "h": {"User-Agent": "curl"}}', {})),
              '| json c="a.b[0].c", ua="h[\\"User-Agent\\"]", missing="zz"')
    assert got[0]["c"] == "deep" and got[0]["ua"] == "curl" and "missing" not in got[0]


def test_logfmt_quoted_values_and_clash_with_stream_label() -> None:
    got = run(lines_of(('level=info msg="hello \\"you\\"" took=12ms app=other', {"app": "real"})), "| logfmt")
    assert got[0]["msg"] == 'hello "you"' and got[0]["took"] == "12ms"
    assert got[0]["app"] == "real" and got[0]["app_extracted"] == "other"


def test_regexp_and_pattern() -> None:
    line = '10.0.0.7 - - [x] "GET /api HTTP/1.1" 503 1234'
    got = run(lines_of((line, {})), '| regexp "^(?P<ip>\\\\S+) .*\\" (?P<status>\\\\d+) (?P<size>\\\\d+)$"')
    assert (got[0]["ip"], got[0]["status"], got[0]["size"]) == ("10.0.0.7", "503", "1234")
    got = run(lines_of((line, {})), '| pattern "<ip> - - <_> \\"<method> <path> <_>\\" <status> <size>"')
    assert (got[0]["ip"], got[0]["method"], got[0]["path"], got[0]["status"], got[0]["size"]) == (
        "10.0.0.7", "GET", "/api", "503", "1234")


def test_label_filters_compare_numbers_durations_bytes() -> None:
    lines = lines_of(("status=500 took=1.5s size=2KB", {}), ("status=200 took=20ms size=10MB", {}),
                     ("status=abc took=x size=y", {}))
    assert [r["status"] for r in run(lines, "| logfmt | status >= 400")] == ["500"]
    assert [r["status"] for r in run(lines, "| logfmt | took > 100ms")] == ["500"]
    assert [r["status"] for r in run(lines, "| logfmt | size > 1MB")] == ["200"]
    assert [r["status"] for r in run(lines, '| logfmt | status="200" or took >= 1s')] == ["500", "200"]
    assert [r["status"] for r in run(lines, '| logfmt | status=~"[25]00", size < 5KB')] == ["500"]
    assert [r["status"] for r in run(lines, '| logfmt | missing=""')] == ["500", "200", "abc"]


def test_line_filters_after_parsing_and_formatting() -> None:
    lines = lines_of(("a=1 msg=Hello", {"app": "x"}), ("a=2 msg=bye", {"app": "y"}))
    got = run(lines, '| logfmt | line_format "{{.app}}:{{ .msg | ToUpper }}" |= "HELLO"')
    assert [r[pipe.LINE] for r in got] == ["x:HELLO"]
    got = run(lines, '| logfmt | line_format `{{ default "none" .nope }}-{{ trimPrefix "b" .msg }}`')
    assert [r[pipe.LINE] for r in got] == ["none-Hello", "none-ye"]
    with pytest.raises(BadRequest, match="unknown function"):
        run(lines, '| line_format "{{ nosuch .a }}"')


def test_label_format_drop_keep_decolorize() -> None:
    lines = lines_of(("\x1b[31mred\x1b[0m a=1 b=2", {"app": "x", "env": "prod"}))
    got = run(lines, '| decolorize | logfmt | label_format c=a, d="{{.app}}-{{.b}}" | drop env | keep c, d, app')
    assert got[0][pipe.LINE] == "red a=1 b=2"
    assert {k: v for k, v in got[0].items() if k != pipe.LINE} == {"c": "1", "d": "x-2", "app": "x"}
    got = run(lines, '| drop app="x", env="other"')
    assert "app" not in got[0] and got[0]["env"] == "prod"


def test_unpack_restores_entry() -> None:
    got = run(lines_of(('{"_entry": "original line", "pod": "p1", "n": 3}', {})), "| unpack")
    assert got[0][pipe.LINE] == "original line" and got[0]["pod"] == "p1" and "n" not in got[0]


def test_pattern_starts_at_the_line_start_and_last_capture_takes_the_rest() -> None:
    got = run(lines_of(("a x b x c", {}), ("no match", {})), '| pattern "<first> x <rest>"')
    assert (got[0]["first"], got[0]["rest"]) == ("a", "b x c") and "first" not in got[1]


# -- against a real store ---------------------------------------------------------------------------

BASE = (time.time_ns() // S // 60 - 120) * 60 * S  # a whole minute two hours ago, inside the TTL

# (second offset, service, level text, body, resource attributes, log attributes, trace id, tenant)
ROWS: list[tuple[int, str, str, str, dict[str, str], dict[str, str], str, str]] = []
for i in range(240):  # 4 minutes, one line a second per service
    for svc in ("api", "web"):
        lvl = "ERROR" if i % 4 == 0 else ("WARNING" if i % 4 == 1 else "INFO")
        body = f"status={500 if i % 4 == 0 else 200} took={i}ms msg=\"request {i} {'error' if i % 4 == 0 else 'done'}\""
        ROWS.append((i, svc, lvl, body, {"service.name": svc, "host.name": f"h{i % 2}", "k8s.pod.name": f"p{i % 3}"},
                     {"user.id": f"u{i % 5}"}, f"{i:032x}" if i % 10 == 0 else "", "acme"))
ROWS.append((5, "api", "ERROR", "other tenant error", {"service.name": "api"}, {}, "", "globex"))
ROWS.append((7, "sys", "ERR", "syslog error line", {}, {}, "", "acme"))


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    cols: dict[str, list[Any]] = {k: [] for k in ("Timestamp", "ServiceName", "SeverityText", "Body", "ResourceAttributes",
                                                   "LogAttributes", "TraceId", "Tenant", "Source")}
    for sec, svc, lvl, body, res, attrs, tid, tenant in ROWS:
        for k, v in zip(cols, (BASE + sec * S, svc, lvl, body, list(res.items()), list(attrs.items()), tid, tenant,
                               "syslog" if svc == "sys" else "otlp"), strict=True):
            cols[k].append(v)
    arrays: dict[str, Any] = dict(cols)
    arrays["Timestamp"] = pa.array(cols["Timestamp"], LOGS.field("Timestamp").type)
    for c in ("LogAttributes", "ResourceAttributes"):
        arrays[c] = pa.array(cols[c], LOGS.field(c).type)
    table = conform(pa.table(arrays), LOGS)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    c = chdb.connect(str(tmp_path_factory.mktemp("logql")))
    try:
        c.query(logs(7))
        with c.send_insert("INSERT INTO otel_logs", "ArrowStream") as ins:
            ins.append(sink.getvalue().to_pybytes())
            assert ins.finish().rows_written == len(ROWS)
        yield c
    finally:
        c.close()


def engine(conn: Connection, tenant: str = "acme") -> Engine:
    async def rows(sql: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in str(conn.query(sql, "JSONEachRow").data()).splitlines()]

    return Engine(rows, f"Tenant = '{tenant}'")


def log_lines(conn: Connection, query: str, limit: int = 1000, backward: bool = True, start: int = BASE,
              end: int = BASE + 3600 * S) -> pipe.Lines:
    e = parse(query)
    assert isinstance(e, ast.LogQuery)
    return asyncio.run(engine(conn).lines(e, start, end, limit, backward))


def metric(conn: Connection, query: str, times: np.ndarray) -> dict[tuple[tuple[str, str], ...], list[float]]:
    got = asyncio.run(engine(conn).evaluate(parse(query), times))
    assert isinstance(got, list)
    return {tuple(sorted(s.labels.items())): s.values.tolist() for s in got}


def expected_rows(pred: Any) -> list[tuple[int, str, str, str, dict[str, str], dict[str, str], str, str]]:
    return [r for r in ROWS if r[7] == "acme" and pred(r)]


def test_selector_labels_and_tenant(conn: Connection) -> None:
    got = log_lines(conn, '{service_name="api"}')
    assert got.df.height == len(expected_rows(lambda r: r[1] == "api"))
    row = got.df.row(0, named=True)
    assert row["host_name"] in ("h0", "h1") and row["k8s_pod_name"] in ("p0", "p1", "p2")
    assert row["level"] in ("error", "warn", "info") and row["source"] == "otlp"
    assert got.kinds["host_name"] == pipe.STREAM and got.kinds["user_id"] == pipe.METADATA
    # newest first, and the other tenant's line is not there
    ts = got.df.get_column(pipe.TS).to_list()
    assert ts == sorted(ts, reverse=True) and "other tenant error" not in got.df.get_column(pipe.LINE).to_list()


@pytest.mark.parametrize("query, pred", [
    ('{service="api", level="error"}', lambda r: r[1] == "api" and r[2] == "ERROR"),
    ('{level="error"}', lambda r: r[2] in ("ERROR", "ERR")),  # syslog's ERR is Loki's error
    ('{level="warn", host="h1"}', lambda r: r[2] == "WARNING" and r[4].get("host.name") == "h1"),
    ('{k8s_pod_name=~"p[01]", service_name!="web"}', lambda r: r[4].get("k8s.pod.name") in ("p0", "p1") and r[1] != "web"),
    ('{source="syslog"}', lambda r: r[1] == "sys"),
    ('{service_name=~"a.*|s.*", host_name!~"h1"}', lambda r: r[1] in ("api", "sys") and r[4].get("host.name") != "h1"),
    ('{service_name="api"} |= "error" != "request 8 "', lambda r: r[1] == "api" and "error" in r[3] and "request 8 " not in r[3]),
    ('{service_name="web"} |~ "took=1[0-9]ms" or "took=2[0-9]ms"', lambda r: r[1] == "web" and any(
        f"took={n}ms" in r[3] for n in range(10, 30))),
    ('{service_name="web"} | logfmt | took > 200ms', lambda r: r[1] == "web" and r[0] > 200),
    ('{service_name="api"} | user_id="u3"', lambda r: r[1] == "api" and r[5].get("user.id") == "u3"),
    ('{service_name="api"} | trace_id!=""', lambda r: r[1] == "api" and r[6] != ""),
])
def test_log_queries_select_the_right_lines(conn: Connection, query: str, pred: Any) -> None:
    got = log_lines(conn, query)
    want = sorted(r[3] for r in expected_rows(pred))
    assert sorted(got.df.get_column(pipe.LINE).to_list()) == want
    assert want, "the case must select something"


def test_limit_with_filters_pages_through_the_store(conn: Connection) -> None:
    # Few lines pass the label filter, so the first page of the store's answer is not enough.
    got = log_lines(conn, '{service_name="api"} | logfmt | took < 3ms', limit=2)
    assert sorted(got.df.get_column(pipe.LINE).to_list()) == sorted(r[3] for r in ROWS if r[1] == "api" and r[0] in (1, 2))
    fwd = log_lines(conn, '{service_name="api"}', limit=3, backward=False)
    assert fwd.df.get_column(pipe.TS).to_list() == [BASE, BASE + S, BASE + 2 * S]


def test_lines_far_from_the_end_a_query_starts_at(conn: Connection) -> None:
    # Over two days the store is read in windows from the end the answer starts at; lines a day away
    # from that end are still found, all of them, newest (or oldest) first.
    day = 86_400 * S
    span = {"start": BASE - day, "end": BASE + day}
    back = log_lines(conn, '{service_name="api"} | logfmt | took < 3ms', limit=2, **span)
    assert back.df.get_column(pipe.TS).to_list() == [BASE + 2 * S, BASE + S]
    fwd = log_lines(conn, '{service_name="api"} |= "error"', limit=3, backward=False, **span)
    assert fwd.df.get_column(pipe.TS).to_list() == [BASE, BASE + 4 * S, BASE + 8 * S]
    every = log_lines(conn, '{service_name="api"}', **span).df.get_column(pipe.TS).to_list()
    assert every == sorted((BASE + r[0] * S for r in expected_rows(lambda r: r[1] == "api")), reverse=True)


def window_counts(pred: Any, times: np.ndarray, rng: int, offset: int = 0, value: Any = None) -> list[float]:
    out = []
    for t in times:
        hits = [r for r in expected_rows(pred) if t - offset - rng < BASE + r[0] * S <= t - offset]
        out.append(float(sum(value(r) for r in hits) if value else len(hits)) if hits else float("nan"))
    return out


def same(a: list[float], b: list[float]) -> bool:
    return bool(np.allclose(np.array(a), np.array(b), equal_nan=True))


TIMES = step_times(BASE + 30 * S, BASE + 270 * S, 20 * S)


def test_count_over_time_by_level_pushed_to_sql(conn: Connection) -> None:
    got = metric(conn, 'sum by (level) (count_over_time({service_name=~"api|web"} |= "error" [1m]))', TIMES)
    want = window_counts(lambda r: r[1] in ("api", "web") and "error" in r[3], TIMES, 60 * S)
    assert set(got) == {(("level", "error"),)}
    assert same(got[(("level", "error"),)], want)


def test_rate_bytes_and_offset(conn: Connection) -> None:
    got = metric(conn, 'rate({service_name="api"}[30s] offset 15s)', TIMES)
    series = {k: v for k, v in got.items()}
    total = np.nansum(np.array(list(series.values())), axis=0)
    want = window_counts(lambda r: r[1] == "api", TIMES, 30 * S, offset=15 * S)
    assert same(list(total), [w / 30 for w in want])
    got = metric(conn, 'sum(bytes_over_time({service_name="web"}[1m]))', TIMES)
    assert same(got[()], window_counts(lambda r: r[1] == "web", TIMES, 60 * S, value=lambda r: len(r[3].encode())))


def test_pipeline_metrics_with_unwrap(conn: Connection) -> None:
    got = metric(conn, 'max by (service_name) (max_over_time({service_name="web"} | logfmt | unwrap duration(took) [1m]))',
                 TIMES)
    want = [max((r[0] / 1000 for r in expected_rows(lambda r: r[1] == "web") if t - 60 * S < BASE + r[0] * S <= t),
                default=float("nan")) for t in TIMES]
    assert same(got[(("service_name", "web"),)], want)
    got = metric(conn, 'sum(count_over_time({service_name="api"} | logfmt | status=500 [1m]))', TIMES)
    assert same(got[()], window_counts(lambda r: r[1] == "api" and "status=500" in r[3], TIMES, 60 * S))
    got = metric(conn, 'avg_over_time({service_name="api"} | logfmt | unwrap duration(took) [1m]) by (status)', TIMES)
    for status in ("500", "200"):
        sel = [[r[0] / 1000 for r in expected_rows(lambda r, st=status: r[1] == "api" and f"status={st}" in r[3])
                if t - 60 * S < BASE + r[0] * S <= t] for t in TIMES]
        assert same(got[(("status", status),)], [sum(s) / len(s) if s else float("nan") for s in sel])


def test_aggregations_topk_and_binary_ops(conn: Connection) -> None:
    got = metric(conn, 'topk(1, sum by (k8s_pod_name) (count_over_time({service_name="api"}[1m])))', TIMES[:3])
    assert len(got) >= 1
    counts = {p: window_counts(lambda r, p=p: r[1] == "api" and r[4]["k8s.pod.name"] == p, TIMES[:3], 60 * S)
              for p in ("p0", "p1", "p2")}
    for i in range(3):
        best = max(c[i] for c in counts.values())
        winners = [v[i] for v in got.values() if not np.isnan(v[i])]
        assert winners == [best]
    got = metric(conn, 'sum(count_over_time({service_name="api"}[1m])) / 60 * 2 > 1', TIMES)
    want = [c / 60 * 2 if c / 60 * 2 > 1 else float("nan") for c in window_counts(lambda r: r[1] == "api", TIMES, 60 * S)]
    assert same(got[()], want)
    got = metric(conn, 'count(count_over_time({service_name=~"api|web"}[1m]))', TIMES)
    sets = [{(r[1], r[4]["host.name"], r[4]["k8s.pod.name"], r[2]) for r in expected_rows(lambda r: r[1] in ("api", "web"))
             if t - 60 * S < BASE + r[0] * S <= t} for t in TIMES]
    assert same(got[()], [float(len(x)) if x else float("nan") for x in sets])
    assert len(metric(conn, 'count without () (count_over_time({service_name=~"api|web"}[1m]))', TIMES)) == len(
        set().union(*sets))
    got = metric(conn, 'sum by (service_name) (count_over_time({service_name=~"api|web"}[1m])) '
                       '- on (service_name) sum by (service_name) (count_over_time({service_name=~"api|web"} |= "error" [1m]))',
                 TIMES)
    for svc in ("api", "web"):
        want = [a - b for a, b in zip(window_counts(lambda r, s=svc: r[1] == s, TIMES, 60 * S),
                                      window_counts(lambda r, s=svc: r[1] == s and "error" in r[3], TIMES, 60 * S),
                                      strict=True)]
        assert same(got[(("service_name", svc),)], want)


def test_absent_over_time(conn: Connection) -> None:
    times = step_times(BASE - 600 * S, BASE + 120 * S, 60 * S)
    got = metric(conn, 'absent_over_time({service_name="api"}[1m])', times)
    want = [1.0 if not window_counts(lambda r: r[1] == "api", [t], 60 * S)[0] > 0 else float("nan") for t in times]
    assert same(got[(("service_name", "api"),)], want)


def test_scalars_and_vector_function(conn: Connection) -> None:
    got = asyncio.run(engine(conn).evaluate(parse("vector(1) + vector(1)"), TIMES[:2]))
    assert isinstance(got, list) and isinstance(got[0], Series) and got[0].values.tolist() == [2.0, 2.0]
