"""Tests for the vectorised syslog parser stage (RAW_LINES -> LOGS).

RFC 5424 and RFC 3164 examples, unparseable lines, PRI decoding and the loghub Linux/OpenSSH data.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ferry.schema.tables import LOGS, RAW_LINES
from ferry.stages.parser.syslog import parse_syslog
from ferry.testing import datasets
from ferry.testing.datasets import loghub

UTC = dt.UTC
RECEIVED = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
PEER = "192.0.2.7:51514"


def raw(
    lines: list[str], received: dt.datetime = RECEIVED, peer: str = PEER, transport: str = "udp"
) -> pa.Table:
    n = len(lines)
    return pa.table(
        {
            "ReceivedAt": pa.array([received] * n, pa.timestamp("ns", tz="UTC")),
            "Peer": [peer] * n,
            "Transport": [transport] * n,
            "Line": lines,
        },
        schema=RAW_LINES,
    )


def parse(lines: list[str], **kw: Any) -> list[dict[str, Any]]:
    out = parse_syslog(raw(lines, **kw))
    assert out.schema == LOGS
    rows = out.to_pylist()
    for row in rows:
        row["ResourceAttributes"] = dict(row["ResourceAttributes"])
        row["LogAttributes"] = dict(row["LogAttributes"])
    return rows


def one(line: str, **kw: Any) -> dict[str, Any]:
    (row,) = parse([line], **kw)
    return row


# --- RFC 5424 (examples from section 6.5) -------------------------------------------------------


def test_rfc5424_example_1_bom_and_nil_procid() -> None:
    """RFC 5424 example 1: fields are decoded, the BOM is stripped, nil PROCID is omitted."""
    row = one(
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        "\ufeff'su root' failed for lonvick on /dev/pts/8"
    )
    assert row["Timestamp"] == dt.datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)
    assert row["ObservedTimestamp"] == RECEIVED
    assert row["IngestTime"] == RECEIVED
    assert row["Body"] == "'su root' failed for lonvick on /dev/pts/8"
    assert row["SeverityNumber"] == 18
    assert row["SeverityText"] == "CRIT"
    assert row["ServiceName"] == "su"
    assert row["ResourceAttributes"] == {"host.name": "mymachine.example.com", "service.name": "su"}
    assert row["LogAttributes"] == {
        "syslog.facility": "auth",
        "syslog.severity": "crit",
        "syslog.version": "1",
        "syslog.msgid": "ID47",
        "syslog.format": "rfc5424",
        "net.peer": PEER,
        "net.transport": "udp",
    }
    assert (row["Source"], row["Tenant"], row["BatchId"]) == ("syslog", "default", "")


def test_rfc5424_example_2_offset_to_utc() -> None:
    """RFC 5424 example 2: a -07:00 offset with microseconds is converted to UTC, nil MSGID omitted."""
    row = one(
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts."
    )
    assert row["Timestamp"] == dt.datetime(2003, 8, 24, 12, 14, 15, 3, tzinfo=UTC)
    assert row["Body"] == "%% It's time to make the do-nuts."
    assert row["LogAttributes"]["syslog.procid"] == "8710"
    assert "syslog.msgid" not in row["LogAttributes"]
    assert (row["SeverityNumber"], row["SeverityText"]) == (10, "NOTICE")


def test_rfc5424_example_3_structured_data() -> None:
    """RFC 5424 example 3: each SD param becomes an `sd.<SD-ID>.<PARAM>` attribute, MSG follows."""
    row = one(
        '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
        'eventSource="Application" eventID="1011"] \ufeffAn application event log entry...'
    )
    attrs = row["LogAttributes"]
    assert attrs["sd.exampleSDID@32473.iut"] == "3"
    assert attrs["sd.exampleSDID@32473.eventSource"] == "Application"
    assert attrs["sd.exampleSDID@32473.eventID"] == "1011"
    assert row["Body"] == "An application event log entry..."
    assert row["ServiceName"] == "evntslog"


def test_rfc5424_example_4_two_sd_elements_no_msg() -> None:
    """RFC 5424 example 4: two SD elements are both decoded and a missing MSG gives an empty Body."""
    row = one(
        '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
        'eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]'
    )
    sd = {k: v for k, v in row["LogAttributes"].items() if k.startswith("sd.")}
    assert sd == {
        "sd.exampleSDID@32473.iut": "3",
        "sd.exampleSDID@32473.eventSource": "Application",
        "sd.exampleSDID@32473.eventID": "1011",
        "sd.examplePriority@32473.class": "high",
    }
    assert row["Body"] == ""
    assert "syslog.parse_error" not in row["LogAttributes"]


def test_rfc5424_sd_escapes() -> None:
    r"""SD values unescape \", \\ and \], keep other backslashes, and may contain spaces and `]`."""
    row = one(r'<14>1 - h a - - [x@1 q="say \"hi\"" b="c:\\dir\\" r="[a\]" o="\n stays" e=""] msg')
    attrs = row["LogAttributes"]
    assert attrs["sd.x@1.q"] == 'say "hi"'
    assert attrs["sd.x@1.b"] == "c:\\dir\\"
    assert attrs["sd.x@1.r"] == "[a]"
    assert attrs["sd.x@1.o"] == "\\n stays"
    assert attrs["sd.x@1.e"] == ""
    assert row["Body"] == "msg"


def test_rfc5424_sd_value_that_looks_like_sd() -> None:
    """A VALUE holding `[id k="v"]`-like text stays one value of its own element."""
    row = one(r'<14>1 - h a - - [x@1 v="see [fake k=\"v\"\] here" w="2"][y z="3"] msg')
    sd = {k: v for k, v in row["LogAttributes"].items() if k.startswith("sd.")}
    assert sd == {"sd.x@1.v": 'see [fake k="v"] here', "sd.x@1.w": "2", "sd.y.z": "3"}
    assert row["Body"] == "msg"


def test_rfc5424_sd_repeated_element_and_params() -> None:
    """Repeated SD elements and params (RFC 5424 lets `origin ip` repeat) each keep an entry."""
    out = parse_syslog(
        raw(['<14>1 - h a - - [origin ip="192.0.2.1" ip="192.0.2.2"][meta x="1"][meta y="2"] m'])
    )
    entries = [kv for kv in out.column("LogAttributes")[0].as_py() if kv[0].startswith("sd.")]
    assert entries == [
        ("sd.origin.ip", "192.0.2.1"),
        ("sd.origin.ip", "192.0.2.2"),
        ("sd.meta.x", "1"),
        ("sd.meta.y", "2"),
    ]


def test_rfc5424_all_nil() -> None:
    """A header of nils parses: no host/app attributes, Timestamp falls back to ReceivedAt, no error."""
    row = one("<13>1 - - - - - -")
    assert row["Timestamp"] == RECEIVED
    assert row["Body"] == ""
    assert row["ServiceName"] == ""
    assert row["ResourceAttributes"] == {}
    assert row["LogAttributes"] == {
        "syslog.facility": "user",
        "syslog.severity": "notice",
        "syslog.version": "1",
        "syslog.format": "rfc5424",
        "net.peer": PEER,
        "net.transport": "udp",
    }


def test_rfc5424_multiline_msg_kept() -> None:
    """A MSG with embedded newlines (octet-counted TCP) is kept whole."""
    row = one("<11>1 2024-01-02T03:04:05Z h app 1 - - Traceback:\n  File x\nValueError")
    assert row["Body"] == "Traceback:\n  File x\nValueError"
    assert row["Timestamp"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_rfc5424_timestamp_without_fraction_and_positive_offset() -> None:
    """A timestamp without fraction and with a +hh:mm offset converts to UTC."""
    row = one("<14>1 2024-01-02T03:04:05+05:30 h app - - - x")
    assert row["Timestamp"] == dt.datetime(2024, 1, 1, 21, 34, 5, tzinfo=UTC)


def test_rfc5424_invalid_timestamp() -> None:
    """An unparseable 5424 timestamp keeps the fields, uses ReceivedAt and flags the error."""
    row = one("<14>1 2024-13-45T99:04:05Z h app - - - x")
    assert row["Timestamp"] == RECEIVED
    assert row["Body"] == "x"
    assert row["LogAttributes"]["syslog.format"] == "rfc5424"
    assert row["LogAttributes"]["syslog.parse_error"] == "invalid timestamp"


def test_rfc5424_malformed_sd_lands_intact() -> None:
    """A 5424 line with broken STRUCTURED-DATA lands unparsed with its whole text as Body."""
    line = '<14>1 2024-01-02T03:04:05Z h app - - [bad sd="x] msg'
    row = one(line)
    assert row["Body"] == line
    assert row["LogAttributes"]["syslog.format"] == "unknown"
    assert row["LogAttributes"]["syslog.parse_error"] == "malformed RFC 5424 header or STRUCTURED-DATA"


# --- RFC 3164 -------------------------------------------------------------------------------------


def test_rfc3164_example() -> None:
    """RFC 3164 example: HOSTNAME, TAG and MSG; the year comes from ReceivedAt (previous year if in the future)."""
    row = one("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8")
    assert row["Timestamp"] == dt.datetime(2024, 10, 11, 22, 14, 15, tzinfo=UTC)
    assert row["Body"] == "'su root' failed for lonvick on /dev/pts/8"
    assert row["ServiceName"] == "su"
    assert row["ResourceAttributes"] == {"host.name": "mymachine", "service.name": "su"}
    assert row["LogAttributes"] == {
        "syslog.facility": "auth",
        "syslog.severity": "crit",
        "syslog.format": "rfc3164",
        "net.peer": PEER,
        "net.transport": "udp",
    }


def test_rfc3164_with_pid_and_padded_day() -> None:
    """TAG[PID] fills procid, and a space-padded day parses in the ReceivedAt year."""
    row = one("<30>Feb  5 17:32:18 web-1 nginx[4242]: GET / 200")
    assert row["Timestamp"] == dt.datetime(2025, 2, 5, 17, 32, 18, tzinfo=UTC)
    assert row["ServiceName"] == "nginx"
    assert row["LogAttributes"]["syslog.procid"] == "4242"
    assert row["LogAttributes"]["syslog.facility"] == "daemon"
    assert row["Body"] == "GET / 200"


def test_rfc3164_year_rollover() -> None:
    """A Dec 31 line received on Jan 1 gets the previous year; one within a day ahead keeps this year."""
    newyear = dt.datetime(2025, 1, 1, 0, 5, tzinfo=UTC)
    late, ahead = parse(["<13>Dec 31 23:59:59 h a: x", "<13>Jan  1 12:00:00 h a: x"], received=newyear)
    assert late["Timestamp"] == dt.datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert ahead["Timestamp"] == dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_rfc3164_feb_29_from_last_leap_year() -> None:
    """Feb 29 received in a non-leap year is placed in the last leap year, the only year it can be from."""
    row = one("<13>Feb 29 10:00:00 h a: x", received=dt.datetime(2025, 3, 1, tzinfo=UTC))
    assert row["Timestamp"] == dt.datetime(2024, 2, 29, 10, tzinfo=UTC)
    assert "syslog.parse_error" not in row["LogAttributes"]


def test_rfc3164_impossible_date() -> None:
    """An impossible 3164 date keeps the fields, uses ReceivedAt and flags the error."""
    row = one("<13>Jun 31 10:00:00 h a: x")
    assert row["Timestamp"] == RECEIVED
    assert row["Body"] == "x"
    assert row["LogAttributes"]["syslog.format"] == "rfc3164"
    assert row["LogAttributes"]["syslog.parse_error"] == "invalid timestamp"


@pytest.mark.parametrize(
    ("line", "app", "pid", "body"),
    [
        ("<13>Feb  5 17:32:18 sshd[123]: Accepted publickey", "sshd", "123", "Accepted publickey"),
        ("<13>Feb  5 17:32:18 kernel: [ 0.000] Booting", "kernel", None, "[ 0.000] Booting"),
    ],
)
def test_rfc3164_without_hostname_uses_peer_ip(line: str, app: str, pid: str | None, body: str) -> None:
    """When the token after the timestamp is `TAG:` or `TAG[PID]:`, host.name is the peer IP."""
    row = one(line)
    assert row["ServiceName"] == app
    assert row["LogAttributes"].get("syslog.procid") == pid
    assert row["Body"] == body
    assert row["ResourceAttributes"]["host.name"] == "192.0.2.7"
    # APP-NAME and HOSTNAME live in ServiceName and host.name only, never repeated as attributes.
    assert not {"syslog.hostname", "syslog.appname"} & set(row["LogAttributes"])


def test_rfc3164_without_hostname_ipv6_peer() -> None:
    """A bracketed IPv6 peer loses its brackets and port when used as host.name."""
    row = one("<13>Feb  5 17:32:18 app: hi", peer="[2001:db8::1]:514")
    assert row["ResourceAttributes"]["host.name"] == "2001:db8::1"
    assert row["LogAttributes"]["net.peer"] == "[2001:db8::1]:514"


def test_rfc3164_without_tag() -> None:
    """With a PRI, `HOSTNAME MSG` without a TAG still parses (RFC 3164 example `Use the BFG!`)."""
    row = one("<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!")
    assert row["ResourceAttributes"] == {"host.name": "10.0.0.99"}
    assert row["ServiceName"] == ""
    assert row["Body"] == "Use the BFG!"
    assert row["LogAttributes"]["syslog.format"] == "rfc3164"


def test_rfc3164_app_names_with_punctuation() -> None:
    """TAGs with parentheses, slashes, dots, a version or a leading `--` word are kept whole."""
    rows = parse(
        [
            "<22>Jun  4 01:02:03 mx postfix/smtpd[77]: connect from x",
            "<22>Jun  4 01:02:03 nfs rpc.statd[1]: Version 1.0.6 Starting",
            "Jun 19 04:09:11 combo syslogd 1.4.1: restart.",
            "Jul  7 08:06:15 combo  -- root[2421]: ROOT LOGIN ON tty2",
        ]
    )
    assert [r["ServiceName"] for r in rows] == ["postfix/smtpd", "rpc.statd", "syslogd 1.4.1", "-- root"]
    assert [r["Body"] for r in rows] == [
        "connect from x",
        "Version 1.0.6 Starting",
        "restart.",
        "ROOT LOGIN ON tty2",
    ]


def test_rfc3164_without_pri() -> None:
    """A local-file line without PRI parses as user.notice and is marked pri_missing."""
    row = one("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown")
    assert row["Timestamp"] == dt.datetime(2024, 6, 14, 15, 16, 1, tzinfo=UTC)
    assert row["ServiceName"] == "sshd(pam_unix)"
    assert row["Body"] == "check pass; user unknown"
    assert row["ResourceAttributes"] == {"host.name": "combo", "service.name": "sshd(pam_unix)"}
    attrs = row["LogAttributes"]
    assert attrs["syslog.pri_missing"] == "true"
    assert (attrs["syslog.facility"], attrs["syslog.severity"]) == ("user", "notice")
    assert (row["SeverityNumber"], row["SeverityText"]) == (10, "NOTICE")


def test_rfc3164_with_rfc3339_timestamp_as_rsyslog_forwardformat() -> None:
    """rsyslog's RSYSLOG_ForwardFormat: a 3164 line whose timestamp is RFC 3339 with a fraction and offset."""
    row = one("<30>2025-03-01T13:00:00.123456+01:00 web-1 nginx[123]: GET / 200")
    assert row["Timestamp"] == dt.datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert row["ResourceAttributes"]["host.name"] == "web-1" and row["ServiceName"] == "nginx"
    assert row["LogAttributes"]["syslog.procid"] == "123" and row["LogAttributes"]["syslog.format"] == "rfc3164"
    assert row["Body"] == "GET / 200" and "syslog.parse_error" not in row["LogAttributes"]


def test_rfc3164_with_year_and_fraction() -> None:
    """Devices that add the year and sub-second digits to the classic timestamp."""
    rows = parse(["<13>Feb 27 2024 10:00:00 host app: with year", "<13>Feb 28 11:59:58.25 host app: with fraction"])
    assert rows[0]["Timestamp"] == dt.datetime(2024, 2, 27, 10, 0, 0, tzinfo=UTC)
    assert rows[1]["Timestamp"] == dt.datetime(2025, 2, 28, 11, 59, 58, 250000, tzinfo=UTC)
    assert [r["Body"] for r in rows] == ["with year", "with fraction"]


def test_cisco_ios_sequence_number_and_clock_marks() -> None:
    """Cisco IOS: `seq: *time: %FAC-SEV-MNEMONIC: text`. The mnemonic is the app, the host comes
    from the peer, and `*` (clock never set) puts the line at ReceivedAt, `.` (not synced) keeps its time."""
    rows = parse([
        "<189>123: *Mar  1 18:46:11.123: %SYS-5-CONFIG_I: Configured from console by vty0",
        "<187>124: .Feb 28 18:46:11.5: %LINK-3-UPDOWN: Interface Gi0/1, changed state to down",
    ])
    assert [r["ServiceName"] for r in rows] == ["%SYS-5-CONFIG_I", "%LINK-3-UPDOWN"]
    assert [r["Body"] for r in rows] == ["Configured from console by vty0", "Interface Gi0/1, changed state to down"]
    assert rows[0]["Timestamp"] == RECEIVED
    assert rows[1]["Timestamp"] == dt.datetime(2025, 2, 28, 18, 46, 11, 500000, tzinfo=UTC)
    assert [r["LogAttributes"]["syslog.severity"] for r in rows] == ["notice", "err"]
    assert all(r["ResourceAttributes"]["host.name"] == "192.0.2.7" for r in rows)


def test_rfc3164_message_keeps_whitespace() -> None:
    """Body is the MSG exactly as sent, leading indentation and trailing spaces included."""
    row = one("<6>Jul 27 14:41:57 combo kernel:   DMA zone: 4096 pages ")
    assert row["Body"] == "  DMA zone: 4096 pages "


# --- Lines that are neither ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason", "pri"),
    [
        ("hello world", "not RFC 5424 or RFC 3164", None),
        ("", "empty line", None),
        ("<13>just a message", "not RFC 5424 or RFC 3164", ("user", "notice", 10, "NOTICE")),
        ("<192>Oct 11 22:14:15 host app: PRI out of range", "not RFC 5424 or RFC 3164", None),
        ("<013>Oct 11 22:14:15 host app: leading zero in PRI", "not RFC 5424 or RFC 3164", None),
        ("Jun 14 15:16:01 combo text without a tag", "not RFC 5424 or RFC 3164", None),
        ("<11>1 - - - - - x SD is not - or [...]", "malformed RFC 5424 header or STRUCTURED-DATA", ("user", "err", 17, "ERR")),
        ("  \t<13>Oct 11 22:14:15 host app: leading blanks", "not RFC 5424 or RFC 3164", None),
    ],
)
def test_unparseable_lines_land_intact(line: str, reason: str, pri: tuple[str, str, int, str] | None) -> None:
    """A line that is neither format keeps its whole text, ReceivedAt and a parse_error reason; a
    valid PRI in front still gives it its facility and severity, so `level:error` finds it."""
    row = one(line, transport="tcp")
    assert row["Body"] == line
    assert row["Timestamp"] == RECEIVED
    assert row["ServiceName"] == ""
    assert row["ResourceAttributes"] == {}
    facility = {"syslog.facility": pri[0], "syslog.severity": pri[1]} if pri else {}
    assert (row["SeverityNumber"], row["SeverityText"]) == ((pri[2], pri[3]) if pri else (0, ""))
    assert row["LogAttributes"] == {
        **facility,
        "syslog.format": "unknown",
        "syslog.parse_error": reason,
        "net.peer": PEER,
        "net.transport": "tcp",
    }


@pytest.mark.parametrize(
    ("pri", "facility", "severity", "number", "text"),
    [
        (0, "kern", "emerg", 21, "EMERG"),
        (9, "user", "alert", 19, "ALERT"),
        (34, "auth", "crit", 18, "CRIT"),
        (43, "syslog", "err", 17, "ERR"),
        (12, "user", "warning", 13, "WARNING"),
        (86, "authpriv", "info", 9, "INFO"),
        (165, "local4", "notice", 10, "NOTICE"),
        (191, "local7", "debug", 5, "DEBUG"),
        (123, "solaris-cron", "err", 17, "ERR"),
        (104, "security", "emerg", 21, "EMERG"),
    ],
)
def test_pri_decoding(pri: int, facility: str, severity: str, number: int, text: str) -> None:
    """PRI decodes to facility/severity names, SeverityText as sent (upper case: CRIT stays CRIT)
    and OTel's SeverityNumber, identically in both formats."""
    for line in (f"<{pri}>1 - h app - - - m", f"<{pri}>Oct 11 22:14:15 h app: m"):
        row = one(line)
        assert row["LogAttributes"]["syslog.facility"] == facility
        assert row["LogAttributes"]["syslog.severity"] == severity
        assert (row["SeverityNumber"], row["SeverityText"]) == (number, text)


def test_mixed_batch_keeps_order_and_tenant() -> None:
    """A batch mixing formats returns one row per line, in order, with the given tenant."""
    lines = ["<13>1 - h a - - - one", "nonsense", "<13>Oct 11 22:14:15 h a: three", ""]
    out = parse_syslog(raw(lines), tenant="acme")
    assert out.schema == LOGS
    assert out.column("Body").to_pylist() == ["one", "nonsense", "three", ""]
    assert set(out.column("Tenant").to_pylist()) == {"acme"}
    assert set(out.column("Source").to_pylist()) == {"syslog"}


def test_empty_batch() -> None:
    """An empty RAW_LINES table gives an empty LOGS table."""
    out = parse_syslog(RAW_LINES.empty_table())
    assert out.num_rows == 0
    assert out.schema == LOGS


# --- loghub real data -------------------------------------------------------------------------------


def _loghub(name: str) -> tuple[list[str], list[dict[str, str]], list[dict[str, Any]]]:
    # A missing dataset fails the test (loghub() raises, naming where it looked): never a skip.
    log = loghub(f"{name}/{name}_2k.log")
    truth = loghub(f"{name}/{name}_2k.log_structured.csv")
    # The files use CRLF line ends; splitting on exactly that keeps any other byte in the line.
    with log.open(encoding="utf-8", newline="") as f:
        lines = f.read().removesuffix("\r\n").split("\r\n")
    with truth.open(encoding="utf-8", newline="") as f:
        expected = list(csv.DictReader(f))
    assert len(lines) == len(expected) == 2000
    return lines, expected, parse(lines, received=dt.datetime(2025, 1, 15, tzinfo=UTC))


def test_missing_dataset_fails_naming_both_places(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A loghub test whose data is missing fails (CI included) with an error naming $FERRY_DATASETS
    and the shared folder beside the repository; it never skips."""
    monkeypatch.setenv(datasets.ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        _loghub("NoSuchSystem")
    assert str(tmp_path / "loghub/NoSuchSystem") in str(e.value)
    assert "shared/datasets/loghub/NoSuchSystem" in str(e.value)


def test_datasets_env_var_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$FERRY_DATASETS is looked in first, so a machine may keep the data anywhere."""
    (tmp_path / "loghub/Tiny").mkdir(parents=True)
    monkeypatch.setenv(datasets.ENV, str(tmp_path))
    assert loghub("Tiny") == tmp_path / "loghub/Tiny"


def _mismatches(got: list[tuple[str, ...]], want: list[tuple[str, ...]]) -> list[tuple[int, Any, Any]]:
    return [(i + 1, g, w) for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]


def _observed(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Per parsed row: hostname, app, procid, stripped body and BSD-style time, as loghub records them."""
    return [
        (
            r["ResourceAttributes"].get("host.name", ""),
            r["ServiceName"],
            r["LogAttributes"].get("syslog.procid", ""),
            r["Body"].strip(),
            r["Timestamp"].strftime("%b %-d %H:%M:%S"),
        )
        for r in rows
    ]


def test_loghub_linux_matches_ground_truth() -> None:
    """Every loghub Linux line parses as PRI-less 3164 with host, TAG, PID, time and Content as in the ground truth.

    The ground truth strips surrounding whitespace from Content (8 kernel lines are indented, many
    lines end in a space) while Body keeps the MSG exactly, so Body is compared stripped and must
    otherwise be the exact tail of the raw line.
    """
    lines, expected, rows = _loghub("Linux")
    got = _observed(rows)
    want = [
        (e["Level"], e["Component"], e["PID"], e["Content"], f"{e['Month']} {e['Date']} {e['Time']}")
        for e in expected
    ]
    assert _mismatches(got, want) == []
    assert all(line.endswith(r["Body"]) for line, r in zip(lines, rows, strict=True))
    assert {r["LogAttributes"]["syslog.format"] for r in rows} == {"rfc3164"}
    assert {r["LogAttributes"]["syslog.pri_missing"] for r in rows} == {"true"}


def test_loghub_openssh_matches_ground_truth() -> None:
    """Every loghub OpenSSH line parses with host (ground truth `Component`), PID, time and Content as in the ground truth.

    As for Linux, the ground truth strips trailing spaces from Content, so Body is compared stripped.
    """
    lines, expected, rows = _loghub("OpenSSH")
    got = _observed(rows)
    want = [
        (e["Component"], "sshd", e["Pid"], e["Content"], f"{e['Date']} {e['Day']} {e['Time']}")
        for e in expected
    ]
    assert _mismatches(got, want) == []
    assert all(line.endswith(r["Body"]) for line, r in zip(lines, rows, strict=True))
