"""The checks over the pipeline graph that no single setting can make: `ferry config check` and every start run them.

Each problem names its key path (pipeline.stages.log_parser.outputs[2]) so that config/load.py can
add the line of the config file it comes from.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from ferry import registry

if TYPE_CHECKING:
    from ferry.config.model import FerryConfig

Problem = tuple[tuple[str | int, ...], str]  # (key path, message)

# Topics that may be declared and read with nobody writing them inside this ferry: filled by
# exporters from another site, or by receivers that come in a later issue.
_FILLED_FROM_OUTSIDE = frozenset({"log_replicate", "linux", "windows"})


def problems(cfg: FerryConfig) -> list[Problem]:
    p = cfg.pipeline
    out: list[Problem] = []
    writers: dict[str, list[str]] = {}  # topic -> who writes it
    raw: dict[str, str] = {}  # topic -> a receiver that writes it undecoded
    readers: dict[str, list[str]] = {}
    for c in registry.COMPONENTS:
        if c.what == "receiver":
            for t in c.outputs:
                writers.setdefault(t, []).append(f"receivers.{c.kind}")
                if c.raw:
                    raw.setdefault(t, c.kind)
                if t not in p.topics:
                    out.append((("pipeline", "topics"), f"topic {t!r} is written by the {c.kind} receiver but not declared"))
    for name, inst in p.stages.items():
        base = ("pipeline", "stages", name)
        k = registry.kind(inst.kind)
        for i, t in enumerate(inst.inputs):
            readers.setdefault(t, []).append(name)
            if t not in p.topics:
                out.append(((*base, "inputs", i), f"unknown topic {t!r}"))
            elif t in raw and k.role == registry.STORE_ROLE:
                out.append(((*base, "inputs", i), f"topic {t!r} holds what the {raw[t]} receiver took off the wire, "
                            "undecoded: a parser must read it, not a writer"))
        for i, t in enumerate(inst.outputs):
            writers.setdefault(t, []).append(name)
            if t not in p.topics:
                out.append(((*base, "outputs", i), f"unknown topic {t!r}"))
        if k.role == registry.STORE_ROLE and inst.outputs:
            out.append(((*base, "outputs"), "a writer stores into the store; it has no output topics"))
        if k.role != registry.STORE_ROLE and not inst.outputs:
            out.append(((*base, "outputs"), f"a {inst.kind} needs at least one output topic"))
        for i, r in enumerate(getattr(inst, "routes", [])):
            for j, t in enumerate(r.to):
                if t not in inst.outputs:
                    out.append(((*base, "routes", i, "to", j), f"route {r.name!r} sends to {t!r}, which is not one of "
                                f"this stage's outputs ({', '.join(inst.outputs)})"))
        default = getattr(inst, "default", None)
        if default is not None and default not in inst.outputs:
            out.append(((*base, "default"), f"{default!r} is not one of this stage's outputs"))
        for i, tr in enumerate(getattr(inst, "transforms", [])):
            target = getattr(tr, "output", None)
            if target is not None and target not in inst.outputs:
                out.append(((*base, "transforms", i, "output"), f"{target!r} is not one of this stage's outputs"))
        if getattr(inst, "transforms", None) and all(p.signal_of(t) != "logs" for t in inst.inputs if t in p.topics):
            out.append(((*base, "transforms"), "transforms run over log records, and this stage reads no log topic"))
        table = getattr(inst, "table", None)
        if table is not None:
            from ferry.schema.tables import TABLE_NAMES

            if table not in TABLE_NAMES:
                out.append(((*base, "table"), f"unknown table {table!r} (one of {', '.join(TABLE_NAMES)})"))
    for t in p.topics:
        if t not in readers:
            out.append((("pipeline", "topics", t), f"topic {t!r} is declared but no stage reads it"))
        elif t not in writers and t not in _FILLED_FROM_OUTSIDE:
            out.append((("pipeline", "topics", t), f"topic {t!r} is read by {', '.join(readers[t])} but nothing writes it"))
    out += _cycles(cfg)
    out += _port_clashes(cfg)
    return out


def _cycles(cfg: FerryConfig) -> list[Problem]:
    """A stage whose outputs lead back to its own inputs would pass records around forever."""
    p = cfg.pipeline
    nxt: dict[str, set[str]] = {t: set() for t in p.topics}
    via: dict[tuple[str, str], str] = {}
    for name, inst in p.stages.items():
        for a in inst.inputs:
            nxt.setdefault(a, set()).update(inst.outputs)
            for b in inst.outputs:
                via.setdefault((a, b), name)
    out: list[Problem] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(t: str, path: list[str]) -> None:
        state[t] = 1
        for u in sorted(nxt.get(t, ())):
            if state.get(u) == 1:
                loop = path[path.index(u):] + [u] if u in path else [t, u]
                hops = " -> ".join(f"{a} ({via[(a, b)]})" for a, b in zip(loop, loop[1:], strict=False))
                out.append((("pipeline", "stages", via[(t, u)]), f"cycle: {hops} -> {u}: records would go round forever"))
            elif u not in state:
                visit(u, [*path, u])
        state[t] = 2

    for t in list(nxt):
        if t not in state:
            visit(t, [t])
    return out


def _port_clashes(cfg: FerryConfig) -> list[Problem]:
    from ferry.runtime.ports import configured

    seen: dict[tuple[int, int], str] = {}
    out: list[Problem] = []
    for key, kind, port in configured(cfg, registry.roles(), private_bus=cfg.bus.url is None):
        other = seen.setdefault((kind, port), key)
        if other != key:
            proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
            # Named at the setting met first (receivers come before the API): the one more likely in the file.
            out.append((tuple(other.split(".")), f"{proto} port {port} is also {key}"))
    return out
