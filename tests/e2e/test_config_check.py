"""`ferry config check` on the pipeline: every graph problem named by key path and line, through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BAD = """\
receivers:
  syslog:
    tcp_port: 8686
pipeline:
  topics:
    extra: {signal: logs}
    unread: {signal: logs}
    orphan: {signal: metrics}
  stages:
    log_parser:
      outputs: [log_commit, siemapp_commit, siemos_commit, nowhere]
      routes:
        - {name: ssh, when: 'app:sshd', to: [elsewhere]}
    loop:
      kind: router
      inputs: [extra]
      outputs: [extra]
    orphan_reader:
      kind: router
      inputs: [orphan]
      outputs: [log_commit]
    raw_writer:
      kind: writer
      inputs: [syslog]
"""


def _check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "ferry.yaml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "ferry", "config", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_the_shipped_pipeline_is_valid(tmp_path: Path) -> None:
    r = _check(tmp_path, "pipeline:\n  stages:\n    log_parser:\n      transforms: [{type: json}, {type: redact}]\n")
    assert r.returncode == 0 and r.stdout.strip() == "configuration is valid", r.stderr


def test_every_graph_problem_is_named_with_its_line(tmp_path: Path) -> None:
    r = _check(tmp_path, BAD)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[0].endswith("invalid pipeline:")
    expected = [
        "pipeline.stages.log_parser.outputs[3] (line 11): unknown topic 'nowhere'",
        "pipeline.stages.log_parser.routes[0].to[0] (line 13): route 'ssh' sends to 'elsewhere', which is not one of "
        "this stage's outputs (log_commit, siemapp_commit, siemos_commit, nowhere)",
        "pipeline.topics.unread (line 7): topic 'unread' is declared but no stage reads it",
        "pipeline.topics.orphan (line 8): topic 'orphan' is read by orphan_reader but nothing writes it",
        "pipeline.stages.loop (line 14): cycle: extra (loop) -> extra: records would go round forever",
        "receivers.syslog.tcp_port (line 3): tcp port 8686 is also api.port",
        "pipeline.stages.raw_writer.inputs[0] (line 24): topic 'syslog' holds what the syslog receiver took off "
        "the wire, undecoded: a parser must read it, not a writer",
    ]
    for e in expected:
        assert f"  {e}" in lines, (e, r.stderr)


def test_unknown_kinds_types_and_settings_are_named(tmp_path: Path) -> None:
    r = _check(tmp_path, """\
pipeline:
  stages:
    log_parser:
      transforms:
        - {type: jsno}
        - {type: regex, pattern: 'no groups here'}
        - {type: filter, keep: 'level:('}
    odd:
      kind: sampler
      inputs: [log_commit]
""")
    assert r.returncode == 2
    err = r.stderr
    assert "pipeline.stages.log_parser.transforms[0] (line 5): Input tag 'jsno'" in err, err
    assert "pipeline.stages.log_parser.transforms[1].pattern (line 6)" in err and "named group" in err, err
    assert "pipeline.stages.log_parser.transforms[2] (line 7)" in err and "not a valid query" in err, err
    assert "pipeline.stages.odd (line 8): Input tag 'sampler'" in err and "'parser', 'router', 'spanmetrics', 'writer'" in err, err
