"""The topology is data: what `ferry run` shows, checks and offers comes from ferry/registry.py.

Banner, port check and `--role` choices are read from the real functions the CLI and supervisor
call; the port check binds real sockets on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from ferry import registry
from ferry.cli.main import parser as cli_parser
from ferry.config.model import FerryConfig
from ferry.errors import ConfigError
from ferry.registry import Component, Listener
from ferry.runtime.ports import check_free, configured
from ferry.runtime.supervisor import banner


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config_on_free_ports() -> FerryConfig:
    syslog = _free_port()
    return FerryConfig.model_validate({
        "receivers": {"otlp": {"grpc": {"port": _free_port()}, "http": {"port": _free_port()}},
                      "syslog": {"udp_port": syslog, "tcp_port": syslog}},
        "api": {"port": _free_port()},
    })


def _role_choices() -> list[str]:
    """The roles `ferry run --help` offers for --role (stage instances of the pipeline are offered too)."""
    sub = next(a for a in cli_parser()._actions if isinstance(a, argparse._SubParsersAction))
    run = sub.choices["run"]
    text = next(a for a in run._actions if a.dest == "role").help or ""
    return [r.strip() for r in text.split("(", 1)[1].split(")", 1)[0].split(",")]


def test_every_receiver_listener_is_in_the_banner_and_the_port_check() -> None:
    """Each port a registered receiver opens is announced, and a taken one is refused by its setting's name."""
    cfg = _config_on_free_ports()
    shown = banner(cfg, registry.roles())
    checked = {(key, port) for key, _, port in configured(cfg, registry.roles(), private_bus=False)}
    receivers = [c for c in registry.COMPONENTS if c.what == "receiver"]
    assert {c.kind for c in receivers} >= {"otlp", "syslog"}
    for c in receivers:
        for lst in c.listeners(cfg):
            assert f"{lst.scheme}127.0.0.1:{lst.port}" in shown
            assert (lst.setting, lst.port) in checked
            assert lst.setting.startswith(f"{c.section}.")
    # A port in use makes `ferry run` refuse to start, naming that receiver's setting.
    grpc = cfg.receivers.otlp.grpc.port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", grpc))
        holder.listen()
        with pytest.raises(ConfigError, match=rf"receivers\.otlp\.grpc\.port: tcp port {grpc} .* in use"):
            check_free(cfg, registry.roles(), private_bus=False, wait_s=0)
    # A disabled listener is neither announced nor checked.
    cfg.receivers.syslog.enabled = False
    assert "syslog" not in banner(cfg, registry.roles())
    assert not any(k.startswith("receivers.syslog") for k, _, _ in configured(cfg, registry.roles(), private_bus=False))


def test_role_choices_and_shutdown_order_come_from_the_registry() -> None:
    assert _role_choices() == registry.roles() == ["ingest", "parser", "store"]
    assert {c.role for c in registry.COMPONENTS} == set(registry.roles())


def test_every_component_has_a_strict_described_config_section() -> None:
    """Each component's settings sit at its section of FerryConfig, refuse unknown keys and say what they do."""
    cfg = FerryConfig()
    for c in registry.COMPONENTS:
        model = c.config_model()
        if c.what == "stage":  # configured per instance, in pipeline.stages, by `kind`
            assert model.model_fields["kind"].default == c.kind, c.kind
        else:
            assert isinstance(c.settings(cfg), model), c.kind
        assert model.model_config.get("extra") == "forbid", c.kind
        undescribed = [f"{m.__name__}.{n}" for m in _models(model) for n, f in m.model_fields.items() if not f.description]
        assert not undescribed, undescribed


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    out = [model]
    for f in model.model_fields.values():
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            out += _models(f.annotation)
    return out


def test_loading_the_config_imports_no_component_runtime() -> None:
    """The supervisor and the CLI read every config.py before any role runs: they must stay light."""
    heavy = ("polars", "pyarrow", "grpc", "chdb", "nats", "uvicorn", "ferry.stages.writer.stage")
    code = ("import sys; from ferry.config.model import FerryConfig; from ferry import registry; FerryConfig(); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


class _EchoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = Field(description="TCP port of the echo receiver.")

    def listeners(self) -> list[Listener]:
        return [Listener("port", "tcp", self.port, "echo", scheme="echo://")]


@dataclass(frozen=True)
class _EchoComponent(Component):
    config: Any = None

    def settings(self, cfg: FerryConfig) -> Any:  # FerryConfig has no section for a component added here
        return self.config


def test_a_component_registered_at_runtime_is_announced_checked_and_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    """One registry line: its role becomes a `--role` choice, its port is in the banner and the port check."""
    cfg = _config_on_free_ports()
    port = _free_port()
    echo = _EchoComponent("echo", "receiver", "tests.nowhere", "receivers.echo", "edge", 0, config=_EchoConfig(port=port))
    monkeypatch.setattr(registry, "COMPONENTS", [*registry.COMPONENTS, echo])

    assert "edge" in registry.roles() and "edge" in _role_choices()
    assert f"  echo           echo://127.0.0.1:{port}" in banner(cfg, registry.roles()).splitlines()
    assert f"echo://127.0.0.1:{port}" in banner(cfg, ["edge"])
    assert f"echo://127.0.0.1:{port}" not in banner(cfg, ["ingest"])
    assert ("receivers.echo.port", socket.SOCK_STREAM, port) in configured(cfg, registry.roles(), private_bus=False)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(ConfigError, match=rf"receivers\.echo\.port: tcp port {port} "):
            check_free(cfg, ["edge"], private_bus=False, wait_s=0)
