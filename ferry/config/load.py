"""Read ferry.yaml into a FerryConfig, reporting every error at once with its key path and line.

Overrides from the command line arrive as dotted keys ("receivers.syslog.udp_port=5515").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ferry.config.model import FerryConfig
from ferry.errors import ConfigError


def load(path: Path | None = None, overrides: dict[str, Any] | None = None) -> FerryConfig:
    raw: dict[str, Any] = {}
    root: yaml.Node | None = None
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config: {e.strerror}") from e
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
    for dotted, value in (overrides or {}).items():
        _set(raw, dotted.split("."), value)
    source = f"{path}: " if path else ""
    try:
        cfg = FerryConfig.model_validate(raw)
    except ValidationError as e:
        found = [(_without_tags(tuple(err["loc"])), _message(err)) for err in e.errors()]
        raise ConfigError(source + "invalid configuration:\n  " + "\n  ".join(_lines(root, found))) from None
    from ferry.pipeline.graph import problems

    graph = problems(cfg)
    if graph:
        raise ConfigError(source + "invalid pipeline:\n  " + "\n  ".join(_lines(root, graph)))
    return cfg


def _without_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic puts the chosen kind of a tagged union in the path (`stages.x.parser.transforms[1].cast`):
    the file has no such key, so it is left out (the tag is the `kind` / `type` the entry itself sets)."""
    from ferry.registry import COMPONENTS
    from ferry.transforms.config import IMPLEMENTED_IN

    out: list[Any] = []
    for part in loc:
        if len(out) >= 2 and out[-2] == "stages" and part in {c.kind for c in COMPONENTS}:
            continue
        if len(out) >= 2 and isinstance(out[-1], int) and out[-2] == "transforms" and part in IMPLEMENTED_IN:
            continue
        out.append(part)
    return tuple(out)


def _lines(root: yaml.Node | None, found: list[tuple[tuple[Any, ...], str]]) -> list[str]:
    """`key.path (line N): message`, the line where the key (or the nearest key above it) is written."""
    out = []
    for loc, message in found:
        where = _line_of(root, loc)
        at = f" (line {where})" if where else ""
        out.append(f"{_key_path(loc)}{at}: {message}")
    return out


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    return str(err["msg"])


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the YAML node tree along `loc`; the deepest node found gives the line (1-based)."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == part:
                    line = k.start_mark.line + 1
                    nxt = v
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        tree = tree.setdefault(k, {})
    tree[keys[-1]] = value
