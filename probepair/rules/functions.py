"""Built-in functions and the runtime helpers that generated rules code calls.

PURE (no clock reads: ``getdate`` goes through ``ctx.wall_clock``, the rules-time
budget through ``ctx.clock``).

Cost: every helper is linear in its input, and no value grows without bound: a string
longer than ``MAX_VALUE`` characters fails the statement that made it, an integer
product outside 64 bits fails like C's would overflow. So a straight run of rules
costs at most statements x linear work on at most ``MAX_VALUE`` characters; only the
loops (``foreach``, the match loop of ``regreplace``) can repeat that, and they check
the event's rules-time budget (``OverBudget``).

``BUILTINS`` is the one table of what a rules file may call: name -> (min arity,
max arity, role). The compiler checks arity against it and turns each call into
inline Python (``match`` becomes ``a == b``) or a call to a helper below; anything
not in the table is a compile error; ``FOREIGN`` names functions of other probes, so
that error can say which probe a function belongs to.

Value semantics follow OMNIbus (the helpers are in ``arith``): tokens are strings;
``+`` concatenates when either side is a string and adds otherwise; ``- * / %`` need
numbers and treat numeric strings as numbers (``"abc" - 1`` is a runtime error);
``int()``/``real()`` read the leading number like C's atoi/atof, so ``int("abc")`` is 0
and ``int("12ab")`` 12. Comparisons: two strings compare as strings; a number against a
numeric string compares as numbers (``$SyslogSeverity < 3`` does what it says).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from probepair.rules.arith import atoi
from probepair.rules.dates import format_ldml, parse_ldml, read_date
from probepair.rules.failures import MAX_VALUE, Fail, OverBudget, cap
from probepair.rules.patterns import Regex, ResultTooLong
from probepair.rules.patterns import cached as cached_regex

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "FATAL")


class _Budgeted(Protocol):
    """What a budgeted helper reads of the RulesContext."""

    clock: Callable[[], float]
    deadline: float


@dataclass(frozen=True, slots=True)
class Builtin:
    """Arity bounds and role: "value" returns a value, "statement" does not, "list"
    gives several (``[$a, $b] = ...`` only), "target" is ``T = registertarget(...)``."""

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
    "nvp_remove": Builtin(1, -1),
    "printable": Builtin(1, 1),
    "date": Builtin(1, 1),
    "scanformat": Builtin(2, 2, "list"),
    "registertarget": Builtin(3, 5, "target"),
    "lookup": Builtin(2, 2),
    "log": Builtin(2, 2, "statement"),
    "details": Builtin(1, -1, "statement"),
    "remove": Builtin(1, 1, "statement"),
    "update": Builtin(1, 2, "statement"),
    "setlog": Builtin(1, 1, "statement"),
    "clear": Builtin(1, 1, "statement"),
    "settarget": Builtin(1, 1, "statement"),
    "setdefaulttarget": Builtin(1, 1, "statement"),
    "genevent": Builtin(1, -1, "statement"),
    # Issue 23 (probefns.py): getenv and expand take string literals (calls.py says why).
    "getenv": Builtin(1, 1),
    "expand": Builtin(1, 1),
    "charcount": Builtin(1, 1),
    "contains": Builtin(2, 2),
    "getload": Builtin(1, 1),
    "updateload": Builtin(1, 1),
    "service": Builtin(2, 4, "statement"),
    # The SNMP trap probe's (mttrapd) flood control (feeds/snmp/control.py); with any
    # other feed they count nothing (0) and the drop list stays empty.
    "read_trap_count": Builtin(0, 1),
    "read_drop_count": Builtin(0, 1),
    "get_queue_size": Builtin(0, 0),
    "drop_list_add": Builtin(1, 1),
    "drop_list_remove": Builtin(1, 1),
}

TRAP_FUNCTIONS: Final = (
    "read_trap_count",
    "read_drop_count",
    "get_queue_size",
    "drop_list_add",
    "drop_list_remove",
)

# Functions that exist in OMNIbus rules, but only in one probe's rules: name -> probe.
# (mttrapd's own functions were here until the SNMP feed provided them, issue 22.)
FOREIGN: Final[dict[str, str]] = {}


class TrapFunctions(Protocol):
    """What mttrapd's functions reach of the SNMP feed (RulesContext.traps)."""

    def read_trap_count(self, host: str = "") -> int: ...
    def read_drop_count(self, host: str = "") -> int: ...
    def get_queue_size(self) -> int: ...
    def drop_list_add(self, host: str) -> int: ...
    def drop_list_remove(self, host: str) -> int: ...


def trap_function(traps: TrapFunctions | None, name: str, args: tuple[object, ...]) -> int:
    """mttrapd's function ``name`` on the feed's counters (0 without an SNMP feed).

    ``read_trap_count(host)``: traps from ``host`` waiting in the queue (no host: all);
    ``read_drop_count(host)``: traps from ``host`` dropped by the drop list (no host:
    all); ``get_queue_size()``: traps in the queue; ``drop_list_add(host)`` and
    ``drop_list_remove(host)``: 1 if that changed the list, else 0.
    """
    if traps is None:
        return 0
    method: Callable[..., int] = getattr(traps, name)
    return int(method(*(str(a) for a in args)))


# -- regular expressions ---------------------------------------------------------------

def compile_regex(pattern: str) -> Regex:
    """Compile an OMNIbus (POSIX extended) regex on RE2 (patterns.py: the dialect).

    Raises:
        ValueError: the pattern is invalid or uses what RE2 refuses, with a short reason.
    """
    return Regex(pattern)


def dynamic_regex(pattern: str) -> Regex:
    """A regex computed at run time (rare), cached; an invalid one fails the statement."""
    try:
        return cached_regex(pattern)
    except ValueError as exc:
        raise Fail(f"invalid regular expression {pattern!r}: {exc}") from None


def extract(regex: Regex, text: str) -> str:
    """First group of the first match, "" when there is no match (whole match if no group)."""
    return regex.extract(text)


def regreplace(
    regex: Regex,
    text: str,
    replacement: str,
    ctx: _Budgeted | None = None,
    pos: tuple[str, int, int] = ("", 0, 0),
) -> str:
    """Replace every match; ``\\1`` in the replacement is the first group.

    The match loop is the one place in straight-line rules where one call can cost
    more than linear time (``Regex.sub``), so it checks ``ctx``'s deadline as it goes;
    the result is capped at ``MAX_VALUE``.
    """
    check = None
    if ctx is not None and ctx.deadline != math.inf:
        clock, deadline = ctx.clock, ctx.deadline

        def check() -> None:
            if clock() > deadline:
                raise OverBudget(pos)

    try:
        return regex.sub(text, replacement, check=check, limit=MAX_VALUE)
    except ResultTooLong as exc:
        raise Fail(f"regreplace: {exc}") from None
    except ValueError as exc:
        raise Fail(f"bad replacement {replacement!r}: {exc}") from None


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


# On RE2: on Python's re this unanchored pattern restarts at every position of a long
# run without "=" and goes quadratic (64 KiB: 16 s for one nvp_add()).
_NVP_RE: Final = Regex(r'([^=;]+)="((?:[^"\\]|\\.)*)"')


def _nvp_items(base: str) -> list[tuple[str, str]]:
    return [(k or "", v or "") for k, v in _NVP_RE.findall(base)]


def nvp_add(base: str, pairs: tuple[object, ...]) -> str:
    """``name="value"`` pairs joined by ``;`` (the ExtendedAttr form), replacing names."""
    items = dict(_nvp_items(base))
    for i in range(0, len(pairs) - 1, 2):
        items[str(pairs[i])] = _nvp_quote(pairs[i + 1])[1:-1]
    return cap(";".join(f'{k}="{v}"' for k, v in items.items()))


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


def nvp_remove(base: str, names: tuple[object, ...]) -> str:
    """``base`` (``name="value";...``) without the pairs ``names`` name."""
    drop = {str(n) for n in names}
    items = _nvp_items(base)
    return ";".join(f'{k}="{v}"' for k, v in items if k not in drop)


def nvp_fields(base: str, fields: dict[str, object]) -> str:
    """``nvp_add(base, @*)``/``nvp_add(@*)``: every field as a pair."""
    pairs: list[object] = []
    for k, v in fields.items():
        pairs += [k, v]
    return nvp_add(base, tuple(pairs))


# C0 controls, DEL and C1 controls: str.translate, ~10x re.sub on a line of them.
_UNPRINTABLE: Final = {c: " " for c in (*range(0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """Each non-printable character (control characters, DEL) becomes a space."""
    return text.translate(_UNPRINTABLE)


# -- scanformat: sscanf-like reading of several values ---------------------------------

_SCAN_CONV: Final = {
    "s": r"(\S+)",
    "d": r"([-+]?\d+)",
    "i": r"([-+]?\d+)",
    "f": r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)",
}


def scan_pattern(fmt: str) -> tuple[Regex, str]:
    """A regex for a scanformat() format and its conversions ("s", "d", "f" each).

    As sscanf: ``%s`` reads a word, ``%d`` an integer, ``%f`` a real (each after any
    white space), white space in the format matches any amount (also none), ``%%`` is
    ``%``, other characters match themselves. The conversions after the first one that
    fails are optional groups, so a partial match still gives the values before it.

    Raises:
        ValueError: an unknown conversion such as ``%x``.
    """
    parts: list[str] = []  # one regex per conversion, with the literal text before it
    kinds = ""
    literal = ""
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt) and fmt[i + 1] == "%":
            literal += re.escape("%")
            i += 2
        elif c == "%":
            conv = fmt[i + 1 : i + 2]
            if conv not in _SCAN_CONV:
                raise ValueError(f"unknown conversion {fmt[i : i + 2]!r} (use %s, %d or %f)")
            parts.append(literal + r"\s*" + _SCAN_CONV[conv])
            kinds += "f" if conv == "f" else "d" if conv in "di" else "s"
            literal = ""
            i += 2
        elif c.isspace():
            literal += r"\s*"
            i += 1
        else:
            literal += re.escape(c)
            i += 1
    pattern = ""
    for part in reversed(parts[1:]):
        pattern = f"(?:{part}{pattern})?"
    # No conversion: no values; the empty pattern matches and has no groups. On RE2: on
    # Python's re, "%s %d" (two \s* in a row) took 68 s on 64 KiB of blanks.
    return Regex(parts[0] + pattern if parts else ""), kinds


def scanformat(regex: Regex, kinds: str, text: str) -> list[object]:
    """The values ``text`` gives for a scan_pattern(); fewer when it stops matching."""
    groups = regex.prefix(text)
    out: list[object] = []
    if groups is None:
        return out
    for kind, value in zip(kinds, groups, strict=False):
        if value is None:
            break
        out.append(int(value) if kind == "d" else float(value) if kind == "f" else value)
    return out


def split_list(text: str, separators: str = " ") -> list[object]:
    """``[$a, $b] = split(text[, separators])``: the fields, empty ones skipped."""
    array: dict[str, object] = {}
    split(text, array, separators)
    return list(array.values())


# -- dates -----------------------------------------------------------------------------


def datetotime(text: str, fmt: str) -> int:
    """Seconds since the epoch of a date read with an LDML pattern (``"yyyy-MM-dd"``)
    or, when the format has a ``%``, a strptime format; local time unless it has a zone."""
    try:
        if "%" not in fmt:
            return parse_ldml(text, fmt)
        parsed = datetime.strptime(text, fmt)
        return int(parsed.timestamp())
    except (ValueError, OverflowError, OSError) as exc:
        raise Fail(f"cannot read date {text!r} with format {fmt!r}: {exc}") from None


def timetodate(value: object, fmt: str) -> str:
    """A local-time date string for seconds since the epoch, with an LDML pattern or
    (when the format has a ``%``) a strftime format."""
    try:
        if "%" not in fmt:
            return format_ldml(atoi(value), fmt)
        return datetime.fromtimestamp(atoi(value)).strftime(fmt)
    except (ValueError, OverflowError, OSError) as exc:
        raise Fail(f"cannot format time {value!r} with {fmt!r}: {exc}") from None


def date(value: object) -> int:
    """``date(text)``: seconds since the epoch of a date in a common form (dates.py)."""
    if isinstance(value, int | float):
        return int(value)
    try:
        return read_date(str(value))
    except (ValueError, OverflowError, OSError) as exc:
        raise Fail(f"cannot read date {value!r}: {exc}") from None
