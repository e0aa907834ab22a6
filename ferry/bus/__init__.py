"""The bus: NATS JetStream topics (topics.py), batch messages (codec.py), publishing, consuming, probing and the private server.

Nothing else in ferry imports NATS: code outside bus/ names a JetStream context `Bus` and a
connection `Connection` (type aliases).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nats.aio.client import Client as Connection
    from nats.js import JetStreamContext as Bus


def __getattr__(name: str) -> Any:
    # Resolved on first use: `import ferry.bus.topics` (the CLI, the config) must not pay for nats' import.
    if name == "Bus":
        from nats.js import JetStreamContext

        return JetStreamContext
    if name == "Connection":
        from nats.aio.client import Client

        return Client
    raise AttributeError(name)


__all__ = ["Bus", "Connection"]
