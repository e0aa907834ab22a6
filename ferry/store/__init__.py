"""The store: the Store protocol (protocol.py), ClickHouse DDL (ddl.py), SQL literals (sql.py) and
the embedded chDB engine that owns the data dir (chdb_store.py).

`wrapped()` is the one hook for putting something between the store role and its store.
"""

from __future__ import annotations

import importlib
import logging
import os

from ferry.errors import ConfigError
from ferry.store.protocol import QueryLimits, Store

__all__ = ["WRAPPER_ENV", "QueryLimits", "Store", "wrapped"]

log = logging.getLogger("ferry.store")

# FERRY_STORE_WRAPPER=module:callable: the store role hands its store to callable(store) and uses
# what it returns (a Store) instead. Tests use it to fail inserts on demand
# (ferry.testing.faulty_store:FaultyStore); an operator could use it to trace or audit writes. It is
# named by the environment, never imported statically, so no test code is loaded unless asked for.
WRAPPER_ENV = "FERRY_STORE_WRAPPER"


def wrapped(store: Store) -> Store:
    """`store`, or what the callable FERRY_STORE_WRAPPER names makes of it."""
    spec = os.environ.get(WRAPPER_ENV, "").strip()
    if not spec:
        return store
    module, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name, None) if module and name else None
    except ImportError as e:
        raise ConfigError(f"{WRAPPER_ENV}={spec}: cannot import {module} ({e})") from None
    if not callable(factory):
        raise ConfigError(f"{WRAPPER_ENV}={spec}: expected module:callable naming a callable")
    log.warning("the store is wrapped by %s (%s)", spec, WRAPPER_ENV)
    out: Store = factory(store)
    return out
