"""The `ferry` command as a user meets it: the start banner, clear start-up errors, query/tail/trace.

Every read command talks to a running ferry through its HTTP API only.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from ferry.testing import FerryProcess


def ferry_cli(*args: str, api: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    extra = ["--api", api] if api else []
    return subprocess.run([sys.executable, "-m", "ferry", *args, *extra], capture_output=True, text=True, timeout=timeout)


def _send_syslog(ferry: FerryProcess, lines: list[str]) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", ferry.syslog_port)) as s:
        s.sendall("".join(line + "\n" for line in lines).encode())


def test_banner_says_where_ferry_listens_and_keeps_data(ferry: FerryProcess) -> None:
    """`ferry run` prints every listening address, the data directory and its retention in plain words."""
    out = ferry.output()
    cfg = ferry.config
    assert f"OTLP gRPC      127.0.0.1:{cfg['receivers']['otlp']['grpc']['port']}" in out
    assert f"OTLP HTTP      http://127.0.0.1:{cfg['receivers']['otlp']['http']['port']}" in out
    assert f"udp://127.0.0.1:{ferry.syslog_port}" in out and f"tcp://127.0.0.1:{ferry.syslog_port}" in out
    assert f"http://127.0.0.1:{cfg['api']['port']}" in out
    assert f"Data is kept in {ferry.data_dir.resolve()}" in out
    keep = cfg.get("store", {}).get("retention", {})
    assert (f"Retention: logs {keep.get('logs_days', 7)} d, traces {keep.get('traces_days', 7)} d, "
            f"metrics {keep.get('metrics_days', 30)} d") in out


def test_second_ferry_on_same_data_dir_is_refused_with_pid(ferry: FerryProcess) -> None:
    """Starting a second ferry on a data dir in use fails at once, naming the pid that holds it."""
    r = ferry_cli("run", "--config", str(ferry.config_path), timeout=30)
    assert r.returncode == 2
    assert f"already in use by pid {ferry.proc.pid}" in r.stderr  # type: ignore[union-attr]


def test_bad_config_names_key_and_line(tmp_path: Path) -> None:
    """A wrong config is refused before anything starts, naming every bad key with its line."""
    bad = tmp_path / "ferry.yaml"
    bad.write_text("data_dir: /tmp/x\nreceivers:\n  syslog:\n    udp_prot: 5514\n    tcp_port: lots\n")
    for args in (["run", "--config", str(bad)], ["config", "check", "--config", str(bad)]):
        r = ferry_cli(*args)
        assert r.returncode == 2, r.stderr
        assert "receivers.syslog.udp_prot (line 4): unknown key" in r.stderr
        assert "receivers.syslog.tcp_port (line 5)" in r.stderr
    # A setting for something not built yet is refused, not ignored: rows would quietly go elsewhere.
    server = tmp_path / "server.yaml"
    server.write_text("store:\n  url: http://clickhouse:8123\n")
    r = ferry_cli("config", "check", "--config", str(server))
    assert r.returncode == 2 and "store.url (line 2)" in r.stderr and "not supported yet" in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text("api:\n  port: 9999\n")
    r = ferry_cli("config", "check", "--config", str(good))
    assert r.returncode == 0 and "valid" in r.stdout


def test_query_prints_matches_newest_first_and_json(ferry: FerryProcess) -> None:
    """`ferry query` finds word-delimited tokens and key:value filters, newest first; --json is machine-readable."""
    tok = uuid.uuid4().hex[:8]
    ts = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60 + i)) for i in range(4)]
    _send_syslog(ferry, [
        f"<11>1 {ts[0]} web1 checkout 1 - - com.acme.PaymentService.charge failed {tok}",
        f"<14>1 {ts[1]} web1 checkout 1 - - PaymentService ok {tok}",
        f"<11>1 {ts[2]} web2 search 1 - - PaymentService failed {tok}",
        f"<11>1 {ts[3]} web1 checkout 1 - - Wi-Fi adapter SD500 PowerShot {tok}",
    ])
    ferry.wait_for(lambda: len(ferry.search(tok, since="30d")) == 4)
    r = ferry_cli("query", f"PaymentService level:error service:checkout {tok}", "--since", "30d", api=ferry.api)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "com.acme.PaymentService.charge failed" in lines[0] and " ERR " in lines[0]
    r = ferry_cli("query", tok, "--since", "30d", "--json", api=ferry.api)
    rows = [orjson.loads(x) for x in r.stdout.splitlines()]
    assert [x["time_ns"] for x in rows] == sorted((x["time_ns"] for x in rows), reverse=True)
    for word in ("Fi", "Power", "500", "wi-fi"):
        r = ferry_cli("query", f"{word} {tok}", "--since", "30d", "--json", api=ferry.api)
        assert len(r.stdout.splitlines()) == 1, (word, r.stdout)
    r = ferry_cli("query", f'"PaymentService failed" {tok}', "--since", "30d", "--json", api=ferry.api)
    assert len(r.stdout.splitlines()) == 1


def test_query_reports_syntax_errors_plainly(ferry: FerryProcess) -> None:
    """A malformed query is an error message and exit 1, not a traceback."""
    r = ferry_cli("query", '"unclosed', api=ferry.api)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "HTTP 400" in r.stderr


def test_tail_follows_new_lines(ferry: FerryProcess) -> None:
    """`ferry tail QUERY` prints lines that arrive while it runs, and only matching ones."""
    tok = uuid.uuid4().hex[:8]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferry", "tail", tok, "--api", ferry.api, "--interval", "0.3", "--duration", "12"],
        stdout=subprocess.PIPE, text=True,
    )
    time.sleep(3)

    def send() -> None:
        for i in range(3):
            _send_syslog(ferry, [f"<14>1 - web1 app 1 - - tail line {i} {tok}", f"<14>1 - web1 app 1 - - other line {i}"])
            time.sleep(0.5)

    threading.Thread(target=send).start()
    out, _ = proc.communicate(timeout=40)
    got = [line for line in out.splitlines() if tok in line]
    assert len(got) == 3, out
    assert [f"tail line {i}" in got[i] for i in range(3)] == [True] * 3
    assert "other line" not in out


def test_trace_prints_span_tree_with_logs(ferry: FerryProcess) -> None:
    """`ferry trace ID` prints the span tree with durations, status, service and the trace's logs at their spans."""
    from opentelemetry import trace as otel_trace
    from opentelemetry._logs import LogRecord as ApiLogRecord
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    res = Resource.create({"service.name": "frontend"})
    tp = TracerProvider(resource=res)
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{ferry.otlp_http}/v1/traces")))
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{ferry.otlp_http}/v1/logs")))
    tracer = tp.get_tracer("t")
    emitter = lp.get_logger("t")
    with tracer.start_as_current_span("GET /cart") as root:
        with tracer.start_as_current_span("db.query") as child:
            time.sleep(0.02)
            emitter.emit(ApiLogRecord(body="slow query on carts", severity_number=SeverityNumber.WARN, severity_text="WARN"))
            child.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, "timeout"))
    tid = format(root.get_span_context().trace_id, "032x")
    tp.shutdown()
    lp.shutdown()
    ferry.wait_for(lambda: (t := ferry.get(f"/api/v1/traces/{tid}"))["found"] and len(t["spans"]) == 2 and t["logs"])
    r = ferry_cli("trace", tid, api=ferry.api)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"trace {tid}: 2 spans, 1 log lines")
    root_line = next(i for i, x in enumerate(lines) if "GET /cart" in x)
    child_line = next(i for i, x in enumerate(lines) if "db.query" in x)
    log_line = next(i for i, x in enumerate(lines) if "slow query on carts" in x)
    assert root_line < child_line < log_line
    assert "[frontend]" in lines[child_line] and "ERROR (timeout)" in lines[child_line] and "ms" in lines[child_line]
    assert lines[child_line].index("db.query") > lines[root_line].index("GET /cart"), "child is indented under root"
    assert ferry_cli("trace", "0" * 32, api=ferry.api).returncode == 1
    assert httpx.get(f"{ferry.api}/api/v1/traces/nothex").status_code == 400


def test_ctrl_c_drains_what_was_received(tmp_path: Path) -> None:
    """Lines taken just before Ctrl-C are not lost: ferry exits 0, and after a restart they are searchable."""
    import socket

    f = FerryProcess(tmp_path / "data", config={"receivers": {"syslog": {"batch_wait_s": 5.0}}}).start()
    tok = uuid.uuid4().hex[:8]
    with socket.create_connection(("127.0.0.1", f.syslog_port)) as s:
        s.sendall("".join(f"<14>1 - web1 app 1 - - drain {i} {tok}\n" for i in range(500)).encode())
    time.sleep(0.5)  # read by ferry, still in the 5-second batch window
    assert f.stop() == 0
    assert "ferry: stopped" in f.output()
    f.start()
    try:
        rows = f.wait_for(lambda: (r := f.search(tok, limit=1000)) and len(r) == 500 and r)
        assert sorted(int(r["body"].split()[1]) for r in rows) == list(range(500))
    finally:
        assert f.stop() == 0


def _metric(name: str, service: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeMetrics": [{"metrics": [{"name": name, **data}]}],
    }]}


def test_metrics_command_prints_series(ferry: FerryProcess) -> None:
    """`ferry metrics NAME --label k=v` prints a table per series; --json gives them to machines."""
    name = f"queue.depth.{uuid.uuid4().hex[:6]}"
    now = time.time_ns()
    body = _metric(name, "worker", {"unit": "{items}", "gauge": {"dataPoints": [
        {"timeUnixNano": str(now - 30_000_000_000), "asDouble": 4.0, "attributes": [{"key": "q", "value": {"stringValue": "a"}}]},
        {"timeUnixNano": str(now), "asDouble": 6.0, "attributes": [{"key": "q", "value": {"stringValue": "a"}}]},
        {"timeUnixNano": str(now), "asDouble": 100.0, "attributes": [{"key": "q", "value": {"stringValue": "b"}}]},
    ]}})
    assert httpx.post(f"{ferry.otlp_http}/v1/metrics", json=body).status_code == 200
    ferry.wait_for(lambda: ferry.get("/api/v1/metrics/series", name=name, since="1h")["series"])
    r = ferry_cli("metrics", name, "--label", "q=a", "--step", "3600", "--json", api=ferry.api)
    data = orjson.loads(r.stdout)
    assert [s["labels"] for s in data["series"]] == [{"q": "a"}]
    assert data["series"][0]["service"] == "worker" and data["series"][0]["points"][0][1] == 5.0
    assert data["series"][0]["unit"] == "{items}"
    r = ferry_cli("metrics", name, "--label", "service=worker", "--step", "3600", api=ferry.api)
    lines = r.stdout.splitlines()
    b = lines.index(f"{name}  (gauge, {{items}})  service=worker  q=b")
    assert r.returncode == 0 and lines[b + 1].split() == ["time", "(UTC)", "value"] and lines[b + 2].split()[-1] == "100"


def test_histogram_table_has_count_mean_and_percentiles(ferry: FerryProcess) -> None:
    """A histogram reads as count, mean and p50/p90/p99 from its buckets, per step and for the whole
    range; a cumulative series counts only what is new in each step."""
    name = f"latency.{uuid.uuid4().hex[:6]}"
    t0 = (time.time_ns() // 60_000_000_000 - 3) * 60_000_000_000  # three whole minutes ago
    points = [  # cumulative since t0: 10 in (0,10], then 10 more in (10,100]
        {"startTimeUnixNano": str(t0), "timeUnixNano": str(t0 + 30_000_000_000), "count": "10", "sum": 50.0,
         "bucketCounts": ["10", "0", "0"], "explicitBounds": [10.0, 100.0], "min": 2.0, "max": 8.0},
        {"startTimeUnixNano": str(t0), "timeUnixNano": str(t0 + 90_000_000_000), "count": "20", "sum": 550.0,
         "bucketCounts": ["10", "10", "0"], "explicitBounds": [10.0, 100.0], "min": 2.0, "max": 80.0},
    ]
    body = _metric(name, "api", {"unit": "ms", "histogram": {"aggregationTemporality": 2, "dataPoints": points}})
    assert httpx.post(f"{ferry.otlp_http}/v1/metrics", json=body).status_code == 200
    ferry.wait_for(lambda: ferry.get("/api/v1/metrics/series", name=name, since="1h")["series"])
    r = ferry_cli("metrics", name, "--since", "10m", api=ferry.api)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{name}  (histogram, ms)  service=api"
    assert lines[1].split() == ["time", "(UTC)", "count", "mean", "p50", "p90", "p99"]
    assert lines[2].split()[2:] == ["10", "5", "5", "7.4", "7.94"]  # (2, 8]: min and max close the bucket
    assert lines[3].split()[2:] == ["10", "50", "45", "73", "79.3"]  # (10, 80]
    assert lines[4].split()[:2] == ["whole", "range"] and lines[4].split()[2:4] == ["20", "27.5"]
    # A name with no data says so and exits 1, naming the likely one.
    r = ferry_cli("metrics", name + "x", api=ferry.api)
    assert r.returncode == 1 and f"no data for metric {name}x in the last 1h; did you mean {name}?" in r.stderr
    listing = ferry_cli("metrics", api=ferry.api).stdout.splitlines()
    assert any(x.split() == [name, "histogram", "ms", "1", "api"] for x in listing), listing


def test_status_says_ferry_is_taking_data(ferry: FerryProcess) -> None:
    """`ferry status` answers "is ferry taking data?" first, then disk, rows, lag, spool; exit 0 when healthy."""
    _send_syslog(ferry, [f"<14>1 - h app - - - status-check {uuid.uuid4().hex[:8]}"])
    ferry.wait_for(lambda: ferry.sql_count("logs") >= 1)
    r = ferry_cli("status", api=ferry.api)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"ferry at {ferry.api}, up ")
    assert lines[1] == "receivers  taking data"
    assert "free on the data disk; receivers refuse under 512.0 MiB" in lines[2]
    assert lines[3].startswith("stored     logs ") and " 0" not in lines[3].split("spans")[0]
    data = orjson.loads(ferry_cli("status", "--json", api=ferry.api).stdout)
    assert data["refusing"] == [] and data["stored"]["logs"] >= 1 and data["disk"]["free_bytes"] > 0
    assert set(data["lag_batches"]) >= {"log_parser/syslog", "siem_writer/siemos_commit", "writer/log_commit"}


def test_taken_port_is_named_with_its_setting(tmp_path: Path) -> None:
    """A port another program holds stops `ferry run` at once with the setting to change, exit 2,
    instead of sharing the port (receivers bind with SO_REUSEPORT) or a traceback from a child."""
    import socket

    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as another ferry's receiver would
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        f = FerryProcess(tmp_path / "data", config={"receivers": {"otlp": {"http": {"port": port}}}})
        t0 = time.monotonic()
        try:
            f.start(timeout=60)
            f.stop()
            raise AssertionError("ferry started on a port another program holds")
        except RuntimeError as e:
            msg = str(e)
        assert time.monotonic() - t0 < 20
        assert "ferry exited with 2" in msg
        assert f"receivers.otlp.http.port: tcp port {port} on 127.0.0.1 is already in use by another program" in msg
        assert "Traceback" not in msg
        assert not (tmp_path / "data" / "bus" / "js").exists(), "nothing was started"
    finally:
        holder.close()


def test_api_root_names_the_api_and_its_routes(ferry: FerryProcess) -> None:
    """`GET /api` in a browser is a small page linking the routes; a JSON client gets the same as
    JSON, at `/api` and at `/` (where a browser gets the web UI)."""
    r = httpx.get(ferry.api + "/api")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "ferry API" in r.text and '<a href="/api/v1/status">' in r.text and "docs/api.md" in r.text
    for path in ("/api", "/"):
        j = httpx.get(ferry.api + path, headers={"Accept": "application/json"}).json()
        paths = [x["path"] for x in j["routes"]]
        assert j["name"] == "ferry API" and "/api/v1/services" in paths and "/api/v1/fields?service=" in paths
    page = httpx.get(ferry.api + "/")
    assert page.status_code == 200 and "<title>Logs · ferry</title>" in page.text


def test_levels_shown_as_sent_and_json_without_cursor_fields(ferry: FerryProcess) -> None:
    """Syslog severities print whole (CRIT, WARNING, NOTICE), `level:error` finds CRIT, and --json
    rows carry no paging fields unless --cursor asks for them."""
    tok = uuid.uuid4().hex[:8]
    # PRI = facility * 8 + severity: user.crit, user.warning, user.notice
    _send_syslog(ferry, [f"<10>1 - web1 disk 1 - - disk failing {tok}", f"<12>1 - web1 disk 1 - - disk warm {tok}",
                         f"<13>1 - web1 disk 1 - - disk fine {tok}"])
    ferry.wait_for(lambda: len(ferry.search(tok)) == 3)
    r = ferry_cli("query", tok, api=ferry.api)
    assert sorted(line.split()[2] for line in r.stdout.splitlines()) == ["CRIT", "NOTICE", "WARNING"]
    assert r.stderr.strip().startswith("-- 3 lines in ")
    r = ferry_cli("query", f"level:error {tok}", api=ferry.api)
    assert len(r.stdout.splitlines()) == 1 and "CRIT  disk: disk failing" in r.stdout
    row = orjson.loads(ferry_cli("query", f"level:crit {tok}", "--json", api=ferry.api).stdout)
    assert row["level"] == "CRIT" and not {"_cursor_ts", "_cursor_key", "ingest_ns"} & set(row)
    row = orjson.loads(ferry_cli("query", f"level:crit {tok}", "--json", "--cursor", api=ferry.api).stdout)
    assert {"_cursor_ts", "_cursor_key", "ingest_ns"} <= set(row)


def test_discovery_commands_and_warnings(ferry: FerryProcess) -> None:
    """services, fields and count tell what is there to search; a key no line has is a warning on
    stderr (and in the API answer), not a silent nothing; a bad --by is refused and counted."""
    tok = uuid.uuid4().hex[:8]
    app = f"app{tok}"
    _send_syslog(ferry, [f"<{19 * 8 + 3}>1 - web1 {app} 1 - - charge failed {tok}",
                         f"<{19 * 8 + 6}>1 - web2 {app} 1 - - charge ok {tok}"])
    ferry.wait_for(lambda: len(ferry.search(tok)) == 2)
    services = ferry_cli("services", api=ferry.api).stdout.splitlines()
    assert services[0].split() == ["service", "logs", "spans", "metric", "points", "last", "seen"]
    assert any(x.split()[:4] == [app, "2", "0", "0"] and x.endswith(" ago") for x in services), services
    fields = ferry_cli("fields", "--service", app, api=ferry.api)
    assert fields.returncode == 0 and "-- from 2 lines of service " in fields.stderr
    by_name = {x.split()[0]: x for x in fields.stdout.splitlines()[1:]}
    assert "local3 (2)" in by_name["syslog.facility"] and "(facility)" in by_name["syslog.facility"]
    assert "web1 (1), web2 (1)" in by_name["host"]
    r = ferry_cli("count", f"app:{app} facility:local3", "--by", "host", api=ferry.api)
    assert r.stdout.splitlines() == ["host  count", "web1      1", "web2      1"], r.stdout
    assert ferry_cli("count", f"app:{app} level:error", api=ferry.api).stdout.strip() == "1"
    r = ferry_cli("query", f"svc:{app}", api=ferry.api)
    assert r.returncode == 0 and r.stdout == ""
    assert "ferry: warning: no field named 'svc'; did you mean 'service'?" in r.stderr
    answer = ferry.get("/api/v1/logs/count", q=f"service:{app[:-1]}")
    assert answer["count"] == 0 and answer["warnings"] == [
        f"no line has service {app[:-1]!r} in this time range; did you mean {app!r}?"]
    before = ferry.metric("ferry_api_requests_total", handler="count", outcome="bad_request")
    r = ferry_cli("count", "", "--by", "body", api=ferry.api)
    assert r.returncode == 1 and "cannot group by 'body'" in r.stderr and "HTTP 400" in r.stderr
    assert ferry.metric("ferry_api_requests_total", handler="count", outcome="bad_request") == before + 1
    assert ferry.metric("ferry_api_requests_total", handler="services", outcome="ok") >= 1
