"""The grok pattern set built into the `grok` transform, and the expansion of a grok pattern into one
regular expression with named groups (pure Python: config validation runs it before polars loads).

Written for the Rust regex engine polars uses (no look-around, no backreferences, no atomic groups):
word boundaries stand in for the look-behinds classic grok sets use around numbers and addresses.
Built-in captures use OpenTelemetry semantic-convention names where one exists (`client.address`,
`http.request.method`, ...), and `log.*` otherwise, never a name that is also a record field
(`timestamp`, `level`, `message`, `host`), since a parse only ever writes attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_H = "[0-9A-Fa-f]{1,4}"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_V4 = rf"(?:{_OCTET}\.){{3}}{_OCTET}"


def _ipv6() -> str:
    """IPv6 in every textual form. Alternatives are ordered so that leftmost-first matching takes
    the whole address: `a:b::c:d` is tried as one group before `::` before wider left parts."""
    forms = [
        rf"(?:{_H}:){{6}}{_V4}",  # embedded IPv4 first, or `::ffff:1.2` would stop at the dot
        rf"::(?:[Ff]{{4}}(?::0{{1,4}})?:)?{_V4}",
        rf"(?:{_H}:){{1,4}}:{_V4}",
        rf"(?:{_H}:){{7}}{_H}",
        *(rf"(?:{_H}:){{1,{k}}}(?::{_H}){{1,{7 - k}}}" for k in range(1, 7)),
        rf":(?::{_H}){{1,7}}",
        rf"(?:{_H}:){{1,7}}:",
        "::",
    ]
    return "(?:" + "|".join(forms) + ")(?:%[0-9A-Za-z]+)?"


_MONTH = (
    r"\b(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t|tember)?"
    r"|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b"
)
_LEVELS = [
    "[Tt]race|TRACE", "[Dd]ebug|DEBUG", "[Nn]otice|NOTICE", "[Ii]nfo(?:rmation)?|INFO(?:RMATION)?",
    "[Ww]arn(?:ing)?|WARN(?:ING)?", "[Ee]rr(?:or)?|ERR(?:OR)?", "[Cc]rit(?:ical)?|CRIT(?:ICAL)?",
    "[Ff]atal|FATAL", "[Ss]evere|SEVERE", "[Aa]lert|ALERT", "[Ee]merg(?:ency)?|EMERG(?:ENCY)?",
]  # fmt: skip

PATTERNS: dict[str, str] = {
    # text
    "WORD": r"\b\w+\b",
    "NOTSPACE": r"\S+",
    "SPACE": r"\s*",
    "DATA": r".*?",
    "GREEDYDATA": r".*",
    "QUOTEDSTRING": r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`(?:[^`\\]|\\.)*`',
    "QS": "%{QUOTEDSTRING}",
    "UUID": r"\b[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\b",
    "LOGLEVEL": r"\b(?:" + "|".join(_LEVELS) + r")\b",
    # numbers
    "INT": r"[+-]?\b[0-9]+\b",
    "POSINT": r"\b[1-9][0-9]*\b",
    "NONNEGINT": r"\b[0-9]+\b",
    "BASE10NUM": r"[+-]?(?:\b[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?",
    "NUMBER": "%{BASE10NUM}",
    "BASE16NUM": r"\b(?:0[xX])?[0-9A-Fa-f]+\b",
    # people and places
    "USERNAME": r"[a-zA-Z0-9._-]+",
    "USER": "%{USERNAME}",
    "EMAILLOCALPART": r"[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+)*",
    "EMAILADDRESS": "%{EMAILLOCALPART}@%{HOSTNAME}",
    "HTTPDUSER": "%{EMAILADDRESS}|%{USER}",
    "MAC": r"\b(?:(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}|(?:[0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4})\b",
    "IPV4": rf"\b{_V4}\b",
    "IPV6": _ipv6(),
    "IP": "%{IPV6}|%{IPV4}",
    "HOSTNAME": r"\b[0-9A-Za-z][0-9A-Za-z-]{0,62}(?:\.[0-9A-Za-z][0-9A-Za-z-]{0,62})*\b",
    "HOST": "%{HOSTNAME}",
    "IPORHOST": "%{IP}|%{HOSTNAME}",
    "HOSTPORT": "%{IPORHOST}:%{POSINT}",
    # paths and URIs
    "UNIXPATH": r"(?:/[^\s/]*)+",
    "WINPATH": r"(?:[A-Za-z]:|\\)(?:\\[^\\\s?*]*)+",
    "PATH": "%{UNIXPATH}|%{WINPATH}",
    "URIPROTO": r"[A-Za-z][A-Za-z0-9+.-]*",
    "URIHOST": "%{IPORHOST}(?::%{POSINT})?",
    "URIPATH": r"/[^\s?#]*",
    "URIPARAM": r"\?[^\s#]*",
    "URIPATHPARAM": "%{URIPATH}(?:%{URIPARAM})?",
    "URI": r"%{URIPROTO}://(?:%{USER}(?::[^@\s]*)?@)?(?:%{URIHOST})?(?:%{URIPATHPARAM})?",
    # dates and times
    "MONTH": _MONTH,
    "MONTHNUM": r"0?[1-9]|1[0-2]",
    "MONTHNUM2": r"0[1-9]|1[0-2]",
    "MONTHDAY": r"0[1-9]|[12][0-9]|3[01]|[1-9]",
    "DAY": r"\b(?:Mon(?:day)?|Tue(?:sday)?|Wed(?:nesday)?|Thu(?:rsday)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?)\b",
    "YEAR": r"[0-9]{4}|[0-9]{2}",
    "HOUR": r"2[0-3]|[01][0-9]|[0-9]",
    "MINUTE": r"[0-5][0-9]",
    "SECOND": r"(?:[0-5][0-9]|60)(?:[.,][0-9]+)?",
    "TIME": r"%{HOUR}:%{MINUTE}(?::%{SECOND})?",
    "DATE_US": r"%{MONTHNUM}[/-]%{MONTHDAY}[/-]%{YEAR}",
    "DATE_EU": r"%{MONTHDAY}[./-]%{MONTHNUM}[./-]%{YEAR}",
    "DATE": "%{DATE_US}|%{DATE_EU}",
    "DATESTAMP": "%{DATE}[- ]%{TIME}",
    "TZ": r"\b[A-Z]{3,5}\b",
    "ISO8601_TIMEZONE": r"Z|[+-]%{HOUR}(?::?%{MINUTE})?",
    "TIMESTAMP_ISO8601": r"[0-9]{4}-%{MONTHNUM2}-%{MONTHDAY}[T ]%{HOUR}:%{MINUTE}(?::%{SECOND})?%{ISO8601_TIMEZONE}?",
    "HTTPDATE": r"%{MONTHDAY}/%{MONTH}/%{YEAR}:%{TIME} [+-][0-9]{4}",
    "HTTPDERROR_DATE": r"%{DAY} %{MONTH} +%{MONTHDAY} %{TIME}(?:\.[0-9]+)? %{YEAR}",
    "SYSLOGTIMESTAMP": r"%{MONTH} +%{MONTHDAY} %{TIME}",
    # syslog
    "PROG": r"[\x21-\x5a\x5c\x5e-\x7e]+?",
    "SYSLOGPROG": r"%{PROG:log.syslog.appname}(?:\[%{POSINT:log.syslog.procid}\])?",
    "SYSLOGHOST": "%{IPORHOST}",
    "SYSLOGFACILITY": r"<%{NONNEGINT}\.%{NONNEGINT}>",
    "SYSLOGBASE": (
        r"%{SYSLOGTIMESTAMP:log.timestamp} (?:%{SYSLOGFACILITY} )?%{SYSLOGHOST:log.syslog.hostname} %{SYSLOGPROG}:"
    ),
    # web servers (the names the clf and combined transforms use)
    "COMMONAPACHELOG": (
        r"%{IPORHOST:client.address} %{HTTPDUSER} %{HTTPDUSER:user.name} \[%{HTTPDATE:log.timestamp}\] "
        r'"(?:%{WORD:http.request.method} %{NOTSPACE:url.original}(?: HTTP/%{NUMBER:network.protocol.version})?|%{DATA})" '
        r"(?:%{INT:http.response.status_code}|-) (?:%{INT:http.response.body.size}|-)"
    ),
    "COMBINEDAPACHELOG": (
        r'%{COMMONAPACHELOG} "(?:-|%{DATA:http.request.header.referer})" "(?:-|%{DATA:user_agent.original})"'
    ),
    "HTTPD_ERRORLOG": (
        r"\[%{HTTPDERROR_DATE:log.timestamp}\] \[(?:%{WORD:log.module}:)?%{LOGLEVEL:log.level}\]"
        r"(?: \[pid %{POSINT:process.pid}(?::tid %{INT:thread.id})?\])?(?: \[client %{IPORHOST:client.address}(?::%{POSINT:client.port})?\])?"
        r" %{GREEDYDATA:log.message}"
    ),
}

_REF = re.compile(r"%\{(\w+)(?::([^:}]+))?(?::(\w+))?\}")
_NAMED = re.compile(r"\(\?P?<([A-Za-z_][\w.]*)>")
_MAX_NESTING = 24
TYPES = ("int", "float", "string")


class GrokError(ValueError):
    """A grok pattern that cannot be expanded (unknown name, a definition that refers to itself)."""


@dataclass(frozen=True)
class Compiled:
    regex: str  # one regular expression, every capture a group named g<i>
    captures: tuple[tuple[str, str], ...]  # (group name, attribute name), in pattern order


def expand(pattern: str, extra: dict[str, str] | None = None) -> Compiled:
    """`%{NAME}` -> the definition (non-capturing), `%{NAME:field}` -> a capture of it named `field`;
    a `:int`/`:float` suffix is accepted and has no effect (attributes are strings: `cast` types them).
    Named groups written as regex (`(?P<field>...)`) capture too."""
    defs = {**PATTERNS, **(extra or {})}
    captures: list[tuple[str, str]] = []

    def group(field: str) -> str:
        name = f"g{len(captures)}"
        captures.append((name, field))
        return name

    def sub(text: str, trail: tuple[str, ...]) -> str:
        if len(trail) > _MAX_NESTING:
            raise GrokError(f"pattern nesting deeper than {_MAX_NESTING}: {' -> '.join(trail[-4:])}")

        def one(m: re.Match[str]) -> str:
            name, field, kind = m.group(1), m.group(2), m.group(3)
            if name not in defs:
                raise GrokError(f"unknown grok pattern %{{{name}}}")
            if name in trail:
                raise GrokError(f"grok pattern {name} refers to itself ({' -> '.join((*trail, name))})")
            if kind is not None and kind not in TYPES:
                raise GrokError(f"%{{{m.group(0)[2:-1]}}}: type must be one of {', '.join(TYPES)}")
            body = sub(defs[name], (*trail, name))
            return f"(?P<{group(field)}>{body})" if field else f"(?:{body})"

        text = _NAMED.sub(lambda m: f"(?P<{group(m.group(1))}>", text)
        return _REF.sub(one, text)

    return Compiled(sub(pattern, ()), tuple(captures))


def name_groups(pattern: str) -> Compiled:
    """A plain regex's named groups renamed g<i>, so attribute names may hold dots (`http.method`),
    which neither Python nor Rust allows in a group name; nothing else in the pattern changes."""
    captures: list[tuple[str, str]] = []

    def one(m: re.Match[str]) -> str:
        captures.append((f"g{len(captures)}", m.group(1)))
        return f"(?P<{captures[-1][0]}>"

    return Compiled(_NAMED.sub(one, pattern), tuple(captures))
