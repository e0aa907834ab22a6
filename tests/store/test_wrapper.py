"""FERRY_STORE_WRAPPER, the store role's one hook around its store (ferry.store.wrapped).

Unset, the store is used as opened; set, the callable it names wraps it; a wrong value stops the
role with a ConfigError naming the variable. The hook in a running ferry is proven by
tests/e2e/test_reliability.py (the faulty store spools, then recovers exactly once).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.errors import ConfigError, RetryableError
from ferry.host.faults import FAULTS_ENV
from ferry.store import WRAPPER_ENV, Store, wrapped
from ferry.testing import faulty_store


class _Inert:
    """Enough of a store for the hook (never opened: the wrapper must not call it until asked)."""

    max_memory_bytes = 1
    defer_indexes = False

    def insert(self, table: str, rows: object) -> None:
        self.inserted = table


def test_unset_is_the_store_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WRAPPER_ENV, raising=False)
    s = _Inert()
    assert wrapped(s) is s  # type: ignore[arg-type]


def test_faulty_store_fails_writes_while_the_file_says_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.write_text("store")
    monkeypatch.setenv(WRAPPER_ENV, faulty_store.SPEC)
    monkeypatch.setenv(FAULTS_ENV, str(faults))
    inner = _Inert()
    s = wrapped(inner)  # type: ignore[arg-type]
    assert isinstance(s, faulty_store.FaultyStore) and isinstance(s, Store)
    with pytest.raises(RetryableError):
        s.insert("otel_logs", None)  # type: ignore[arg-type]
    faults.write_text("")
    s.insert("otel_logs", None)  # type: ignore[arg-type]
    assert inner.inserted == "otel_logs"


@pytest.mark.parametrize("spec", ["ferry.no_such_module:X", "ferry.testing.faulty_store:Nope", "no-colon"])
def test_wrong_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setenv(WRAPPER_ENV, spec)
    with pytest.raises(ConfigError, match=WRAPPER_ENV):
        wrapped(_Inert())  # type: ignore[arg-type]
