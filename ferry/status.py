"""One table from ferry's errors to what each protocol tells the client.

Used by every receiver and by the API, so that the same failure always gets the same answer.
"""

from __future__ import annotations

import logging

import grpc

from ferry.errors import (
    Backpressure,
    BadRequest,
    DiskFull,
    FerryError,
    QueryTimeout,
    QueryTooBig,
    RetryableError,
    TooLarge,
)

log = logging.getLogger("ferry.receivers")

# (HTTP status, gRPC code, refused-counter reason)
# First match wins, so a subclass comes before its base.
_TABLE: list[tuple[type[FerryError], int, grpc.StatusCode, str]] = [
    (DiskFull, 429, grpc.StatusCode.RESOURCE_EXHAUSTED, "disk_full"),
    (Backpressure, 429, grpc.StatusCode.RESOURCE_EXHAUSTED, "backpressure"),
    (RetryableError, 503, grpc.StatusCode.UNAVAILABLE, "unavailable"),
    (TooLarge, 413, grpc.StatusCode.RESOURCE_EXHAUSTED, "too_large"),
    # API reads: the same query would fail again, so no Retry-After; the client has to narrow it.
    (QueryTimeout, 504, grpc.StatusCode.DEADLINE_EXCEEDED, "timeout"),
    (QueryTooBig, 422, grpc.StatusCode.RESOURCE_EXHAUSTED, "too_big"),
    (BadRequest, 400, grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
]


def status_of(err: FerryError) -> tuple[int, grpc.StatusCode, str]:
    for kind, http, code, reason in _TABLE:
        if isinstance(err, kind):
            return http, code, reason
    return 500, grpc.StatusCode.INTERNAL, "internal"


def retry_after(err: FerryError, default: int) -> int | None:
    """Seconds a client should wait before retrying, for retryable errors only."""
    if isinstance(err, Backpressure):
        return max(1, int(round(err.retry_after)))
    if isinstance(err, RetryableError):
        return default
    return None


def as_ferry_error(exc: Exception, signal: str, receiver: str) -> FerryError:
    """A bug is still an answer: log it with its traceback and let the table map it to 500/INTERNAL,
    so it is counted under reason "internal" like every other refusal."""
    if isinstance(exc, FerryError):
        return exc
    log.exception("%s: unexpected error handling a %s request", receiver, signal)
    return FerryError(f"internal error: {exc!r}")
