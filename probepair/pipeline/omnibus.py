"""FeedFormat ``omnibus``: the elements IBM's syslog probes give their rules.

PURE: standard library only (``datetime`` converts a header time to UNIX seconds in the
probe's local time zone, as the probes do; no clock is read: the arrival time is the
event's ``received``).

What the two probes give (IBM's references, "Elements" and "Properties"):

- ``nco_p_syslog`` reads log files, whose lines carry no PRI: ``$Details`` (the body
  from token ``OffsetTwo`` on), ``$Time`` (the line's time stamp, read with
  ``TimeFormat``, UNIX seconds), ``$Token1..`` (at most ``OffsetOne`` of them),
  ``$TokenCount`` and ``$EventCount``.
- ``nco_p_syslogd`` listens on the network: the same tokens, plus ``$Raw`` (the line
  as read), ``$ArrivalTime``, ``$Facility``, ``$Priority`` and ``$Severity`` (from the
  ``<PRI>`` it strips first) and ``$RemoteHostInfo`` (the sender). Its element table
  leaves ``$Details`` out, but its properties and its shipped rules use it.

This format gives the union: a line with a ``<PRI>`` is read the syslogd way, a line
without one the syslog way; ``$Raw``, ``$ArrivalTime`` and ``$EventCount`` always,
``$RemoteHostInfo`` when the feed knows the sender (``Event.source``), and then also
``$PeerAddress`` and ``$PeerPort`` as every format gives them.

Tokenising: from character ``OffsetZero`` of the text after the PRI, tokens are the
runs of characters that are neither white space nor one of ``BreakCharacters`` (so
``a=b, c`` gives ``a``, ``b``, ``c``: empty tokens are never made). Only the first
``max(OffsetOne, OffsetTwo)`` tokens are looked for, so the cost of a line is bounded by
where they end, whatever follows. ``$Details`` starts where token ``OffsetTwo`` starts
(an exact suffix of the text; "" when the line has fewer tokens).

``$Time``: the first tokens of the text (as many as ``TimeFormat`` has fields) read
with ``TimeFormat`` (strptime). A format without a year takes the arrival's year, moved
back a year when that puts the time more than a week after the arrival (December lines
read in January), forward one when it is nearly a year before it. A line whose time
does not read gets the arrival time, so ``@FirstOccurrence = $Time`` is never empty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from probepair.events import Event
from probepair.pipeline.tokenise import FACILITIES

MAX_TOKENS: Final = 1024  # OffsetOne/OffsetTwo bound (props.py): the tokens an event may make
DEFAULT_TIME_FORMAT: Final = "%b %d %H:%M:%S"  # RFC 3164's "Mmm dd hh:mm:ss"; IBM's default
_WEEK: Final = 7 * 86400  # seconds a header time may lie ahead of its arrival (clock skew)
_YEAR: Final = 358 * 86400  # behind it by more than this: a January line read in December

_PRI: Final = re.compile(r"<([0-9]{1,3})>")
_MONTHS: Final = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# The default TimeFormat without strptime (~8 µs a call): "Nov 22 10:00:00", "Nov  2 ...".
_FAST_TIME: Final = re.compile(r"([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})(?!\S)")
_TOKEN_NAMES: Final = tuple(f"Token{i}" for i in range(1, MAX_TOKENS + 1))


@dataclass(frozen=True, slots=True)
class OmnibusOptions:
    """The syslog probes' tokenising properties (defaults: IBM's)."""

    offset_zero: int = 0  # OffsetZero: characters skipped before the time stamp
    offset_one: int = 20  # OffsetOne: $Token elements made at most
    offset_two: int = 6  # OffsetTwo: the token (from 1) where $Details begins
    break_characters: str = ",="  # BreakCharacters: separate tokens besides white space
    time_format: str = DEFAULT_TIME_FORMAT  # TimeFormat: strptime format of the time stamp


class OmnibusTokeniser:
    """Tokens of events in FeedFormat ``omnibus``; one per probe (it counts events).

    ``tokens(event)`` never raises: any bytes give at least ``$Raw``, ``$Details``,
    ``$Time``, ``$TokenCount``, ``$EventCount`` and ``$ArrivalTime``.
    """

    __slots__ = (
        "_count", "_details_at", "_fast_time", "_limit", "_options", "_time_fields", "_token",
        "_want", "_year_format",
    )

    def __init__(self, options: OmnibusOptions | None = None) -> None:
        self._options = options = options or OmnibusOptions()
        breaks = "".join(sorted(set(options.break_characters)))
        self._token = re.compile(r"[^\s" + re.escape(breaks) + "]+" if breaks else r"\S+")
        self._want = min(max(options.offset_one, 0), MAX_TOKENS)
        self._details_at = min(max(options.offset_two, 1), MAX_TOKENS)  # from 1
        self._limit = max(self._want, self._details_at)
        fmt = options.time_format
        self._time_fields = max(len(fmt.split()), 1)
        self._fast_time = fmt == DEFAULT_TIME_FORMAT
        # No year in the format: parse with one appended (2000 has a Feb 29), then place
        # the date in the year nearest the arrival (strptime without a year is deprecated).
        self._year_format = "%Y" in fmt or "%y" in fmt
        self._count = 0

    def tokens(self, event: Event) -> dict[str, str]:
        """The elements of ``event`` (see the module docstring)."""
        self._count += 1
        opts = self._options
        line = event.raw.decode("utf-8", "replace")
        tokens = {"Raw": line, "EventCount": str(self._count)}
        tokens["ArrivalTime"] = str(_seconds(event.received))
        if event.source is not None:
            host, port = event.source
            tokens["RemoteHostInfo"] = tokens["PeerAddress"] = host
            tokens["PeerPort"] = str(port)
        text = line
        m = _PRI.match(line)
        if m is not None:
            value = int(m[1])
            facility = value >> 3
            tokens["Priority"] = m[1]
            tokens["Facility"] = (
                FACILITIES[facility] if facility < len(FACILITIES) else str(facility)
            )
            tokens["Severity"] = str(value & 7)
            text = line[m.end() :]
        if opts.offset_zero > 0:
            text = text[opts.offset_zero :]
        details = ""
        count = 0
        limit, want, details_at = self._limit, self._want, self._details_at
        names = _TOKEN_NAMES
        for n, t in enumerate(self._token.finditer(text), 1):
            if n > limit:
                break
            if n <= want:
                tokens[names[n - 1]] = t.group()
                count = n
            if n == details_at:
                details = text[t.start() :]
        tokens["Details"] = details
        tokens["TokenCount"] = str(count)
        tokens["Time"] = str(self._time(text, event.received))
        return tokens

    def _time(self, text: str, received: float) -> int:
        """UNIX seconds of the time stamp at the start of ``text``, else the arrival."""
        try:
            if self._fast_time:
                m = _FAST_TIME.match(text.lstrip())
                if m is None or m[1] not in _MONTHS:
                    return _seconds(received)
                parts = (_MONTHS[m[1]], int(m[2]), int(m[3]), int(m[4]), int(m[5]))
                return _with_year(parts, received)
            # Bounded: split() stops after the fields the format has.
            stamp = " ".join(text.split(None, self._time_fields)[: self._time_fields])
            if self._year_format:
                return int(datetime.strptime(stamp, self._options.time_format).timestamp())
            parsed = datetime.strptime(stamp + " 2000", self._options.time_format + " %Y")
            return _with_year(
                (parsed.month, parsed.day, parsed.hour, parsed.minute, parsed.second), received
            )
        except (ValueError, OverflowError, OSError):
            return _seconds(received)


def _seconds(received: float) -> int:
    """Whole seconds of a receive time (0 for one that is not a finite number)."""
    return int(received) if math.isfinite(received) else 0


def _with_year(parts: tuple[int, int, int, int, int], received: float) -> int:
    """Seconds of month-day-time ``parts`` in the year that puts them nearest ``received``.

    Raises:
        ValueError: no such date (Feb 30; Feb 29 outside a leap year), or a time out of range.
    """
    month, day, hour, minute, second = parts
    year = datetime.fromtimestamp(received).year  # the arrival's, in local time
    when = datetime(year, month, day, hour, minute, second).timestamp()
    if when > received + _WEEK:
        when = datetime(year - 1, month, day, hour, minute, second).timestamp()
    elif when < received - _YEAR:
        when = datetime(year + 1, month, day, hour, minute, second).timestamp()
    return int(when)


TokensOf = Callable[[Event], dict[str, str]]
