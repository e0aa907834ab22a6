"""One wrapper for every API route: each answer counted by outcome, each failure turned into ferry's status and words.

ferry's own API and the Prometheus, Loki, Tempo and Jaeger APIs differ only in how an answer and an error look.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ferry.errors import Backpressure, FerryError, RetryableError, StoreQueryFailed
from ferry.status import retry_after, status_of
from ferry.telemetry import FILE_ONLY, metrics

log = logging.getLogger("ferry.api")

RETRY_AFTER_S = 5  # when an error names no wait of its own

Handler = Callable[[Request], Awaitable[Response]]

# The outcome label of ferry_api_requests_total for each HTTP status of ferry's error table.
_OUTCOME_OF = {400: "bad_request", 404: "bad_request", 413: "too_big", 422: "too_big", 429: "busy", 503: "store",
               504: "timeout"}


@dataclass(frozen=True)
class Failure:
    """A failed request as ferry sees it, before an API dresses it in its ecosystem's error shape."""

    error: Exception
    status: int  # from ferry's one error table (ferry/status.py); 500 for a bug
    message: str  # ferry's own words, never SQL or engine text
    outcome: str  # the label of ferry_api_requests_total
    headers: dict[str, str] = field(default_factory=dict)  # Retry-After where retrying helps


def failure_of(e: Exception, handler: str) -> Failure:
    """The status, words and outcome of a failed request. Store errors were logged with their SQL
    where they happened; anything unexpected is logged here, and its text stays in the log."""
    if not isinstance(e, FerryError):
        _log_unexpected(handler, e)
        return Failure(e, 500, "internal error; the ferry log has the details", "internal")
    http, _, _ = status_of(e)
    ra = retry_after(e, RETRY_AFTER_S)
    headers = {"Retry-After": str(ra)} if ra is not None else {}
    message = str(e)
    if isinstance(e, RetryableError) and not isinstance(e, Backpressure | StoreQueryFailed):
        _log_unexpected(handler, e)  # a store read that bypassed read_rows: its text is the engine's
        message = "the query failed in the store; retry later"
    return Failure(e, http, message, _OUTCOME_OF.get(http, "internal"), headers)


def _log_unexpected(handler: str, e: Exception) -> None:
    # Repeats are limited by every role's log filter (runtime/logfiles.RepeatFilter).
    log.error("API %s failed", handler, exc_info=e, extra=FILE_ONLY)


def json_answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """`data` as JSON (a Response is passed through as it is)."""
    if isinstance(data, Response):
        return data
    return Response(orjson.dumps(data), status, headers=headers, media_type="application/json")


def json_error(f: Failure) -> Response:
    """ferry's own error shape: `{"error": "<what was wrong>"}`."""
    return json_answer({"error": f.message}, f.status, f.headers)


def guard(handler: str, fn: Callable[[Request], Awaitable[Any]], error: Callable[[Failure], Response] = json_error,
          answer: Callable[[Any], Response] = json_answer) -> Handler:
    """A route whose every answer is counted under `handler` by outcome; `fn`'s result is rendered
    by `answer`, a failure by `error` (the API's error shape; its status may differ from the table's,
    as Prometheus' errorType statuses do, but the outcome label says what happened in ferry)."""
    for outcome in metrics.API_OUTCOMES:
        metrics.api_requests.labels(handler, outcome)

    async def run(request: Request) -> Response:
        try:
            response = answer(await fn(request))
            outcome = "ok"
        except Exception as e:
            f = failure_of(e, handler)
            outcome, response = f.outcome, error(f)
        metrics.api_requests.labels(handler, outcome).inc()
        return response

    return run
