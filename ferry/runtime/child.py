"""Entry point of one supervised role process: `python -m ferry.runtime.child ROLE INDEX`.

The supervisor passes the validated config as JSON in FERRY_CONFIG_JSON; the child writes
<data_dir>/run/ROLE-INDEX.ready once it is serving.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys

from ferry.config.model import FerryConfig
from ferry.host.memory import tune_allocators
from ferry.runtime import logfiles


def main() -> None:
    tune_allocators()
    from ferry.runtime.roles import ROLES

    role, index = sys.argv[1], sys.argv[2]
    cfg = FerryConfig.model_validate_json(os.environ["FERRY_CONFIG_JSON"])
    # stderr is the supervisor's pipe into the rotated run/ROLE-INDEX.log (runtime/logfiles.py).
    logfiles.configure(f"{role}[{index}]", cfg.logs.repeat_interval_s)
    ready = cfg.data_dir / "run" / f"{role}-{index}.ready"
    ready.unlink(missing_ok=True)

    from ferry import registry

    registry.declare_metrics(role)  # every series the role can move exists at 0 from the start
    # pyarrow imports pandas (~0.5 s of CPU) the first time it converts a Python object: pay that
    # before the role reports ready, not on the clock of its first batch.
    import pyarrow as pa

    pa.scalar("")

    async def main_async() -> None:
        task = asyncio.create_task(ROLES[role](cfg, int(index)))
        # Ready = the role survived its start-up (ports bound, bus declared, store open).
        while not task.done():
            await asyncio.sleep(0.1)
            if not ready.exists() and _serving(role):
                # Everything alive now (modules, config, warm-up) lives as long as the process:
                # taken out of the collector's view, each collection walks only the new objects.
                gc.freeze()
                ready.write_text(str(os.getpid()))
        await task

    asyncio.run(main_async())


def _serving(role: str) -> bool:
    from ferry.runtime import readiness

    return readiness.is_ready(role)


if __name__ == "__main__":
    main()
