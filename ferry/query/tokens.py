"""Word-delimiter tokenisation of log text, mirroring the full-text index on otel_logs.Body.

Python twin of ferry.store.ddl.normalised() followed by ClickHouse's splitByNonAlpha tokenizer.
"""

from __future__ import annotations

import re

# Same pattern and replacement as ddl._SPLIT. Python's `re` and ClickHouse's RE2 both take the
# leftmost alternative and scan without overlap, and unmatched groups substitute as "", so one
# pass here equals one replaceRegexpAll there; two passes catch the pairs the first one skipped.
_BOUNDARY = re.compile(r"([a-z])([A-Z])|([A-Za-z])([0-9])|([0-9])([A-Za-z])")
_BOUNDARY_REPL = r"\1\3\5 \2\4\6"

# ClickHouse's lower() only folds ASCII, and splitByNonAlpha treats every non-ASCII byte as part
# of a token, so str.lower() and str.isalnum() would both disagree with the index.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# A token is a maximal run of ASCII letters/digits and non-ASCII characters.
TOKEN_RE = re.compile(r"[0-9A-Za-z\u0080-\U0010FFFF]+")

# The complement of a token character, spelled for RE2 inside ClickHouse's match(): a positive
# ASCII class reads the same whether RE2 runs in UTF-8 or Latin-1 mode, a negated one would not.
SEPARATOR_CLASS = r"[\x00-\x2F\x3A-\x40\x5B-\x60\x7B-\x7F]"


def normalise(text: str) -> str:
    """The value ClickHouse computes for normalised(<text>): boundaries split, ASCII lower-cased."""
    once = _BOUNDARY.sub(_BOUNDARY_REPL, text)
    return _BOUNDARY.sub(_BOUNDARY_REPL, once).translate(_ASCII_LOWER)


def tokens(text: str) -> list[str]:
    """Tokens the index holds for `text`, in order, duplicates kept."""
    return TOKEN_RE.findall(normalise(text))


def interior_tokens(text: str) -> list[str]:
    """Tokens of `text` that are whole tokens of any string containing `text` as a substring.

    Normalisation only looks at adjacent character pairs, so inside `text` it splits the same way
    wherever `text` sits; only a token touching either end may be glued to neighbouring characters.
    """
    norm = normalise(text)
    return [m.group() for m in TOKEN_RE.finditer(norm) if m.start() > 0 and m.end() < len(norm)]
