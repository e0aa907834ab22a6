"""The parse transforms: a field's text (body by default) read as JSON, logfmt, key/value pairs, a regex,
grok, a syslog line or an Apache access log line, into attributes (and, for syslog/clf, record fields).

Rules every parse here follows (decided here, documented in docs/transforms.md by the lead):
- What a parse adds is an attribute of the record (LogAttributes) named `prefix + key`, never a record
  field, even for a key spelled `message` or `level` (a JSON log's `level` must not silently replace the
  severity); a prefix starting `resource.` or `scope.` puts them in that map instead. `set`/`rename`/`cast`
  move values into fields. Only syslog, clf and combined set fields, as their names promise.
- A key a row's text does not hold leaves that row's existing attribute alone (no parse erases data).
- A row whose text does not parse keeps everything and is counted: `not_json` (json) or `no_match`
  (the others); a row without the field, or with it empty, is not counted (there was nothing to read).
Each step is whole-batch polars; figures (64 k-row batches, this 2-core machine) at each compile below
and from `python -m ferry.transforms.parse` (the micro-bench at the end of this file).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import polars as pl
import pyarrow as pa

from ferry.schema import RAW_LINES
from ferry.stages.parser.syslog import parse_syslog
from ferry.transforms import config as c
from ferry.transforms.chain import CompileContext, Step
from ferry.transforms.frame import Frame, Where, where
from ferry.transforms.grok_patterns import Compiled, expand, name_groups

_TMP = "@parse"  # the one scratch column a step adds to frame.df (and drops before returning)
_MAP_PREFIXES = {
    "resource.": "ResourceAttributes",
    "scope.": "ScopeAttributes",
    "attributes.": "LogAttributes",
}
# A batch whose texts hold more distinct keys than this (ids used as keys, a bad sender) keeps the
# most frequent; each row that loses a key is counted `too_many_keys`. Every key is one working
# column until the attribute map is rebuilt, which costs per key and per row.
MAX_KEYS = 256


def compile(model: c._Parse, ctx: CompileContext) -> Step:  # noqa: A001 - the name chain.py calls
    builders: dict[type[c._Parse], Callable[[Any], Step]] = {
        c.JsonParse: _JsonStep,
        c.LogfmtParse: _logfmt,
        c.KeyValueParse: _key_value,
        c.RegexParse: lambda m: _regex_step(m, name_groups(m.pattern)),
        c.GrokParse: lambda m: _regex_step(m, expand(m.pattern, m.patterns)),
        c.SyslogParse: _syslog,
        c.ClfParse: lambda m: _access_log(m, combined=False),
        c.CombinedParse: lambda m: _access_log(m, combined=True),
    }
    return builders[type(model)](model)


# -- shared -------------------------------------------------------------------------------------


def target(prefix: str, key: str) -> Where:
    """Where a parsed key goes: an attribute, in the map a `resource.`/`scope.` prefix names."""
    name = prefix + key
    for p, column in _MAP_PREFIXES.items():
        if name.startswith(p) and len(name) > len(p):
            return Where(column, name[len(p) :])
    return Where("LogAttributes", name)


def _present(text: pl.Expr) -> pl.Expr:
    """Rows that had something to parse (an absent field or an empty text is not a failure)."""
    return text.is_not_null() & (text.str.len_bytes() > 0)


def _write(
    frame: Frame,
    parsed: pl.DataFrame | None,
    names: dict[str, Where],
    fields: dict[str, pl.Expr] | None = None,
) -> None:
    """Set each target from its column of `parsed` (one row per record, null = not parsed here),
    keeping the old value where the new one is null; `fields` are extra (Where -> expr over _TMP)."""
    if parsed is not None:
        frame.df = frame.df.with_columns(parsed.to_struct(_TMP))
    values: dict[str | Where, pl.Expr] = {}
    # Keeping the old value costs a map lookup per key (0.27 us/row for 11 keys): only for keys some
    # record of the batch holds already.
    held = {m: set(frame.attribute_keys(m)) for m in {w.column for w in names.values()}}
    for col, w in names.items():
        new = pl.col(_TMP).struct.field(col)
        values[w] = pl.coalesce(new, frame.get(w)) if w.key in held[w.column] else new
    for name, expr in (fields or {}).items():
        values[name] = expr
    frame.set(values)
    if _TMP in frame.df.columns:
        frame.df = frame.df.drop(_TMP)


def _cap_keys(frame: Frame, wide: pl.DataFrame, rows_with_key: dict[str, int]) -> pl.DataFrame:
    """Keep the MAX_KEYS most frequent key columns of `wide`; count the rows that lose one."""
    if len(rows_with_key) <= MAX_KEYS:
        return wide
    ranked = sorted(rows_with_key, key=lambda k: -rows_with_key[k])
    cut = ranked[MAX_KEYS:]
    lost = wide.select(pl.any_horizontal(pl.col(cut).is_not_null()).sum()).item()
    frame.count("too_many_keys", lost)
    return wide.drop(cut)


# -- json ---------------------------------------------------------------------------------------

# A key with a non-null value: its closing quote, the colon, and the value's first character (only
# `null` starts with n). Counted per row to prove the cached dtype saw every key (see _JsonStep); an
# escaped `\":` inside a string counts too, which only costs a needless re-inference of that row.
_KEY = r'"[ \t\r\n]*:[ \t\r\n]*[^ \t\r\nn]'
# Keys a struct re-encoded to JSON text gained from other rows (absent there: null), and real nulls.
_NULL_ENTRY = r'"(?:[^"\\]|\\.)*":null'


class _JsonStep:
    """json: whole batch through polars' JSON decoder (Rust) with a dtype cached across batches.

    polars needs a dtype, and inferring one reads the batch a second time (infer + decode 3.1 us/row,
    decode with a dtype 1.5 us/row, measured on 64 k heterogeneous rows; pyarrow's JSON reader 1.3-1.9
    but it refuses a key whose type changes between rows; orjson.loads alone 2-4 us/row plus ~1.3 us
    to flatten in Python; this whole step 2.5-2.9 us/row, python -m ferry.transforms.parse). So the dtype of the keys seen so far is kept, every leaf as String (the
    decoder writes numbers and booleans as text), and each batch is decoded once with it. Sound
    because each row's key count (a regex over the text: a key is a string followed by a colon) is
    checked against the keys decoded: rows holding a key the dtype lacks are re-inferred (only
    those rows), the dtype widened, the batch decoded again. A key whose value is an object in one
    row and a scalar in another (which no columnar decoder takes), or a row that is not valid JSON
    though it starts with `{`, sends the batch to a slower exact path: invalid rows found with
    polars' json_path_match and counted, then orjson per row if types still clash.
    Numbers come out as the decoder prints them (1.50 -> 1.5, 1e3 -> 1000); arrays and objects below
    max_depth as compact JSON text (an array mixing numbers and strings has its numbers quoted:
    the decoder types arrays as a whole); null values are absent.
    """

    def __init__(self, model: c.JsonParse) -> None:
        self.m = model
        self.source = where(model.field)
        self.dtype: pl.Struct | None = None  # every key seen in earlier batches, as inferred
        self.fast = 0  # batches decoded with the cached dtype alone (tests read it)

    def __call__(self, frame: Frame) -> None:
        text = frame.get(self.source)
        probe = frame.df.select(
            text.alias("t"),
            (
                text.str.strip_chars_start().str.starts_with("{")
                & text.str.strip_chars_end().str.ends_with("}")
            )
            .fill_null(False)
            .alias("obj"),
            _present(text).fill_null(False).alias("present"),
        )
        obj = probe.get_column("obj")
        if not obj.any():
            frame.count("not_json", int(probe.get_column("present").sum()))
            return
        texts = probe.select(pl.when("obj").then("t").otherwise(pl.lit("{}"))).to_series()
        wide, valid = self._decode(texts, obj)
        frame.count("not_json", int((probe.get_column("present") & ~valid).sum()))
        if wide.width == 0:
            return
        wide = _cap_keys(
            frame, wide, {k: wide.height - n for k, n in wide.null_count().row(0, named=True).items()}
        )
        _write(frame, wide, {k: target(self.m.prefix, k) for k in wide.columns})

    # decoding ------------------------------------------------------------------------------------

    def _decode(self, texts: pl.Series, obj: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
        """(one String column per flattened key, the rows that were JSON objects)."""
        try:
            return self._polars(texts), obj
        except pl.exceptions.PolarsError:
            pass
        # Some row is not JSON after all, or a key changed between object and scalar: find the
        # invalid rows (a path match is null for text that does not parse), retry without them.
        valid = texts.str.json_path_match("$").is_not_null() & obj
        texts = pl.select(pl.when(valid).then(texts).otherwise(pl.lit("{}"))).to_series()
        try:
            return self._polars(texts), valid
        except pl.exceptions.PolarsError:
            return self._orjson(texts), valid

    def _polars(self, texts: pl.Series) -> pl.DataFrame:
        decoded = None
        if self.dtype is not None:
            try:
                decoded = texts.str.json_decode(_decodable(self.dtype, 0, self.m.max_depth))
            except pl.exceptions.PolarsError:  # a key changed type since: widen below
                pass
        if decoded is None:
            self.dtype = _widen(self.dtype, texts.str.json_decode(infer_schema_length=None).dtype)
            decoded = texts.str.json_decode(_decodable(self.dtype, 0, self.m.max_depth))
        assert self.dtype is not None
        keys = texts.str.count_matches(_KEY)
        seen = decoded.to_frame("d").select(_count_keys(pl.col("d"), self.dtype)).to_series()
        unseen = (keys > seen).fill_null(False)
        if unseen.any():
            wider = _widen(self.dtype, texts.filter(unseen).str.json_decode(infer_schema_length=None).dtype)
            if wider != self.dtype:
                self.dtype = wider
                decoded = texts.str.json_decode(_decodable(wider, 0, self.m.max_depth))
        else:
            self.fast += 1
        flat = _flatten(self.dtype, self.m.separator, self.m.max_depth)
        if len(flat) > 4 * MAX_KEYS:  # keys that never repeat (ids as keys): stop remembering them
            self.dtype = None
        if not flat or not isinstance(decoded.dtype, pl.Struct):
            return pl.DataFrame(height=len(texts))
        return decoded.struct.unnest().select(flat)

    def _orjson(self, texts: pl.Series) -> pl.DataFrame:
        """The exact path for batches where one key holds an object in one row and a scalar in
        another: one Python call per row (~5 us/row), only for such batches."""
        sep, depth = self.m.separator, self.m.max_depth
        columns: dict[str, list[str | None]] = {}
        n = len(texts)
        for i, raw in enumerate(texts.to_list()):
            flat: dict[str, str] = {}
            _flatten_py(orjson.loads(raw), "", sep, depth, flat)
            for k, v in flat.items():
                columns.setdefault(k, [None] * n)[i] = v
        return (
            pl.DataFrame(columns, schema={k: pl.String for k in columns})
            if columns
            else pl.DataFrame(height=n)
        )


def _flatten_py(obj: dict[str, Any], prefix: str, sep: str, depth: int, out: dict[str, str]) -> None:
    for k, v in obj.items():
        if v is None:
            continue
        if isinstance(v, dict) and depth > 1:
            _flatten_py(v, f"{prefix}{k}{sep}", sep, depth - 1, out)
        elif isinstance(v, dict | list):
            out[prefix + k] = orjson.dumps(v).decode()
        elif isinstance(v, bool):
            out[prefix + k] = "true" if v else "false"
        else:
            out[prefix + k] = str(v)


def _widen(old: pl.DataType | None, new: pl.DataType) -> pl.DataType:
    """The dtype that decodes what either did; a key both object and scalar raises (exact path)."""
    if old is None or old == pl.Null():
        return new
    if new == pl.Null():
        return old
    if isinstance(old, pl.Struct) and isinstance(new, pl.Struct):
        fields = {f.name: f.dtype for f in old.fields}
        for f in new.fields:
            fields[f.name] = _widen(fields.get(f.name), f.dtype)
        return pl.Struct(fields)
    if isinstance(old, pl.List) and isinstance(new, pl.List):
        return pl.List(_widen(old.inner, new.inner))
    if isinstance(old, pl.Struct | pl.List) or isinstance(new, pl.Struct | pl.List):
        raise pl.exceptions.SchemaError(f"a JSON key holds both {old} and {new}")
    if old == new:
        return old
    return pl.Float64() if old.is_numeric() and new.is_numeric() else pl.String()


def _decodable(dtype: pl.DataType, depth: int, max_depth: int) -> pl.DataType:
    """What to decode with: a value that becomes an attribute of its own as String (the decoder
    prints numbers and booleans); values kept as JSON text (arrays, objects at max_depth) as
    inferred, so that re-encoding them keeps numbers numbers."""
    if isinstance(dtype, pl.Struct) and depth < max_depth:
        return pl.Struct({f.name: _decodable(f.dtype, depth + 1, max_depth) for f in dtype.fields})
    if isinstance(dtype, pl.Struct | pl.List):
        return dtype
    return pl.String()


def _count_keys(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Keys with a non-null value in each decoded row, at every depth (inside arrays too)."""
    total: pl.Expr = pl.lit(0, pl.UInt32)
    if isinstance(dtype, pl.Struct):
        for f in dtype.fields:
            field = expr.struct.field(f.name)
            total = total + field.is_not_null().cast(pl.UInt32) + _count_keys(field, f.dtype)
    elif isinstance(dtype, pl.List) and _nested_struct(dtype.inner):
        total = total + expr.list.eval(_count_keys(pl.element(), dtype.inner)).list.sum().fill_null(0).cast(
            pl.UInt32
        )
    return total


def _nested_struct(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.Struct) or (isinstance(dtype, pl.List) and _nested_struct(dtype.inner))


def _flatten(dtype: pl.DataType, sep: str, max_depth: int) -> list[pl.Expr]:
    """One String expression per leaf path (over the unnested top-level columns); two keys that
    flatten to one name (`{"a.b":1,"a":{"b":2}}`) give one attribute, the first one present."""
    paths: dict[str, list[pl.Expr]] = {}

    def walk(expr: pl.Expr, dt: pl.DataType, path: str, depth: int) -> None:
        if isinstance(dt, pl.Struct) and depth < max_depth:
            for f in dt.fields:
                walk(expr.struct.field(f.name), f.dtype, f"{path}{sep}{f.name}", depth + 1)
        elif isinstance(dt, pl.Struct | pl.List):
            paths.setdefault(path, []).append(_as_json(expr))
        else:
            paths.setdefault(path, []).append(expr.cast(pl.String))

    if isinstance(dtype, pl.Struct):
        for f in dtype.fields:
            walk(pl.col(f.name), f.dtype, f.name, 1)
    return [(pl.coalesce(e) if len(e) > 1 else e[0]).alias(p) for p, e in paths.items()]


def _as_json(expr: pl.Expr) -> pl.Expr:
    """Compact JSON text of a nested value, without the null entries the struct gained from other rows."""
    text = pl.struct(expr.alias("v")).struct.json_encode().str.strip_prefix('{"v":').str.strip_suffix("}")
    text = (
        text.str.replace_all(_NULL_ENTRY + ",", "")
        .str.replace_all("," + _NULL_ENTRY, "")
        .str.replace_all(_NULL_ENTRY, "")
    )
    return pl.when(expr.is_not_null()).then(text)


# -- logfmt, key_value ---------------------------------------------------------------------------


def _logfmt(model: c.LogfmtParse) -> Step:
    # Keys are unquoted runs without `=`, values a quoted string (\" and \\ escapes) or a run without
    # spaces, possibly empty (`a= b=2`). Bare words are not keys: logfmt often trails free text.
    return _PairStep(model, r'[^\s="]+=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)', "=", "", '"')


def _key_value(model: c.KeyValueParse) -> Step:
    import re

    kv, ps, q = re.escape(model.kv_separator), re.escape(model.pair_separator), re.escape(model.quote)
    banned = re.escape(model.pair_separator + model.kv_separator + model.quote)
    quoted = f"{q}(?:[^{q}\\\\]|\\\\.)*{q}|" if model.quote else ""
    # An unquoted value runs to the next pair separator or the end of the line (lazily, so a
    # multi-character separator ends it; Rust regex has no look-ahead to say "not followed by").
    pair = f"(?m)[^{banned}\\s]+\\s*{kv}\\s*(?:{quoted}.*?)\\s*(?:{ps}|$)"
    return _PairStep(model, pair, model.kv_separator, model.pair_separator, model.quote)


class _PairStep:
    """Every `key=value` pair of each row at once: `extract_all` the pairs, explode to one row per
    pair, split each at its first separator (a key holds none), pivot back to one column per key
    (only keys found in this batch), join by row. Duplicate keys in a row: the last wins.
    logfmt, 6 pairs a row: 2.2 us/row (extract_all 0.7, pivot 0.4; was 3.3 with a second regex
    pass to split the pairs)."""

    def __init__(
        self, model: c.LogfmtParse | c.KeyValueParse, pair: str, kv: str, sep: str, quote: str
    ) -> None:
        self.m, self.pair, self.kv, self.sep, self.quote = model, pair, kv, sep, quote
        self.source = where(model.field)

    def __call__(self, frame: Frame) -> None:
        text = frame.get(self.source)
        pairs = frame.df.select(
            pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
            text.str.extract_all(self.pair).alias("p"),
            _present(text).fill_null(False).alias("present"),
        )
        found = pairs.get_column("p").list.len().fill_null(0) > 0
        frame.count("no_match", int((pairs.get_column("present") & ~found).sum()))
        long = pairs.select("row", "p").explode("p").drop_nulls("p")
        if long.height == 0:
            return
        kv = long.select(
            "row", pl.col("p").str.splitn(self.kv, 2).struct.rename_fields(["k", "v"]).alias("kv")
        ).unnest("kv")
        v = pl.col("v")
        if self.sep:
            v = v.str.strip_suffix(self.sep)
        v = v.str.strip_chars()
        if self.quote:
            q = self.quote
            inner = v.str.slice(1, v.str.len_chars() - 2).str.replace_all(r"\\(.)", "$1")
            v = (
                pl.when(v.str.starts_with(q) & v.str.ends_with(q) & (v.str.len_chars() >= 2))
                .then(inner)
                .otherwise(v)
            )
        kv = kv.with_columns(pl.col("k").str.strip_chars(), v.alias("v"))
        counts = dict(kv.group_by("k").len().iter_rows())
        wide = kv.pivot(on="k", index="row", values="v", aggregate_function="last")
        rows = pl.DataFrame({"row": pl.int_range(frame.height, dtype=pl.UInt32, eager=True)})
        wide = rows.join(wide, on="row", how="left", maintain_order="left").drop("row")
        wide = _cap_keys(frame, wide, counts)
        _write(frame, wide, {k: target(self.m.prefix, k) for k in wide.columns})


# -- regex, grok ---------------------------------------------------------------------------------


def _regex_step(model: c.RegexParse | c.GrokParse, compiled: Compiled) -> Step:
    """One `extract_groups` pass; a group wrapping the whole pattern tells a match from a match
    whose optional groups are all empty. A field captured twice (alternatives) takes the first
    group that matched. 0.4 us/row for a short anchored regex; %{COMBINEDAPACHELOG} 3.5-4.6 us/row
    (the regex crate fills 11 groups of a 1.9 kB pattern with its PikeVM; measured no faster without
    IPv6 or anchored), so the `combined` transform (one-pass regex, 1.3-1.6 us) is the fast way."""
    source = where(model.field)
    regex = f"(?P<m>{compiled.regex})"
    by_field: dict[str, list[str]] = {}
    for group, field in compiled.captures:
        by_field.setdefault(field, []).append(group)

    def step(frame: Frame) -> None:
        text = frame.get(source)
        got = frame.df.select(
            text.str.extract_groups(regex).alias("g"), _present(text).fill_null(False).alias("present")
        )
        groups = got.get_column("g").struct.unnest()
        matched = groups.get_column("m").is_not_null()
        frame.count("no_match", int((got.get_column("present") & ~matched).sum()))
        if not matched.any():
            return
        wide = groups.select(pl.coalesce(groups_of).alias(field) for field, groups_of in by_field.items())
        _write(frame, wide, {f: target(model.prefix, f) for f in by_field})

    return step


# -- syslog --------------------------------------------------------------------------------------

_SYSLOG_SKIP = {"syslog.parse_error", "net.peer", "net.transport"}
_PARSE_ERROR = Where("LogAttributes", "syslog.parse_error")


def _syslog(model: c.SyslogParse) -> Step:
    """The stage's own syslog parser over the field (it is whole-batch polars already, ~1.6 us/line):
    time, host, app and severity become the record's; the syslog.* and structured-data entries
    attributes (prefixed); the message the body when the body was parsed, else `<prefix>message`.
    A line neither RFC 5424 nor 3164 leaves the record as it was (counted no_match)."""
    source = where(model.field)
    body = source == where("body")

    def step(frame: Frame) -> None:
        text = frame.get(source)
        src = frame.df.select(
            pl.coalesce("ObservedTimestamp", "Timestamp").alias("ReceivedAt"),
            pl.when(_present(text)).then(text).alias("Line"),
        )
        present = src.get_column("Line").is_not_null()
        if not present.any():
            return
        raw = pa.Table.from_arrays(
            [src.get_column("ReceivedAt").to_arrow(), pa.nulls(src.height, pa.string()), pa.nulls(src.height, pa.string()),
             src.get_column("Line").fill_null("").to_arrow()],
            schema=RAW_LINES,
        )  # fmt: skip
        parsed = pl.from_arrow(parse_syslog(raw, tenant=frame.tenant))
        assert isinstance(parsed, pl.DataFrame)
        attrs = pl.col("LogAttributes")
        ok = (present & parsed.select(attrs.map.get("syslog.parse_error").is_null()).to_series()).alias("ok")
        frame.count("no_match", int((present & ~ok).sum()))
        if not ok.any():
            return
        keys = sorted(
            set(parsed.select(attrs.map.keys().explode().unique().drop_nulls()).to_series().to_list())
            - _SYSLOG_SKIP
        )
        wide = parsed.select(
            ok,
            pl.col("Timestamp").alias("ts"),
            pl.col("SeverityText").alias("sev"),
            pl.col("SeverityNumber").alias("sevn"),
            pl.col("ServiceName").alias("app"),
            pl.col("ResourceAttributes").map.get("host.name").alias("host"),
            pl.col("Body").alias("msg"),
            *(pl.when(ok).then(attrs.map.get(k)).alias(f"a:{k}") for k in keys),
        )
        t = pl.col(_TMP).struct.field

        def when_ok(f: str, old: str | Where) -> pl.Expr:
            return pl.when(t("ok")).then(t(f)).otherwise(frame.get(old))

        fields: dict[str | Where, pl.Expr] = {
            "timestamp": when_ok("ts", "timestamp"),
            "level": when_ok("sev", "level"),
            "severity_number": when_ok("sevn", "severity_number"),
            "service": pl.when(t("ok") & (t("app") != "")).then(t("app")).otherwise(frame.get("service")),
            "app": pl.when(t("ok") & (t("app") != "")).then(t("app")).otherwise(frame.get("app")),
            "host": pl.coalesce(pl.when(t("ok")).then(t("host")), frame.get("host")),
        }
        msg_at: str | Where = "body" if body else target(model.prefix, "message")
        fields[msg_at] = pl.when(t("ok")).then(t("msg")).otherwise(frame.get(msg_at))
        # A record the syslog receiver could not read but this step could is no longer an error.
        fields[_PARSE_ERROR] = pl.when(~t("ok")).then(frame.get(_PARSE_ERROR))
        names = {f"a:{k}": target(model.prefix, k) for k in keys}
        frame.df = frame.df.with_columns(wide.to_struct(_TMP))
        _write(frame, None, names, fields)

    return step


# -- clf, combined -------------------------------------------------------------------------------

# `%h %l %u %t "%r" %>s %b` (+ ` "%{Referer}i" "%{User-agent}i"`); whatever follows (a response
# time, a virtual host) is ignored. Anchored and one-pass (each byte decides the next state), so the
# regex crate fills the groups with its one-pass DFA: 0.8 us/row for combined, where an unanchored
# regex that also split the request line took 2.7. The request line is split by a second one-pass
# regex; one that is not `METHOD TARGET [HTTP/x]` (scanners' junk) is kept whole as
# `http.request.line`; `-` (a connection closed before a request) sets nothing.
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_CLF = (
    r"^(?P<client>[^ ]+) [^ ]+ (?P<user>[^ ]+) \[(?P<time>[^\]]+)\] "
    + _QUOTED.replace("((", "(?P<request>(", 1)
    + r" (?P<status>[0-9]{3}|-) (?P<size>[0-9]+|-)"
)
_COMBINED = (
    _CLF + " " + _QUOTED.replace("((", "(?P<referer>(", 1) + " " + _QUOTED.replace("((", "(?P<agent>(", 1)
)
_REQUEST = r"^(?P<method>[A-Za-z]+) (?P<target>[^ ]+)(?: HTTP/(?P<version>[0-9.]+))?$"
# group -> attribute (OpenTelemetry semantic conventions; url.path + url.query rather than the
# deprecated http.target). `-` means "no value" in every CLF field: absent.
_CLF_NAMES = {
    "client": "client.address",
    "user": "user.name",
    "method": "http.request.method",
    "path": "url.path",
    "query": "url.query",
    "version": "network.protocol.version",
    "line": "http.request.line",
    "status": "http.response.status_code",
    "size": "http.response.body.size",
    "referer": "http.request.header.referer",
    "agent": "user_agent.original",
}


def _access_log(model: c.ClfParse | c.CombinedParse, *, combined: bool) -> Step:
    """Apache/NCSA access lines -> OTel http attributes and the record's timestamp from `[%t]`
    (`10/Oct/2000:13:55:36 -0700`, to UTC). Severity is left alone: a 404 is not an error of the
    server. combined: 1.5 us/row (python -m ferry.transforms.parse)."""
    source = where(model.field)
    regex = _COMBINED if combined else _CLF
    names = {
        g: target(model.prefix, a) for g, a in _CLF_NAMES.items() if combined or g not in ("referer", "agent")
    }

    def step(frame: Frame) -> None:
        text = frame.get(source)
        got = frame.df.select(
            text.str.extract_groups(regex).alias("g"), _present(text).fill_null(False).alias("present")
        )
        g = got.get_column("g").struct.unnest()
        matched = g.get_column("client").is_not_null()
        frame.count("no_match", int((got.get_column("present") & ~matched).sum()))
        if not matched.any():
            return

        def dash(name: str) -> pl.Expr:
            return pl.when(pl.col(name) != "-").then(pl.col(name))

        req = pl.col("request").str.extract_groups(_REQUEST)
        target_parts = req.struct.field("target").str.splitn("?", 2)
        cols = [
            pl.col("client"), dash("user"), req.struct.field("method").str.to_uppercase().alias("method"),
            target_parts.struct.field("field_0").alias("path"), target_parts.struct.field("field_1").alias("query"),
            req.struct.field("version").alias("version"),
            pl.when(req.struct.field("method").is_null() & (pl.col("request") != "-")).then(pl.col("request")).alias("line"),
            dash("status"), dash("size"),
            pl.col("time").str.to_datetime("%d/%b/%Y:%H:%M:%S %z", time_unit="ns", strict=False)
            .dt.convert_time_zone("UTC").alias("ts"),
        ]  # fmt: skip
        if combined:
            cols += [dash("referer"), dash("agent")]
        wide = g.select(cols)
        ts = pl.coalesce(pl.col(_TMP).struct.field("ts"), frame.get("timestamp"))
        frame.df = frame.df.with_columns(wide.to_struct(_TMP))
        _write(frame, None, names, {"timestamp": ts})

    return step


# -- micro-bench: python -m ferry.transforms.parse ------------------------------------------------


def _bench() -> None:  # pragma: no cover - a measuring tool, not behaviour
    import json
    import random

    from ferry.schema.samples import raw_lines
    from ferry.transforms.chain import Chain

    rnd = random.Random(1)
    n = 65536

    def row(i: int) -> str:
        d: dict[str, Any] = {
            "ts": f"2024-05-01T12:00:00.{i:06d}Z",
            "level": rnd.choice(["info", "warn"]),
            "msg": f"handled {i}",
        }
        d.update([{"http": {"method": "GET", "status": 200, "path": "/x"}, "dur_ms": 12.5}, {"user": {"id": i}, "ok": True},
                  {"err": "boom", "stack": None, "tags": ["a", "b"]}, {"k8s": {"pod": {"name": f"p-{i % 50}"}}},
                  {"trace_id": f"{i:032x}"}][i % 5])  # fmt: skip
        return json.dumps(d)

    access = (
        '{ip} - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?x={i} HTTP/1.0" 200 2326 '
        '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
    )
    inputs = {
        "json": [row(i) for i in range(n)],
        "logfmt": [
            f'at=info method=GET path=/x/{i} status=200 dur={i % 97}ms msg="hello world {i}"'
            for i in range(n)
        ],
        "regex": [access.format(ip=f"10.0.{i % 256}.{i % 7}", i=i) for i in range(n)],
        "grok": [access.format(ip=f"10.0.{i % 256}.{i % 7}", i=i) for i in range(n)],
        "combined": [access.format(ip=f"10.0.{i % 256}.{i % 7}", i=i) for i in range(n)],
        "syslog": [
            f"<34>Oct 11 22:14:15 mymachine su[{i}]: 'su root' failed for lonvick on /dev/pts/8"
            for i in range(n)
        ],
    }
    models: dict[str, dict[str, Any]] = {
        "json": {"type": "json"},
        "logfmt": {"type": "logfmt"},
        "regex": {
            "type": "regex",
            "pattern": r'^(?P<client.address>\S+) \S+ (?P<user.name>\S+) \[(?P<t>[^\]]+)\] "(?P<m>\S+)',
        },
        "grok": {"type": "grok", "pattern": "%{COMBINEDAPACHELOG}"},
        "combined": {"type": "combined"},
        "syslog": {"type": "syslog"},
    }
    from pydantic import TypeAdapter

    for name, lines in inputs.items():
        table = parse_syslog(raw_lines(lines))
        table = table.set_column(table.schema.get_field_index("Body"), "Body", pa.array(lines, pa.string()))
        chain = Chain.compile(
            TypeAdapter(list[c.Transform]).validate_python([models[name]]), CompileContext("bench", ())
        )
        chain.run(table).to_table()  # warm: the json dtype cache, polars' regex cache
        best = min(_timed(lambda ch=chain, t=table: ch.run(t)) for _ in range(3))
        with_fold = min(_timed(lambda ch=chain, t=table: ch.run(t).to_table()) for _ in range(3))
        print(f"{name:9s} {best / n * 1e6:5.2f} us/row  (+ to_table: {with_fold / n * 1e6:5.2f})")


def _timed(fn: Callable[[], object]) -> float:  # pragma: no cover
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":  # pragma: no cover
    _bench()
