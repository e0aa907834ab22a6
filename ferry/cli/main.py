"""The `ferry` command: run the system, or read from it over its API (the commands in cli/read.py).

Errors print one plain sentence and exit 2 (usage/config) or 1 (runtime); never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ferry import registry
from ferry.cli.read import add_commands
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
    import os

    from ferry.config import load

    cfg = load(Path(args.config) if args.config else None, _overrides(args))
    # The pid `ferry status` shows (api/app.py): the process an operator stops, i.e. this one —
    # the supervisor under `ferry run` (its children inherit the variable), the role itself alone.
    os.environ["FERRY_PID"] = str(os.getpid())
    # Relative paths in stage settings (an enrich table) are read from the config file's folder;
    # every role process inherits this.
    os.environ["FERRY_CONFIG_DIR"] = str(Path(args.config).resolve().parent if args.config else Path.cwd())
    if args.role:
        import asyncio

        from ferry.host.lock import DataDirLock
        from ferry.host.memory import tune_allocators
        from ferry.host.procs import raise_open_files_limit
        from ferry.runtime.ports import check_free as check_ports_free

        stage_roles = [n for n in cfg.pipeline.stages if n not in registry.instances(cfg, registry.STORE_ROLE)]
        if args.role not in registry.roles() and args.role not in stage_roles:
            raise ConfigError(f"--role {args.role}: not a role ({', '.join(registry.roles())}) nor a stage instance of the "
                              f"pipeline ({', '.join(stage_roles)}); writer instances run in the store role")
        # Several processes of one role would need a supervisor to start, share ports and restart
        # them; refused rather than ignored, so that an operator never believes N run when one does.
        n = registry.workers(cfg, args.role) if args.role in registry.roles() else 1
        if n > 1:
            key = registry.WORKERS[args.role]
            how = ("start `ferry run --role parser` once per worker (on this host or others; they form one "
                   "consumer group), each with its own metrics.port" if args.role == "parser" else
                   "run one ingest role per host (more hosts behind a load balancer), or `ferry run` without "
                   "--role, whose receiver processes share the ports")
            raise ConfigError(f"{key} = {n} is not supported with --role {args.role}: set it to 1 and {how}")
        if args.role != registry.STORE_ROLE:
            cfg.metrics.port = cfg.metrics.port_for(args.role)
        tune_allocators()
        raise_open_files_limit()
        from ferry.runtime.roles import run_alone

        lock = DataDirLock(cfg.data_dir)
        if args.role == registry.STORE_ROLE:  # only the store owns files in the data dir
            os.umask(0o077)  # telemetry is nobody else's to read, as under the supervisor
            lock.acquire()
            try:
                cfg.data_dir.chmod(0o700)
            except OSError:
                print(f"ferry: cannot make {cfg.data_dir} private (chmod 700)", file=sys.stderr)
        try:
            check_ports_free(cfg, [args.role], private_bus=False)
            asyncio.run(run_alone(args.role, cfg, say=lambda s: print(s, flush=True)))
        finally:
            lock.release()
        return 0
    from ferry.runtime.supervisor import run

    return run(cfg, reread=lambda: load(Path(args.config) if args.config else None, _overrides(args)))


def cmd_reload(args: argparse.Namespace) -> int:
    """Send SIGHUP to the ferry that holds the data dir and print what it did with the config."""
    import os
    import signal
    import time

    from ferry.config import load

    cfg = load(Path(args.config) if args.config else None, _overrides(args))
    lock = cfg.data_dir / "ferry.lock"
    try:
        pid = int(lock.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        raise ConfigError(f"no ferry is running on {cfg.data_dir} (no live pid in {lock})") from None
    result = cfg.data_dir / "run" / "reload.result"
    before = result.stat().st_mtime_ns if result.exists() else 0
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if result.exists() and result.stat().st_mtime_ns != before:
            time.sleep(0.05)  # written in one go; let it land
            outcome, _, detail = result.read_text().partition("\n")
            print(f"ferry (pid {pid}): {outcome}" + (f"\n{detail.rstrip()}" if detail.strip() else ""))
            return 2 if outcome == "refused" else 0
        time.sleep(0.1)
    print(f"ferry: pid {pid} did not report within {args.timeout:g} s; see its log", file=sys.stderr)
    return 1


def cmd_config_check(args: argparse.Namespace) -> int:
    from ferry.config import load

    load(Path(args.config) if args.config else None, _overrides(args))
    print("configuration is valid")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferry", description="Self-hosted telemetry: logs, traces, metrics.")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="start ferry (receivers, bus, stages, store, API)")
    r.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    r.add_argument("--data-dir", help="where data is kept (default ./ferry-data)")
    r.add_argument("--workers", type=int, help="parser processes (default 1)")
    r.add_argument("--receivers", type=int, help="receiver processes sharing the ports (default 1)")
    r.add_argument("--role", metavar="ROLE", help=f"run one role only ({', '.join(registry.roles())}) or one stage "
                   "instance of the pipeline, e.g. log_parser (many-machine shape)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. api.port=9000")
    r.set_defaults(fn=cmd_run)

    rl = sub.add_parser("reload", help="apply a changed config to the running ferry (as kill -HUP), or say why not")
    rl.add_argument("--config", "-c", help="the config file the running ferry was started with")
    rl.add_argument("--data-dir", help="its data dir (default: the config's)")
    rl.add_argument("--set", action="append", metavar="KEY=VALUE", help="the same --set overrides it was started with")
    rl.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the outcome")
    rl.set_defaults(fn=cmd_reload)

    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_cmd", required=True)
    cc = csub.add_parser("check", help="validate a config file and report every error")
    cc.add_argument("--config", "-c")
    cc.set_defaults(fn=cmd_config_check)

    add_commands(sub)
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
