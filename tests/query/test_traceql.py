"""TraceQL parser and compiler: the AST of each construct, the SQL it becomes, the structural
operators over a trace's spans, and errors that name the problem and its column.
"""

from __future__ import annotations

from typing import Any

import pytest

from ferry.errors import BadRequest
from ferry.query.traceql import candidates_sql, evaluate, parse, plan, spans_sql
from ferry.query.traceql.compile import cond_sql
from ferry.query.traceql.parser import (
    Attr,
    BoolOp,
    Compare,
    Duration,
    Everything,
    Filter,
    Intrinsic,
    Keyword,
    SpansetOp,
    parse_duration,
    parse_field,
)

MS = 1_000_000


def one(q: str) -> Any:
    """The condition of a query that is a single spanset filter."""
    expr = parse(q)
    assert isinstance(expr, Filter)
    return expr.cond


@pytest.mark.parametrize(("q", "cond"), [
    ('{ resource.service.name = "checkout" }', Compare(Attr("resource", "service.name"), "=", "checkout")),
    ('{ span.http.method = "GET" }', Compare(Attr("span", "http.method"), "=", "GET")),
    ('{ .http.method = "GET" }', Compare(Attr(None, "http.method"), "=", "GET")),
    ("{ span.http.status_code >= 500 }", Compare(Attr("span", "http.status_code"), ">=", 500)),
    ("{ span.ratio < 0.25 }", Compare(Attr("span", "ratio"), "<", 0.25)),
    ("{ span.delta > -3 }", Compare(Attr("span", "delta"), ">", -3)),
    ("{ span.retry = true }", Compare(Attr("span", "retry"), "=", True)),
    ("{ span.retry != false }", Compare(Attr("span", "retry"), "!=", False)),
    ("{ duration > 500ms }", Compare(Intrinsic("duration"), ">", Duration(500 * MS))),
    ("{ duration <= 1.5s }", Compare(Intrinsic("duration"), "<=", Duration(1500 * MS))),
    ("{ duration < 1h30m }", Compare(Intrinsic("duration"), "<", Duration(5400 * 10**9))),
    ("{ duration > 250us }", Compare(Intrinsic("duration"), ">", Duration(250_000))),
    ("{ duration > 7ns }", Compare(Intrinsic("duration"), ">", Duration(7))),
    ("{ status = error }", Compare(Intrinsic("status"), "=", Keyword("error"))),
    ("{ status != ok }", Compare(Intrinsic("status"), "!=", Keyword("ok"))),
    ("{ kind = server }", Compare(Intrinsic("kind"), "=", Keyword("server"))),
    ("{ span:kind = client }", Compare(Intrinsic("kind"), "=", Keyword("client"))),
    ('{ name =~ "GET .*" }', Compare(Intrinsic("name"), "=~", "GET .*")),
    ('{ name !~ "health.*" }', Compare(Intrinsic("name"), "!~", "health.*")),
    ('{ statusMessage = "card declined" }', Compare(Intrinsic("statusMessage"), "=", "card declined")),
    ('{ span."key with space" = "v" }', Compare(Attr("span", "key with space"), "=", "v")),
    ('{ .k8s.pod-name = "web-1" }', Compare(Attr(None, "k8s.pod-name"), "=", "web-1")),
    ('{ .msg = "say \\"hi\\"\\n" }', Compare(Attr(None, "msg"), "=", 'say "hi"\n')),
    ("{ .path = `C:\\dir` }", Compare(Attr(None, "path"), "=", "C:\\dir")),
    ('{.a="x"}', Compare(Attr(None, "a"), "=", "x")),
    ("{ }", Everything()),
    ("{ true }", Everything()),
])
def test_conditions(q: str, cond: Any) -> None:
    assert one(q) == cond


def test_boolean_precedence_and_parentheses() -> None:
    a, b, c = (Compare(Attr(None, k), "=", 1) for k in "abc")
    assert one("{ .a = 1 || .b = 1 && .c = 1 }") == BoolOp("||", a, BoolOp("&&", b, c))
    assert one("{ (.a = 1 || .b = 1) && .c = 1 }") == BoolOp("&&", BoolOp("||", a, b), c)


def test_spanset_operators_and_precedence() -> None:
    fa, fb, fc = (Filter(Compare(Intrinsic("name"), "=", n)) for n in "abc")
    assert parse('{ name = "a" } && { name = "b" }') == SpansetOp("&&", fa, fb)
    assert parse('{ name = "a" } || { name = "b" } && { name = "c" }') == SpansetOp("||", fa, SpansetOp("&&", fb, fc))
    assert parse('{ name = "a" } >> { name = "b" } && { name = "c" }') == SpansetOp("&&", SpansetOp(">>", fa, fb), fc)
    assert parse('({ name = "a" } || { name = "b" }) > { name = "c" }') == SpansetOp(">", SpansetOp("||", fa, fb), fc)
    for op in (">>", ">", "<<", "<", "~"):
        assert parse(f'{{ name = "a" }} {op} {{ name = "b" }}') == SpansetOp(op, fa, fb)


@pytest.mark.parametrize(("q", "sql"), [
    ('{ resource.service.name = "checkout" }', "(ServiceName != '' AND ServiceName = 'checkout')"),
    ("{ status = error }", "StatusCode = 'STATUS_CODE_ERROR'"),
    ("{ status = unset }", "StatusCode = 'STATUS_CODE_UNSET'"),
    ("{ kind != internal }", "SpanKind != 'SPAN_KIND_INTERNAL'"),
    ("{ duration > 500ms }", "Duration > 500000000"),
    ('{ name = "x" }', "SpanName = 'x'"),
    ('{ name =~ "a|b" }', "match(SpanName, '^(?s:a|b)$')"),
    ('{ statusMessage !~ "x" }', "NOT match(StatusMessage, '^(?s:x)$')"),
    ('{ span.a = "it\'s" }', "(mapContains(SpanAttributes, 'a') AND SpanAttributes['a'] = 'it\\'s')"),
    ("{ span.a != 5 }", "(mapContains(SpanAttributes, 'a') AND toFloat64OrNull(SpanAttributes['a']) != 5)"),
    ("{ resource.a > 1.5 }", "(mapContains(ResourceAttributes, 'a') AND toFloat64OrNull(ResourceAttributes['a']) > 1.5)"),
    ("{ span.a = true }", "(mapContains(SpanAttributes, 'a') AND SpanAttributes['a'] = 'true')"),
    ('{ .a = "v" }', "((mapContains(SpanAttributes, 'a') OR mapContains(ResourceAttributes, 'a')) AND "
                     "if(mapContains(SpanAttributes, 'a'), SpanAttributes['a'], ResourceAttributes['a']) = 'v')"),
    ("{ }", "1"),
])
def test_condition_sql(q: str, sql: str) -> None:
    assert cond_sql(one(q)) == sql


def test_plan_exactness_and_search_sql() -> None:
    p = plan('{ status = error } && { kind = server }')
    assert p.exact and p.leaves == ("StatusCode = 'STATUS_CODE_ERROR'", "SpanKind = 'SPAN_KIND_SERVER'")
    sql = candidates_sql(p, "Tenant = 'acme'", 10, 20, 5)
    assert "Tenant = 'acme'" in sql and "fromUnixTimestamp64Nano(10)" in sql and "fromUnixTimestamp64Nano(20)" in sql
    assert "HAVING (countIf(f0) > 0 AND countIf(f1) > 0)" in sql and sql.endswith("LIMIT 5")
    # Filters pushed into WHERE: only spans some filter wants are grouped.
    assert "AND (StatusCode = 'STATUS_CODE_ERROR' OR SpanKind = 'SPAN_KIND_SERVER')" in sql
    bounded = candidates_sql(p, "Tenant = 'acme'", 10, 20, 5, min_trace_ns=100, max_trace_ns=200)
    assert ">= 100" in bounded and "<= 200" in bounded and "OR SpanKind" not in bounded.split("HAVING")[0]
    assert not plan("{ } >> { }").exact and not plan("({ } || { }) ~ { }").exact
    assert plan("({ } || { }) && { }").exact
    spans = spans_sql(plan('{ span.x = "1" }'), "Tenant = 'a'", ["ab" * 16])
    assert "otel_traces_trace_id_ts" in spans and "AS f0" in spans and "AS a0" in spans


def test_time_out_of_range_is_refused() -> None:
    with pytest.raises(BadRequest):
        candidates_sql(plan("{ }"), "1", 0, 2**64, 1)


# A trace: root a > [b, c]; b > d; c > e. Filters below: A = the span a, X = spans b and d, E = the span e.
_SHAPE = [("a", ""), ("b", "a"), ("c", "a"), ("d", "b"), ("e", "c")]
_PICK = {"A": {"a"}, "X": {"b", "d"}, "E": {"e"}}


@pytest.mark.parametrize(("q", "order", "want"), [
    ("{ .a = 1 } >> { .x = 1 }", "AX", ["b", "d"]),
    ("{ .a = 1 } > { .x = 1 }", "AX", ["b"]),
    ("{ .a = 1 } && { .x = 1 }", "AX", ["a", "b", "d"]),
    ("{ .a = 1 } || { .x = 1 }", "AX", ["a", "b", "d"]),
    ("{ .a = 1 } && { .e = 1 }", "AE", ["a", "e"]),
    ("{ .x = 1 } << { .a = 1 }", "XA", ["a"]),
    ("{ .x = 1 } < { .a = 1 }", "XA", ["a"]),
    ("{ .e = 1 } < { .x = 1 }", "EX", []),
    ("{ .x = 1 } ~ { .e = 1 }", "XE", []),
    ("{ .x = 1 } >> { .e = 1 }", "XE", []),
    ("{ .a = 1 } >> { .e = 1 } && { .x = 1 }", "AEX", ["b", "d", "e"]),
    ("{ .a = 1 } >> { .e = 1 } || { .x = 1 } > { .x = 1 }", "AEXX", ["d", "e"]),
])
def test_structural_evaluation(q: str, order: str, want: list[str]) -> None:
    spans = [{"span_id": s, "parent_id": p, **{f"f{i}": int(s in _PICK[k]) for i, k in enumerate(order)}}
             for s, p in _SHAPE]
    assert sorted(s["span_id"] for s in evaluate(parse(q), spans)) == want


def test_siblings() -> None:
    spans = [{"span_id": s, "parent_id": p, "f0": int(s == "b"), "f1": int(s in ("c", "d"))}
             for s, p in [("a", ""), ("b", "a"), ("c", "a"), ("d", "c")]]
    assert [s["span_id"] for s in evaluate(parse("{ .p = 1 } ~ { .q = 1 }"), spans)] == ["c"]


def test_parent_cycle_in_bad_data_ends() -> None:
    spans = [{"span_id": "a", "parent_id": "b", "f0": 1, "f1": 0}, {"span_id": "b", "parent_id": "a", "f0": 0, "f1": 1}]
    assert [s["span_id"] for s in evaluate(parse("{ .p = 1 } >> { .q = 1 }"), spans)] == ["b"]


def test_fields_and_durations_alone() -> None:
    assert parse_field("resource.service.name") == Attr("resource", "service.name")
    assert parse_field("name") == Intrinsic("name")
    assert parse_field(".a") == Attr(None, "a")
    assert parse_duration("1m30s") == 90 * 10**9 and parse_duration("2.5ms") == 2_500_000
    with pytest.raises(BadRequest, match="duration"):
        parse_duration("10")
    with pytest.raises(BadRequest, match="unknown field"):
        parse_field("bogus")


@pytest.mark.parametrize(("q", "message"), [
    ("", "empty query"),
    ("   ", "empty query"),
    ("{", "expected an attribute or intrinsic"),
    ('{ .a = "x"', "expected '}', found the end of the query at column 11"),
    ('{ .a = "x" }}', "unexpected '}' after a complete query"),
    ("status = error", "expected a spanset filter"),
    ("{ status = bogus }", "status takes one of error, ok, unset"),
    ("{ status = 1 }", "status takes one of"),
    ("{ kind = sideways }", "kind takes one of"),
    ("{ status > error }", "> cannot compare error"),
    ("{ duration > 5 }", "duration takes a duration"),
    ('{ duration > "5s" }', "compares numbers or durations"),
    ("{ name = 5 }", "name takes a string"),
    ('{ name > "a" }', "compares numbers or durations, not a string"),
    ("{ span.a =~ 5 }", "=~ takes a string"),
    ("{ span.a > true }", "cannot compare a boolean"),
    ("{ span.a = error }", "cannot be compared with error"),
    ("{ span.a = 5ms }", "cannot be compared with 5ms"),
    ("{ span.a }", "expected a comparison"),
    ("{ span.a = }", "expected a value after ="),
    ('{ span.a = "unterminated }', "unterminated string at column 12"),
    ("{ foo = 1 }", "unknown field 'foo'"),
    ("{ span. = 1 }", "unknown field"),
    ("{ rootServiceName = \"x\" }", "rootServiceName is not supported"),
    ('{ event.name = "x" }', "event scope is not supported"),
    ('{ .a = "x" } | count() > 2', "pipelines"),
    ('{ name =~ "(" }', "invalid regular expression"),
    ("{ .a = 1 } &&", "expected a spanset filter"),
    ("{ .a = 1 } { .b = 2 }", "unexpected '{'"),
    ("{ .a = 1 ] }", "unexpected character ']'"),
    # A non-ASCII letter where a name or a unit may stand is refused, not a crash (was a 500).
    ("{ .é = 1 }", "unexpected character 'é' at column 4"),
    ("{ duration > 5mµ }", "unexpected character 'µ' at column 16"),
    ("{ .a -5 = 1 }", "unexpected character '-' at column 6"),
    ("{ .a = 1 && }", "expected an attribute or intrinsic, found '}'"),
])
def test_errors_name_the_problem(q: str, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        plan(q)
    assert message in str(e.value) and str(e.value).startswith("invalid TraceQL query"), str(e.value)


def test_overlong_query_is_refused() -> None:
    with pytest.raises(BadRequest, match="longer than"):
        parse("{ " + " && ".join(['.a = "x"'] * 3000) + " }")
