"""Lexer: rules text -> a list of tokens, each with its exact position.

PURE. One master regex scanned with ``match(text, pos)``: rules files are compiled once
per load, so clarity beats speed here, but a regex scan still keeps a 5,000-line
vendor rules file well under 10 ms.

Names follow OMNIbus: ``$token`` names may contain ``-`` and start with a digit (mttrapd
``$specific-trap``, ``$1``), ``$*`` is every token, ``$(a.b)`` a dotted JSON path;
``@Field`` and ``%Property`` are plain identifiers, ``@*`` is every field. ``%``
directly followed by a letter is a property, otherwise the modulo operator.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

from probepair.errors import RulesSyntaxError

# Token kinds (plain strings: they are only compared against these constants).
TOKEN: Final = "TOKEN"  # $name
TOKEN_ALL: Final = "TOKEN_ALL"  # $*
TOKEN_PATH: Final = "TOKEN_PATH"  # $(a.b)
FIELD: Final = "FIELD"  # @Name
FIELD_ALL: Final = "FIELD_ALL"  # @*
PROP: Final = "PROP"  # %Name
IDENT: Final = "IDENT"
STRING: Final = "STRING"
INT: Final = "INT"
REAL: Final = "REAL"
OP: Final = "OP"
EOF: Final = "EOF"

_MAX_NUMBER_DIGITS: Final = 1000  # Python refuses int(str) past 4300 digits


# Integers are 64-bit signed, as in the C the probes are written in and in the sinks
# (SQLite and PostgreSQL bigint refuse more); after a '-' a literal may be one past the
# maximum, so that -9223372036854775808 can be written.
INT_MAX: Final = (1 << 63) - 1


def _out_of_range(value: int | float, negated: bool) -> str:
    """Why a literal cannot be used, or "" (float("1e999") is inf: every event would fail)."""
    if isinstance(value, int):
        limit = INT_MAX + 1 if negated else INT_MAX
        return (
            "is out of range (integers are 64-bit: at most 9223372036854775807)"
            if value > limit
            else ""
        )
    if not math.isfinite(value):
        return "is out of range (reals are 64-bit: at most about 1.8e308)"
    return ""


@dataclass(frozen=True, slots=True)
class Token:
    """One lexeme; ``value`` is the decoded value (string text, number, name)."""

    kind: str
    value: str | int | float
    text: str  # the source text, for error messages
    line: int
    col: int
    end_line: int
    end_col: int


_SCANNER: Final = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v\n]+|\#[^\n]*)
  | (?P<real>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>\d+)
  | \$(?P<token>[A-Za-z0-9_][A-Za-z0-9_\-]*)
  | (?P<tokall>\$\*)
  | \$\((?P<tokpath>[^()\n]*)\)
  | @(?P<field>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<fieldall>@\*)
  | %(?P<prop>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"|')
  | (?P<op>==|!=|<>|<=|>=|&&|\|\||<<|>>|[-+*/%(){}\[\],:;=<>!|&^~])
    """,
    re.VERBOSE,
)

_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


class _Position:
    """Maps string offsets to (line, col), both 1-based."""

    __slots__ = ("_starts",)

    def __init__(self, text: str) -> None:
        self._starts = [0]
        for m in re.finditer("\n", text):
            self._starts.append(m.end())

    def at(self, offset: int) -> tuple[int, int]:
        lo, hi = 0, len(self._starts) - 1
        while lo < hi:  # last line start <= offset
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - self._starts[lo] + 1


def _read_string(text: str, start: int, quote: str) -> tuple[str, int] | None:
    """Decode a string literal opening at ``start``; None if it is unterminated.

    Only \\" \\' \\\\ \\n \\t \\r are escapes; any other backslash stays, so regexes
    such as "\\(c\\)" or "[0-9]+\\." mean what vendor rules files expect.
    """
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\n":
            return None
        if c == "\\" and i + 1 < n and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return None


def tokenize(text: str, source: str = "<rules>") -> list[Token]:
    """All tokens of ``text`` ending with an EOF token.

    Raises:
        RulesSyntaxError: an unexpected character, an unterminated string, a bad name.
    """
    pos = _Position(text)
    tokens: list[Token] = []
    i = 0
    n = len(text)
    scan = _SCANNER.match
    while i < n:
        m = scan(text, i)
        if m is None:
            line, col = pos.at(i)
            c = text[i]
            if c == "$":
                msg = "expected a token name, '*' or '(' after '$'"
            elif c == "@":
                msg = "expected a field name or '*' after '@'"
            else:
                msg = f"unexpected character {c!r}"
            raise RulesSyntaxError(source, line, col, msg)
        kind = m.lastgroup
        end = m.end()
        if kind == "ws":
            i = end
            continue
        value: str | int | float
        if kind == "string":
            read = _read_string(text, i, m.group(kind))
            if read is None:
                line, col = pos.at(i)
                raise RulesSyntaxError(source, line, col, "unterminated string")
            value, end = read
            tkind = STRING
        elif kind == "int" or kind == "real":
            raw = m.group(kind)
            if len(raw) > _MAX_NUMBER_DIGITS:
                line, col = pos.at(i)
                raise RulesSyntaxError(source, line, col, "number too long")
            value = int(raw) if kind == "int" else float(raw)
            tkind = INT if kind == "int" else REAL
            negated = bool(tokens) and tokens[-1].kind == OP and tokens[-1].value == "-"
            reason = _out_of_range(value, negated)
            if reason:
                line, col = pos.at(i)
                raise RulesSyntaxError(source, line, col, f"number {raw!r} {reason}")
        elif kind == "tokall" or kind == "fieldall":
            value = "*"
            tkind = TOKEN_ALL if kind == "tokall" else FIELD_ALL
        else:
            assert kind is not None
            value = m.group(kind)
            tkind = {
                "token": TOKEN,
                "tokpath": TOKEN_PATH,
                "field": FIELD,
                "prop": PROP,
                "ident": IDENT,
                "op": OP,
            }[kind]
            if tkind == TOKEN_PATH and not value.strip():
                line, col = pos.at(i)
                raise RulesSyntaxError(source, line, col, "empty token path '$()'")
        line, col = pos.at(i)
        end_line, end_col = pos.at(end)
        tokens.append(Token(tkind, value, text[i:end], line, col, end_line, end_col))
        i = end
    line, col = pos.at(n)
    tokens.append(Token(EOF, "", "", line, col, line, col))
    return tokens
