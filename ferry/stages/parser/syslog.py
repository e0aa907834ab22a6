"""Turn RAW_LINES batches (syslog lines off the wire) into LOGS rows.

RFC 5424, RFC 3164 (with or without PRI and HOSTNAME, and the variants real senders use: an RFC 3339
timestamp as in rsyslog's RSYSLOG_ForwardFormat, a year, fractional seconds, Cisco IOS's sequence
number and clock marks) and unparseable lines, all vectorised in polars.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from ferry.schema.tables import ATTRS, LOGS, conform

__all__ = ["parse_syslog"]

# PRI is 0..191 without leading zeros; encoding the range in the regex makes an out-of-range PRI
# fall through to the "unknown" path instead of needing a separate check.
_PRI = r"(?:0|[1-9]\d?|1[0-8]\d|19[01])"
_SD_NAME = r'[^\s\]="]+'
_SD_VALUE = r'"(?:[^"\\]|\\.)*"'
_SD_ELEMENT = rf"\[{_SD_NAME}(?: {_SD_NAME}={_SD_VALUE})*\]"
_SD_TOKEN = rf"(?s)\[{_SD_NAME}| {_SD_NAME}={_SD_VALUE}"

# The header and STRUCTURED-DATA, then a space or the end: MSG may hold anything, so the match
# can stop there instead of walking the whole message (it is only ever used as a yes/no test).
_RE_5424 = (
    rf"(?s)^<(?P<pri>{_PRI})>(?P<ver>[1-9]\d{{0,2}}) (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+)"
    rf" (?P<procid>\S+) (?P<msgid>\S+) (?P<sd>-|(?:{_SD_ELEMENT})+)(?: |$)"
)
# Anything that starts like a 5424 header but fails the full pattern gets a more specific reason.
_RE_5424_PREFIX = r"^<\d{1,3}>\d{1,3} "

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)"
# A TAG word: app names such as `sshd(pam_unix)`, `postfix/smtpd` or `rpc.statd` are allowed, but
# not the brackets and colon that delimit PID and message.
_W = r"[^\s\[\]:]+"
# The ways past the timestamp, tried in order:
#   a  no HOSTNAME: the first token is itself `TAG:` or `TAG[PID]:` (host comes from the peer);
#   b  HOSTNAME TAG[PID]: where TAG may be two words (`-- root[2421]:` from login);
#   c  HOSTNAME TAG: where TAG may carry a version (`syslogd 1.4.1:` from sysklogd);
#   d  HOSTNAME MSG with no recognisable TAG, only accepted when a PRI is present (checked later),
#      since without PRI a leading date alone is too weak a sign that a line is syslog.
# Only the header is captured (MSG is whatever follows `head`): capture groups are the slow part
# of regex matching, and they cost per byte they have to walk.
_AFTER_TIME = (
    rf" (?:(?:(?P<tag_a>{_W})(?:\[(?P<pid_a>[^\[\]\s]*)\])?:"
    rf"|(?P<host_b>\S+) +(?:(?P<tag_b>{_W}(?: {_W})?)\[(?P<pid_b>[^\[\]\s]*)\]:"
    rf"|(?P<tag_c>{_W}(?: \d+(?:\.\d+)+)?):))"
    r"(?:$| )"
    r"|(?P<host_d>\S+) ))"
)
_MON_DAY = rf"(?P<mon>{'|'.join(_MONTHS)}) {{1,2}}(?P<day>\d{{1,2}})"
_RE_3164 = rf"^(?P<head>(?:<(?P<pri>{_PRI})>)?{_MON_DAY} (?P<hms>\d\d:\d\d:\d\d){_AFTER_TIME}"
# What real senders write instead of the classic timestamp, tried only on lines _RE_3164 does not
# take (its extra groups would cost every 3164 line ~25 %): a year after the day, a fraction and a
# colon after the seconds (`Mar  1 2026 18:46:11.123:`), or RFC 3339 (rsyslog's RSYSLOG_ForwardFormat);
# Cisco IOS may put a sequence number (`123: `) and `*` (clock never set: the time is taken from
# ReceivedAt) or `.` (clock not synced now) in front of the time.
_RE_3164_VARIANTS = (
    rf"^(?P<head>(?:<(?P<pri>{_PRI})>)?(?:\d{{1,10}}: )?(?P<clock>[*.])?"
    rf"(?:{_MON_DAY}(?: (?P<year>\d{{4}}))? (?P<hms>\d\d:\d\d:\d\d)(?P<frac>\.\d{{1,9}})?:?"
    rf"|(?P<iso>{_RFC3339})){_AFTER_TIME}"
)
_VARIANT_ONLY = ("clock", "year", "frac", "iso")

_FACILITIES = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "security", "console", "solaris-cron",
    *(f"local{i}" for i in range(8)),
]  # fmt: skip
_SEVERITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
# SeverityText is the severity as the sender wrote it (CRIT stays CRIT: an operator reads what
# the device said, and OTel leaves SeverityText to the source), upper case like OTel's names.
# SeverityNumber is OTel's mapping, which is what level filters and ranges compare.
_SEVERITY_TEXT = [s.upper() for s in _SEVERITIES]
_OTEL_NUMBER = [21, 19, 18, 17, 13, 10, 9, 5]

# Default PRI for lines without one: user.notice, as logger(1) and syslog(3) use.
_DEFAULT_PRI = 13

_REASON_EMPTY = "empty line"
_REASON_5424 = "malformed RFC 5424 header or STRUCTURED-DATA"
_REASON_NONE = "not RFC 5424 or RFC 3164"
_REASON_TS = "invalid timestamp"

_TS = pl.Datetime("ns", "UTC")

# (LogAttributes key, working column) in the order the keys appear in each map. APP-NAME and
# HOSTNAME are not repeated here: they are ServiceName / service.name and host.name, and each map
# entry costs the store ~0.3 us per row.
_LOG_ATTRS = [
    ("syslog.facility", "_facility"),
    ("syslog.severity", "_severity"),
    ("syslog.version", "_version"),
    ("syslog.procid", "_procid"),
    ("syslog.msgid", "_msgid"),
    ("syslog.format", "_format"),
    ("syslog.pri_missing", "_pri_missing"),
    ("syslog.parse_error", "_error"),
    ("net.peer", "Peer"),
    ("net.transport", "Transport"),
]
_RESOURCE_ATTRS = [("host.name", "_host"), ("service.name", "_app")]
_EMPTY_STRING_COLUMNS = [
    "TraceId", "SpanId", "ResourceSchemaUrl", "ScopeSchemaUrl", "ScopeName", "ScopeVersion", "BatchId",
]  # fmt: skip


def parse_syslog(raw: pa.Table, *, tenant: str = "default") -> pa.Table:
    """Parse a RAW_LINES table into a table with exactly the LOGS schema, one row per line.

    Lines that are neither RFC 5424 nor RFC 3164 keep the whole line as Body, Timestamp =
    ReceivedAt and a `syslog.parse_error` attribute, so nothing is dropped.
    """
    if raw.num_rows == 0:
        return LOGS.empty_table()
    df = pl.from_arrow(raw.select(["ReceivedAt", "Peer", "Transport", "Line"]))
    assert isinstance(df, pl.DataFrame)
    df = df.with_columns(
        pl.col("ReceivedAt").cast(_TS),
        pl.col("Line").fill_null(""),
        pl.col("Peer").fill_null(""),
        pl.col("Transport").fill_null(""),
    )
    fields = _extract_fields(df)
    sd = _structured_data(fields)
    log_attrs = _build_map(fields, _LOG_ATTRS, sd)
    resource_attrs = _build_map(fields, _RESOURCE_ATTRS, None)

    out = fields.select(
        pl.col("_ts").fill_null(pl.col("ReceivedAt")).alias("Timestamp"),
        pl.col("ReceivedAt").alias("ObservedTimestamp"),
        pl.col("_sev_text").alias("SeverityText"),
        pl.col("_sev_number").alias("SeverityNumber"),
        pl.col("_app").fill_null("").alias("ServiceName"),
        pl.col("_body").alias("Body"),
        pl.lit(tenant).alias("Tenant"),
        pl.lit("syslog").alias("Source"),
        pl.col("ReceivedAt").alias("IngestTime"),
        # conform() would build these defaults from Python lists, which costs more than all the
        # parsing of a large batch; polars literals are nearly free.
        *(pl.lit("").alias(c) for c in _EMPTY_STRING_COLUMNS),
        pl.lit(0, pl.UInt8).alias("TraceFlags"),
    ).to_arrow()
    out = out.append_column("ResourceAttributes", resource_attrs)
    out = out.append_column("LogAttributes", log_attrs)
    empty_map = pa.MapArray.from_arrays(
        pa.array(np.zeros(len(out) + 1, dtype=np.int32)),
        pa.array([], pa.string()),
        pa.array([], pa.string()),
        type=ATTRS,
    )
    out = out.append_column("ScopeAttributes", empty_map)
    return conform(out, LOGS)


def _nil(col: pl.Expr) -> pl.Expr:
    """RFC 5424 writes a missing header field as `-`; treat it like an absent one."""
    return pl.when(col == "-").then(None).otherwise(col)


def _extract_fields(df: pl.DataFrame) -> pl.DataFrame:
    """Add one working column per syslog field (null when absent) to `df`."""
    line = pl.col("Line")
    # Capture-group extraction is several times slower than a match test plus a split, so RFC 5424
    # (the high-volume format) is validated with the full regex and then cut apart with splitn;
    # its header fields never contain spaces. Only the rare rows with real SD run a capture regex.
    df = df.with_columns(line.str.contains(_RE_5424).alias("_is5"))
    is5 = pl.col("_is5")
    df = df.with_columns(
        pl.when(is5).then(line).str.splitn(" ", 7).alias("_p5"),
        # Only lines that are not 5424 pay for the RFC 3164 regex.
        pl.when(~is5).then(line).str.extract_groups(_RE_3164).alias("_g3"),
    )
    g3 = pl.col("_g3").struct
    df = _with_3164_variants(df, ~is5 & g3.field("mon").is_null())
    p5 = pl.col("_p5").struct
    # Branch d (no TAG) is only trusted when the line carried a PRI.
    is3 = (
        ~is5
        & (g3.field("mon").is_not_null() | g3.field("iso").is_not_null())
        & (g3.field("host_d").is_null() | g3.field("pri").is_not_null())
    )
    sd_and_msg = p5.field("field_6")
    df = df.with_columns(
        is3.alias("_is3"),
        p5.field("field_0").str.strip_prefix("<").str.split_exact(">", 1).alias("_privers"),
        pl.when(sd_and_msg.str.starts_with("-"))
        .then(pl.lit("-"))
        .otherwise(sd_and_msg.str.extract(rf"(?s)^((?:{_SD_ELEMENT})+)", 1))
        .alias("_sd"),
    )
    is3 = pl.col("_is3")
    privers = pl.col("_privers").struct
    # polars evaluates every branch of a when/then for every row: the RFC 3164 timestamp alone cost
    # 0.14 us a line on batches without a single 3164 line. Branches no row takes are left out.
    iso, year, frac, unset = g3.field("iso"), g3.field("year"), g3.field("frac"), g3.field("clock") == "*"
    n5, n3, n_iso, n_year, n_frac, n_unset = df.select(
        is5.sum().alias("n5"), is3.sum().alias("n3"), (is3 & iso.is_not_null()).sum().alias("iso"),
        (is3 & year.is_not_null()).sum().alias("year"), (is3 & frac.is_not_null()).sum().alias("frac"),
        (is3 & unset).sum().alias("unset"),
    ).row(0)
    any_other = n5 + n3 < df.height

    host3 = pl.coalesce(g3.field("host_b"), g3.field("host_d"))
    ts5 = p5.field("field_1")
    df = df.with_columns(
        _first_of(
            (is5, privers.field("field_0").cast(pl.Int32), n5),
            (is3, g3.field("pri").cast(pl.Int32).fill_null(_DEFAULT_PRI), n3),
            # A line neither format can read still says how severe it is when it starts with a PRI.
            (~is5 & ~is3, line.str.extract(rf"^<({_PRI})>", 1).cast(pl.Int32), any_other),
            default=pl.lit(None, pl.Int32),
        ).alias("_pri"),
        pl.when(is5).then(privers.field("field_1")).alias("_version"),
        pl.when(is5).then(_nil(p5.field("field_2"))).when(is3).then(host3).alias("_hostname"),
        pl.when(is5)
        .then(_nil(p5.field("field_3")))
        .when(is3)
        .then(pl.coalesce(g3.field("tag_a"), g3.field("tag_b"), g3.field("tag_c")))
        .alias("_app"),
        pl.when(is5)
        .then(_nil(p5.field("field_4")))
        .when(is3)
        .then(pl.coalesce(g3.field("pid_a"), g3.field("pid_b")))
        .alias("_procid"),
        pl.when(is5).then(_nil(p5.field("field_5"))).alias("_msgid"),
        pl.when(is5)
        .then(sd_and_msg.str.strip_prefix(pl.col("_sd")).str.strip_chars_start(" ").str.strip_prefix("\ufeff"))
        .when(is3)
        .then(line.str.strip_prefix(g3.field("head")))
        .otherwise(line)
        .alias("_body"),
        pl.when(is5)
        .then(pl.lit("rfc5424"))
        .when(is3)
        .then(pl.lit("rfc3164"))
        .otherwise(pl.lit("unknown"))
        .alias("_format"),
        pl.when(is3 & g3.field("pri").is_null()).then(pl.lit("true")).alias("_pri_missing"),
        _first_of(
            (is5, _ts_5424(ts5), n5),
            (is3, _ts_3164_variants(g3, n_iso, n_year, n_frac, n_unset), n3),
            default=pl.lit(None, _TS),
        ).alias("_ts"),
    )
    ts_bad = pl.col("_ts").is_null() & (is3 | (is5 & (ts5 != "-")))
    df = df.with_columns(
        # A 3164 line without HOSTNAME names its sender by the peer address, without the port
        # (IPv6 peers are expected bracketed, `[::1]:514`, as a bare form would be ambiguous).
        _first_of(
            (
                is3 & pl.col("_hostname").is_null(),
                pl.col("Peer").str.replace(r"^(?:\[([^\]]*)\]|([^:\[\]]*)):\d+$", "${1}${2}"),
                n3,
            ),
            default=pl.col("_hostname"),
        ).alias("_host"),
        _first_of(
            (line == "", pl.lit(_REASON_EMPTY), any_other),
            (~is5 & ~is3 & line.str.contains(_RE_5424_PREFIX), pl.lit(_REASON_5424), any_other),
            (~is5 & ~is3, pl.lit(_REASON_NONE), any_other),
            (ts_bad, pl.lit(_REASON_TS), True),
            default=pl.lit(None, pl.String),
        ).alias("_error"),
        _lookup(pl.col("_pri") // 8, _FACILITIES, pl.String).alias("_facility"),
        _lookup(pl.col("_pri") % 8, _SEVERITIES, pl.String).alias("_severity"),
        _lookup(pl.col("_pri") % 8, _SEVERITY_TEXT, pl.String).fill_null("").alias("_sev_text"),
        _lookup(pl.col("_pri") % 8, _OTEL_NUMBER, pl.UInt8).fill_null(0).alias("_sev_number"),
    )
    return df.drop("_p5", "_g3", "_privers")


def _with_3164_variants(df: pl.DataFrame, untaken: pl.Expr) -> pl.DataFrame:
    """`_g3` with the fields of _RE_3164_VARIANTS too, matched on the `untaken` rows only (null
    elsewhere, and for every row when no row is untaken)."""
    classic = [f.name for f in df.schema["_g3"].fields]  # type: ignore[attr-defined]
    g3 = pl.col("_g3").struct
    if not df.select(untaken.any()).item():
        fields = [*(g3.field(f) for f in classic), *(pl.lit(None, pl.String).alias(f) for f in _VARIANT_ONLY)]
        return df.with_columns(pl.struct(fields).alias("_g3"))
    gx = pl.col("_g3x").struct
    df = df.with_columns(pl.when(untaken).then(pl.col("Line")).str.extract_groups(_RE_3164_VARIANTS).alias("_g3x"))
    fields = [*(pl.coalesce(g3.field(f), gx.field(f)).alias(f) for f in classic), *(gx.field(f) for f in _VARIANT_ONLY)]
    return df.with_columns(pl.struct(fields).alias("_g3")).drop("_g3x")


def _first_of(*branches: tuple[pl.Expr, pl.Expr, int | bool], default: pl.Expr) -> pl.Expr:
    """`when(c1).then(v1).when(c2).then(v2)...otherwise(default)`, leaving out each branch whose
    third item (how many rows take it, or whether any might) is 0/False."""
    out = default
    for cond, value, taken in reversed(branches):
        if taken:
            out = pl.when(cond).then(value).otherwise(out)
    return out


def _lookup(index: pl.Expr, table: list[str] | list[int], dtype: type[pl.DataType]) -> pl.Expr:
    return index.replace_strict(list(range(len(table))), table, default=None, return_dtype=dtype)


def _ts_5424(ts: pl.Expr) -> pl.Expr:
    """RFC 3339 timestamp (fraction optional, `Z` or ±hh:mm) to UTC; nil and invalid become null."""
    # %#z takes `Z` as well as numeric offsets, sparing a replace pass; the parse cache is off
    # because sub-second 5424 timestamps are nearly all distinct, where caching only costs.
    return ts.str.to_datetime(
        format="%Y-%m-%dT%H:%M:%S%.f%#z", strict=False, time_unit="ns", time_zone="UTC", cache=False
    )


def _ts_3164_variants(g3: pl.expr.struct.ExprStructNameSpace, n_iso: int, n_year: int, n_frac: int, n_unset: int) -> pl.Expr:
    """The timestamp of an RFC 3164 line in any of the forms _RE_3164 takes (the counts say which
    forms the batch holds, so the others cost nothing)."""
    plain = _ts_3164(g3.field("mon"), g3.field("day"), g3.field("hms"), g3.field("year") if n_year else None)
    if n_frac:
        # `.5` is half a second: the digits, padded to nine, are nanoseconds.
        ns = pl.concat_str(g3.field("frac").str.slice(1), pl.lit("00000000")).str.slice(0, 9).cast(pl.Int64)
        plain = pl.when(g3.field("frac").is_not_null()).then(plain + pl.duration(nanoseconds=ns)).otherwise(plain)
    return _first_of(
        (g3.field("clock") == "*", pl.col("ReceivedAt"), n_unset),  # a clock never set says nothing
        (g3.field("iso").is_not_null(), _ts_5424(g3.field("iso")), n_iso),
        default=plain,
    )


def _ts_3164(mon: pl.Expr, day: pl.Expr, hms: pl.Expr, year: pl.Expr | None = None) -> pl.Expr:
    """`Mmm dd hh:mm:ss` (UTC) with the year of ReceivedAt, or the year before if that would put it
    more than a day after ReceivedAt (December lines read in January); a line's own year, where
    it has one, wins."""
    received = pl.col("ReceivedAt")
    rest = pl.concat_str(pl.lit(" "), mon, pl.lit(" "), day, pl.lit(" "), hms)

    def at(y: pl.Expr) -> pl.Expr:
        return pl.concat_str(y.cast(pl.String), rest).str.to_datetime(
            format="%Y %b %d %H:%M:%S", strict=False, time_unit="ns", time_zone="UTC"
        )

    this_year = at(received.dt.year())
    # An invalid date this year (Feb 29) can still be valid last year, so fall back to it too.
    inferred = (
        pl.when(this_year.is_not_null() & (this_year <= received + pl.duration(days=1)))
        .then(this_year)
        .otherwise(at(received.dt.year() - 1))
    )
    if year is None:
        return inferred
    return pl.when(year.is_not_null()).then(at(year.cast(pl.Int32))).otherwise(inferred)


def _structured_data(fields: pl.DataFrame) -> pl.DataFrame | None:
    """Explode RFC 5424 STRUCTURED-DATA into rows (row, key, value), key = `sd.<SD-ID>.<PARAM>`.

    Done with polars list/explode expressions over only the rows whose SD is not `-`, so it stays
    vectorised; a repeated PARAM-NAME (RFC 5424 allows e.g. several `origin ip`) gives one row each.
    """
    rows = fields.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), pl.col("_sd")).filter(
        pl.col("_sd").is_not_null() & (pl.col("_sd") != "-")
    )
    if rows.height == 0:
        return None
    # One scan cuts the (already validated) SD into tokens: `[SD-ID` opens an element and
    # ` NAME="VALUE"` is a param of the element opened last; a `[` inside a VALUE is consumed by
    # its param, so it cannot open an element. Half the cost of splitting elements, then params.
    tokens = rows.select(pl.col("row"), pl.col("_sd").str.extract_all(_SD_TOKEN).alias("tok")).explode("tok")
    tok = pl.col("tok")
    params = tokens.with_columns(
        # Every row's SD starts with an element, so the fill never crosses rows.
        pl.when(tok.str.starts_with("[")).then(tok.str.slice(1)).forward_fill().alias("sd_id")
    ).filter(tok.str.starts_with(" "))
    # NAME holds no `=` or `"`, so the first `="` ends it; the VALUE ends with the closing quote.
    name_value = pl.col("tok").str.splitn('="', 2).struct
    value = name_value.field("field_1").str.strip_suffix('"')
    # RFC 5424 escapes only `"`, `\` and `]`; a backslash before anything else is literal. The
    # unescaping regex costs a fifth of this function, so it only runs when some SD has a backslash.
    if rows.select(pl.col("_sd").str.contains("\\", literal=True).any()).item():
        value = value.str.replace_all(r'\\(["\\\]])', "${1}")
    return params.select(
        pl.col("row"),
        pl.concat_str(pl.lit("sd."), pl.col("sd_id"), pl.lit("."), name_value.field("field_0").str.slice(1)).alias("key"),
        value.alias("value"),
    )


def _build_map(fields: pl.DataFrame, spec: list[tuple[str, str]], extra: pl.DataFrame | None) -> pa.Array:
    """Build a map<string,string> column from per-key value columns, skipping null/empty values.

    Assembled with numpy index arithmetic on flat arrays: building list-of-struct columns in
    polars and filtering them was more than ten times slower on 50k-row batches.
    `extra` (row, key, value) rows, sorted by row, are appended after the fixed keys of their row,
    empty values included.
    """
    n = fields.height
    cols = fields.select(pl.col(c) for _, c in spec)
    present = cols.select((pl.col(c).is_not_null() & (pl.col(c) != "")).alias(c) for _, c in spec).to_numpy()
    # np.nonzero walks a C-ordered matrix row by row, which is exactly the map entry order.
    rows, which = np.nonzero(present)
    # Every key and value string is copied once, by one take from one flat array per side; the
    # entry order is worked out on integer indexes first (two string takes cost 0.1 us a line more).
    key_pool = [pa.array([k for k, _ in spec], pa.string())]
    value_pool = [s.to_arrow().cast(pa.string()) for s in cols.get_columns()]
    key_index = which.astype(np.int64)
    value_index = key_index * n + rows
    counts = np.bincount(rows, minlength=n)

    if extra is not None and extra.height:
        # Unlike the fixed keys, an SD param is kept even when its value is empty: it was sent.
        extra = extra.filter(pl.col("value").is_not_null())
        extra_rows = extra.get_column("row").to_numpy()
        counts = counts + np.bincount(extra_rows, minlength=n)
        # A stable sort by row places each row's extra entries after its fixed ones.
        order = np.argsort(np.concatenate([rows, extra_rows]), kind="stable")
        tail = np.arange(len(extra_rows), dtype=np.int64)
        key_index = np.concatenate([key_index, len(spec) + tail])[order]
        value_index = np.concatenate([value_index, len(spec) * n + tail])[order]
        key_pool.append(extra.get_column("key").to_arrow().cast(pa.string()))
        value_pool.append(extra.get_column("value").to_arrow().cast(pa.string()))

    keys = pa.concat_arrays(key_pool).take(pa.array(key_index))
    values = pa.concat_arrays(value_pool).take(pa.array(value_index))
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values, type=ATTRS)
