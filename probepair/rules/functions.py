"""Built-in functions and the runtime helpers that generated rules code calls.

PURE (no clock reads: ``getdate`` goes through ``ctx.wall_clock``).

``BUILTINS`` is the one table of what a rules file may call: name -> (min arity,
max arity, role). The compiler checks arity against it and turns each call into
inline Python (``match`` becomes ``a == b``) or a call to a helper below; anything
not in the table, such as the probe-specific ``genevent``, is a compile error.

Value semantics follow OMNIbus: tokens are strings; ``+`` concatenates when either
side is a string and adds otherwise; ``- * / %`` need numbers and treat numeric
strings as numbers (``"abc" - 1`` is a runtime error); ``int()``/``real()`` read the
leading number like C's atoi/atof, so ``int("abc")`` is 0 and ``int("12ab")`` 12.
Comparisons: two strings compare as strings; a number against a numeric string
compares as numbers (``$SyslogSeverity < 3`` does what it says).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "FATAL")


@dataclass(frozen=True, slots=True)
class Builtin:
    """Arity bounds and role: "value" returns a value, "statement" does not."""

    min_args: int
    max_args: int  # -1: any number
    role: str = "value"


BUILTINS: Final[dict[str, Builtin]] = {
    "match": Builtin(2, 2),
    "nmatch": Builtin(2, 2),
    "regmatch": Builtin(2, 2),
    "extract": Builtin(2, 2),
    "regreplace": Builtin(3, 3),
    "exists": Builtin(1, 1),
    "length": Builtin(1, 1),
    "substr": Builtin(2, 3),
    "split": Builtin(2, 3),
    "lower": Builtin(1, 1),
    "upper": Builtin(1, 1),
    "ltrim": Builtin(1, 1),
    "rtrim": Builtin(1, 1),
    "int": Builtin(1, 1),
    "real": Builtin(1, 1),
    "hostname": Builtin(0, 0),
    "getdate": Builtin(0, 0),
    "datetotime": Builtin(2, 2),
    "timetodate": Builtin(2, 2),
    "md5": Builtin(1, 1),
    "nvp_add": Builtin(1, -1),
    "lookup": Builtin(2, 2),
    "log": Builtin(2, 2, "statement"),
    "details": Builtin(1, -1, "statement"),
    "remove": Builtin(1, 1, "statement"),
    "update": Builtin(1, 2, "statement"),
    "setlog": Builtin(1, 1, "statement"),
    "clear": Builtin(1, 1, "statement"),
}


class Fail(Exception):
    """A runtime problem in one statement; the generated code reports it and goes on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- regular expressions ---------------------------------------------------------------

_POSIX_CLASSES: Final = {
    "[:alpha:]": "a-zA-Z",
    "[:digit:]": "0-9",
    "[:alnum:]": "a-zA-Z0-9",
    "[:upper:]": "A-Z",
    "[:lower:]": "a-z",
    "[:space:]": r"\s",
    "[:blank:]": r" \t",
    "[:punct:]": r"!-/:-@\[-`{-~",
    "[:xdigit:]": "0-9A-Fa-f",
    "[:cntrl:]": r"\x00-\x1f",
    "[:print:]": r"\x20-\x7e",
    "[:graph:]": r"\x21-\x7e",
    "[:word:]": r"\w",
}
_POSIX_RE: Final = re.compile("|".join(re.escape(k) for k in _POSIX_CLASSES))


def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile an OMNIbus (POSIX extended) regex as Python ``re``.

    POSIX bracket classes such as ``[[:digit:]]`` become their ranges; Python would
    otherwise warn ("possible nested set") and match something else.

    Raises:
        ValueError: the pattern is invalid, with a short reason.
    """
    translated = _POSIX_RE.sub(lambda m: _POSIX_CLASSES[m.group()], pattern)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(translated)
    except (re.error, RecursionError, OverflowError, MemoryError) as exc:
        raise ValueError(str(exc) if isinstance(exc, re.error) else "pattern too complex") from None


@lru_cache(maxsize=256)
def _dynamic_regex(pattern: str) -> re.Pattern[str]:
    return compile_regex(pattern)


def dynamic_regex(pattern: str) -> re.Pattern[str]:
    """A regex computed at run time (rare), cached; an invalid one fails the statement."""
    try:
        return _dynamic_regex(pattern)
    except ValueError as exc:
        raise Fail(f"invalid regular expression {pattern!r}: {exc}") from None


def extract(regex: re.Pattern[str], text: str) -> str:
    """First group of the first match, "" when there is no match (whole match if no group)."""
    m = regex.search(text)
    if m is None:
        return ""
    if regex.groups:
        return m.group(1) or ""
    return m.group(0)


def regreplace(regex: re.Pattern[str], text: str, replacement: str) -> str:
    """Replace every match; ``\\1`` in the replacement is the first group."""
    try:
        return regex.sub(replacement, text)
    except (re.error, IndexError) as exc:
        raise Fail(f"bad replacement {replacement!r}: {exc}") from None


# -- numbers and comparisons -----------------------------------------------------------

_INT_RE: Final = re.compile(r"\s*[+-]?\d+")
_REAL_RE: Final = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NUMBER_RE: Final = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")


def atoi(value: object) -> int:
    """C atoi: the leading integer, 0 when there is none."""
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    m = _INT_RE.match(str(value))
    return int(m.group()) if m is not None and len(m.group()) < 400 else 0


def atof(value: object) -> float:
    """C atof: the leading number, 0.0 when there is none."""
    if isinstance(value, int | float):
        return float(value)
    m = _REAL_RE.match(str(value))
    return float(m.group()) if m is not None else 0.0


def number(value: object) -> int | float | None:
    """The number a value stands for, or None (strings must be wholly numeric)."""
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and _NUMBER_RE.fullmatch(value) and len(value) < 400:
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            return float(text)
    return None


def to_num(value: object) -> int | float:
    n = number(value)
    if n is None:
        raise Fail(f"expected a number, found {value!r}")
    return n


def add(a: object, b: object) -> object:
    """``+``: concatenates when either side is a string, else adds."""
    if isinstance(a, str) or isinstance(b, str):
        return f"{a}{b}"
    return to_num(a) + to_num(b)


def sub(a: object, b: object) -> int | float:
    return to_num(a) - to_num(b)


def mul(a: object, b: object) -> int | float:
    return to_num(a) * to_num(b)


def div(a: object, b: object) -> int | float:
    """Integer division truncates toward zero (C); reals divide exactly."""
    x, y = to_num(a), to_num(b)
    if y == 0:
        raise Fail(f"division by zero ({a!r} / {b!r})")
    if isinstance(x, int) and isinstance(y, int):
        q = abs(x) // abs(y)
        return q if (x >= 0) == (y >= 0) else -q
    return x / y


def mod(a: object, b: object) -> int | float:
    x, y = to_num(a), to_num(b)
    if y == 0:
        raise Fail(f"modulo by zero ({a!r} % {b!r})")
    if isinstance(x, int) and isinstance(y, int):
        r = abs(x) % abs(y)
        return r if x >= 0 else -r
    return x % y


def neg(a: object) -> int | float:
    return -to_num(a)


def _pair(a: object, b: object) -> tuple[object, object]:
    """Two strings compare as strings ("9" > "10"); with a number on either side,
    compare numerically if the other side reads as a number, else as strings."""
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    x, y = number(a), number(b)
    if x is not None and y is not None:
        return x, y
    return str(a), str(b)


def eq(a: object, b: object) -> bool:
    if type(a) is str and type(b) is str:
        return a == b
    x, y = _pair(a, b)
    return x == y


def ne(a: object, b: object) -> bool:
    return not eq(a, b)


def lt(a: object, b: object) -> bool:
    x, y = _pair(a, b)
    return bool(x < y)  # type: ignore[operator]


def le(a: object, b: object) -> bool:
    x, y = _pair(a, b)
    return bool(x <= y)  # type: ignore[operator]


def gt(a: object, b: object) -> bool:
    x, y = _pair(a, b)
    return bool(x > y)  # type: ignore[operator]


def ge(a: object, b: object) -> bool:
    x, y = _pair(a, b)
    return bool(x >= y)  # type: ignore[operator]


# -- strings ---------------------------------------------------------------------------


def substr(text: str, start: object, length: object = None) -> str:
    """1-based ``start``; a start below 1 counts from 1; no length means to the end."""
    begin = max(atoi(start), 1) - 1
    if length is None:
        return text[begin:]
    count = atoi(length)
    return text[begin : begin + count] if count > 0 else ""


def split(text: str, array: dict[str, object], separators: str = " ") -> int:
    """Fill ``array`` with the fields at keys "1".."n" (strtok: empty fields skipped)."""
    array.clear()
    if separators:
        pattern = "[" + re.escape(separators) + "]+"
        parts = [p for p in re.split(pattern, text) if p]
    else:
        parts = [text] if text else []
    for i, part in enumerate(parts, 1):
        array[str(i)] = part
    return len(parts)


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


def _nvp_quote(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


_NVP_RE: Final = re.compile(r'([^=;]+)="((?:[^"\\]|\\.)*)"')


def nvp_add(base: str, pairs: tuple[object, ...]) -> str:
    """``name="value"`` pairs joined by ``;`` (the ExtendedAttr form), replacing names."""
    items = {m.group(1): m.group(2) for m in _NVP_RE.finditer(base)}
    for i in range(0, len(pairs) - 1, 2):
        items[str(pairs[i])] = _nvp_quote(pairs[i + 1])[1:-1]
    return ";".join(f'{k}="{v}"' for k, v in items.items())


def nvp_all(tokens: dict[str, object]) -> str:
    return ";".join(f"{k}={_nvp_quote(v)}" for k, v in tokens.items())


def json_path(tokens: dict[str, str], path: str) -> object:
    """``$(a.b)``: a token literally named ``a.b``, else walk JSON-valued tokens."""
    if path in tokens:
        return tokens[path]
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # longest token name first
        head = ".".join(parts[:cut])
        if head in tokens:
            try:
                value: object = json.loads(tokens[head])
            except (ValueError, TypeError, RecursionError):
                return ""
            for part in parts[cut:]:
                if isinstance(value, dict) and part in value:
                    value = value[part]
                elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                    value = value[int(part)]
                else:
                    return ""
            if isinstance(value, str):
                return value
            if value is None:
                return ""
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, int | float):
                return str(value)
            return json.dumps(value, separators=(",", ":"))
    return ""


# -- dates -----------------------------------------------------------------------------


def datetotime(text: str, fmt: str) -> int:
    """Seconds since the epoch of a local-time date read with a strptime format."""
    try:
        parsed = datetime.strptime(text, fmt)
        return int(parsed.timestamp())
    except (ValueError, OverflowError, OSError) as exc:
        raise Fail(f"cannot read date {text!r} with format {fmt!r}: {exc}") from None


def timetodate(value: object, fmt: str) -> str:
    """A local-time date string for seconds since the epoch, with a strftime format."""
    try:
        return datetime.fromtimestamp(atoi(value)).strftime(fmt)
    except (ValueError, OverflowError, OSError) as exc:
        raise Fail(f"cannot format time {value!r} with {fmt!r}: {exc}") from None
