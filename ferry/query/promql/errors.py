"""The PromQL engine's one error type, carrying Prometheus' `errorType` so the API can answer in
Prometheus' error shape (`{"status":"error","errorType":...,"error":...}`)."""

from __future__ import annotations

from typing import Literal

from ferry.errors import BadRequest

ErrorType = Literal["bad_data", "execution", "timeout"]


class PromQLError(BadRequest):
    """A query Prometheus would refuse: `bad_data` (parse errors, bad arguments), `execution`
    (evaluation failures such as many-to-many matching) or `timeout`."""

    def __init__(self, message: str, error_type: ErrorType = "bad_data") -> None:
        super().__init__(message)
        self.error_type: ErrorType = error_type
