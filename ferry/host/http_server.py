"""An HTTP server (uvicorn) on a socket ferry bound itself, run inside a role's own event loop.

Used by the OTLP/HTTP receiver, the API and a lone role's /metrics page, all configured one way.
"""

from __future__ import annotations

import socket

import uvicorn


def http_server(app: object, sock: socket.socket, limit: int | None = None, http: object = "auto") -> uvicorn.Server:
    """A uvicorn server for `app`; serve it with `server.serve(sockets=[sock])`. Signals stay the
    role's to handle (it drains in data-path order), and there is no lifespan or access log."""
    del sock  # bound by the caller (host/sockets.py) and passed to serve(); here so call sites read alike
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        http=http,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        limit_concurrency=limit,
        timeout_graceful_shutdown=10,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    return server
