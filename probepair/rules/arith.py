"""Numbers, comparisons and bitwise operators of the rules language (PURE).

OMNIbus value semantics: ``+`` concatenates when either side is a string and adds
otherwise; ``- * / %`` need numbers and treat numeric strings as numbers; ``int()`` and
``real()`` read the leading number like C's atoi/atof; a number against a numeric
string compares as numbers, two strings as strings. Integers are 64-bit like the C the
probes are written in: a product or shift outside it fails the statement (``Fail``),
so no value grows without bound.
"""

from __future__ import annotations

import math
import re
from typing import Final

from probepair.rules.failures import INT64, Fail, cap

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
    # Length first: the pattern backtracks quadratically on a long run of digits.
    if isinstance(value, str) and len(value) < 400 and _NUMBER_RE.fullmatch(value):
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
        return cap(f"{a}{b}")
    return to_num(a) + to_num(b)


def sub(a: object, b: object) -> int | float:
    return to_num(a) - to_num(b)


def mul(a: object, b: object) -> int | float:
    """Integers stay within 64 bits, as in OMNIbus: ``$x = $x * $x`` in a loop would
    otherwise build numbers whose every product costs more than the last."""
    product = to_num(a) * to_num(b)
    if isinstance(product, int) and not -INT64 <= product < INT64:
        raise Fail(f"integer overflow ({a!r} * {b!r})")
    return product


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


# -- bitwise operators: on 64-bit signed integers, as the C the probes are written in ---

_MASK: Final = (1 << 64) - 1


def _int64(value: object) -> int:
    n = to_num(value)
    if isinstance(n, float):
        if not math.isfinite(n):
            raise Fail(f"expected an integer, found {value!r}")
        n = int(n)
    n &= _MASK
    return n - (1 << 64) if n >> 63 else n


def band(a: object, b: object) -> int:
    return _int64(_int64(a) & _int64(b))


def bor(a: object, b: object) -> int:
    return _int64(_int64(a) | _int64(b))


def bxor(a: object, b: object) -> int:
    return _int64(_int64(a) ^ _int64(b))


def bnot(a: object) -> int:
    return _int64(~_int64(a))


def shl(a: object, b: object) -> int:
    n = _int64(b)
    if n < 0:
        raise Fail(f"negative shift count {b!r}")
    return 0 if n >= 64 else _int64(_int64(a) << n)


def shr(a: object, b: object) -> int:
    n = _int64(b)
    if n < 0:
        raise Fail(f"negative shift count {b!r}")
    return _int64(a) >> min(n, 63)
