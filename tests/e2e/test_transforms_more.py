"""The transforms the other end-to-end tests leave out, in one running ferry: logfmt, key_value, regex, grok,
clf, syslog (a line inside an attribute), rename, drop, keep and sample. Lines go in over syslog TCP,
each written for one transform, and come back through the search API as a user sees them."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

from ferry.testing import FerryProcess

TAG = "tag-e2e-more"


def test_parse_field_and_sample_transforms_through_a_running_ferry(tmp_path: Path) -> None:
    transforms = [
        {"type": "logfmt", "prefix": "lf."},
        {"type": "key_value", "pair_separator": ";", "kv_separator": ":", "prefix": "kv."},
        {"type": "regex", "pattern": r"order=(?P<order_id>\d+)"},
        {"type": "grok", "pattern": r"%{IP:grok.ip} says %{WORD:grok.word}"},
        {"type": "clf"},
        {"type": "syslog", "field": "lf.inner", "prefix": "inner."},
        {"type": "rename", "fields": {"lf.user": "user.name"}},
        {"type": "drop", "fields": ["lf.secret"]},
        {"type": "sample", "rate": 0.5, "when": "app:sampled", "key": "trace_id"},
    ]
    config = {"pipeline": {"stages": {"log_parser": {"transforms": transforms}}}}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lines = [
        f'<14>1 {now} h logfmtapp 1 - - {TAG} user=ann secret=hunter2 msg="two words"',
        f"<14>1 {now} h kvapp 1 - - {TAG};colour:red;size:9",
        f"<14>1 {now} h regexapp 1 - - {TAG} placed order=4711",
        f"<14>1 {now} h grokapp 1 - - 10.1.2.3 says hello {TAG}",
        f'<14>1 {now} h web 1 - - 192.0.2.9 - bob [10/Oct/2026:13:55:36 -0700] "GET /cart?x=1 HTTP/1.1" 404 512',
    ]
    sampled = [f"<14>1 {now} h sampled 1 - - {TAG} sampled line {i}" for i in range(400)]
    with FerryProcess(tmp_path / "data", config) as f:
        with socket.create_connection(("127.0.0.1", f.syslog_port), timeout=10) as s:
            s.sendall("".join(x + "\n" for x in [*lines, *sampled]).encode())
        f.wait_for(lambda: len(f.search("service:web", since="10000d")) == 1, timeout=60)
        rows = {r["service"]: r for r in f.search(TAG, limit=1000)}
        lf = rows["logfmtapp"]["attributes"]
        assert lf["user.name"] == "ann" and "lf.user" not in lf  # rename
        assert "lf.secret" not in lf  # drop
        assert lf["lf.msg"] == "two words"
        kv = rows["kvapp"]["attributes"]
        assert (kv["kv.colour"], kv["kv.size"]) == ("red", "9")
        assert rows["regexapp"]["attributes"]["order_id"] == "4711"
        assert (rows["grokapp"]["attributes"]["grok.ip"], rows["grokapp"]["attributes"]["grok.word"]) == ("10.1.2.3", "hello")
        (web,) = f.search("service:web", since="10000d")
        a = web["attributes"]
        assert (a["http.request.method"], a["url.path"], a["http.response.status_code"], a["user.name"]) == \
            ("GET", "/cart", "404", "bob")
        assert dt.datetime.fromtimestamp(web["time_ns"] / 1e9, dt.UTC) == dt.datetime(2026, 10, 10, 20, 55, 36, tzinfo=dt.UTC)
        # sample: about half of the 400 lines are kept, and every one left out is counted.
        kept = sum(1 for r in f.search("app:sampled", limit=1000))
        out = f.metric("ferry_transform_records_total", stage="log_parser", transform="8:sample", outcome="sampled")
        assert 120 < kept < 280 and kept + out == 400, (kept, out)

    # keep, and syslog inside an attribute, in a second chain (keep drops what the first chain checks).
    config = {"pipeline": {"stages": {"log_parser": {"transforms": [
        {"type": "logfmt"},
        {"type": "syslog", "field": "inner", "prefix": "inner."},
        {"type": "keep", "fields": ["inner*", "syslog.facility"]},
    ]}}}}
    with FerryProcess(tmp_path / "data2", config) as f:
        with socket.create_connection(("127.0.0.1", f.syslog_port), timeout=10) as s:
            s.sendall(f'<14>1 {now} h relay 1 - - {TAG} extra=1 inner="<34>Oct 11 22:14:15 mymachine su: root failed"\n'.encode())
        (row,) = f.wait_for(lambda: f.search(TAG, since="10000d"), timeout=60)  # the inner line sets the time
        attrs = row["attributes"]
        assert "extra" not in attrs and "net.peer" not in attrs and attrs["syslog.facility"] == "user"
        assert attrs["inner.syslog.facility"] == "auth" and attrs["inner.syslog.format"] == "rfc3164", attrs
        assert row["service"] == "su", row  # the inner line's app, as the syslog transform reads it
