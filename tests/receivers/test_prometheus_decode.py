"""The remote_write decoder: a WriteRequest built with the protocol's own messages comes back as
otel_metrics_gauge rows (labels, values, staleness, exemplars) and prom_metadata rows; bad series alone refused.
"""

from __future__ import annotations

import math
import struct

import pytest

from ferry.errors import BadRequest
from ferry.receivers.prometheus import proto
from ferry.receivers.prometheus.decode import check_write, decode_raw, decode_write, raw_requests
from ferry.schema.tables import METRICS_GAUGE, PROM_METADATA

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
NOW = 1_700_000_000_000_000_000


def _series(req: object, labels: dict[str, str], samples: list[tuple[float, int]] = ()) -> object:  # type: ignore[assignment]
    ts = req.timeseries.add()  # type: ignore[attr-defined]
    for k, v in labels.items():
        ts.labels.add(name=k, value=v)
    for v, t in samples:
        ts.samples.add(value=v, timestamp=t)
    return ts


def test_samples_labels_and_special_values() -> None:
    req = proto.WriteRequest()
    _series(req, {"__name__": "http_requests_total", "instance": "a:1", "job": "api", "path": 'say "hi"\n\\'},
            [(1.5, 1000), (0.0, 2000), (math.inf, 3000), (-math.inf, 4000), (STALE, 5000)])
    _series(req, {"__name__": "no_job"}, [(float("nan"), 7)])
    d = decode_write(req.SerializeToString(), tenant="t1", now_ns=NOW)
    t = d.tables["otel_metrics_gauge"]
    assert t.schema == METRICS_GAUGE and d.accepted == 6 and d.rejected == 0
    assert t["MetricName"].to_pylist() == ["http_requests_total"] * 5 + ["no_job"]
    assert t["Attributes"].to_pylist()[0] == [("instance", "a:1"), ("job", "api"), ("path", 'say "hi"\n\\')]
    assert t["ServiceName"].to_pylist() == ["api"] * 5 + [""]
    assert [x.value for x in t["TimeUnix"]] == [1000 * 10**6, 2000 * 10**6, 3000 * 10**6, 4000 * 10**6, 5000 * 10**6, 7 * 10**6]
    assert {x.value for x in t["StartTimeUnix"]} == {0}
    values = t["Value"].to_pylist()
    assert values[:4] == [1.5, 0.0, math.inf, -math.inf] and math.isnan(values[5])
    assert struct.pack("<d", values[4]) == struct.pack("<Q", 0x7FF0000000000002), "the staleness marker keeps its bits"
    assert t["Flags"].to_pylist() == [0, 0, 0, 0, 1, 0]
    assert set(t["ScopeName"].to_pylist()) == {"prometheus.remote_write"}
    assert set(t["Source"].to_pylist()) == {"prometheus"} and set(t["Tenant"].to_pylist()) == {"t1"}
    assert t["ResourceAttributes"].to_pylist() == [[]] * 6


def test_exemplars_join_their_series_or_get_a_row_of_their_own() -> None:
    req = proto.WriteRequest()
    labels = {"__name__": "lat_bucket", "le": "0.5"}
    _series(req, labels, [(3, 1000)])
    ex = _series(req, labels).exemplars.add(value=0.2, timestamp=990)  # type: ignore[attr-defined]
    ex.labels.add(name="trace_id", value="0af7651916cd43dd8448eb211c80319c")
    ex.labels.add(name="span_id", value="b7ad6b7169203331")
    lone = _series(req, {"__name__": "other"}).exemplars.add(value=9, timestamp=5000)  # type: ignore[attr-defined]
    lone.labels.add(name="user", value="u1")
    t = decode_write(req.SerializeToString(), tenant="t", now_ns=NOW).tables["otel_metrics_gauge"]
    assert t.num_rows == 2
    assert t["Exemplars.TraceId"].to_pylist() == [["0af7651916cd43dd8448eb211c80319c"], [""]]
    assert t["Exemplars.SpanId"].to_pylist() == [["b7ad6b7169203331"], [""]]
    assert t["Exemplars.Value"].to_pylist() == [[0.2], [9.0]]
    assert t["Exemplars.FilteredAttributes"].to_pylist()[0] == [
        [("trace_id", "0af7651916cd43dd8448eb211c80319c"), ("span_id", "b7ad6b7169203331")]]
    assert [x.value for x in t["Exemplars.TimeUnix"][1]] == [5000 * 10**6]
    assert t["Flags"].to_pylist() == [0, 2] and math.isnan(t["Value"][1].as_py())


def test_metadata_rows() -> None:
    req = proto.WriteRequest()
    req.metadata.add(type=1, metric_family_name="http_requests", help="Requests.", unit="")
    req.metadata.add(type=4, metric_family_name="gh", help="", unit="seconds")
    t = decode_write(req.SerializeToString(), tenant="t", now_ns=NOW).tables["prom_metadata"]
    assert t.schema == PROM_METADATA
    assert t.select(["MetricFamily", "Type", "Help", "Unit"]).to_pylist() == [
        {"MetricFamily": "http_requests", "Type": "counter", "Help": "Requests.", "Unit": ""},
        {"MetricFamily": "gh", "Type": "gaugehistogram", "Help": "", "Unit": "seconds"},
    ]


@pytest.mark.parametrize(("labels", "says"), [
    ({"job": "x"}, "no __name__ label"),
    ({"__name__": "m", "": "v"}, "an empty label name"),
    ({"__name__": "m", "a": "1", "b": "2"}, "a duplicate label name"),  # "b" renamed to "a" below
])
def test_a_bad_series_is_refused_alone(labels: dict[str, str], says: str) -> None:
    req = proto.WriteRequest()
    _series(req, {"__name__": "good"}, [(1, 1)])
    bad = _series(req, labels, [(2, 2), (3, 3)])
    if says == "a duplicate label name":
        bad.labels[2].name = "a"  # type: ignore[attr-defined]
    d = decode_write(req.SerializeToString(), tenant="t", now_ns=NOW)
    assert d.tables["otel_metrics_gauge"]["MetricName"].to_pylist() == ["good"]
    assert d.reasons == {"invalid_label": 2} and d.rejected == 2 and says in d.message


def test_native_histograms_are_refused_with_their_reason() -> None:
    req = proto.WriteRequest()
    _series(req, {"__name__": "good"}, [(1, 1)])
    _series(req, {"__name__": "nh"}).histograms.add(count_int=4, sum=2.0, schema=1, timestamp=5)  # type: ignore[attr-defined]
    d = decode_write(req.SerializeToString(), tenant="t", now_ns=NOW)
    assert d.reasons == {"native_histogram": 1} and "nh" in d.message
    assert d.tables["otel_metrics_gauge"].num_rows == 1


def test_garbage_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="prometheus.WriteRequest"):
        decode_write(b"\x0a\x40not a write request", tenant="t", now_ns=NOW)
    assert decode_write(b"", tenant="t", now_ns=NOW).tables == {}


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = b""
    while v >= 0x80:
        out += bytes([v & 0x7F | 0x80])
        v >>= 7
    return out + bytes([v])


def _len(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def _write_request(samples: list[bytes]) -> bytes:
    name = _len(0x0A, _len(0x0A, b"__name__") + _len(0x12, b"m"))
    return _len(0x0A, name + b"".join(_len(0x12, s) for s in samples))


def _value(v: float) -> bytes:
    return b"\x09" + struct.pack("<d", v)


def _ts(ms: int) -> bytes:
    return b"\x10" + _varint(ms)


@pytest.mark.parametrize("odd", [
    _ts(5) + _value(2.5),  # fields in the other order
    _value(9.0) + _ts(1) + _value(2.5) + _ts(5),  # repeated: the last one counts
    _value(2.5) + _ts(5) + b"\x18\x07",  # a field this decoder does not know
])
def test_samples_read_alike_however_encoded(odd: bytes) -> None:
    """Senders encode a Sample as value then timestamp, zero fields left out; any other valid encoding
    reads the same (the common layout is read in place, the rest by the general scanner)."""
    common = [_value(1.5) + _ts(1000), _ts(2000), _value(-3.0), b"", _value(4.0) + _ts(-1)]
    for samples in (common, [*common, odd]):
        t = decode_write(_write_request(samples), tenant="t", now_ns=NOW).tables["otel_metrics_gauge"]
        assert t["Value"].to_pylist()[:5] == [1.5, 0.0, -3.0, 0.0, 4.0]
        assert [x.value for x in t["TimeUnix"]][:5] == [1000 * 10**6, 2000 * 10**6, 0, 0, -(10**6)]
    assert t["Value"].to_pylist()[5] == 2.5 and t["TimeUnix"][5].value == 5 * 10**6
    with pytest.raises(BadRequest, match="Sample"):
        decode_write(_write_request([*common, _value(1.0)[:5]]), tenant="t", now_ns=NOW)


def _cases() -> list[bytes]:
    """Requests well-formed and not: every way decode_write can refuse a series, and odd encodings."""
    out = []
    good = proto.WriteRequest()
    ts = good.timeseries.add()
    ts.labels.add(name="__name__", value="up")
    ts.labels.add(name="job", value="j")
    ts.samples.add(value=1, timestamp=1)
    ts.exemplars.add(value=2, timestamp=1).labels.add(name="trace_id", value="ab")
    good.metadata.add(type=1, metric_family_name="up", help="h")
    out.append(good.SerializeToString())
    for labels in ({"job": "nameless"}, {"__name__": "x", "": "empty"}, {"__name__": ""}):
        req = proto.WriteRequest()
        req.CopyFrom(good)
        bad = req.timeseries.add()
        for k, v in labels.items():
            bad.labels.add(name=k, value=v)
        bad.samples.add(value=3, timestamp=2)
        out.append(req.SerializeToString())
    dup = proto.WriteRequest()
    dup.CopyFrom(good)
    dup.timeseries[0].labels.add(name="job", value="again")
    out.append(dup.SerializeToString())
    native = proto.WriteRequest()
    native.CopyFrom(good)
    h = native.timeseries.add()
    h.labels.add(name="__name__", value="hist")
    h.histograms.add(count_int=1, timestamp=1)
    out.append(native.SerializeToString())
    # a label value that is not UTF-8, as raw bytes on the wire
    out.append(good.SerializeToString().replace(b"\x0a\x01j", b"\x0a\x01\xff"))
    return out


def test_the_receivers_check_agrees_with_the_decode() -> None:
    """A request the receiver takes undecoded (check_write passes it) is decoded later by the metrics
    parser, after the sender got its 204: it must then decode whole, exactly as counted. Whatever the
    decode would refuse, the check must send back to the receiver's own decode."""
    for payload in _cases():
        try:
            decoded = decode_write(payload, tenant="t", now_ns=1)
        except BadRequest:
            with pytest.raises(BadRequest):
                check_write(payload)
            continue
        checked = check_write(payload)
        if decoded.rejected:
            assert checked is None
        else:
            assert checked == decoded.accepted


def test_requests_taken_as_they_came_decode_to_the_same_rows() -> None:
    """What the metrics parser makes of raw requests is what the receiver would have: stamped with the
    time each was received, several requests' rows one after another."""
    import cramjam
    import pyarrow as pa

    payloads = [p for p in _cases() if check_write(p) is not None]
    assert payloads
    raw = pa.concat_tables([raw_requests(bytes(cramjam.snappy.compress_raw(p)), now_ns=10 + i)
                            for i, p in enumerate(payloads)])
    got = decode_raw(raw, "t")
    want = [decode_write(p, tenant="t", now_ns=10 + i) for i, p in enumerate(payloads)]
    assert got.accepted == sum(w.accepted for w in want) and got.rejected == 0
    for name in ("otel_metrics_gauge", "prom_metadata"):
        assert got.tables[name].equals(pa.concat_tables([w.tables[name] for w in want]))
