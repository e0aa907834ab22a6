"""ferry's error kinds: one type per kind of failure, each mapped to a status in status.py.

    FerryError
    ├── ConfigError          the configuration is wrong; names the key (and line) at fault
    ├── DataDirInUse         another ferry process owns the data directory
    ├── RetryableError       the bus or store is unavailable or full: back off, retry, spool
    │   ├── Backpressure     ferry is over a bound; the client should retry after `retry_after` s
    │   │   └── DiskFull     the data directory's disk is under its free-space floor
    │   └── StoreQueryFailed the store could not run an API read (HTTP 503)
    └── PermanentError       the same input will fail again
        ├── BadRequest       a whole request is malformed (HTTP 400 / gRPC INVALID_ARGUMENT)
        ├── TooLarge         a request exceeds the size limit (HTTP 413)
        ├── QueryTimeout     an API read ran past api.max_query_seconds (HTTP 504)
        └── QueryTooBig      an API read over its memory or answer-size cap (HTTP 422)

A bad record inside a good request is not an exception: decoders drop it, count it in
`ferry_refused_records_total{reason}` and report it as OTLP partial success.
"""

from __future__ import annotations


class FerryError(Exception):
    """Base of every error ferry raises on purpose."""


class ConfigError(FerryError):
    """The configuration is invalid; the message lists every key at fault."""


class DataDirInUse(FerryError):
    """Another ferry process holds the data directory's lock."""


class RetryableError(FerryError):
    """A dependency (bus, store) is unavailable; the same input may succeed later."""


class Backpressure(RetryableError):
    """ferry is over a configured bound; senders should slow down."""

    def __init__(self, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class DiskFull(Backpressure):
    """The data directory's disk has less free space than `backpressure.min_free_disk_bytes`."""


class PermanentError(FerryError):
    """The same input will fail again; retrying is pointless."""


class BadRequest(PermanentError):
    """A request could not be decoded at all."""


class TooLarge(PermanentError):
    """A request is larger than the configured limit."""



class QueryTimeout(PermanentError):
    """An API read ran past `api.max_query_seconds` and was stopped; the same query will again."""


class QueryTooBig(PermanentError):
    """An API read needed more memory than `api.max_query_memory_bytes`, or its answer was larger
    than `api.max_result_bytes`; the same query will again."""


class StoreQueryFailed(RetryableError):
    """The store could not run an API read (out of memory as a whole, busy, broken): retry later.
    Its message is ferry's own words: the engine's text and the SQL go to the log only."""
