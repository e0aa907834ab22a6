"""Decode a remote_write `prometheus.WriteRequest` into otel_metrics_gauge and prom_metadata Arrow tables.
Scanned in bulk (numpy over the wire format), column by column; a bad series is refused alone.

Storage convention (the PromQL reader depends on it): MetricName = `__name__`, Attributes = every other
label, ResourceAttributes empty, ScopeName `prometheus.remote_write`, Source `prometheus`, ServiceName =
`job` (or ""), TimeUnix = the sample's ms in ns, StartTimeUnix 0, Flags 1 on a staleness marker. A
series carrying exemplars but no samples (Prometheus sends exemplars as series of their own) gives its
exemplars to the last sample row of the same label set in the request; with none there, they are kept
on a row of their own with Value NaN and Flags 2 (EXEMPLARS_ONLY: no sample, skipped by sample reads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError

from ferry.errors import BadRequest
from ferry.receivers.otlp._attributes import Blob, varint
from ferry.receivers.otlp._logs import Fields
from ferry.receivers.otlp.decode import Decoded
from ferry.receivers.prometheus.proto import METRIC_TYPES, RawWriteRequest
from ferry.schema.tables import ATTRS, METRICS_GAUGE, PROM_METADATA, REMOTE_WRITE_REQUESTS, TS, conform

SOURCE = "prometheus"
SCOPE = "prometheus.remote_write"
STALE_BITS = 0x7FF0000000000002  # Prometheus' staleness marker: a NaN with this exact bit pattern
FLAG_STALE = 1  # OTel's "no recorded value", which is what a staleness marker says
EXEMPLARS_ONLY = 2  # a row holding exemplars whose series sent no sample in the same request
_MS = 1_000_000

# bounded reason -> what the 400 says about the series refused for it
EXPLAIN = {
    "invalid_label": "series with an empty label name, a duplicate label name or no __name__ label",
    "native_histogram": "native histogram series (TimeSeries.histograms), which ferry does not store",
}


@dataclass
class _Refusal:
    mask: np.ndarray  # series refused
    reason: str
    what: str  # the first offender, for the answer


def _empty_maps(n: int) -> pa.Array:
    return pa.MapArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string()),
                                   pa.array([], pa.string()), type=ATTRS)


def _maps(counts: np.ndarray, keys: pa.Array, items: pa.Array) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.MapArray.from_arrays(pa.array(offsets), keys, items, type=ATTRS)


def _pick(values: pa.Array, owner: np.ndarray, mask: np.ndarray, n: int) -> pa.Array:
    """Per owner (0..n-1): the last value whose mask is set, else ""."""
    idx = np.full(n, len(values), np.int64)
    idx[owner[mask]] = np.flatnonzero(mask)
    return pa.concat_arrays([values, pa.array([""], pa.string())]).take(pa.array(idx))


def _same(value: str, n: int) -> pa.Array:
    """`n` times the string `value`, without a Python list of n items."""
    return pa.repeat(pa.scalar(value, pa.string()), n)


def _samples(blob: Blob) -> tuple[np.ndarray, np.ndarray]:
    """Value and timestamp (ms) of each Sample message. Senders write a Sample as `value` (tag 0x09,
    8 bytes) then `timestamp` (tag 0x10, a varint), each left out when 0; when every sample is so laid
    out they are read in place, else by the general scanner (any order, repeats, unknown fields)."""
    u8, start, end = blob.u8, blob.start, blob.end
    n = len(start)
    top = len(u8) - 1
    has_v = (end - start >= 9) & (u8[np.minimum(start, top)] == 0x09)
    at = start + 9 * has_v
    has_t = (at < end) & (u8[np.minimum(at, top)] == 0x10)
    ts, width, ok = varint(u8, at + 1, longest=10)
    if n and np.all(ok | ~has_t) and np.array_equal(at + has_t * (1 + width), end):
        value = np.zeros(n, np.float64)
        pos = start[has_v] + 1
        if len(pos):
            value[has_v] = np.ascontiguousarray(u8[pos[:, None] + np.arange(8)]).view("<f8").ravel()
        return value, np.where(has_t, ts, 0)
    smp = Fields(blob, "Sample")
    return smp.fixed(1, "<f8"), smp.varint(2)


def _label_errors(owner: np.ndarray, names: pa.Array, values: pa.Array, n: int) -> tuple[np.ndarray, str]:
    """Series with an empty name, a repeated name or no (non-empty) __name__; the first one's problem."""
    bad = np.zeros(n, bool)
    empty = np.asarray(pc.equal(names, "")).astype(bool) if len(names) else np.zeros(0, bool)
    bad[owner[empty]] = True
    is_name = np.asarray(pc.equal(names, "__name__")).astype(bool) if len(names) else np.zeros(0, bool)
    has_name = np.zeros(n, bool)
    named = is_name & (np.asarray(pc.not_equal(values, "")).astype(bool) if len(values) else is_name)
    has_name[owner[named]] = True
    missing = ~has_name
    dup = np.zeros(n, bool)
    if len(names):
        codes = np.asarray(pc.dictionary_encode(names).indices, np.int64)
        key = owner.astype(np.int64) * (int(codes.max()) + 1) + codes
        key.sort()
        repeated = key[1:][key[1:] == key[:-1]]
        dup[repeated // (int(codes.max()) + 1)] = True
    bad |= missing | dup
    what = ""
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        mine = owner == first
        lbl = ", ".join(f"{k}={v!r}" for k, v in zip(names.filter(pa.array(mine)).to_pylist(),
                                                     values.filter(pa.array(mine)).to_pylist(), strict=True))
        problem = ("an empty label name" if empty[mine].any() else "a duplicate label name" if dup[first]
                   else "no __name__ label")
        what = f"{problem} in series {{{lbl}}}"
    return bad, what


def decode_write(payload: bytes, *, tenant: str, now_ns: int) -> Decoded:
    """The rows of one decompressed WriteRequest. BadRequest when it is not a WriteRequest at all."""
    try:
        return _decode(_Scan.of(payload), tenant, now_ns)
    except BadRequest as e:
        raise BadRequest(f"invalid protobuf prometheus.WriteRequest: {e}") from None


def check_write(payload: bytes) -> int | None:
    """The records (samples, exemplars, metadata) of a decompressed WriteRequest when every series in
    it would be stored, so it can be made durable as it came and decoded downstream (about a fifth of a
    decode's CPU); None when some series would be refused, for the receiver to decode it and say which.
    BadRequest when it is not a WriteRequest at all."""
    try:
        scan = _Scan.of(payload)
        bad, _ = _label_errors(scan.owner, scan.names, scan.values, scan.series.n)
        hist_counts, _ = scan.series.ranges(4)
        if bad.any() or (hist_counts > 0).any():
            return None
        samples, _ = scan.series.ranges(2)
        exemplars, _ = scan.series.ranges(3)
        return int(samples.sum()) + int(exemplars.sum()) + scan.meta.n
    except BadRequest as e:
        raise BadRequest(f"invalid protobuf prometheus.WriteRequest: {e}") from None


def raw_requests(body: bytes, now_ns: int) -> pa.Table:
    """One snappy-compressed request as it came, for the bus: the receiver's part when check_write passed."""
    return pa.table({"ReceivedAt": pa.array([now_ns], pa.int64()).cast(TS), "Request": pa.array([body], pa.binary())},
                    schema=REMOTE_WRITE_REQUESTS)


def decode_raw(requests: pa.Table, tenant: str) -> Decoded:
    """The rows of REMOTE_WRITE_REQUESTS (in the metrics parser), each request stamped with the time
    its receiver took it; the tables of all of them concatenated."""
    import cramjam

    parts: dict[str, list[pa.Table]] = {}
    accepted = rejected = 0
    reasons: dict[str, int] = {}
    messages = []
    received = requests.column("ReceivedAt").cast(pa.int64()).to_numpy()
    for body, now_ns in zip(requests.column("Request").to_pylist(), received.tolist(), strict=True):
        d = decode_write(bytes(cramjam.snappy.decompress_raw(body)), tenant=tenant, now_ns=now_ns)
        for name, t in d.tables.items():
            parts.setdefault(name, []).append(t)
        accepted += d.accepted
        rejected += d.rejected
        for r, k in d.reasons.items():
            reasons[r] = reasons.get(r, 0) + k
        if d.message:
            messages.append(d.message)
    tables = {name: ts[0] if len(ts) == 1 else pa.concat_tables(ts) for name, ts in parts.items()}
    return Decoded(tables, accepted, rejected, reasons, "; ".join(messages))


@dataclass
class _Scan:
    """Where a WriteRequest's series, labels and metadata are: what both the check and the decode read first."""

    series: Fields
    meta: Fields
    lab_counts: np.ndarray
    lab: Fields
    owner: np.ndarray  # the series of each label
    names: pa.Array
    values: pa.Array

    @classmethod
    def of(cls, payload: bytes) -> _Scan:
        try:
            req = RawWriteRequest.FromString(payload)
        except DecodeError as e:
            raise BadRequest(str(e) or "malformed protobuf") from None
        # One message with thousands of fields is upb's to split; the bulk scanner is for many small messages.
        series = Fields(Blob.of(list(req.timeseries)), "TimeSeries")
        meta = Fields(Blob.of(list(req.metadata)), "MetricMetadata")
        lab_counts, lab = series.messages(1, "Label")
        owner = np.repeat(np.arange(series.n), lab_counts)
        return cls(series, meta, lab_counts, lab, owner, lab.string(1), lab.string(2))


def _decode(scan: _Scan, tenant: str, now_ns: int) -> Decoded:
    series, meta, lab_counts, lab = scan.series, scan.meta, scan.lab_counts, scan.lab
    owner, names, values = scan.owner, scan.names, scan.values
    n = series.n
    smp_counts, smp_blob = series.ranges(2)
    ex_counts, ex = series.messages(3, "Exemplar")
    hist_counts, _ = series.messages(4, "Histogram")

    refusals: list[_Refusal] = []
    bad_labels, what = _label_errors(owner, names, values, n)
    if bad_labels.any():
        refusals.append(_Refusal(bad_labels, "invalid_label", what))
    native = (hist_counts > 0) & ~bad_labels
    if native.any():
        refusals.append(_Refusal(native, "native_histogram",
                                 f"{int(native.sum())} native histogram series (first: "
                                 f"{_pick(values, owner, np.asarray(pc.equal(names, '__name__')), n)[int(np.flatnonzero(native)[0])]})"))
    good = ~(bad_labels | native)

    is_name = np.asarray(pc.equal(names, "__name__")).astype(bool) if len(names) else np.zeros(0, bool)
    metric = _pick(values, owner, is_name, n)
    job = _pick(values, owner, np.asarray(pc.equal(names, "job")).astype(bool) if len(names) else is_name, n)
    keep = pa.array(~is_name)
    attrs = _maps(np.bincount(owner[~is_name], minlength=n), names.filter(keep), values.filter(keep))

    # Sample rows of good series.
    smp_owner = np.repeat(np.arange(n), smp_counts)
    take = good[smp_owner]
    row_series = smp_owner[take]
    value, ts_ms = _samples(smp_blob)
    value, ts_ms = value[take], ts_ms[take]
    rows = len(row_series)

    # Exemplars: to the last sample row of the same series (same label bytes) in this request.
    ex_owner = np.repeat(np.arange(n), ex_counts)
    ex_take = good[ex_owner]
    ex_owner = ex_owner[ex_take]
    extra_series = np.zeros(0, np.int64)
    ex_row = np.zeros(0, np.int64)
    if len(ex_owner):
        ex_row, extra_series = _exemplar_rows(lab, lab_counts, smp_counts * good, ex_owner, rows)
    all_series = np.concatenate([row_series, extra_series])
    total = len(all_series)
    flags = np.zeros(total, np.uint32)
    flags[:rows][value.view(np.uint64) == STALE_BITS] = FLAG_STALE
    flags[rows:] = EXEMPLARS_ONLY
    value = np.concatenate([value, np.full(len(extra_series), np.nan)])
    ex_ts = ex.varint(3)[ex_take]
    if len(extra_series):
        # A row of its own is stamped with its (first) exemplar's time.
        first = np.full(len(extra_series), np.iinfo(np.int64).max)
        np.minimum.at(first, ex_row[ex_row >= rows] - rows, ex_ts[ex_row >= rows])
        ts_ms = np.concatenate([ts_ms, first])

    # Without exemplars the store's defaults (empty lists) are what conform fills in, and cheaper.
    exemplar_cols = _exemplar_columns(ex, ex_take, ex_row, total) if len(ex_owner) else {}
    sel = pa.array(all_series)
    cols: dict[str, pa.Array] = {
        "ResourceAttributes": _empty_maps(total),
        "ScopeName": _same(SCOPE, total),
        "ServiceName": job.take(sel),
        "MetricName": metric.take(sel),
        "Attributes": attrs.take(sel),
        "StartTimeUnix": pa.array(np.zeros(total, np.int64), pa.int64()).cast(TS),
        "TimeUnix": pa.array(ts_ms * _MS, pa.int64()).cast(TS),
        "Value": pa.array(value, pa.float64()),
        "Flags": pa.array(flags, pa.uint32()),
        **exemplar_cols,
        "Tenant": _same(tenant, total),
        "Source": _same(SOURCE, total),
        "IngestTime": pa.array(np.full(total, now_ns, np.int64), pa.int64()).cast(TS),
    }
    tables: dict[str, pa.Table] = {}
    if total:
        tables["otel_metrics_gauge"] = conform(pa.table(cols), METRICS_GAUGE)
    if meta.n:
        tables["prom_metadata"] = _metadata(meta, tenant, now_ns)

    reasons: dict[str, int] = {}
    messages = []
    for r in refusals:
        count = int((smp_counts[r.mask] + hist_counts[r.mask]).clip(min=1).sum())
        reasons[r.reason] = reasons.get(r.reason, 0) + count
        messages.append(f"{int(r.mask.sum())} {EXPLAIN[r.reason]} refused; {r.what}")
    accepted = rows + int(len(ex_owner)) + meta.n
    return Decoded(tables, accepted, sum(reasons.values()), reasons, "; ".join(messages))


def _exemplar_rows(lab: Fields, lab_counts: np.ndarray, sample_counts: np.ndarray, ex_owner: np.ndarray,
                   rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The row each exemplar goes to, and the series that need a row of their own (rows from `rows` on)."""
    n = len(lab_counts)
    # A series' identity is the bytes of its labels as sent: Prometheus encodes a label set alike each time.
    first = np.cumsum(lab_counts) - lab_counts
    last = first + lab_counts - 1
    has = lab_counts > 0
    start = np.where(has, lab.blob.start[np.minimum(first, max(len(lab.blob.start) - 1, 0))] if len(lab.blob.start) else 0, 0)
    end = np.where(has, lab.blob.end[np.maximum(last, 0)] if len(lab.blob.end) else 0, 0)
    keys = lab.blob.sub(np.asarray(start, np.int64), np.asarray(end, np.int64)).binary()
    codes = np.asarray(pc.dictionary_encode(keys).indices, np.int64)
    # The last sample row of each label set that has samples.
    row_end = np.cumsum(sample_counts)
    last_row_of_code = np.full(int(codes.max()) + 1 if n else 0, -1, np.int64)
    with_samples = np.flatnonzero(sample_counts > 0)
    last_row_of_code[codes[with_samples]] = row_end[with_samples] - 1
    target = last_row_of_code[codes[ex_owner]]
    orphans = target < 0
    extra_series = np.unique(ex_owner[orphans])
    target[orphans] = rows + np.searchsorted(extra_series, ex_owner[orphans])
    return target, extra_series


def _exemplar_columns(ex: Fields, ex_take: np.ndarray, ex_row: np.ndarray, total: int) -> dict[str, pa.Array]:
    order = np.argsort(ex_row, kind="stable")
    counts = np.bincount(ex_row, minlength=total) if total else np.zeros(0, np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    lc, lab = ex.messages(1, "Label")
    lab_owner = np.repeat(np.arange(ex.n), lc)
    names, values = lab.string(1), lab.string(2)
    ex_attrs = _maps(lc, names, values)
    trace = _pick(values, lab_owner, np.asarray(pc.equal(names, "trace_id")).astype(bool) if len(names) else np.zeros(0, bool), ex.n)
    span = _pick(values, lab_owner, np.asarray(pc.equal(names, "span_id")).astype(bool) if len(names) else np.zeros(0, bool), ex.n)
    picked = pa.array(np.flatnonzero(ex_take)[order])
    value = pa.array(ex.fixed(2, "<f8"), pa.float64()).take(picked)
    when = pa.array(ex.varint(3) * _MS, pa.int64()).cast(TS).take(picked)

    def lists(a: pa.Array) -> pa.Array:
        return pa.ListArray.from_arrays(offsets, a)

    return {
        "Exemplars.FilteredAttributes": lists(ex_attrs.take(picked)),
        "Exemplars.TimeUnix": lists(when),
        "Exemplars.Value": lists(value),
        "Exemplars.SpanId": lists(span.take(picked)),
        "Exemplars.TraceId": lists(trace.take(picked)),
    }


def _metadata(meta: Fields, tenant: str, now_ns: int) -> pa.Table:
    kinds = meta.varint(1)
    names = pa.array(METRIC_TYPES + ("unknown",), pa.string())
    kind = names.take(pa.array(np.where((kinds >= 0) & (kinds < len(METRIC_TYPES)), kinds, len(METRIC_TYPES))))
    m = meta.n
    return conform(pa.table({
        "TimeUnix": pa.array(np.full(m, now_ns, np.int64), pa.int64()).cast(TS),
        "MetricFamily": meta.string(2),
        "Type": kind,
        "Help": meta.string(4),
        "Unit": meta.string(5),
        "Tenant": _same(tenant, m),
        "Source": _same(SOURCE, m),
        "IngestTime": pa.array(np.full(m, now_ns, np.int64), pa.int64()).cast(TS),
    }), PROM_METADATA)
