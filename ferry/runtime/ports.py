"""Before ferry starts anything: every port it is configured to listen on must be free.

Receivers bind with SO_REUSEPORT so that their worker processes share ports, and Linux lets any
other process of the same user do the same: a second ferry (or another program) on the same port
would silently take part of the traffic. A plain bind here fails while anything holds the port,
and the error names the setting to change.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Collection

from ferry import registry
from ferry.config.model import FerryConfig
from ferry.errors import ConfigError
from ferry.host.sockets import listening


def configured(cfg: FerryConfig, roles: Collection[str], private_bus: bool) -> list[tuple[str, int, int]]:
    """(setting, socket type, port) for every listener the given roles (and the private bus) open."""
    out: list[tuple[str, int, int]] = []
    if private_bus:
        out += [("bus.port", socket.SOCK_STREAM, cfg.bus.port), ("bus.monitor_port", socket.SOCK_STREAM, cfg.bus.monitor_port)]
    kinds = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}
    out += [(lst.setting, kinds[lst.transport], lst.port) for lst in registry.listeners(cfg, set(roles))]
    if registry.STORE_ROLE in roles:
        out.append(("api.port", socket.SOCK_STREAM, cfg.api.port))
    return out


def check_free(cfg: FerryConfig, roles: Collection[str], private_bus: bool, wait_s: float = 5.0) -> None:
    """Raise ConfigError naming every configured port that is taken (or used twice in the config).

    A taken port gets `wait_s` to come free first: right after a crash, the old ferry's role
    processes may still be exiting (they die with their supervisor, but not in the same instant).
    """
    deadline = time.monotonic() + wait_s
    while True:
        problems = _problems(cfg, roles, private_bus)
        if not problems or time.monotonic() > deadline or any("is also" in p for p in problems):
            break
        time.sleep(0.2)
    if problems:
        raise ConfigError("cannot listen where configured:\n  " + "\n  ".join(problems)
                          + "\nStop what holds the port, or set another port in the config.")


def _problems(cfg: FerryConfig, roles: Collection[str], private_bus: bool) -> list[str]:
    problems: list[str] = []
    seen: dict[tuple[int, int], str] = {}
    for key, kind, port in configured(cfg, roles, private_bus):
        proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
        other = seen.setdefault((kind, port), key)
        if other != key:
            problems.append(f"{key}: {proto} port {port} is also {other}")
            continue
        try:
            # No SO_REUSEPORT: this bind must fail while anything holds the port. (SO_REUSEADDR,
            # which listening() sets, only lets a port a stopped ferry left in TIME_WAIT count as free.)
            listening(kind, cfg.listen, port, reuse_port=False).close()
        except OSError as e:
            why = "is already in use by another program" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
            problems.append(f"{key}: {proto} port {port} on {cfg.listen} {why}")
    return problems
