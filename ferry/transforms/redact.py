"""The redact transform: replace secrets and personal data (emails, card numbers, IPs, tokens, URL passwords)
in the body and attribute values, whole batch at once, counting the records each rule changed.

The body, the named fields and every attribute value go through as one column. Each shipped rule first asks
a necessary condition of the raw bytes (numpy over the one Arrow buffer, or a regex with a literal in it:
an `@` for email and url_password, the keywords for bearer, `::` or a colon chain for ipv6, dotted digits
for ipv4, 13 digits/spaces/dashes in a row for card), and its regex runs only on the values that pass,
rewriting the ones it matches. A value an earlier rule rewrote is judged as it now reads, unless the
replacement text provably cannot create a hit (the shipped default cannot). Custom rules run on the values
their own pattern finds.

Decisions:
- Rules run in a fixed order whatever order `rules` lists them (url_password, bearer, email, ipv6, ipv4,
  card, then `custom` in its order), so a URL's password is counted as url_password, not as an email.
- bearer keeps the keyword and scheme (`Authorization: Basic [REDACTED:bearer]`, `Bearer [REDACTED:bearer]`)
  and only takes tokens of 8 or more characters (`Bearer realm` is not a token).
- url_password keeps the scheme, user and host: `https://bob:[REDACTED:url_password]@example.com`.
- card: 13-19 digits beginning 2-6 (the card networks' ranges; epoch milliseconds and nanoseconds begin with
  1), written solid, in groups of four separated by one space or dash, or as Amex 4-6-5, that pass the Luhn
  check. A number that fails the check is left as it is.
- ipv6: the full form and the `::`-compressed forms with at least one group each side or a leading `::`
  (`::1`, `fe80::1`, `::ffff:10.0.0.1`); a bare `::` (as in `std::vector`) and MAC addresses are not IPs.
- `attributes` means every LogAttributes value; other names in `fields` are fields as everywhere
  (`resource.k8s.pod`, `user.email`, `service`); a field that is not text is a config error.

Measured (64 k loghub Linux lines parsed as syslog, CPU per record, 2-core machine): rules email, card,
bearer, url_password on the bodies 0.20 us (0.43 with the joined-text scans before); all rules on the bodies
0.43 (0.95); all rules on bodies and attributes 1.59 (2.00). In bench/transforms.py (JSON records, after
json: body + 6 attributes, an IPv4 in every record) 2.0-2.2 us (4.6): the ipv4 replace is half of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from ferry.errors import ConfigError
from ferry.transforms.chain import CompileContext, Step
from ferry.transforms.config import Redact
from ferry.transforms.frame import Frame, Where, where

_B = r"(?-u:\b)"  # an ASCII word boundary: keeps the regex engine on its fast DFA path
_H = r"[0-9A-Fa-f]{1,4}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Four octets written out rather than `(?:octet\.){3}octet` (the same regex): with the dots at the top
# level the regex engine looks for a dot first and reads each side from there, 40 % less time for
# the ipv4 rule's replace over a batch of web or auth logs.
_V4 = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
# Alternatives are tried in order at each position (leftmost-first): the longer readings come first.
# `a:b::c:d` takes one alternative with greedy groups each side of the `::` (an over-long one, more than
# eight groups, is redacted too, which does no harm).
_IPV6 = "|".join(
    [
        rf"{_B}(?:{_H}:){{7}}{_H}{_B}",
        rf"{_B}(?:{_H}:){{1,5}}:(?:[Ff]{{4}}:)?{_V4}{_B}",
        rf"{_B}(?:{_H}:){{1,7}}(?::{_H}){{1,7}}{_B}",
        rf"::(?:[Ff]{{4}}:)?{_V4}{_B}",
        rf"::{_H}(?::{_H}){{0,6}}{_B}",
    ]
)
_CARD = (
    rf"{_B}(?:[2-6][0-9]{{12,18}}|[2-6][0-9]{{3}}[ -][0-9]{{4}}[ -][0-9]{{4}}[ -][0-9]{{1,7}}"
    rf"|3[47][0-9]{{2}}[ -][0-9]{{6}}[ -][0-9]{{5}}){_B}"
)

# name -> (pattern, text kept before the replacement, text kept after). Group 1 is what a rule keeps.
SHIPPED: dict[str, tuple[str, str, str]] = {
    "url_password": (r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]+:)[^\s/?#@]+@", "${1}", "@"),
    "bearer": (
        rf"(?i)({_B}bearer[ \t]+|{_B}authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:[a-z]+[ \t]+)?)[A-Za-z0-9\-._~+/]{{8,}}=*",
        "${1}",
        "",
    ),
    "email": (r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}", "", ""),
    "ipv6": (_IPV6, "", ""),
    "ipv4": (rf"{_B}{_V4}{_B}", "", ""),
    "card": (_CARD, "", ""),
}
ORDER = list(SHIPPED)

# Splits a value around card candidates: NUL then STX, which no text keeps once every NUL it had is
# written NUL SOH for the duration.
_MARK = "\x00\x02"


def _escape(replacement: str) -> str:
    return replacement.replace("$", "$$")


def _luhn(digits: pl.Expr) -> pl.Expr:
    """Whether a text of 13-19 digits passes the Luhn check, as column arithmetic: from the right, every
    second digit doubled (minus 9 when over 9), the sum a multiple of 10."""
    rev = digits.str.reverse()
    total = pl.lit(0, pl.Int32)
    for i in range(19):
        d = rev.str.slice(i, 1).str.to_integer(strict=False).fill_null(0).cast(pl.Int32)
        if i % 2:
            d = d * 2
            d = pl.when(d > 9).then(d - 9).otherwise(d)
        total = total + d
    return total % 10 == 0


def _replace_cards(values: pl.Series, replacement: str) -> pl.Series:
    """Replace only the Luhn-valid card candidates: each value holding one is split around its
    candidates, the pieces (odd positions are candidates) exploded into one column, checked and joined
    back. Values without a candidate (nearly all) are left as they are, untouched by the explode."""
    hit = values.str.contains(_CARD).fill_null(False)
    if not hit.any():
        return values
    at = hit.arg_true()
    escaped = values.gather(at).str.replace_all("\x00", "\x00\x01", literal=True)
    split = escaped.str.replace_all(_CARD, _MARK + "${0}" + _MARK).str.split(_MARK)
    counts = split.list.len().to_numpy().astype(np.int64)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    pieces = pl.DataFrame({"row": np.repeat(np.arange(len(at)), counts), "pos": np.arange(counts.sum()) - first, "piece": split.explode()})
    piece = pl.col("piece")
    out = (
        pieces.with_columns(
            pl.when((pl.col("pos") % 2 == 1) & _luhn(piece.str.replace_all(r"[ -]", "")))
            .then(pl.lit(replacement))
            .otherwise(piece)
            .alias("piece")
        )
        .group_by("row", maintain_order=True)
        .agg(piece.str.join(""))
    )
    new = out["piece"].str.replace_all("\x00\x01", "\x00", literal=True)
    return values.clone().scatter(at, new).alias(values.name)


# -- which values a shipped rule can match at all ------------------------------------------------
#
# Each shipped rule's regex scan is a full pass over every byte (the card and ipv6 patterns run at a
# fifth of memchr speed: digits and colons are everywhere in logs). A necessary condition on the raw
# bytes, found with a few numpy passes over the one Arrow data buffer (or, for ipv4, a regex the engine
# runs at memchr speed), says which values a rule cannot match; the regex runs only on the others. Each condition is implied by every match of its pattern
# (so a value it rules out is one the regex leaves alone); tests/transforms/test_redact.py checks the
# outcome against the plain per-value replacement on generated adversarial text.


@dataclass
class _Bytes:
    """The UTF-8 bytes of a String column (Arrow's one data buffer) and where each value starts."""

    values: pl.Series
    data: np.ndarray  # uint8
    starts: np.ndarray  # int64, n + 1 (the last: the end of the data)
    known: dict[Callable[[_Bytes], np.ndarray], np.ndarray] = field(default_factory=dict)  # conditions read

    def holds(self, maybe: Callable[[_Bytes], np.ndarray]) -> np.ndarray:
        """The rows where `maybe` holds (computed once per condition)."""
        if maybe not in self.known:
            self.known[maybe] = maybe(self)
        return self.known[maybe].copy()

    @classmethod
    def of(cls, values: pl.Series) -> _Bytes:
        arr = values.to_arrow(compat_level=pl.CompatLevel.oldest())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(pa.large_string())
        bufs = arr.buffers()
        offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
        data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
        return cls(values, data[offsets[0] : offsets[-1]], offsets - offsets[0])

    @property
    def n(self) -> int:
        return len(self.starts) - 1

    def row(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, positions, side="right") - 1

    def rows(self, positions: np.ndarray, ends: np.ndarray | None = None) -> np.ndarray:
        """Row mask of the values holding these byte positions (with `ends`: the spans from each
        position to its end, inclusive, that lie within one value)."""
        if ends is not None and positions.size:
            positions = positions[self.row(positions) == self.row(ends)]
        if positions.size < self.n:  # a search per position
            mask = np.zeros(self.n, dtype=bool)
            mask[self.row(positions)] = True
            return mask
        if (positions[1:] < positions[:-1]).any():
            positions = np.sort(positions)
        # Many positions: a search per value, for how many positions lie before its start.
        return np.diff(np.searchsorted(positions, self.starts, side="left")) > 0

    def at(self, byte: str) -> np.ndarray:
        return np.flatnonzero(self.data == ord(byte))

    def words(self, *words: tuple[str, int]) -> np.ndarray:
        """Start positions of any of `words` (lowercase ASCII letters, each with the index of its rarest
        letter, looked for first), ASCII case ignored."""
        folded = self.data | np.uint8(0x20)  # maps A-Z onto a-z (and other bytes elsewhere: fewer misses only)
        found = []
        for w, anchor in words:
            pos = np.flatnonzero(folded == ord(w[anchor])) - anchor
            pos = pos[(pos >= 0) & (pos <= len(folded) - len(w))]
            for i, ch in enumerate(w):
                if i != anchor:
                    pos = pos[folded[pos + i] == ord(ch)]
            found.append(pos)
        return np.concatenate(found)


def _is_digit(b: np.ndarray) -> np.ndarray:
    return (b - np.uint8(48)) < 10


def _chains(pos: np.ndarray, lo: int, hi: int, links: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) of each `links` consecutive gaps between neighbours of `pos` each in [lo, hi]."""
    if pos.size <= links:
        return pos[:0], pos[:0]
    gap = np.diff(pos)
    run = np.concatenate([[0], np.cumsum((gap >= lo) & (gap <= hi), dtype=np.int64)])
    at = np.flatnonzero((run[links:] - run[:-links]) == links)
    return pos[at], pos[at + links]


def _maybe_at(b: _Bytes) -> np.ndarray:
    # email: `...@...`; url_password: `scheme://user:password@`
    return b.rows(b.at("@"))


def _maybe_bearer(b: _Bytes) -> np.ndarray:
    # Either keyword, in any case: no non-ASCII letter folds onto theirs (tests check every code point).
    return b.rows(b.words(("bearer", 0), ("authorization", 7)))


def _maybe_ipv6(b: _Bytes) -> np.ndarray:
    # Every alternative but the full form holds `::`; the full form is 8 groups of 1-4 hex digits, so
    # 7 colons each 2-5 bytes after the one before.
    colons = b.at(":")
    if colons.size < 2:
        return np.zeros(b.n, dtype=bool)
    pair = colons[:-1][np.diff(colons) == 1]
    first, last = _chains(colons, 2, 5, 6)
    return b.rows(np.concatenate([pair, first]), np.concatenate([pair + 1, last]))


def _maybe_ipv4(b: _Bytes) -> np.ndarray:
    # Four runs of 1-3 digits joined by dots: a digit, a dot, 1-3 digits, a dot, 1-3 digits, a dot, a
    # digit. A regex with a literal in it (the dot) runs at memchr speed: cheaper than the numpy passes.
    return b.values.str.contains(r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]").fill_null(False).to_numpy()


def _maybe_card(b: _Bytes) -> np.ndarray:
    # 13 bytes in a row that are digits, spaces or dashes (13+ digits solid, or grouped by one space or
    # dash): 12 links in a row, a link being two such bytes side by side in one value. Two buffers,
    # written over in turn: a fresh array per step cost more in page faults than the step itself.
    d = b.data
    n = len(d)
    if n < 13:
        return np.zeros(b.n, dtype=bool)
    scratch = np.subtract(d, np.uint8(48))
    ok = np.less(scratch, 10)
    other = scratch.view(np.bool_)
    for byte in (" ", "-"):
        np.equal(d, ord(byte), out=other)
        ok |= other
    link = np.logical_and(ok[:-1], ok[1:], out=other[: n - 1])
    inner = b.starts[1:-1]
    link[inner[(inner > 0) & (inner < n)] - 1] = False  # the last byte of a value and the next's first
    l2 = np.logical_and(link[:-1], link[1:], out=ok[: n - 2])
    l4 = np.logical_and(l2[:-2], l2[2:], out=other[: n - 4])
    l8 = np.logical_and(l4[:-4], l4[4:], out=ok[: n - 8])
    l12 = np.logical_and(l8[:-4], l4[8:], out=l8[:-4])
    return b.rows(np.flatnonzero(l12))


def _holds(maybe: Callable[[_Bytes], np.ndarray], text: str) -> bool:
    return bool(maybe(_Bytes.of(pl.Series([text])))[0])


def _apart(text: str, byte: str, reach: int) -> bool:
    """Every `byte` in `text` at least `reach` bytes from both its ends (and, if none, text that long)."""
    at = [i for i, ch in enumerate(text.encode()) if ch == ord(byte)]
    return (at[0] >= reach and len(text.encode()) - 1 - at[-1] >= reach) if at else len(text.encode()) >= reach


def _ends_outside(text: str, inside: Callable[[str], bool]) -> bool:
    return text != "" and not inside(text[0]) and not inside(text[-1])


# Whether writing `text` in place of any part of a value can make a condition hold where it did not:
# never, when these hold (the proofs, as comments, by the conditions above). A rewritten value is its
# old text with some spans replaced by the replacement text, so a hit that does not touch an inserted
# copy was there before; these say no hit can touch one. With them, a condition computed once on the
# incoming bytes stays valid after earlier rules rewrote values; without, rewritten values are read again.
_KEEPS: dict[Callable[[_Bytes], np.ndarray], Callable[[str], bool]] = {
    _maybe_at: lambda t: "@" not in t,
    _maybe_bearer: lambda t: _ends_outside(t, lambda c: c.isascii() and c.isalpha()) and not _holds(_maybe_bearer, t),
    # a colon in the text too far from its ends to chain with one outside (gaps are 1-5 bytes)
    _maybe_ipv6: lambda t: t != "" and _apart(t, ":", 5) and not _holds(_maybe_ipv6, t),
    # a hit is digits and dots only: with no dot and no digit at its ends, the text holds none
    _maybe_ipv4: lambda t: "." not in t and _ends_outside(t, lambda c: c in "0123456789"),
    _maybe_card: lambda t: _ends_outside(t, lambda c: c in "0123456789 -") and not _holds(_maybe_card, t),
}

_MAYBE: dict[str, Callable[[_Bytes], np.ndarray]] = {
    "url_password": _maybe_at,
    "email": _maybe_at,
    "bearer": _maybe_bearer,
    "ipv6": _maybe_ipv6,
    "ipv4": _maybe_ipv4,
    "card": _maybe_card,
}


@dataclass(frozen=True)
class _Rule:
    name: str
    pattern: str  # matched against one value
    text: str  # what replaces (the secret part of) a match
    rewrite: Callable[[pl.Series], pl.Series]
    maybe: Callable[[_Bytes], np.ndarray] | None  # the values it can match (shipped rules), from their bytes


def _rules(model: Redact) -> list[_Rule]:
    out = []
    for name in [n for n in ORDER if n in model.rules]:
        pattern, before, after = SHIPPED[name]
        text = model.replacement.replace("{rule}", name)
        if name == "card":
            rewrite: Callable[[pl.Series], pl.Series] = lambda s, t=text: _replace_cards(s, t)  # noqa: E731
        else:
            repl = before + _escape(text) + after
            rewrite = lambda s, p=pattern, r=repl: s.str.replace_all(p, r)  # noqa: E731
        out.append(_Rule(name, pattern, text, rewrite, _MAYBE[name]))
    for c in model.custom:
        text = (c.replacement if c.replacement is not None else model.replacement).replace("{rule}", c.name)
        try:
            pl.Series([""]).str.contains(c.pattern)
        except pl.exceptions.PolarsError as e:
            raise ConfigError(f"redact custom {c.name}: the pattern is not one ferry's regex engine takes: {e}") from None
        escaped = _escape(text)
        rewrite = lambda s, p=c.pattern, r=escaped: s.str.replace_all(p, r)  # noqa: E731
        out.append(_Rule(c.name, c.pattern, text, rewrite, None))
    return out


def redact_series(values: pl.Series, rules: list[_Rule]) -> tuple[pl.Series, dict[str, np.ndarray]]:
    """`values` with every rule applied in order, and for each rule that changed something the
    positions it changed. Each rule runs on the values it can match: a shipped rule on those its byte
    condition admits (read again for values an earlier rule rewrote); a custom rule on those its own
    pattern finds."""
    changed: dict[str, np.ndarray] = {}
    n = values.len()
    if n == 0 or values.null_count() == n:
        return values, changed
    current = values.fill_null("")
    raw = _Bytes.of(current)
    rewritten = np.zeros(n, dtype=bool)
    again: tuple[np.ndarray, _Bytes] | None = None  # the rewritten values and their bytes as they are now
    inserted: set[str] = set()  # replacement texts written so far
    for rule in rules:
        if rule.maybe is not None:
            maybe = raw.holds(rule.maybe)
            keeps = _KEEPS[rule.maybe]
            if rewritten.any() and not all(keeps(t) for t in inserted):
                if again is None:
                    rows = np.flatnonzero(rewritten)
                    again = rows, _Bytes.of(current.gather(rows))
                maybe &= ~rewritten
                maybe[again[0][rule.maybe(again[1])]] = True
        else:
            maybe = current.str.contains(rule.pattern).fill_null(False).to_numpy() & values.is_not_null().to_numpy()
        at = np.flatnonzero(maybe)
        if at.size == 0:
            continue
        before = current if at.size == n else current.gather(at)
        after = rule.rewrite(before)
        diff = (after != before).fill_null(False).to_numpy()
        if not diff.any():
            continue
        hit = at[diff]
        current = after if hit.size == n else current.scatter(hit, after.filter(diff))
        rewritten[hit] = True
        inserted.add(rule.text)
        again = None
        changed[rule.name] = hit
    if not changed:
        return values, changed
    if values.null_count():
        current = pl.select(pl.when(pl.lit(values).is_null()).then(None).otherwise(pl.lit(current))).to_series()
    return current.alias(values.name), changed


def compile(model: Redact, ctx: CompileContext) -> Step:
    rules = _rules(model)
    targets: list[Where] = []
    for name in model.fields:
        if name == "attributes":
            continue
        w = where(name)
        if not w.is_attribute and w.column not in {"Body", "ServiceName", "SeverityText", "TraceId", "SpanId"}:
            raise ConfigError(f"redact {name}: only text fields can be redacted")
        targets.append(w)
    attributes = "attributes" in model.fields

    def step(frame: Frame) -> None:
        # Every field, and every value of the attribute map, as one column: one pass of each rule's
        # byte condition and regex over all of them instead of one per field.
        fields = list(targets)
        if attributes:
            fields += [Where("LogAttributes", k) for k in frame.touched("LogAttributes") if Where("LogAttributes", k) not in fields]
        parts = [frame.df.select(frame.get(w).cast(pl.String).alias("v")).to_series() for w in fields]
        flat = _map_entries(frame) if attributes else None
        if flat is not None and flat.height:
            parts.append(flat["v"])
        if not parts:
            return
        new, changed = redact_series(pl.concat(parts, rechunk=True) if len(parts) > 1 else parts[0], rules)
        if not changed:
            return
        n = frame.height
        edited = np.zeros(new.len(), dtype=bool)
        for pos in changed.values():
            edited[pos] = True
        values: dict[Where, pl.Expr] = {}
        for i, w in enumerate(fields):
            if edited[i * n : (i + 1) * n].any():
                values[w] = pl.lit(new.slice(i * n, n))
        base = len(fields) * n
        entry_row = flat["row"].to_numpy() if flat is not None else np.zeros(0, dtype=np.int64)
        at = np.flatnonzero(edited[base:])
        if flat is not None and at.size:
            edits = pl.DataFrame({"row": entry_row[at], "k": flat["k"].gather(at), "v": new.slice(base).gather(at)})
            for (key,), part in edits.group_by("k"):
                w = Where("LogAttributes", str(key))
                full = pl.repeat(None, n, dtype=pl.String, eager=True).scatter(part["row"], part["v"])
                values[w] = pl.coalesce(pl.lit(full), frame.get(w))
        frame.set(values)
        for rule, pos in changed.items():
            records = np.zeros(n, dtype=bool)
            records[pos[pos < base] % n] = True
            records[entry_row[pos[pos >= base] - base]] = True
            frame.count(f"redacted_{rule}", int(records.sum()))

    return step


def _map_entries(frame: Frame) -> pl.DataFrame | None:
    """Every (row, key, value) of LogAttributes not already held in a working column."""
    col = pl.col("LogAttributes")
    lengths = frame.df.select(col.map.len().fill_null(0)).to_series().to_numpy()
    if not lengths.any():
        return None
    flat = frame.df.select(
        col.map.keys().explode(keep_nulls=False).alias("k"), col.map.values().explode(keep_nulls=False).cast(pl.String).alias("v")
    ).with_columns(row=pl.Series(np.repeat(np.arange(frame.height), lengths)))
    touched = list(frame.touched("LogAttributes"))
    if touched:
        flat = flat.filter(~pl.col("k").is_in(touched))
    return flat
