"""`--set key=value` for the benchmarks: dotted ferry config keys, merged over a bench's own config."""

from __future__ import annotations

from typing import Any

import yaml


def apply(config: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """`config` with each `a.b.c=value` (value read as YAML) set in it; nested dicts are kept."""
    for item in items:
        key, _, value = item.partition("=")
        *path, last = key.split(".")
        node = config
        for k in path:
            node = node.setdefault(k, {})
        node[last] = yaml.safe_load(value)
    return config
