"""Tokenisers: raw record bytes -> ``$token`` values.

PURE: standard library only. Every format gives ``Line`` (the record as text) and
``Token1``..``TokenN`` (whitespace split; in ``syslog``, of the text after the PRI);
``syslog`` adds the RFC 3164 / RFC 5424 header fields and ``json`` turns top-level
keys into tokens (nested values are kept as JSON text, so rules can reach them with
``$(a.b)``). A network feed's events also get ``$PeerAddress`` and ``$PeerPort``, the
sender (the processor adds them from ``Event.source``, in every format).

Syslog parsing is tolerant: a line that conforms to neither RFC still yields ``Line``,
the tokens and ``Message`` (the whole line), so nothing is lost on odd senders.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

import orjson

# Formats of the record alone; FeedFormat omnibus (pipeline/omnibus.py) also reads the
# event's arrival time and sender, and counts events.
FORMATS: Final = ("syslog", "json", "line")

FACILITIES: Final = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
)  # RFC 5424 table 1, by facility code

_TOKEN_NAMES: Final = tuple(f"Token{i}" for i in range(1, 257))

# <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]  (RFC 5424 section 6)
_RFC5424: Final = re.compile(
    r"<([0-9]{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(.*)", re.S
)
# <PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG  (RFC 3164 section 4; the PRI and the
# hostname are optional in practice, so both are optional here). PRI digits are ASCII
# ([0-9], not \d): a PRI of other Unicode digits is no PRI (it raised KeyError in _PRI).
_RFC3164: Final = re.compile(
    r"(?:<([0-9]{1,3})>)?"
    r"([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)"
    r"(?: ([^\s:\[]+(?=\s)))?"
    r" ?([^\s:\[]+)?(?:\[([^\]\s]*)\])?:? ?(.*)",
    re.S,
)
# The common RFC 3164 shape, "<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG", with nothing
# optional but the PID: ~0.65 µs a match against ~1 µs for _RFC3164. Where it matches,
# its groups are exactly _RFC3164's (the same classes, and each of _RFC3164's greedy
# first choices succeeds; tests/test_formats.py checks this with hypothesis); where it
# does not, _RFC3164 decides.
_FAST3164: Final = re.compile(
    r"<([0-9]{1,3})>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) ([^\s:\[]+) ([^\s:\[]+)"
    r"(?:\[([^\]\s]*)\])?: (.*)",
    re.S,
)
_PRI_ONLY: Final = re.compile(r"<([0-9]{1,3})>(.*)", re.S)
_PRI_PREFIX: Final = re.compile(r"<[0-9]{1,3}>")


def _split(line: str, tokens: dict[str, str]) -> None:
    tokens.update(zip(_TOKEN_NAMES, line.split(), strict=False))


def _pri_tokens(pri: str) -> dict[str, str]:
    value = int(pri)
    facility = value >> 3
    return {
        "Priority": pri,
        "Facility": FACILITIES[facility] if facility < len(FACILITIES) else str(facility),
        "SyslogSeverity": str(value & 7),
    }


# Every PRI a syslog header can carry (3 digits at most), computed once: per event this
# is one dict lookup and update instead of int(), a table lookup and three stores.
_PRI: Final = {
    pri: _pri_tokens(pri)
    for pri in (
        [str(v) for v in range(1000)]
        + [f"{v:02d}" for v in range(100)]
        + [f"{v:03d}" for v in range(1000)]
    )
}


def _pri(tokens: dict[str, str], pri: str) -> None:
    tokens.update(_PRI[pri])


def tokenise_line(raw: bytes, split: bool = True) -> dict[str, str]:
    """``Line`` and the whitespace tokens (``split=False``: rules read no ``$TokenN``)."""
    line = raw.decode("utf-8", "replace")
    tokens = {"Line": line}
    if split:
        _split(line, tokens)
    return tokens


# PRI -> (Priority, Facility, SyslogSeverity), for building the token dict in one go.
_PRI3: Final = {pri: (t["Priority"], t["Facility"], t["SyslogSeverity"]) for pri, t in _PRI.items()}


def tokenise_syslog(raw: bytes, split: bool = True) -> dict[str, str]:
    """RFC 5424 or RFC 3164 fields, else the tolerant fallback (see module docstring)."""
    line = raw.decode("utf-8", "replace")
    # RFC 3164 first: it is what most senders still send. No line matches both
    # patterns (3164 needs a month name where 5424 has its version "1"), so the order
    # does not change any result; it saves a failing 5424 match on the common shape.
    m = _FAST3164.match(line) or _RFC3164.match(line)
    if m is not None:
        pri, timestamp, host, program, procid, message = m.groups()
        if pri is None:
            tokens = {
                "Line": line,
                "Timestamp": timestamp,
                "Hostname": host or "",
                "Program": program or "",
                "ProcId": procid or "",
                "Message": message,
            }
        else:
            priority, facility, severity = _PRI3[pri]
            tokens = {
                "Line": line,
                "Priority": priority,
                "Facility": facility,
                "SyslogSeverity": severity,
                "Timestamp": timestamp,
                "Hostname": host or "",
                "Program": program or "",
                "ProcId": procid or "",
                "Message": message,
            }
    elif (m := _RFC5424.match(line)) is not None:
        tokens = {"Line": line}
        _pri(tokens, m[1])
        tokens["Timestamp"] = "" if m[2] == "-" else m[2]
        tokens["Hostname"] = "" if m[3] == "-" else m[3]
        tokens["Program"] = "" if m[4] == "-" else m[4]
        tokens["ProcId"] = "" if m[5] == "-" else m[5]
        tokens["MsgId"] = "" if m[6] == "-" else m[6]
        tokens["StructuredData"] = "" if m[7] == "-" else m[7]
        message = m[8]
        if message.startswith("\ufeff"):  # RFC 5424 BOM before a UTF-8 MSG
            message = message[1:]
        tokens["Message"] = message
    elif (m := _PRI_ONLY.match(line)) is not None:
        tokens = {"Line": line}
        _pri(tokens, m[1])
        tokens["Message"] = m[2]
    else:
        tokens = {"Line": line, "Message": line}
    if split:
        # The text after the PRI: "<38>Nov 22 ..." gives $Token1 "Nov", as OMNIbus' syslog
        # probes number them ($Token4 the host), not "<38>Nov".
        pri = _PRI_PREFIX.match(line)
        _split(line if pri is None else line[pri.end() :], tokens)
    return tokens


# Token names only the probe sets, and what a json record's key of that name becomes.
_RESERVED: Final = (
    ("Manager", "FeedManager"),
    ("PeerAddress", "FeedPeerAddress"),
    ("PeerPort", "FeedPeerPort"),
)


def tokenise_json(raw: bytes, split: bool = True) -> dict[str, str]:
    """Top-level keys as tokens; a record that is not a JSON object falls back to line.

    ``$Manager`` is reserved for the probe's own ProbeWatch events (rules branch on
    ``$Manager == "ProbeWatch"``), so a ``Manager`` key becomes ``$FeedManager``
    (replacing a ``FeedManager`` key of the record): no record can pass for one.
    ``$PeerAddress`` and ``$PeerPort`` are the sender as the feed saw it (the
    processor sets them from ``Event.source``), so a record's own ``PeerAddress`` and
    ``PeerPort`` keys become ``$FeedPeerAddress`` and ``$FeedPeerPort`` likewise: no
    record can forge its sender, even on a feed that has none (a file).
    """
    tokens = tokenise_line(raw, split)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return tokens
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                tokens[key] = item
            elif isinstance(item, bool):
                tokens[key] = "true" if item else "false"
            elif item is None:
                tokens[key] = ""
            elif isinstance(item, int | float):
                tokens[key] = str(item)
            else:
                tokens[key] = orjson.dumps(item).decode()
        for name, renamed in _RESERVED:
            if name in tokens:
                tokens[renamed] = tokens.pop(name)
    return tokens


TOKENISERS: Final[dict[str, Callable[[bytes, bool], dict[str, str]]]] = {
    "syslog": tokenise_syslog,
    "json": tokenise_json,
    "line": tokenise_line,
}


def tokenise(fmt: str, raw: bytes) -> dict[str, str]:
    """Tokens of ``raw`` in format ``fmt`` (one of FORMATS).

    Raises:
        KeyError: ``fmt`` is not a known format (props validation prevents this).
    """
    return TOKENISERS[fmt](raw, True)
