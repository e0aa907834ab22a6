"""Test harness: a real `ferry run` process on free loopback ports, and helpers to talk to it."""

from ferry.testing.process import FerryProcess, free_port

__all__ = ["FerryProcess", "free_port"]
