"""Background jobs that repeat every few seconds: a blocking job (a store query) runs off the
event loop, and a retryable failure is logged and tried again next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ferry.errors import RetryableError

log = logging.getLogger("ferry.periodic")


async def repeat(every_s: float, job: Callable[[], object], what: str) -> None:
    """Run `job` in a thread every `every_s` seconds until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(job)
        except RetryableError as e:
            log.warning("%s failed; retrying next round: %s", what, e)
