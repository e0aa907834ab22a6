"""docs/grafana.md's provisioning file and agent URLs, checked against a running ferry: every data
source answers the request Grafana's "Save & test" makes, and every agent URL takes a push.

The YAML is read from the doc itself, so the doc and this test cannot drift apart.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from ferry.testing import FerryProcess

DOC = Path(__file__).resolve().parents[2] / "docs" / "grafana.md"
_YAML = re.compile(r"^```yaml\n(.*?)^```\n", re.M | re.S)


def _blocks() -> list[dict]:
    return [yaml.safe_load(b) for b in _YAML.findall(DOC.read_text())]


def _datasources() -> list[dict]:
    return next(b["datasources"] for b in _blocks() if isinstance(b, dict) and "datasources" in b)


@pytest.fixture(scope="module")
def ferry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryProcess]:
    f = FerryProcess(tmp_path_factory.mktemp("grafana") / "data").start()
    try:
        yield f
    finally:
        f.stop()


def _on(ferry_base: str, url: str) -> str:
    """The doc's URL (host `ferry`, default port) pointed at the test's ferry (its API base)."""
    return ferry_base + urlsplit(url).path.rstrip("/")


def test_the_provisioning_file_adds_the_four_kinds_linked_by_uid() -> None:
    sources = _datasources()
    assert sorted(s["type"] for s in sources) == ["jaeger", "loki", "prometheus", "tempo"]
    uids = {s["uid"] for s in sources}
    linked = [
        *(d["datasourceUid"] for s in sources for d in s["jsonData"].get("exemplarTraceIdDestinations", [])),
        *(d["datasourceUid"] for s in sources for d in s["jsonData"].get("derivedFields", [])),
        *(s["jsonData"][k]["datasourceUid"] for s in sources for k in ("tracesToLogsV2", "tracesToMetrics")
          if k in s["jsonData"]),
    ]
    assert linked and set(linked) <= uids
    for s in sources:
        assert urlsplit(s["url"]).port == 8686  # the API's default port: reads are the API's


def test_every_data_source_answers_grafanas_health_check(ferry: FerryProcess) -> None:
    now = int(time.time())
    checks = {
        # What Grafana's data sources request on "Save & test" (and first thing when opened).
        "prometheus": [("GET", "/api/v1/query", {"query": "1+1", "time": str(now)}),
                       ("GET", "/api/v1/status/buildinfo", {})],
        "loki": [("GET", "/loki/api/v1/labels", {"start": str((now - 3600) * 10**9), "end": str(now * 10**9)}),
                 ("GET", "/loki/api/v1/query", {"query": "vector(1)+vector(1)", "time": str(now * 10**9)})],
        "tempo": [("GET", "/api/echo", {}), ("GET", "/api/search/tags", {})],
        "jaeger": [("GET", "/api/services", {})],
    }
    with httpx.Client(timeout=15) as http:
        for source in _datasources():
            base = _on(ferry.api, source["url"])
            for method, path, params in checks[source["type"]]:
                r = http.request(method, base + path, params=params, headers={"X-Scope-OrgID": "default"})
                assert r.status_code == 200, (source["type"], path, r.status_code, r.text[:300])
                if source["type"] == "prometheus":
                    assert r.json()["status"] == "success"
                    if path.endswith("query"):
                        assert r.json()["data"] == {"resultType": "scalar", "result": [now, "2"]}


def test_the_agent_urls_take_a_push(ferry: FerryProcess) -> None:
    """The Loki push URL of the doc takes a JSON push whose line is then found; the remote_write URL
    answers a request that is not snappy with 400 naming the problem (a well-formed push is tested
    with a real Prometheus in test_remote_write.py)."""
    text = DOC.read_text()
    loki = re.search(r"http://ferry:(\d+)(/loki/api/v1/push)", text)
    prom = re.search(r"http://ferry:(\d+)(/api/v1/write)", text)
    assert loki and prom
    assert int(loki.group(1)) == 3100 and int(prom.group(1)) == 9201  # the receivers' default ports
    line = f"grafana doc check {time.time_ns()}"
    with httpx.Client(timeout=15) as http:
        r = http.post(ferry.loki_push_url, json={"streams": [{"stream": {"service_name": "docs"},
                                                             "values": [[str(time.time_ns()), line]]}]})
        assert r.status_code == 204, r.text
        r = http.post(ferry.remote_write_url, content=b"not snappy", headers={"Content-Encoding": "snappy"})
        assert r.status_code == 400 and "snappy" in r.text.lower(), r.text
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = http.get(ferry.api + "/api/v1/logs", params={"q": f'"{line}"', "since": "10m"}).json()
            if found.get("logs"):
                break
            time.sleep(0.3)
        assert found.get("logs"), found
