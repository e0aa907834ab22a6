"""Syslog receiver: UDP/TCP listeners (server.py) and RFC 6587 framing (framing.py)."""
