"""GET /api/v1/related and `ferry related`: the links graph walked both ways from an id, bounded by
depth and fan-out, with the log lines carrying the ids reached; over the real app and a chDB store.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa
import pytest
from test_siem_api import NOW, S, log_rows, served_store

# A mail transaction as a link rule sees it: a message id, its queue id, the queue id's delivery,
# plus a second message on the same queue and a hub with more links than the fan-out asked for.
EDGES = [
    ("msg-1", "q-1", "queue"),
    ("q-1", "dlv-1", "delivery"),
    ("msg-2", "q-1", "queue"),
    ("dlv-1", "relay-1", "relay"),
    *[("hub", f"leaf-{i}", "fan") for i in range(5)],
    ("unrelated-a", "unrelated-b", "queue"),
]


def _links(edges: list[tuple[str, str, str]]) -> pa.Table:
    from ferry.schema.tables import LINKS, conform

    n = len(edges)
    ts = pa.array([NOW - 60 * S + i for i in range(n)], pa.timestamp("ns", tz="UTC"))
    return conform(pa.table({"Timestamp": ts, "IngestTime": ts, "FromId": [e[0] for e in edges],
                             "ToId": [e[1] for e in edges], "Kind": [e[2] for e in edges],
                             "Tenant": ["default"] * n}), LINKS)


LINES = [
    ("postfix/smtpd: msg-1 accepted", {"msgid": "msg-1"}),
    ("postfix/qmgr: q-1 from=<a@example.org>", {"queueid": "q-1"}),
    ("postfix/smtp: q-1 status=sent", {"queueid": "q-1", "delivery": "dlv-1"}),
    ("postfix/smtpd: unrelated-a accepted", {"msgid": "unrelated-a"}),
    ("mentions msg-1 only in its body", {}),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    writes = [
        ("links", "links-1", _links(EDGES), False),
        ("links", "links-1", _links(EDGES), True),  # redelivered: stored once
        ("otel_logs", "logs-1", log_rows([b for b, _ in LINES], service="postfix", attrs=[a for _, a in LINES]), False),
    ]
    for base, results in served_store(tmp_path_factory.mktemp("related"), writes):
        assert results == [(len(EDGES), 0), (0, 1), (len(LINES), 0)]
        yield base


def _related(base: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{base}/api/v1/related", params=params, timeout=30)


def test_walks_both_ways_to_the_depth_asked(api: str) -> None:
    r = _related(api, id="msg-1")
    assert r.status_code == 200
    data = r.json()
    assert data["id"] == "msg-1" and data["truncated"] is False
    got = {(x["id"], x["depth"], x["via"], x["from"]) for x in data["related"]}
    # q-1 forward; dlv-1 forward from it; msg-2 backward into q-1; relay-1 at depth 3.
    assert got == {("q-1", 1, "queue", "msg-1"), ("dlv-1", 2, "delivery", "q-1"), ("msg-2", 2, "queue", "q-1"),
                   ("relay-1", 3, "relay", "dlv-1")}
    assert {x["id"] for x in _related(api, id="msg-1", depth=1).json()["related"]} == {"q-1"}
    # From the far end, backwards.
    assert {x["id"] for x in _related(api, id="relay-1", depth=6).json()["related"]} == {"dlv-1", "q-1", "msg-1", "msg-2"}


def test_lines_carrying_any_related_id_oldest_first(api: str) -> None:
    """Lines whose LogAttributes hold one of the ids, whatever the key; a mention in the body is not one."""
    data = _related(api, id="msg-1").json()
    assert [x["body"] for x in data["logs"]] == [b for b, _ in LINES[:3]]
    cut = _related(api, id="msg-1", limit=2).json()
    assert len(cut["logs"]) == 2 and cut["truncated"] is True


def test_fanout_cuts_and_says_so(api: str) -> None:
    data = _related(api, id="hub", fanout=2).json()
    assert len(data["related"]) == 2 and data["truncated"] is True
    whole = _related(api, id="hub").json()
    assert {x["id"] for x in whole["related"]} == {f"leaf-{i}" for i in range(5)} and whole["truncated"] is False
    # From a leaf, the hub is one link; its other leaves are the second level.
    assert len(_related(api, id="leaf-0", depth=2).json()["related"]) == 5


def test_unknown_id_is_an_empty_answer(api: str) -> None:
    data = _related(api, id="nobody").json()
    assert data == {**data, "related": [], "logs": [], "truncated": False}


def test_bad_requests_are_400_and_counted(api: str) -> None:
    def bad() -> float:
        text = httpx.get(f"{api}/metrics", timeout=10).text
        want = 'ferry_api_requests_total{handler="related",outcome="bad_request"} '
        return next((float(x[len(want):]) for x in text.splitlines() if x.startswith(want)), 0.0)

    before = bad()
    cases = [{}, {"id": ""}, {"id": "x" * 513}, {"id": "a\nb"}, {"id": "msg-1", "depth": "7"},
             {"id": "msg-1", "depth": "0"}, {"id": "msg-1", "fanout": "1001"}, {"id": "msg-1", "since": "soon"}]
    for params in cases:
        r = _related(api, **params)
        assert r.status_code == 400, (params, r.text)
        assert "SELECT" not in r.text
    assert _related(api, id="x" * 513).json()["error"].startswith("id:")
    assert bad() == before + len(cases) + 1


def test_ferry_related_prints_a_tree_then_the_lines(api: str) -> None:
    r = subprocess.run([sys.executable, "-m", "ferry", "related", "msg-1", "--api", api], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "msg-1" and out[1] == "└─ q-1  (queue)"
    assert any(line.strip().endswith("relay-1  (relay)") for line in out)
    assert "postfix/qmgr: q-1 from=<a@example.org>" in r.stdout
    assert "-- 4 related ids, 3 lines" in r.stderr
    missing = subprocess.run([sys.executable, "-m", "ferry", "related", "nobody", "--api", api], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "nothing is related to nobody" in missing.stderr
