"""The `ferry` commands that read from a running ferry over its HTTP API: query, count, tail, trace,
related, metrics, services, fields, status. Warnings from the API go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from typing import Any

import orjson

# Row fields the API returns for paging and tail cursors; --json leaves them out unless --cursor.
CURSOR_FIELDS = ("_cursor_ts", "_cursor_key", "ingest_ns")

QUERY_HELP = """\
the search language:
  PaymentService           a word, case-insensitive; words are split at punctuation and at case
                           and letter/digit changes: Fi finds Wi-Fi, Power finds PowerShot,
                           500 finds SD500, PaymentService finds com.acme.PaymentService.charge
  pay*                     a word prefix
  "connection refused"     an exact, case-sensitive phrase
  level:error              a field: level (also level:>=warn), service, host, source, tenant,
                           trace_id, span_id, body, or any attribute key (ferry fields lists them)
  app:billing              syslog names: app (the service), facility, procid, msgid
  http.status_code:>=500   a number compared: > >= < <=
  user.id:*   key:val*     the field is present; a value prefix
  -healthcheck   NOT x     exclude
  a OR b   ( ... )         either; grouping. Terms side by side must all match.

examples:
  ferry query 'PaymentService level:error service:checkout' --since 1h
  ferry query 'app:billing facility:local3 -"health check"' --since 1d
  ferry query '(service:api OR service:web) http.status_code:>=500' --json
  ferry count 'level:error' --by service
A key or value no line of the time range has is named in a warning on stderr."""


def _warn(data: dict[str, Any]) -> None:
    for w in data.get("warnings") or []:
        print(f"ferry: warning: {w}", file=sys.stderr)


def _row(r: dict[str, Any], keep_cursor: bool) -> str:
    return orjson.dumps(r if keep_cursor else {k: v for k, v in r.items() if k not in CURSOR_FIELDS}).decode()


def _range_params(args: argparse.Namespace) -> dict[str, Any]:
    p: dict[str, Any] = {"since": args.since}
    if getattr(args, "start", None):
        p["start"] = args.start
    if getattr(args, "end", None):
        p["end"] = args.end
    return p


def cmd_query(args: argparse.Namespace) -> int:
    from ferry.cli import client, render

    path = "/api/v1/siem/events" if args.siem else "/api/v1/logs"
    data = client.get(client.base_url(args.api), path, {"q": args.query, "limit": args.limit, **_range_params(args)})
    _warn(data)
    if args.json:
        for r in data["logs"]:
            sys.stdout.write(_row(r, args.cursor) + "\n")
        return 0
    for r in data["logs"]:
        print(render.log_line(r))
    n = len(data["logs"])
    print(f"-- {n} line{'s' * (n != 1)} in {data['took_ms']} ms", file=sys.stderr)
    return 0


def cmd_count(args: argparse.Namespace) -> int:
    from ferry.cli import client, tables

    params = {"q": args.query, **_range_params(args)}
    if args.by:
        params["by"] = args.by
    if args.step:
        params["step"] = args.step
    path = "/api/v1/siem/events/count" if args.siem else "/api/v1/logs/count"
    data = client.get(client.base_url(args.api), path, params)
    _warn(data)
    print(orjson.dumps(data).decode() if args.json else "\n".join(tables.counts(data, args.by)))
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from ferry.cli import client, render

    api = client.base_url(args.api)
    cursor: int | None = None
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while deadline is None or time.monotonic() < deadline:
            params: dict[str, Any] = {"q": args.query}
            if cursor is not None:
                params["after"] = cursor
            data = client.get(api, "/api/v1/logs/tail", params)
            _warn(data)
            for r in sorted(data["logs"], key=lambda r: (int(r["ingest_ns"]), int(r["time_ns"]))):
                print(_row(r, args.cursor) if args.json else render.log_line(r), flush=True)
            cursor = data["cursor"]
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from ferry.cli import client, render

    data = client.get(client.base_url(args.api), f"/api/v1/traces/{args.trace_id}")
    if args.json:
        print(orjson.dumps(data).decode())
        return 0 if data["found"] else 1
    if not data["found"]:
        print(f"trace {args.trace_id} not found", file=sys.stderr)
        return 1
    print("\n".join(render.trace_tree(data)))
    return 0


def related_tree(data: dict[str, Any]) -> list[str]:
    """The related ids as a tree under the id asked for: each under the id it was reached by, with
    the kind of link between them."""
    children: dict[str, list[dict[str, Any]]] = {}
    for r in data["related"]:
        children.setdefault(r["from"], []).append(r)
    out = [data["id"]]

    def below(node: str, indent: str) -> None:
        kids = children.get(node, [])
        for i, r in enumerate(kids):
            last = i == len(kids) - 1
            out.append(f"{indent}{'└─' if last else '├─'} {r['id']}  ({r['via']})")
            below(r["id"], indent + ("   " if last else "│  "))

    below(data["id"], "")
    return out


def cmd_related(args: argparse.Namespace) -> int:
    from ferry.cli import client, render

    params: dict[str, Any] = {"id": args.id, "depth": args.depth, "fanout": args.fanout, "limit": args.limit}
    if args.since or args.start or args.end:
        params.update({k: v for k, v in (("since", args.since), ("start", args.start), ("end", args.end)) if v})
    data = client.get(client.base_url(args.api), "/api/v1/related", params)
    if args.json:
        print(orjson.dumps(data).decode())
        return 0 if data["related"] or data["logs"] else 1
    if not data["related"] and not data["logs"]:
        print(f"nothing is related to {args.id} and no log line carries it", file=sys.stderr)
        return 1
    print("\n".join(related_tree(data)))
    if data["logs"]:
        print()
    for r in data["logs"]:
        print(render.log_line(r))
    n, m = len(data["related"]), len(data["logs"])
    cut = "; cut at --fanout, --limit or 10,000 ids (truncated)" if data["truncated"] else ""
    print(f"-- {n} related id{'s' * (n != 1)}, {m} line{'s' * (m != 1)} in {data['took_ms']} ms{cut}",
          file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ferry.cli import client, render

    api = client.base_url(args.api)
    data = client.get(api, "/api/v1/status")
    if args.json:
        print(orjson.dumps(data).decode())
    else:
        print("\n".join(render.status(api, data)))
    return 1 if data.get("refusing") else 0


def _no_series(api: str, args: argparse.Namespace) -> str:
    """Why `ferry metrics NAME` found nothing, in words, with what to try instead."""
    from ferry.cli import client

    names = client.get(api, "/api/v1/metrics", {"since": args.since})["metrics"]
    mine = [m for m in names if m["name"] == args.name]
    if mine and args.label:
        services = sorted({s for m in mine for s in m["services"]})
        return (f"no series of {args.name} match {' '.join('--label ' + x for x in args.label)} in the last "
                f"{args.since}; its series come from service {', '.join(services) or '(none)'}")
    near = difflib.get_close_matches(args.name, [m["name"] for m in names], n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else ""
    return (f"no data for metric {args.name} in the last {args.since}{hint} "
            f"(`ferry metrics --since {args.since}` lists the metrics that have data)")


def cmd_metrics(args: argparse.Namespace) -> int:
    from ferry.cli import client, tables

    api = client.base_url(args.api)
    if not args.name:
        data = client.get(api, "/api/v1/metrics", {"since": args.since, "label": args.label or []})
        if args.json:
            print(orjson.dumps(data).decode())
        elif not data["metrics"]:
            print(f"no metrics in the last {args.since}", file=sys.stderr)
        else:
            print("\n".join(tables.metric_names(data["metrics"])))
        return 0
    params: dict[str, Any] = {"name": args.name, "since": args.since, "step": args.step, "label": args.label or []}
    data = client.get(api, "/api/v1/metrics/series", params)
    if args.json:
        print(orjson.dumps(data).decode())
        return 0 if data["series"] else 1
    if not data["series"]:
        print(f"ferry: {_no_series(api, args)}", file=sys.stderr)
        return 1
    print("\n".join(tables.metric_series(data["name"], data["series"])))
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    from ferry.cli import client, tables

    data = client.get(client.base_url(args.api), "/api/v1/services", {"since": args.since})
    if args.json:
        print(orjson.dumps(data).decode())
    elif not data["services"]:
        print(f"no data from any service in the last {args.since}", file=sys.stderr)
    else:
        print("\n".join(tables.services(data["services"])))
    return 0


def cmd_fields(args: argparse.Namespace) -> int:
    from ferry.cli import client, tables

    params = {"since": args.since, **({"service": args.service} if args.service else {})}
    data = client.get(client.base_url(args.api), "/api/v1/fields", params)
    if args.json:
        print(orjson.dumps(data).decode())
        return 0
    whose = f" of service {args.service}" if args.service else ""
    if not data["fields"]:
        print(f"no log lines{whose} in the last {args.since}", file=sys.stderr)
        return 0
    print("\n".join(tables.fields(data)))
    read, most = data["lines_read"], data["most_lines_read"]
    sample = f"the newest {most:,} of the lines" if read >= most else f"{read:,} line{'s' * (read != 1)}"
    print(f"-- from {sample}{whose} in the last {args.since}; search any of these as field:value", file=sys.stderr)
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from ferry.cli import client, render

    data = client.get(client.base_url(args.api), "/api/v1/pipeline")
    if args.json:
        print(orjson.dumps(data).decode())
    else:
        print("\n".join(render.pipeline(data)))
    return 0


def add_commands(sub: Any) -> None:
    """The read commands' argument parsers, on the `ferry` command's subparsers."""

    def reader(name: str, help_: str, **kw: Any) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_, **kw)
        a.add_argument("--api", help="ferry API URL (default $FERRY_API or http://127.0.0.1:8686)")
        a.add_argument("--json", action="store_true", help="JSON for machines (query, tail: one object per line)")
        return a

    def since(a: argparse.ArgumentParser, default: str = "1h", bounds: bool = False) -> None:
        a.add_argument("--since", default=default, help=f"how far back (30s, 15m, 1h, 2d; default {default})")
        if bounds:
            a.add_argument("--start", help="RFC 3339 or unix time (instead of --since)")
            a.add_argument("--end", help="RFC 3339 or unix time (default: open-ended)")

    q = reader("query", "search logs, newest first", epilog=QUERY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("query", nargs="?", default="", help="search query (see below); empty matches every line")
    since(q, bounds=True)
    q.add_argument("--limit", type=int, default=100, help="lines at most (default 100)")
    q.add_argument("--cursor", action="store_true", help="with --json: keep the paging fields (_cursor_ts, ...)")
    q.add_argument("--siem", action="store_true", help="search the security events (siem_events) instead of all logs")
    q.set_defaults(fn=cmd_query)

    c = reader("count", "count matching log lines, in total, by a field or per time step",
               epilog="examples:\n  ferry count 'level:error' --by service\n  ferry count 'app:sshd Failed' --step 5m\n"
                      "The query language is that of `ferry query --help`.",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("query", nargs="?", default="")
    since(c, bounds=True)
    c.add_argument("--by", help="a field: service, level, host, source, tenant, facility or any attribute key")
    c.add_argument("--step", help="seconds (or 5m, 1h) per time bucket")
    c.add_argument("--siem", action="store_true", help="count security events (siem_events) instead of all logs")
    c.set_defaults(fn=cmd_count)

    t = reader("tail", "follow new matching logs live")
    t.add_argument("query", nargs="?", default="")
    t.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    t.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    t.add_argument("--cursor", action="store_true", help="with --json: keep ingest_ns, the tail cursor")
    t.set_defaults(fn=cmd_tail)

    pl = reader("pipeline", "show the pipeline as it runs: topics, stage instances, lag and rates")
    pl.set_defaults(fn=cmd_pipeline)

    tr = reader("trace", "print a trace's span tree with its log lines")
    tr.add_argument("trace_id")
    tr.set_defaults(fn=cmd_trace)

    rl = reader("related", "the ids related to an id (the links graph, both ways) as a tree, then their log lines",
                epilog="example:\n  ferry related 1kQ3xY-0004aB-7c --depth 2\n"
                       "Ids are related by link rules; a line belongs when one of its attribute values is an id.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    rl.add_argument("id", help="the id to start from (a message, queue, session or transaction id)")
    rl.add_argument("--depth", type=int, default=3, help="links to follow from the id, 1-6 (default 3)")
    rl.add_argument("--fanout", type=int, default=100, help="links followed from each id, 1-1000 (default 100)")
    rl.add_argument("--limit", type=int, default=100, help="log lines at most (default 100)")
    rl.add_argument("--since", help="only links and lines this recent (30s, 15m, 1h, 2d; default: all kept)")
    rl.add_argument("--start", help="RFC 3339 or unix time (instead of --since)")
    rl.add_argument("--end", help="RFC 3339 or unix time (default: open-ended)")
    rl.set_defaults(fn=cmd_related)

    st = reader("status", "is ferry taking data? stored rows, disk, lag, spool (exit 1 while refusing)")
    st.set_defaults(fn=cmd_status)

    m = reader("metrics", "a metric's series as a table (histograms: count, mean, p50/p90/p99); "
               "with no NAME, the metric names that have data")
    m.add_argument("name", nargs="?", help="metric name (omit to list the names)")
    m.add_argument("--label", action="append", metavar="KEY=VALUE", help="only series with this label (service=...)")
    since(m)
    m.add_argument("--step", default="60", help="seconds (or 5m, 1h) per row (default 60)")
    m.set_defaults(fn=cmd_metrics)

    sv = reader("services", "the services that sent data: log lines, spans, metric points, last seen")
    since(sv, "1d")
    sv.set_defaults(fn=cmd_services)

    f = reader("fields", "the fields a search can use, with their commonest values")
    f.add_argument("--service", help="only lines of this service")
    since(f)
    f.set_defaults(fn=cmd_fields)
