"""filter and sample over real batches: the records a user would find stored, and the counts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from pydantic import TypeAdapter, ValidationError

from ferry.schema.samples import raw_lines
from ferry.stages.parser.syslog import parse_syslog
from ferry.testing.datasets import loghub
from ferry.transforms.chain import Chain, CompileContext
from ferry.transforms.config import Transform
from ferry.transforms.frame import Frame


def syslog(n: int = 2000) -> pa.Table:
    """Real lines: loghub Linux and OpenSSH, under facility auth (4) or daemon (3)."""
    lines = loghub("Linux/Linux_2k.log").read_text().splitlines()[: n // 2]
    lines += loghub("OpenSSH/OpenSSH_2k.log").read_text().splitlines()[: n // 2]
    return parse_syslog(raw_lines([f"<{(4 if i % 3 else 3) * 8 + 6}>{line}" for i, line in enumerate(lines)]))


def run(models: list[dict[str, Any]], table: pa.Table) -> tuple[list[dict[str, Any]], Frame]:
    chain = Chain.compile(TypeAdapter(list[Transform]).validate_python(models), CompileContext("t", ("log_commit",)))
    frame = chain.run(table)
    return frame.to_table().to_pylist(), frame


def counts(frame: Frame) -> dict[str, int]:
    return {outcome: n for (_, outcome), n in frame.counts.items()}


def test_filter_keep_and_drop() -> None:
    """keep leaves only matching records, drop removes them; the rest is counted as filtered."""
    table = syslog()
    rows, frame = run([{"type": "filter", "keep": "app:sshd Failed password"}], table)
    assert rows and all(r["ServiceName"] == "sshd" and "Failed password" in r["Body"] for r in rows)
    assert counts(frame) == {"filtered": table.num_rows - len(rows)}
    kept = len(rows)
    rows, frame = run([{"type": "filter", "drop": "app:sshd Failed password"}], table)
    assert len(rows) == table.num_rows - kept
    assert not any(r["ServiceName"] == "sshd" and "Failed password" in r["Body"] for r in rows)
    assert counts(frame) == {"filtered": kept}


def test_filter_nothing_matches_and_everything_matches() -> None:
    table = syslog(200)
    rows, frame = run([{"type": "filter", "keep": "app:nosuchapp"}], table)
    assert rows == [] and counts(frame) == {"filtered": 200}
    rows, frame = run([{"type": "filter", "drop": "app:nosuchapp"}, {"type": "filter", "keep": "*"}], table)
    assert len(rows) == 200 and counts(frame) == {}


def test_sample_rate_and_when() -> None:
    """rate keeps about that share of the matching records; records `when` does not match all stay."""
    table = syslog()
    rows, frame = run([{"type": "sample", "rate": 0.25, "when": "app:sshd"}], table)
    sshd = sum(1 for r in table.column("ServiceName").to_pylist() if r == "sshd")
    kept_sshd = sum(1 for r in rows if r["ServiceName"] == "sshd")
    assert len(rows) - kept_sshd == table.num_rows - sshd  # every other record kept
    assert 0.15 * sshd < kept_sshd < 0.35 * sshd
    assert counts(frame) == {"sampled": sshd - kept_sshd}
    rows, frame = run([{"type": "sample", "rate": 1}], table)
    assert len(rows) == table.num_rows and counts(frame) == {}


def _traced(n: int) -> pa.Table:
    table = syslog(n)
    frame = Frame.from_table(table)
    # 50 traces, each spread over the batch; every fifth record has no trace at all.
    frame.set({"trace_id": pl.when(pl.int_range(pl.len()) % 5 != 0)
               .then(pl.format("{}a3ce929d0e0e4736", (pl.int_range(pl.len()) % 50 + 10**15).cast(pl.String)))
               .otherwise(pl.lit(""))})
    return frame.to_table()


def test_sample_by_key_keeps_whole_traces_the_same_in_every_process(tmp_path: Path) -> None:
    """With `key`, all records of a trace share one decision, the same in another process, and
    records without the key are sampled at random at the same rate."""
    table = _traced(2000)
    rows, frame = run([{"type": "sample", "rate": 0.3, "key": "trace_id"}], table)
    traces = {t for t in table.column("TraceId").to_pylist() if t}
    kept = {r["TraceId"] for r in rows if r["TraceId"]}
    for t in kept:  # whole traces: every record of a kept trace is there
        assert sum(r["TraceId"] == t for r in rows) == table.column("TraceId").to_pylist().count(t)
    assert 0 < len(kept) < len(traces)
    untraced = sum(1 for r in rows if not r["TraceId"])
    assert 0.15 * 400 < untraced < 0.45 * 400
    assert counts(frame) == {"sampled": table.num_rows - len(rows)}
    # Another interpreter (another process, another start) keeps the same traces.
    path = tmp_path / "batch.arrow"
    with pa.ipc.new_file(str(path), table.schema) as w:
        w.write_table(table)
    code = (
        "import sys, pyarrow as pa\n"
        "from pydantic import TypeAdapter\n"
        "from ferry.transforms.chain import Chain, CompileContext\n"
        "from ferry.transforms.config import Transform\n"
        "models = TypeAdapter(list[Transform]).validate_python([{'type': 'sample', 'rate': 0.3, 'key': 'trace_id'}])\n"
        "t = pa.ipc.open_file(sys.argv[1]).read_all()\n"
        "out = Chain.compile(models, CompileContext('t', ('x',))).run(t).to_table()\n"
        "print(' '.join(sorted({i for i in out.column('TraceId').to_pylist() if i})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert set(out.stdout.split()) == kept
    # And the hash is the specified one (Iceberg's murmur3 test vector), not one seeded per process.
    assert pl.DataFrame({"k": ["iceberg"]}).select(pl.col("k")._mm3_hash()).item() == 1210000089


def test_bad_config_names_the_key() -> None:
    adapter = TypeAdapter(list[Transform])
    with pytest.raises(ValidationError, match="exactly one of `keep` and `drop`"):
        adapter.validate_python([{"type": "filter", "keep": "a", "drop": "b"}])
    with pytest.raises(ValidationError, match="not a valid query: query syntax error at position"):
        adapter.validate_python([{"type": "filter", "keep": "(a OR"}])
    with pytest.raises(ValidationError, match="rate"):
        adapter.validate_python([{"type": "sample", "rate": 0}])
    with pytest.raises(ValidationError, match="when"):
        adapter.validate_python([{"type": "sample", "rate": 0.5, "when": "level:>=nonsense"}])


def test_speed() -> None:
    """Figures for the comments in select.py: 64 k rows."""
    table = _traced(4000)
    big = pa.concat_tables([table] * 17).slice(0, 65536)
    for model in ({"type": "sample", "rate": 0.3, "key": "trace_id"}, {"type": "sample", "rate": 0.3},
                  {"type": "filter", "drop": "level:debug"}):
        chain = Chain.compile(TypeAdapter(list[Transform]).validate_python([model]), CompileContext("t", ("x",)))
        best = float("inf")
        for _ in range(3):
            frame = Frame.from_table(big)
            t0 = time.perf_counter()
            for _, step in chain.steps:
                step(frame)
            best = min(best, time.perf_counter() - t0)
        print(f"{model}: {best / 65536 * 1e6:.3f} us/row")
        assert best / 65536 * 1e6 < 1.0
