"""Dates for ``datetotime``, ``timetodate`` and ``date``: LDML patterns, as OMNIbus.

PURE (no clock reads). OMNIbus 7.3 and later read and write dates with LDML
patterns (``"EEE MMM dd HH:mm:ss yyyy"``, the ICU date format syntax); older rules
files use strftime formats (``"%Y-%m-%d"``). A pattern with a ``%`` in it is taken as
strftime, anything else as LDML. Without a zone in the text, dates are local time
(the probe's time zone), as ICU's default zone. A pattern without a year reads 1970,
as ICU does. Supported letters: y M L d H k h K m s S a E z Z X x, and ``'quoted'``
text; any other letter is an error (so a typo is not read as literal text).

A pattern reads event text, so it runs on RE2 (``patterns.Regex``), linear in the
text: on Python's ``re`` the reader of ``"d ' ' M"`` took 2.2 s on one 16 KB line of
spaces (quadratic), and both probes of a pair read the same line.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Final

from probepair.rules.patterns import Regex

MONTHS: Final = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
DAYS: Final = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_ZONES: Final = {
    "UTC": 0, "GMT": 0, "Z": 0, "UT": 0,
    "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
    "CET": 1, "CEST": 2, "EET": 2, "EEST": 3, "WET": 0, "WEST": 1, "BST": 1, "IST": 5.5,
    "JST": 9,
}  # fmt: skip
_TOKEN: Final = re.compile(r"'((?:[^']|'')*)'|([A-Za-z])\2*|(\s+)|(.)", re.DOTALL)
_OFFSET: Final = re.compile(r"(?:GMT|UTC)?([+-])(\d{1,2}):?(\d{2})?")


def _literal(text: str) -> str:
    """``text`` as a literal in an RE2 pattern (RE2 takes ``\\`` before punctuation)."""
    return "".join("\\" + c if c in string.punctuation else c for c in text)


def _names(names: list[str], short: bool) -> str:
    return "(" + "|".join(n[:3] if short else n for n in names) + ")"


_NUM: Final = {
    "y": "year", "M": "month", "L": "month", "d": "day", "H": "hour", "k": "hour24",
    "h": "hour12", "K": "hour11", "m": "minute", "s": "second",
}  # fmt: skip


@lru_cache(maxsize=128)
def _reader(pattern: str) -> tuple[Regex, tuple[str, ...]]:
    regex: list[str] = []
    fields: list[str] = []
    for m in _TOKEN.finditer(pattern):
        quoted, letter, space, other = m.groups()
        run = m.group()
        if quoted is not None:
            regex.append(_literal(quoted.replace("''", "'") or "'"))
            continue
        if space is not None:
            regex.append(r"\s+")
            continue
        if other is not None:
            regex.append(_literal(other))
            continue
        n = len(run)
        if letter in "ML" and n >= 3:
            regex.append(_names(MONTHS, n == 3))
            fields.append("monthname")
        elif letter in _NUM:
            width = (
                r"\d{2}"
                if letter == "y" and n == 2
                else r"\d{1,4}"
                if letter == "y"
                else r"\d{1,2}"
            )
            regex.append(f"({width})")
            fields.append("year2" if letter == "y" and n == 2 else _NUM[letter])
        elif letter == "S":
            regex.append(r"(\d+)")
            fields.append("fraction")
        elif letter == "a":
            regex.append("([AaPp][Mm])")
            fields.append("ampm")
        elif letter == "E":
            regex.append(_names(DAYS, n <= 3))
            fields.append("weekday")
        elif letter in "zZXx":
            regex.append(r"(Z|[A-Z]{2,5}(?:[+-]\d{1,2}(?::?\d{2})?)?|[+-]\d{1,2}(?::?\d{2})?)")
            fields.append("zone")
        else:
            raise ValueError(f"unsupported pattern letter {letter!r} in {pattern!r}")
    return Regex("(?i)" + "".join(regex) + r"\Z", backtracking=False), tuple(fields)


def _zone(text: str) -> timezone | None:
    upper = text.upper()
    if upper in _ZONES:
        return timezone(timedelta(hours=_ZONES[upper]))
    m = _OFFSET.fullmatch(upper)
    if m is None:
        return None  # an unknown zone name: local time
    minutes = int(m[2]) * 60 + int(m[3] or 0)
    return timezone(timedelta(minutes=minutes if m[1] == "+" else -minutes))


def parse_ldml(text: str, pattern: str) -> int:
    """Seconds since the epoch of ``text`` read with an LDML ``pattern``.

    Raises:
        ValueError: the text does not match, or a field is out of range.
    """
    regex, fields = _reader(pattern)
    groups = regex.prefix(text.strip())  # anchored at both ends: the pattern ends in \Z
    if groups is None:
        raise ValueError("does not match")
    v: dict[str, str] = {f: g for f, g in zip(fields, groups, strict=True) if g is not None}
    year = int(v.get("year", 1970))
    if "year2" in v:
        year = 2000 + int(v["year2"]) if int(v["year2"]) < 69 else 1900 + int(v["year2"])
    month = int(v["month"]) if "month" in v else 1
    if "monthname" in v:
        month = [n[:3].lower() for n in MONTHS].index(v["monthname"][:3].lower()) + 1
    hour = int(v.get("hour", v.get("hour24", 0))) % 24
    if "hour12" in v or "hour11" in v:
        hour = int(v.get("hour12", v.get("hour11", 0))) % 12
        hour += 12 if v.get("ampm", "am").lower() == "pm" else 0
    fraction = v.get("fraction", "0")
    micro = int((fraction + "000000")[:6])
    zone = _zone(v["zone"]) if "zone" in v else None
    parsed = datetime(
        year, month, int(v.get("day", 1)), hour, int(v.get("minute", 0)),
        int(v.get("second", 0)), micro, tzinfo=zone,
    )  # fmt: skip
    return int(parsed.timestamp())


def _render(when: datetime, letter: str, n: int) -> str:
    if letter == "y":
        return f"{when.year % 100:02d}" if n == 2 else f"{when.year:0{n}d}"
    if letter in "ML":
        if n >= 3:
            return MONTHS[when.month - 1][: 3 if n == 3 else None]
        return f"{when.month:0{n}d}"
    if letter == "E":
        return DAYS[when.weekday()][: 3 if n <= 3 else None]
    simple: dict[str, int] = {
        "d": when.day, "H": when.hour, "m": when.minute, "s": when.second,
        "k": when.hour or 24, "h": when.hour % 12 or 12, "K": when.hour % 12,
    }  # fmt: skip
    if letter in simple:
        return f"{simple[letter]:0{n}d}"
    if letter == "S":
        return f"{when.microsecond:06d}"[:n].ljust(n, "0")
    if letter == "a":
        return "AM" if when.hour < 12 else "PM"
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    if letter == "z":
        return when.tzname() or "UTC" if n < 4 else f"GMT{sign}{hh:02d}:{mm:02d}"
    if letter == "Z":
        return f"{sign}{hh:02d}{mm:02d}" if n < 4 else f"GMT{sign}{hh:02d}:{mm:02d}"
    if minutes == 0 and letter == "X":
        return "Z"
    return f"{sign}{hh:02d}" + (f":{mm:02d}" if n >= 3 else f"{mm:02d}" if n == 2 else "")


@lru_cache(maxsize=128)
def _writer(pattern: str) -> tuple[tuple[str, str, int], ...]:
    out: list[tuple[str, str, int]] = []
    for m in _TOKEN.finditer(pattern):
        quoted, letter, space, other = m.groups()
        if quoted is not None:
            out.append(("text", quoted.replace("''", "'") or "'", 0))
        elif letter is not None:
            if letter not in "yMLEdHmskhKSazZXx":
                raise ValueError(f"unsupported pattern letter {letter!r} in {pattern!r}")
            out.append(("field", letter, len(m.group())))
        else:
            out.append(("text", space or other, 0))
    return tuple(out)


def format_ldml(seconds: int, pattern: str, tz: timezone | None = None) -> str:
    """``seconds`` since the epoch as local time (or ``tz``) with an LDML pattern.

    Raises:
        ValueError, OverflowError, OSError: a bad pattern or a time out of range.
    """
    when = datetime.fromtimestamp(seconds, tz).astimezone(tz)
    return "".join(v if kind == "text" else _render(when, v, n) for kind, v, n in _writer(pattern))


def check_pattern(pattern: str) -> None:
    """Raise ValueError for a pattern that cannot be used (compile-time check)."""
    if "%" not in pattern:
        _reader(pattern)
        _writer(pattern)


# Forms date() reads: LDML patterns tried in order (the first that matches wins).
DATE_FORMS: Final = (
    "EEE MMM d HH:mm:ss yyyy",  # ctime / OMNIbus' own
    "EEE MMM d HH:mm:ss z yyyy",  # date(1)
    "yyyy-MM-dd'T'HH:mm:ss.SX",
    "yyyy-MM-dd'T'HH:mm:ssX",
    "yyyy-MM-dd'T'HH:mm:ss.S",
    "yyyy-MM-dd'T'HH:mm:ss",
    "yyyy-MM-dd HH:mm:ss",
    "yyyy-MM-dd",
    "EEE, d MMM yyyy HH:mm:ss Z",  # RFC 2822
    "d MMM yyyy HH:mm:ss",
)


def read_date(text: str, parse: Callable[[str, str], int] = parse_ldml) -> int:
    """``date(text)``: a number stays as is, else the first form of DATE_FORMS that reads.

    Raises:
        ValueError: no form reads the text.
    """
    stripped = text.strip()
    if re.fullmatch(r"-?\d+", stripped):
        return int(stripped)
    for form in DATE_FORMS:
        try:
            return parse(stripped, form)
        except ValueError:
            continue
    raise ValueError("not a date in any known form")
