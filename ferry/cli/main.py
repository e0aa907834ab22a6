"""The `ferry` command: run the system, or read from it (query, tail, trace, metrics) over its API.

Errors print one plain sentence and exit 2 (usage/config) or 1 (runtime); never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from ferry.errors import ConfigError, DataDirInUse, FerryError


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        out["data_dir"] = args.data_dir
    if getattr(args, "workers", None):
        out["parser.workers"] = args.workers
    if getattr(args, "receivers", None):
        out["receivers.workers"] = args.receivers
    for item in getattr(args, "set", None) or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[k] = v
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from ferry.config import load

    cfg = load(Path(args.config) if args.config else None, _overrides(args))
    if args.role:
        import asyncio

        from ferry.runtime.lock import DataDirLock
        from ferry.runtime.memory import tune_allocators
        from ferry.runtime.ports import check_free as check_ports_free
        from ferry.runtime.procs import raise_open_files_limit

        tune_allocators()
        raise_open_files_limit()
        from ferry.runtime.roles import run_alone

        lock = DataDirLock(cfg.data_dir)
        if args.role == "store":  # only the store owns files in the data dir
            lock.acquire()
        try:
            check_ports_free(cfg, [args.role], private_bus=False)
            asyncio.run(run_alone(args.role, cfg, say=lambda s: print(s, flush=True)))
        finally:
            lock.release()
        return 0
    from ferry.runtime.supervisor import run

    return run(cfg)


def cmd_config_check(args: argparse.Namespace) -> int:
    from ferry.config import load

    load(Path(args.config) if args.config else None, _overrides(args))
    print("configuration is valid")
    return 0


def _params(args: argparse.Namespace) -> dict[str, Any]:
    p: dict[str, Any] = {"q": args.query, "since": args.since, "limit": args.limit}
    if args.start:
        p["start"] = args.start
    if args.end:
        p["end"] = args.end
    return p


def cmd_query(args: argparse.Namespace) -> int:
    from ferry.cli import client, render

    data = client.get(client.base_url(args.api), "/api/v1/logs", _params(args))
    if args.json:
        for r in data["logs"]:
            sys.stdout.write(orjson.dumps(r).decode() + "\n")
        return 0
    for r in data["logs"]:
        print(render.log_line(r))
    print(f"-- {len(data['logs'])} lines in {data['took_ms']} ms", file=sys.stderr)
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
            for r in sorted(data["logs"], key=lambda r: (int(r["ingest_ns"]), int(r["time_ns"]))):
                print(orjson.dumps(r).decode() if args.json else render.log_line(r), flush=True)
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


def cmd_status(args: argparse.Namespace) -> int:
    from ferry.cli import client, render

    api = client.base_url(args.api)
    data = client.get(api, "/api/v1/status")
    if args.json:
        print(orjson.dumps(data).decode())
    else:
        print("\n".join(render.status(api, data)))
    return 1 if data.get("refusing") else 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from ferry.cli import client, render

    params: dict[str, Any] = {"name": args.name, "since": args.since, "step": args.step, "label": args.label or []}
    data = client.get(client.base_url(args.api), "/api/v1/metrics/series", params)
    if args.json:
        print(orjson.dumps(data).decode())
        return 0
    for s in data["series"]:
        print(f"{data['name']} {s['kind']} service={s['service']} {s['labels']}")
        for t, v in s["points"]:
            print(f"  {render.ts(int(t) * 1_000_000_000)}  {v}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferry", description="Self-hosted telemetry: logs, traces, metrics.")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="start ferry (receivers, bus, stages, store, API)")
    r.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    r.add_argument("--data-dir", help="where data is kept (default ./ferry-data)")
    r.add_argument("--workers", type=int, help="parser processes (default 1)")
    r.add_argument("--receivers", type=int, help="receiver processes sharing the ports (default 1)")
    r.add_argument("--role", choices=["ingest", "parser", "store"], help="run one role only (many-machine shape)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. api.port=9000")
    r.set_defaults(fn=cmd_run)

    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_cmd", required=True)
    cc = csub.add_parser("check", help="validate a config file and report every error")
    cc.add_argument("--config", "-c")
    cc.set_defaults(fn=cmd_config_check)

    def reader(name: str, help_: str) -> argparse.ArgumentParser:
        a = sub.add_parser(name, help=help_)
        a.add_argument("--api", help="ferry API URL (default $FERRY_API or http://127.0.0.1:8686)")
        a.add_argument("--json", action="store_true", help="one JSON object per line, for machines")
        return a

    q = reader("query", "search logs, newest first")
    q.add_argument("query", nargs="?", default="")
    q.add_argument("--since", default="1h", help="how far back (30s, 15m, 1h, 2d; default 1h)")
    q.add_argument("--start", help="RFC 3339 or unix time")
    q.add_argument("--end", help="RFC 3339 or unix time")
    q.add_argument("--limit", type=int, default=100)
    q.set_defaults(fn=cmd_query)

    t = reader("tail", "follow new matching logs live")
    t.add_argument("query", nargs="?", default="")
    t.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    t.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    t.set_defaults(fn=cmd_tail)

    tr = reader("trace", "print a trace's span tree with its log lines")
    tr.add_argument("trace_id")
    tr.set_defaults(fn=cmd_trace)

    st = reader("status", "is ferry taking data? stored rows, disk, lag, spool (exit 1 while refusing)")
    st.set_defaults(fn=cmd_status)

    m = reader("metrics", "print a metric's series")
    m.add_argument("name")
    m.add_argument("--label", action="append", metavar="KEY=VALUE")
    m.add_argument("--since", default="1h")
    m.add_argument("--step", default="60", help="seconds per point")
    m.set_defaults(fn=cmd_metrics)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ConfigError, DataDirInUse) as e:
        print(f"ferry: {e}", file=sys.stderr)
        return 2
    except FerryError as e:
        print(f"ferry: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
