"""Listening sockets and addresses, IPv4 and IPv6 alike: the one place ferry binds a port.

`listen` may be an IPv4 address (127.0.0.1, 0.0.0.0) or an IPv6 one (::1, :: — on Linux `::`
also takes IPv4 clients, as v4-mapped addresses). Addresses are written `host:port`, and
`[host]:port` for IPv6, as in URLs and syslog peers.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger("ferry.runtime")

# Linux's SO_RCVBUFFORCE (asm-generic/socket.h), which the socket module does not name: as root it
# sets a receive buffer beyond net.core.rmem_max.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets (and a v4-mapped peer shown as plain IPv4)."""
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:") :]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listening(kind: int, host: str, port: int, *, reuse_port: bool = True, rcvbuf: int | None = None) -> socket.socket:
    """A bound socket (TCP: not yet listening) on `host`:`port`.

    `reuse_port` lets the worker processes of one role share the port (SO_REUSEPORT); ferry checks
    at start that nothing else holds it (runtime/ports.py), since the kernel would let it share.
    `rcvbuf` is the kernel receive buffer wanted (see `set_receive_buffer`).
    """
    # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets that say they are TCP, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK.
    proto = socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else socket.IPPROTO_UDP
    s = socket.socket(family(host), kind, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if rcvbuf:
            set_receive_buffer(s, rcvbuf, f"{'UDP' if kind == socket.SOCK_DGRAM else 'TCP'} {host_port(host, port)}")
        s.bind((host, port))
    except OSError:
        s.close()
        raise
    return s


def set_receive_buffer(s: socket.socket, size: int, what: str) -> int:
    """Give `s` a kernel receive buffer of `size` bytes and return what it got.

    Forced past net.core.rmem_max when running as root (SO_RCVBUFFORCE), else asked for and capped
    by the kernel; a cap is logged with the sysctl that lifts it, since a UDP socket whose buffer
    fills drops datagrams (counted, but lost).
    """
    try:
        s.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except OSError:  # not root (EPERM), or not Linux
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    # Linux reports twice what was set (the other half is its bookkeeping allowance).
    got = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    if got < size:
        log.warning("%s: the kernel capped the receive buffer at %d bytes (%d asked); raise it with "
                    "`sysctl -w net.core.rmem_max=%d` or run as root", what, got, size, size)
    return got
