"""Every receiver and stage ferry runs, one line each: the topology as data, not code.

The role list, `--role` choices, shutdown order, the banner, the port check, the config sections and
the self-metric series a role pre-declares are all derived from COMPONENTS. A component is one
package with a `config.py` (its pydantic model, exported as `Config`; light: imported before any
role runs) and a `component.py` with `build(cfg, ctx)` and `declare_metrics()` (imported only in the
role process that runs it). Adding a receiver or a stage = one new package + one line below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ferry.listener import Listener

if TYPE_CHECKING:  # only for hints: this module is imported by ferry.config.model itself
    from ferry.bus import Bus, Connection
    from ferry.config.model import FerryConfig
    from ferry.receivers.backpressure import BackpressureMonitor
    from ferry.stages.contract import Stage
    from ferry.store import Store


class Receiver(Protocol):
    async def start(self) -> None:
        """Bind and serve; returns once every listener takes data."""

    async def stop(self) -> None:
        """Stop taking data, then hand on (publish) what was taken; returns when done."""

    def listeners(self) -> list[Listener]: ...


@dataclass
class Context:
    """What a component gets from the runtime of its role process (None where that role has none)."""

    config: FerryConfig  # the whole config: listen address, tenant, backpressure and bus limits
    data_dir: Path
    nc: Connection | None = None
    js: Bus | None = None
    monitor: BackpressureMonitor | None = None  # ingest: refuses data while the bus or disk is full
    store: Store | None = None  # store role: the store the writer inserts into (embedded chDB)
    instance: str = ""  # the stage instance being built (its name in pipeline.stages; its consumer group)


@dataclass(frozen=True)
class Component:
    kind: str  # its name, unique
    what: Literal["receiver", "stage"]
    package: str  # holds config.py (`Config`) and component.py (`build`, `declare_metrics`)
    # Where a receiver's settings sit in FerryConfig, dotted (receivers.otlp); a stage's instances
    # are declared in `pipeline.stages` instead, each with `kind: <this kind>`.
    section: str | None
    role: str  # the process group that runs it (ingest, parser, store)
    stop_order: int  # lower stops first: the data path's order, so nothing is left mid-way
    outputs: tuple[str, ...] = ()  # a receiver's topics (the pipeline graph starts at them)
    # What it publishes is as it took it off the wire (syslog lines, remote_write requests), for a
    # parser to decode: a writer cannot store it.
    raw: bool = False

    def config_model(self) -> type[Any]:
        return importlib.import_module(f"{self.package}.config").Config  # type: ignore[no-any-return]

    def settings(self, cfg: FerryConfig) -> Any:
        assert self.section is not None, f"{self.kind} is configured per instance in pipeline.stages"
        return attrgetter(self.section)(cfg)

    def module(self) -> Any:
        return importlib.import_module(f"{self.package}.component")

    def listeners(self, cfg: FerryConfig) -> list[Listener]:
        """Its listeners under `cfg` (enabled ones only), settings named from the top of the config."""
        if self.what != "receiver":
            return []
        return [replace(lst, setting=f"{self.section}.{lst.setting}") for lst in self.settings(cfg).listeners()]


COMPONENTS: list[Component] = [
    Component("otlp", "receiver", "ferry.receivers.otlp", "receivers.otlp", "ingest", 0,
              ("logging", "tracing", "metrics")),
    Component("syslog", "receiver", "ferry.receivers.syslog", "receivers.syslog", "ingest", 0, ("syslog",), raw=True),
    Component("prometheus", "receiver", "ferry.receivers.prometheus", "receivers.prometheus", "ingest", 0, ("metrics",),
              raw=True),
    Component("loki", "receiver", "ferry.receivers.loki", "receivers.loki", "ingest", 0, ("logging",)),
    Component("parser", "stage", "ferry.stages.parser", None, "parser", 1),
    Component("router", "stage", "ferry.stages.router", None, "parser", 1),
    Component("spanmetrics", "stage", "ferry.stages.spanmetrics", None, "parser", 1),
    Component("writer", "stage", "ferry.stages.writer", None, "store", 2),
]

# The role that owns the store (chDB, the writer's target) and serves the API: exactly one process
# of it may run, and under `ferry run` every other role's /metrics is served by its API.
STORE_ROLE = "store"
# The setting that counts a role's processes under `ferry run`; a role not named here runs once.
WORKERS = {"ingest": "receivers.workers", "parser": "parser.workers"}


def roles() -> list[str]:
    """Every role, in shutdown order (a role stops at its earliest component's turn)."""
    first: dict[str, int] = {}
    for c in COMPONENTS:
        first[c.role] = min(first.get(c.role, c.stop_order), c.stop_order)
    return sorted(first, key=lambda r: first[r])


def in_role(role: str, what: str | None = None) -> list[Component]:
    """The components a role runs, in shutdown order."""
    return sorted((c for c in COMPONENTS if c.role == role and what in (None, c.what)), key=lambda c: c.stop_order)


def workers(cfg: FerryConfig, role: str) -> int:
    """Processes of a role under `ferry run`: the parser role runs as many as its busiest instance needs."""
    if role == "parser":
        return max([instance_workers(cfg, n) for n in instances(cfg, role)] or [1])
    return int(attrgetter(WORKERS[role])(cfg)) if role in WORKERS else 1


def listeners(cfg: FerryConfig, roles_: list[str] | tuple[str, ...] | set[str]) -> list[Listener]:
    """Every listener the receivers of these roles open under `cfg`, in registry order."""
    return [lst for c in COMPONENTS if c.role in roles_ for lst in c.listeners(cfg)]


def kind(name: str) -> Component:
    for c in COMPONENTS:
        if c.kind == name:
            return c
    raise KeyError(name)


def stage_models() -> list[type[Any]]:
    """The config models of every stage kind (a `pipeline.stages` entry is one of them, by `kind`)."""
    return [c.config_model() for c in COMPONENTS if c.what == "stage"]


def config_fields(parent: str) -> dict[str, tuple[type[Any], Any]]:
    """pydantic fields (name -> (model, default)) of the component sections directly under `parent`
    ("" = the top of the config): ferry.config.model builds its sections from these."""
    out: dict[str, tuple[type[Any], Any]] = {}
    for c in COMPONENTS:
        if c.section is None:
            continue
        head, _, name = c.section.rpartition(".")
        if head == parent:
            model = c.config_model()
            out[name] = (model, model())
    return out


def build(c: Component, ctx: Context) -> Receiver:
    return c.module().build(c.settings(ctx.config), ctx)  # type: ignore[no-any-return]


def build_stage(name: str, ctx: Context) -> Stage:
    """The stage instance `pipeline.stages.NAME`, built by its kind's component."""
    inst = ctx.config.pipeline.stages[name]
    ctx = replace(ctx, instance=name)
    return kind(inst.kind).module().build(inst, ctx)  # type: ignore[no-any-return]


def instances(cfg: FerryConfig, role: str) -> list[str]:
    """The stage instances a role runs (writers in the store role, every other kind in the parser role)."""
    return [name for name, inst in cfg.pipeline.stages.items() if kind(inst.kind).role == role]


def instance_workers(cfg: FerryConfig, name: str) -> int:
    inst = cfg.pipeline.stages[name]
    return int(inst.workers or (cfg.parser.workers if kind(inst.kind).role == "parser" else 1))


def declare_metrics(role: str) -> None:
    """Create, at 0, every self-metric series the role's components can move."""
    for c in in_role(role):
        c.module().declare_metrics()
