"""Synthetic but realistic otel_logs / otel_traces rows for benchmarks, built from loghub log lines:
bodies are lines of the 11 loghub datasets with their numbers re-drawn, spread over ~50 services."""

# The loghub lines are read at run time from the shared datasets (ferry/testing/datasets.py:
# $FERRY_DATASETS, else ../shared/datasets beside the repository), never copied into this
# repository. Their notice (LICENSE OF LOGHUB) asks that it travel with any copy of the datasets:
#   The datasets are freely available for research or academic work, subject to the following
#   condition: For any usage or distribution of the loghub datasets, please refer to the loghub
#   repository URL (https://github.com/logpai/loghub) and cite the following loghub paper where
#   applicable. Jieming Zhu, Shilin He, Pinjia He, Jinyang Liu, Michael R. Lyu. Loghub: A Large
#   Collection of System Log Datasets for AI-driven Log Analytics. In ISSRE, 2023.
#   The above license notice shall be included in all copies of the datasets.

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry.query.tokens import tokens
from ferry.schema.tables import LOGS, TRACES, conform
from ferry.testing.datasets import loghub

SYSTEMS = (
    "Android", "Apache", "HDFS", "Hadoop", "Linux", "Mac",
    "OpenSSH", "OpenStack", "Spark", "Windows", "Zookeeper",
)  # fmt: skip

# OTel severity names and numbers, with the share of rows each gets.
SEVERITIES = (("TRACE", 1, 0.01), ("DEBUG", 5, 0.09), ("INFO", 9, 0.72), ("WARN", 13, 0.12),
              ("ERROR", 17, 0.05), ("FATAL", 21, 0.01))  # fmt: skip

_SERVICE_STEMS = (
    "checkout", "payments", "auth", "search", "catalog", "cart", "orders", "billing", "shipping",
    "inventory", "users", "notify", "gateway", "ledger", "pricing", "reviews", "media", "session",
    "audit", "reports", "scheduler", "ingest", "export", "profile", "fraud",
)  # fmt: skip
_SERVICE_KINDS = ("api", "worker")

_DIGITS = re.compile(r"(\d+)")
_ALPHA = re.compile(r"[a-z]+")
_PHRASE_WORD = re.compile(r"[A-Za-z]+")

TRACE_SHARE = 0.20
_RES_KEYS = pa.array(["service.name", "host.name", "deployment.environment"], pa.string())
_LOG_KEYS = pa.array(["thread.id"], pa.string())


@dataclass
class KnownTrace:
    """A trace id present in otel_traces (with spans) and on a few otel_logs rows."""

    trace_id: str
    span_ids: list[str]
    batch: int
    n_logs: int


@dataclass
class LogData:
    """Everything needed to generate batches deterministically, plus expected token frequencies."""

    seed: int = 7
    variants: int = 24
    root: Path = field(default_factory=loghub)
    n_known_traces: int = 300
    services: list[str] = field(init=False)
    service_system: np.ndarray = field(init=False)
    service_weight: np.ndarray = field(init=False)
    hosts: list[list[str]] = field(init=False)
    lines: dict[str, list[tuple[str, str]]] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.lines = {s: _read_system(self.root, s) for s in SYSTEMS}
        names = [f"{stem}-{kind}" for stem in _SERVICE_STEMS for kind in _SERVICE_KINDS]
        self.services = names[:50]
        n = len(self.services)
        self.service_system = np.arange(n) % len(SYSTEMS)
        # A few big services and a long tail, like a real fleet.
        w = 1.0 / np.arange(1, n + 1) ** 0.7
        self.service_weight = w / w.sum()
        self.hosts = [
            [f"{svc}-{rng.getrandbits(24):06x}-{rng.getrandbits(20):05x}" for _ in range(rng.randint(2, 6))]
            for svc in self.services
        ]
        self._build_pool(rng)
        self._service_names = pa.array(self.services, pa.string())
        self._n_hosts = np.array([len(h) for h in self.hosts])
        self._host_start = np.concatenate([[0], np.cumsum(self._n_hosts)[:-1]])
        self._host_names = pa.array([h for hs in self.hosts for h in hs], pa.string())
        self._sev_names = pa.array([name for name, _, _ in SEVERITIES], pa.string())
        self._threads = pa.array([str(i) for i in range(1, 65)], pa.string())
        self._np = np.random.default_rng(self.seed)
        self.known: list[KnownTrace] = []

    # --- bodies ------------------------------------------------------------------------------
    def _build_pool(self, rng: random.Random) -> None:
        """`variants` copies of every loghub line, each with its multi-digit numbers re-drawn."""
        bodies: list[str] = []
        scopes: list[str] = []
        starts = []
        for s in SYSTEMS:
            starts.append(len(bodies))
            for content, component in self.lines[s]:
                parts = _DIGITS.split(content)
                bodies.append(content)
                scopes.append(component)
                for _ in range(self.variants - 1):
                    out = parts[:]
                    for i in range(1, len(out), 2):
                        n = len(out[i])
                        if n > 1:
                            out[i] = str(rng.randrange(10 ** (n - 1), 10**n))
                    bodies.append("".join(out))
                    scopes.append(component)
        self.pool = pa.array(bodies, pa.string())
        self.pool_scope = pa.array(scopes, pa.string())
        self.sys_start = np.array(starts, dtype=np.int64)
        self.sys_size = np.array([len(self.lines[s]) * self.variants for s in SYSTEMS], dtype=np.int64)

    def system_share(self) -> np.ndarray:
        return np.bincount(self.service_system, weights=self.service_weight, minlength=len(SYSTEMS))

    def system_token_df(self, system: str) -> dict[str, float]:
        """Share of `system`'s lines holding each all-letter token (numbers vary, letters do not)."""
        c: Counter[str] = Counter()
        for content, _ in self.lines[system]:
            c.update({t for t in tokens(content) if _ALPHA.fullmatch(t)})
        n = len(self.lines[system])
        return {t: k / n for t, k in c.items()}

    def token_df(self) -> dict[str, float]:
        """Expected share of all rows whose body holds each all-letter token."""
        out: Counter[str] = Counter()
        for share, s in zip(self.system_share(), SYSTEMS, strict=True):
            for t, f in self.system_token_df(s).items():
                out[t] += float(share) * f
        return dict(out)

    def phrase_df(self, min_words: int = 3, max_words: int = 4) -> dict[str, float]:
        """Expected share of rows holding each run of `min_words`..`max_words` letter-only words."""
        out: Counter[str] = Counter()
        for share, s in zip(self.system_share(), SYSTEMS, strict=True):
            found: Counter[str] = Counter()
            for content, _ in self.lines[s]:
                words = content.split(" ")
                seen = set()
                for k in range(min_words, max_words + 1):
                    for i in range(len(words) - k + 1):
                        win = words[i : i + k]
                        if all(_PHRASE_WORD.fullmatch(w) for w in win):
                            seen.add(" ".join(win))
                found.update(seen)
            for p, k in found.items():
                out[p] += float(share) * k / len(self.lines[s])
        return dict(out)

    # --- rows --------------------------------------------------------------------------------
    def plan_traces(self, n_batches: int) -> None:
        """Give each known trace a batch to live in; call once before generating batches."""
        rng = random.Random(self.seed + 1)
        self.known = []
        for i in range(self.n_known_traces):
            spans = [f"{rng.getrandbits(64):016x}" for _ in range(rng.randint(3, 6))]
            self.known.append(
                KnownTrace(
                    f"{rng.getrandbits(128):032x}",
                    spans,
                    i * n_batches // self.n_known_traces,
                    rng.randint(3, 8),
                )
            )

    def batch(self, k: int, n: int, lo_ns: int, hi_ns: int) -> tuple[pa.Table, pa.Table | None]:
        """Batch `k`: `n` log rows with times in [lo_ns, hi_ns), sorted, plus spans of traces living in it."""
        g = self._np
        ts = np.sort(g.integers(lo_ns, hi_ns, n, dtype=np.int64))
        svc = g.choice(len(self.services), n, p=self.service_weight)
        sysi = self.service_system[svc]
        body_idx = pa.array(self.sys_start[sysi] + (g.random(n) * self.sys_size[sysi]).astype(np.int64))
        sev = g.choice(len(SEVERITIES), n, p=[p for _, _, p in SEVERITIES])
        host = self._host_start[svc] + (g.random(n) * self._n_hosts[svc]).astype(np.int64)

        has_trace = g.random(n) < TRACE_SHARE
        trace_raw = bytearray(g.bytes(n * 16).hex().encode())
        span_raw = bytearray(g.bytes(n * 8).hex().encode())
        spans = []
        for kt in (t for t in self.known if t.batch == k):
            p = int(g.integers(0, n - kt.n_logs))
            for j in range(kt.n_logs):
                has_trace[p + j] = True
                trace_raw[(p + j) * 32 : (p + j + 1) * 32] = kt.trace_id.encode()
                span_raw[(p + j) * 16 : (p + j + 1) * 16] = kt.span_ids[j % len(kt.span_ids)].encode()
            spans.append(
                self._spans(kt, int(ts[p]), self.services[svc[p]], self._host_names[host[p]].as_py())
            )
        mask = pa.array(has_trace)

        delay = g.integers(1_000_000, 2_000_000_000, n, dtype=np.int64)
        tstype = pa.timestamp("ns", tz="UTC")
        nserv, nhost = len(self.services), len(self._host_names)
        # One string dictionary for resource attribute values: services, then hosts, then "prod".
        res_values = pa.concat_arrays([self._service_names, self._host_names, pa.array(["prod"])])
        res_idx = np.stack([svc, nserv + host, np.full(n, nserv + nhost)], axis=1).ravel()
        table = pa.table(
            {
                "Timestamp": pa.array(ts, tstype),
                "ObservedTimestamp": pa.array(ts + delay // 2, tstype),
                "TraceId": pc.if_else(mask, _fixed_strings(trace_raw, n, 32), ""),
                "SpanId": pc.if_else(mask, _fixed_strings(span_raw, n, 16), ""),
                "TraceFlags": pa.array(has_trace.astype(np.uint8), pa.uint8()),
                "SeverityText": self._sev_names.take(pa.array(sev)),
                "SeverityNumber": pa.array(np.array([v for _, v, _ in SEVERITIES], dtype=np.uint8)[sev]),
                "ServiceName": self._service_names.take(pa.array(svc)),
                "Body": self.pool.take(body_idx),
                "ResourceAttributes": _map(n, _RES_KEYS, res_values.take(pa.array(res_idx))),
                "ScopeName": self.pool_scope.take(body_idx),
                "LogAttributes": _map(n, _LOG_KEYS, self._threads.take(pa.array(g.integers(0, 64, n)))),
                "Tenant": pa.repeat(pa.scalar("default"), n),
                "Source": pa.repeat(pa.scalar("otlp"), n),
                "IngestTime": pa.array(ts + delay, tstype),
                "BatchId": pa.repeat(pa.scalar(f"bench-{k:06d}"), n),
            }
        )
        span_table = conform(pa.concat_tables(spans), TRACES) if spans else None
        return conform(table, LOGS), span_table

    def _spans(self, kt: KnownTrace, t0: int, service: str, host: str) -> pa.Table:
        m = len(kt.span_ids)
        starts = [t0 + i * 2_000_000 for i in range(m)]
        durations = [(m - i) * 5_000_000 for i in range(m)]
        ts = pa.timestamp("ns", tz="UTC")
        return pa.table(
            {
                "Timestamp": pa.array(starts, ts),
                "TraceId": [kt.trace_id] * m,
                "SpanId": kt.span_ids,
                "ParentSpanId": [""] + [kt.span_ids[0]] * (m - 1),
                "SpanName": ["HTTP GET /api"] + [f"db.query {i}" for i in range(1, m)],
                "SpanKind": ["SPAN_KIND_SERVER"] + ["SPAN_KIND_CLIENT"] * (m - 1),
                "ServiceName": [service] * m,
                "ResourceAttributes": pa.array(
                    [[("service.name", service), ("host.name", host)]] * m, pa.map_(pa.string(), pa.string())
                ),
                "Duration": pa.array(durations, pa.uint64()),
                "StatusCode": ["STATUS_CODE_OK"] * m,
                "Tenant": ["default"] * m,
                "Source": ["otlp"] * m,
                "IngestTime": pa.array(starts, ts),
                "BatchId": [f"bench-spans-{kt.trace_id}"] * m,
            }
        )


def _read_system(root: Path, system: str) -> list[tuple[str, str]]:
    path = root / system / f"{system}_2k.log_structured.csv"
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return [
            (r["Content"], r.get("Component") or system.lower()) for r in csv.DictReader(f) if r["Content"]
        ]


def _fixed_strings(raw: bytearray, n: int, width: int) -> pa.Array:
    """`n` strings of `width` ASCII characters each, cut from one buffer."""
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(bytes(raw))])
    return fixed.cast(pa.binary()).cast(pa.string())


def _map(n: int, keys: pa.Array, items: pa.Array) -> pa.MapArray:
    """A map column with the same `keys` on every row; `items` holds row 0's values, then row 1's..."""
    k = len(keys)
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.MapArray.from_arrays(offsets, keys.take(pa.array(np.tile(np.arange(k), n))), items)
