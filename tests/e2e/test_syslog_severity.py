"""Syslog severities through a real ferry: SeverityText is the severity as sent (CRIT stays CRIT),
and level filters, which compare OTel's SeverityNumber, still find what an operator expects.

Lines go in over syslog TCP and come back through the HTTP API, as a user would see them.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections import Counter

import pytest

from ferry.testing import FerryProcess

# syslog severity code -> (name as sent, SeverityText shown, OTel SeverityNumber)
SEVERITIES = {
    0: ("emerg", "EMERG", 21),
    1: ("alert", "ALERT", 19),
    2: ("crit", "CRIT", 18),
    3: ("err", "ERR", 17),
    4: ("warning", "WARNING", 13),
    5: ("notice", "NOTICE", 10),
    6: ("info", "INFO", 9),
    7: ("debug", "DEBUG", 5),
}


@pytest.fixture(scope="module")
def sent(ferry: FerryProcess) -> str:
    """One line per severity in RFC 5424 and one in RFC 3164 (facility local0), over one TCP
    connection; returns the token every line carries. Each body starts with its severity's name."""
    tok = uuid.uuid4().hex[:12]
    stamp5424 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stamp3164 = time.strftime("%b %e %H:%M:%S", time.gmtime())
    lines = []
    for code, (name, _, _) in SEVERITIES.items():
        pri = 16 * 8 + code
        lines.append(f"<{pri}>1 {stamp5424} host-a app - - - {name} rfc5424 {tok}")
        lines.append(f"<{pri}>{stamp3164} host-b app[7]: {name} rfc3164 {tok}")
    with socket.create_connection(("127.0.0.1", ferry.syslog_port), timeout=10) as s:
        s.sendall("".join(f"{line}\n" for line in lines).encode())
    ferry.wait_for(lambda: len(ferry.search(tok)) == len(lines), timeout=60)
    return tok


def _found(ferry: FerryProcess, query: str, tok: str) -> set[str]:
    """The severity names (first word of Body) of the lines `query` finds, each in both formats."""
    rows = ferry.search(f"{query} {tok}")
    counts = Counter(r["body"].split()[0] for r in rows)
    assert set(counts.values()) <= {2}, rows  # a level means the same in RFC 5424 and RFC 3164
    return set(counts)


def test_severity_text_is_as_sent_and_number_is_otel(ferry: FerryProcess, sent: str) -> None:
    """The API shows `level` as the sender's severity, upper case (CRIT, not ERROR), in both formats."""
    rows = ferry.search(sent)
    assert len(rows) == 16
    for r in rows:
        name = r["body"].split()[0]
        code = next(c for c, (n, _, _) in SEVERITIES.items() if n == name)
        assert r["level"] == SEVERITIES[code][1], r
        assert r["attributes"]["syslog.severity"] == name


@pytest.mark.parametrize(
    ("query", "want"),
    [
        # error is OTel's 17..20: err, crit and alert. emerg is FATAL (21) in OTel's mapping, so it
        # is found by level:fatal / level:emerg and by `level:>=error`, not by level:error.
        ("level:error", {"err", "crit", "alert"}),
        ("level:err", {"err", "crit", "alert"}),
        ("level:crit", {"crit"}),
        ("level:alert", {"alert"}),
        ("level:emerg", {"emerg"}),
        ("level:fatal", {"emerg"}),
        ("level:warning", {"warning"}),
        ("level:warn", {"warning"}),
        ("level:notice", {"notice"}),
        ("level:>=warn", {"warning", "err", "crit", "alert", "emerg"}),
        ("level:>=error", {"err", "crit", "alert", "emerg"}),
        ("level:<warn", {"notice", "info", "debug"}),
        ("-level:>=warn", {"notice", "info", "debug"}),
    ],
)
def test_level_filters_find_syslog_severities(ferry: FerryProcess, sent: str, query: str, want: set[str]) -> None:
    """Level names and ranges find syslog lines by OTel number, whatever their SeverityText says."""
    assert _found(ferry, query, sent) == want
