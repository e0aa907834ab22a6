"""The bus: NATS JetStream topics (topics.py), batch messages (codec.py), publishing and the private server.

Nothing else in ferry talks to NATS directly.
"""
