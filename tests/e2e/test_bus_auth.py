"""The private bus and the data dir are ferry's alone: a local client without the bus's generated
credentials can neither read the topics nor publish to them, and other users cannot read the files."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from pathlib import Path

import httpx
import nats
import pytest

from ferry.testing import FerryProcess
from ferry.testing.otlp import logs_request

PB = {"content-type": "application/x-protobuf"}


async def _try_connect(url: str) -> str:
    """'' if the server took the connection (then it subscribes to every topic), else why not."""
    errors: list[str] = []

    async def on_error(e: Exception) -> None:
        errors.append(str(e))

    try:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3,
                                error_cb=on_error)
    except Exception as e:
        return " ".join([*errors, str(e)]) or type(e).__name__
    try:
        await nc.subscribe("ferry.>")
        await nc.flush(timeout=3)
    finally:
        await nc.close()
    return ""


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_the_bus_refuses_clients_without_its_credentials(ferry: FerryProcess) -> None:
    port = ferry.config["bus"]["port"]
    why = asyncio.run(_try_connect(f"nats://127.0.0.1:{port}"))
    assert "authorization violation" in why.lower(), why
    why = asyncio.run(_try_connect(f"nats://ferry:wrong-password@127.0.0.1:{port}"))
    assert "authorization violation" in why.lower(), why
    # The generated credentials are what let ferry's own processes in.
    creds = json.loads((ferry.data_dir / "bus" / "auth.json").read_text())
    assert asyncio.run(_try_connect(f"nats://{creds['user']}:{creds['password']}@127.0.0.1:{port}")) == ""


def test_ferry_itself_still_stores_data(ferry: FerryProcess) -> None:
    tag = f"auth{uuid.uuid4().hex[:8]}"
    r = httpx.post(f"{ferry.otlp_http}/v1/logs", content=logs_request([f"{tag} ok"]), headers=PB, timeout=10)
    assert r.status_code == 200
    assert ferry.wait_for(lambda: ferry.search(tag))[0]["body"] == f"{tag} ok"


def test_data_dir_and_credentials_are_private(ferry: FerryProcess) -> None:
    # FerryProcess made the data dir with the usual 0755 before ferry started: ferry closed it.
    assert _mode(ferry.data_dir) == 0o700
    for f in ("bus/auth.json", "bus/nats.conf"):
        assert _mode(ferry.data_dir / f) == 0o600, f
    # Files made by ferry and its children are not readable by others either.
    for p in [*ferry.data_dir.glob("run/*.log"), ferry.data_dir / "ferry.lock", ferry.data_dir / "bus" / "nats.log"]:
        assert _mode(p) & 0o077 == 0, p
    # The password is nowhere in what ferry printed.
    password = json.loads((ferry.data_dir / "bus" / "auth.json").read_text())["password"]
    assert password not in ferry.output()
    logs = [*ferry.data_dir.glob("run/*.log"), ferry.data_dir / "bus" / "nats.log"]
    assert not any(password in p.read_text(errors="replace") for p in logs)


def test_a_damaged_credentials_file_is_named(tmp_path: Path) -> None:
    """A creds file that is not ferry's (here: cut short): ferry refuses to start and says which file to remove."""
    data = tmp_path / "data"
    (data / "bus").mkdir(parents=True)
    (data / "bus" / "auth.json").write_text('{"user": "ferry", "pass')
    f = FerryProcess(data)
    with pytest.raises(RuntimeError, match="auth.json is not ferry's bus credentials file"):
        f.start(timeout=30)
