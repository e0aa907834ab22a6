"""README.md's five-minute tour, run as written against a real ferry: its code blocks are read from
README.md itself, so the README and this test cannot drift apart.

Each `sh` block runs in order (the SDK snippet with OTEL_EXPORTER_OTLP_ENDPOINT pointed at this
ferry, `logger` at its syslog port, every `ferry` command with --api); a plain block right after a
one-command `sh` block is that command's output, compared line by line once times, ids, durations,
ports and the host name are masked.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from ferry.testing import FerryProcess

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)
_COMMENT = re.compile(r"\s+#\s.*$")

# What differs between the README's run and this one, masked on both sides.
_MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?Z"), "<time>"),
    (re.compile(r'"time_ns":\d+'), '"time_ns":<ns>'),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<trace id>"),
    (re.compile(r"\b(\d+[dhms] )?\d+[dhms] ago\b"), "<age>"),
    (re.compile(r"\bin \d+(\.\d+)? ms\b"), "in <n> ms"),
    (re.compile(r"\b\d+(\.\d+)?(ms|µs|s)\b"), "<duration>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
]
# `ferry status` reports disk space, uptime and a pid: only its words are compared.
_NUMBERS = re.compile(r"\d[\d.,]*")


def _tour() -> str:
    text = README.read_text()
    start = text.index("## A five-minute tour")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(tour: str) -> list[tuple[str, str, str | None]]:
    """(language, text, the output block right after it or None) for each sh block."""
    found = list(_FENCE.finditer(tour))
    out = []
    for i, m in enumerate(found):
        if m.group(1) != "sh":
            continue
        nxt = found[i + 1] if i + 1 < len(found) else None
        shown = nxt.group(2) if nxt and nxt.group(1) == "" and tour[m.end() : nxt.start()].strip() == "" else None
        out.append((m.group(1), m.group(2), shown))
    return out


def _mask(text: str, hostnames: list[str], numbers: bool) -> list[str]:
    for name in hostnames:
        text = re.sub(rf"\b{re.escape(name)}\b", "myhost", text)
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    if numbers:
        text = _NUMBERS.sub("<n>", text)
        text = re.sub(r" +", " ", text)  # columns are as wide as their numbers
    return text.rstrip("\n").split("\n")


def _ferry(args: list[str], api: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    # Reads go to this ferry's API; `ferry config check` reads the config this ferry runs with.
    where = ["--config", str(config)] if args[0] == "config" and config else [] if args[0] == "config" else ["--api", api]
    return subprocess.run([sys.executable, "-m", "ferry", *args, *where], capture_output=True, text=True, timeout=60)


def _as_seen(r: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr as a terminal shows them: warnings first, results, then the footer."""
    err = r.stderr.splitlines()
    warnings = [x for x in err if x.startswith("ferry: ")]
    return "\n".join([*warnings, *r.stdout.splitlines(), *(x for x in err if x not in warnings)])


def _logger(line: str, port: int) -> None:
    args = shlex.split(line)
    args[args.index("-P") + 1] = str(port)
    subprocess.run(args, check=True, timeout=30)


def test_readme_tour_runs_as_written(ferry: FerryProcess) -> None:
    """Every command of the tour works as shown and prints what the README shows."""
    blocks = _blocks(_tour())
    hostnames = sorted({socket.gethostname(), socket.gethostname().split(".")[0]}, key=len, reverse=True)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": ferry.otlp_http}
    trace_id = ""
    loggers: list[str] = []
    commands: list[tuple[str, str | None]] = []
    for _, text, shown in blocks:
        lines = text.splitlines()
        runnable = [x for x in lines if re.match(r"(ferry|logger|curl|python) ", x)]
        assert shown is None or len(runnable) == 1, f"an output block must follow a one-command block:\n{text}"
        k = 0
        while k < len(lines):
            line = _COMMENT.sub("", lines[k]).strip()
            k += 1
            if line.startswith("python - <<'EOF'"):
                end = lines.index("EOF", k)
                code, k = "\n".join(lines[k:end]), end + 1
                r = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=60,
                                   env={**ferry.env, **env})
                assert r.returncode == 0, r.stderr
                trace_id = re.fullmatch(r"trace id: ([0-9a-f]{32})\n", r.stdout).group(1)  # type: ignore[union-attr]
            elif line.startswith("export OTEL_EXPORTER_OTLP_ENDPOINT="):
                assert line.split("=", 1)[1] == "http://127.0.0.1:4318"  # the default HTTP port, replaced here
            elif line.startswith("pip install "):
                for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
                    __import__(module)
            elif line.startswith("logger "):
                _logger(line, ferry.syslog_port)
                loggers.append(line)
            elif line.startswith(("ferry ", "curl ")):
                commands.append((line, shown))
    assert trace_id and len(loggers) == 2 and commands

    # Everything sent is stored before the reads begin.
    ferry.wait_for(lambda: (s := ferry.get("/api/v1/status")["stored"])["logs"] >= 3 and s["spans"] >= 2
                   and s["metric_points"] >= 1, timeout=60)
    ferry.wait_for(lambda: ferry.get(f"/api/v1/traces/{trace_id}")["logs"], timeout=30)
    # ...including the span metrics computed from the two spans (2 call series + 2 duration series).
    ferry.wait_for(lambda: any(r["service"] == "checkout" and int(r["metric_points"]) >= 5
                               for r in ferry.get("/api/v1/services?since=1h")["services"]), timeout=30)

    for line, shown in commands:
        if line.startswith("curl "):
            assert "/metrics" in line
            assert "ferry_received_records_total" in httpx.get(f"{ferry.api}/metrics", timeout=30).text
            continue
        args = [re.sub(r"\b[0-9a-f]{32}\b", trace_id, a) for a in shlex.split(line)[1:]]
        if args[0] == "tail":
            _check_tail(ferry, args, loggers[0])
            continue
        r = _ferry(args, ferry.api, ferry.config_path)
        assert r.returncode == 0, (line, r.stderr)
        if shown is not None:
            # status and pipeline report sizes, rates and uptimes: only their words are compared.
            numbers = args[0] in ("status", "pipeline")
            assert _mask(_as_seen(r), hostnames, numbers) == _mask(shown, hostnames, numbers), line

    # The banner's hint finds something too.
    hint = re.search(r"Try: (ferry query '[^']*' --since \w+)", ferry.output())
    assert hint is not None
    r = _ferry(shlex.split(hint.group(1))[1:], ferry.api)
    assert r.returncode == 0 and "ERR" in r.stdout and "charge failed for order 77" in r.stdout


def _check_tail(ferry: FerryProcess, args: list[str], logger_line: str) -> None:
    """`ferry tail QUERY` prints a matching line sent while it runs."""
    proc = subprocess.Popen([sys.executable, "-m", "ferry", *args, "--api", ferry.api, "--interval", "0.3",
                             "--duration", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sender = threading.Timer(2.0, _logger, (logger_line.replace("order 77", "order 78"), ferry.syslog_port))
    sender.start()
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        sender.cancel()
    assert proc.returncode == 0, err
    assert re.search(r"ERR +billing: charge failed for order 78", out), out
