"""`ferry reload` (SIGHUP) applies a changed pipeline while a sender keeps writing: every line is stored
exactly once, lines after the reload carry the new transform, and an invalid config is refused with its
errors while the old one keeps running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import yaml

from ferry.testing import FerryProcess


def _reload(f: FerryProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferry", "reload", "--config", str(f.config_path)],
                          capture_output=True, text=True, timeout=200)


def test_reload_applies_a_new_transform_without_losing_or_repeating_a_line(tmp_path: Path) -> None:
    tok = uuid.uuid4().hex[:10]
    sent: list[int] = []
    stop = threading.Event()

    def sender(port: int) -> None:
        # One line every 10 ms over TCP, reconnecting if the receiver restarts mid-way (as rsyslog does):
        # a line counts as sent only once sendall returned on a live connection.
        i = 0
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    while not stop.is_set():
                        s.sendall(f"<14>{time.strftime('%b %e %H:%M:%S')} h app: {tok} seq={i}\n".encode())
                        sent.append(i)
                        i += 1
                        time.sleep(0.01)
            except OSError:
                time.sleep(0.2)

    with FerryProcess(tmp_path / "d") as f:
        t = threading.Thread(target=sender, args=(f.syslog_port,), daemon=True)
        t.start()
        f.wait_for(lambda: len(f.search(tok)) > 50, timeout=30)

        cfg = yaml.safe_load(f.config_path.read_text())
        good = yaml.safe_load(f.config_path.read_text())
        good["pipeline"]["stages"]["log_parser"] = {"transforms": [{"type": "set", "field": "reloaded", "value": "yes"}]}
        f.config_path.write_text(yaml.safe_dump(good))
        r = _reload(f)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "applied" in r.stdout and "parser" in r.stdout and "ingest" not in r.stdout, r.stdout
        f.wait_for(lambda: any(x["attributes"].get("reloaded") == "yes" for x in f.search(tok)), timeout=30)

        # An invalid config is refused with the key and line, and ferry goes on with the one it has.
        bad = dict(good)
        bad["pipeline"] = {"stages": {"log_parser": {"transforms": [{"type": "jsno"}]}}}
        f.config_path.write_text(yaml.safe_dump(bad))
        r = _reload(f)  # checked before it is sent
        assert r.returncode == 2 and "pipeline.stages.log_parser.transforms[0] (line" in r.stderr, r.stdout + r.stderr
        # kill -HUP does not check first: the running ferry refuses it and says why.
        result = f.data_dir / "run" / "reload.result"
        before = result.stat().st_mtime_ns
        os.kill(int((f.data_dir / "ferry.lock").read_text()), signal.SIGHUP)
        f.wait_for(lambda: result.stat().st_mtime_ns != before, timeout=30)
        text = result.read_text()
        assert text.startswith("refused") and "pipeline.stages.log_parser.transforms[0] (line" in text, text
        assert "reload refused" in f.output()
        f.config_path.write_text(yaml.safe_dump(cfg))

        time.sleep(1.0)
        stop.set()
        t.join(timeout=10)
        total = len(sent)

        def stored() -> list[int]:
            return [int(x["body"].rsplit("seq=", 1)[1]) for x in f.search(tok, limit=10_000)]

        f.wait_for(lambda: len(stored()) >= total, timeout=60)
        seqs = stored()
        assert sorted(seqs) == list(range(total)), "every line sent is stored exactly once"
        late = [x for x in f.search(tok, limit=10_000) if int(x["body"].rsplit("seq=", 1)[1]) > total - 20]
        assert all(x["attributes"].get("reloaded") == "yes" for x in late)
