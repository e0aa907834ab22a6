"""The redact transform: replace secrets and personal data (emails, card numbers, IPs, tokens, URL passwords)
in the body and attribute values, whole batch at once, counting the records each rule changed.

The cheap path is the common one: each field's values are joined into one text and each rule is one regex
scan of it (a scan of one long text costs a fraction of a per-value scan); only a rule that finds something
there is run per value, and only the values it matches are rewritten.

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

Measured (64 k records, as fields.py): loghub Linux bodies, rules email, card, bearer, url_password (32 emails
found) 0.64 us a record; all rules on the bodies (40 k IPs replaced) 0.97; all rules on bodies and attributes
2.5 (every record's `net.peer` holds an IPv4). The card scan is the dearest (digits are everywhere), then
each replacement: ~0.25 us per IPv4 replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from ferry.errors import ConfigError
from ferry.transforms.chain import CompileContext, Step
from ferry.transforms.config import Redact
from ferry.transforms.frame import Frame, Where, where

_B = r"(?-u:\b)"  # an ASCII word boundary: keeps the regex engine on its fast DFA path
_H = r"[0-9A-Fa-f]{1,4}"
_V4 = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
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
_NL = "\x00\x03"  # a newline inside a value while values are joined by newlines


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
    """Replace only the Luhn-valid card candidates: each value is split around its candidates, the
    pieces (odd positions are candidates) exploded into one column, checked and joined back."""
    escaped = values.str.replace_all("\x00", "\x00\x01", literal=True)
    marked = escaped.str.replace_all(_CARD, _MARK + "${0}" + _MARK)
    pieces = pl.DataFrame({"row": np.arange(len(values)), "piece": marked.str.split(_MARK)}).explode("piece")
    piece = pl.col("piece")
    out = (
        pieces.with_columns(pos=pl.int_range(pl.len()).over("row"))
        .with_columns(
            pl.when((pl.col("pos") % 2 == 1) & _luhn(piece.str.replace_all(r"[ -]", "")))
            .then(pl.lit(replacement))
            .otherwise(piece)
            .alias("piece")
        )
        .group_by("row", maintain_order=True)
        .agg(piece.str.join(""))
    )
    return out["piece"].str.replace_all("\x00\x01", "\x00", literal=True).alias(values.name)


@dataclass(frozen=True)
class _Rule:
    name: str
    pattern: str  # matched against one value
    scan: str  # matched against all values joined by newlines ("" for none): `^`, `$` at each value's ends
    rewrite: Callable[[pl.Series], pl.Series]
    whole: bool  # runs over all values joined by newlines (its pattern cannot match a newline)


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
        out.append(_Rule(name, pattern, pattern, rewrite, True))
    for c in model.custom:
        text = _escape((c.replacement if c.replacement is not None else model.replacement).replace("{rule}", c.name))
        try:
            pl.Series([""]).str.contains(c.pattern)
        except pl.exceptions.PolarsError as e:
            raise ConfigError(f"redact custom {c.name}: the pattern is not one ferry's regex engine takes: {e}") from None
        rewrite = lambda s, p=c.pattern, r=text: s.str.replace_all(p, r)  # noqa: E731
        # \A and \z would only match at the ends of the joined text: such a rule is scanned per value.
        scan = "" if ("\\A" in c.pattern or "\\z" in c.pattern) else "(?m)" + c.pattern
        out.append(_Rule(c.name, c.pattern, scan, rewrite, False))
    return out


def redact_series(values: pl.Series, rules: list[_Rule]) -> tuple[pl.Series, dict[str, np.ndarray]]:
    """`values` with every rule applied in order, and for each rule that changed something the
    positions it changed."""
    changed: dict[str, np.ndarray] = {}
    n = values.len()
    if n == 0 or values.null_count() == n:
        return values, changed
    # Shipped rules run over the values joined by newlines (none of their patterns can match across
    # one), as one text: a regex pass over one long text costs a fifth of one over each value. A value
    # that holds a newline or a NUL has them written as NUL pairs for the duration.
    text = values.fill_null("")
    joined = text.str.join("\n")
    whole = joined.item()  # str.count and `in` on one Python str: memchr speed, 5x polars' literal scans
    escaped = whole.count("\n") != n - 1 or "\x00" in whole
    if escaped:
        text = text.str.replace_all("\x00", "\x00\x01", literal=True).str.replace_all("\n", _NL, literal=True)
        joined = text.str.join("\n")
    current = text
    for rule in rules:
        if not rule.whole:
            continue
        if not joined.str.contains(rule.scan).item():
            continue
        after = rule.rewrite(joined)
        if after.item() == joined.item():
            continue
        pieces = after.str.split("\n").explode()
        diff = pieces != current
        changed[rule.name] = diff.arg_true().to_numpy()
        joined, current = after, pieces
    if escaped and changed:
        current = current.str.replace_all(_NL, "\n", literal=True).str.replace_all("\x00\x01", "\x00", literal=True)
    # Custom rules may match anything (a newline, an empty value): each runs per value, on the values
    # its scan of the joined text says can match.
    for rule in rules:
        if rule.whole or (rule.scan and not joined.str.contains(rule.scan).item()):
            continue
        hits = current.str.contains(rule.pattern).fill_null(False) & values.is_not_null()
        at = hits.arg_true()
        if at.len() == 0:
            continue
        before = current.gather(at)
        after = rule.rewrite(before)
        diff = (after != before).fill_null(False)
        if not diff.any():
            continue
        current = current.clone().scatter(at, after)  # scatter writes in place: never into the caller's
        changed[rule.name] = at.filter(diff).to_numpy()
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
        rows: dict[str, np.ndarray] = {}

        def note(changed: dict[str, np.ndarray], row_of: np.ndarray | None = None) -> None:
            for rule, pos in changed.items():
                r = pos if row_of is None else row_of[pos]
                rows[rule] = np.concatenate([rows[rule], r]) if rule in rows else r

        fields = list(targets)
        if attributes:
            fields += [Where("LogAttributes", k) for k in frame.touched("LogAttributes")]
            _redact_map(frame, rules, note)
        for w in fields:
            values = frame.df.select(frame.get(w)).to_series()
            new, changed = redact_series(values, rules)
            if changed:
                frame.set({w: pl.lit(new)})
                note(changed)
        for rule, r in rows.items():
            frame.count(f"redacted_{rule}", len(np.unique(r)))

    return step


def _redact_map(frame: Frame, rules: list[_Rule], note: Callable[..., None]) -> None:
    """Every value of LogAttributes not already held in a working column, scanned as one flat column;
    the keys with a changed value on some row are written back through `frame.set`."""
    col = pl.col("LogAttributes")
    touched = list(frame.touched("LogAttributes"))
    flat = frame.df.select(
        col.map.keys().explode(keep_nulls=False).alias("k"), col.map.values().explode(keep_nulls=False).alias("v")
    )
    lengths = frame.df.select(col.map.len().fill_null(0)).to_series().to_numpy()
    row_of = np.repeat(np.arange(frame.height), lengths)
    if touched:
        fresh = ~flat["k"].is_in(touched).to_numpy()
        flat, row_of = flat.filter(pl.Series(fresh)), row_of[fresh]
    new, changed = redact_series(flat["v"], rules)
    if not changed:
        return
    note(changed, row_of)
    at = np.unique(np.concatenate(list(changed.values())))
    edits = pl.DataFrame({"row": row_of[at], "k": flat["k"].gather(at), "v": new.gather(at)})
    values: dict[Where, pl.Expr] = {}
    for (key,), part in edits.group_by("k"):
        full = pl.repeat(None, frame.height, dtype=pl.String, eager=True).scatter(part["row"], part["v"])
        values[Where("LogAttributes", str(key))] = pl.coalesce(pl.lit(full), frame.get(Where("LogAttributes", str(key))))
    frame.set(values)
