"""Shared fixtures: a real `ferry run` (private nats-server, chDB) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ferry.testing import FerryProcess


@pytest.fixture(scope="module")
def ferry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryProcess]:
    proc = FerryProcess(tmp_path_factory.mktemp("ferry") / "data").start()
    try:
        yield proc
    finally:
        rc = proc.stop()
        assert rc == 0, f"ferry did not stop cleanly (rc={rc}):\n{proc.output()[-3000:]}"
