"""Rules regular expressions on RE2: translation, compile errors, and the calls rules make.

PURE (RE2 is a library without I/O; it is the one non-stdlib import of rules/).

Why RE2: Python's ``re`` backtracks, so one pattern an operator writes in good faith
(``^(\\w+\\s?)*$``) and one 27-byte line took 3.9 s, and both probes of a pair run the
same rules on the same line. RE2 runs in time linear in the text for every pattern it
accepts. It refuses back-references and look-around; those are a compile error with
the file position of the pattern (``rules check`` finds them), not a slower engine
kept for them: a timeout engine still stalls both probes for the timeout on every
event, and the choice is made once at load, where the operator can see it.

Dialect (OMNIbus patterns are POSIX extended, written with Perl-style escapes in
practice): RE2 syntax, with these translations so that the behaviour is the one
documented in the README rules section and checked against Python ``re`` by
tests/rules/test_patterns.py:

* ``\\s`` is ``[\\t\\n\\v\\f\\r ]`` (C ``isspace``, POSIX ``[:space:]``; RE2's own
  ``\\s`` lacks ``\\v``), ``\\S`` its complement; ``\\d`` ``\\w`` ``\\b`` are ASCII, as
  POSIX classes are.
* ``\\Z`` is the end of the text (RE2 spells it ``\\z``); ``$`` is the end of the text
  too (not "before a final newline" as in Python), unless ``(?m)``.

Matching runs on UTF-8 bytes; spans are byte offsets, so results are sliced from the
encoded text and decoded, never converted offset by offset.

The calls go through RE2's low-level binding (``re2._re2``): the ``re2`` module's
Python wrapper costs 1-4 µs a call (it builds a generator and decodes offsets per
match), the binding ~0.4 µs (bench/rules.py prints both figures).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Final

import re2
from re2 import _re2

_OPTIONS: Final = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print each refused pattern to stderr
_NOCAP: Final = re2.Options()
_NOCAP.log_errors = False
_NOCAP.never_capture = True  # regmatch needs no groups: the DFA answers alone

_UNANCHORED: Final = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_START: Final = _re2.RE2.Anchor.ANCHOR_START

# Matches between two looks at the rules-time budget in ``Regex.sub``: a clock read
# costs ~50 ns, one RE2 search from Python at least ~1 µs.
CHECK_EVERY: Final = 16

_SPACE: Final = r"\t\n\v\f\r "  # C isspace(), POSIX [:space:]


def translate(pattern: str) -> str:
    """The RE2 pattern for a rules pattern (see the module docstring)."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    in_class = False
    repeatable = False  # whether a '*' or '+' here has something before it to repeat
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e == "s":
                out.append(_SPACE if in_class else f"[{_SPACE}]")
            elif e == "S":
                out.append("[:^space:]" if in_class else f"[^{_SPACE}]")
            elif e == "Z" and not in_class:
                out.append(r"\z")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            repeatable = True
            continue
        if in_class:
            if c == "[" and pattern.startswith(":", i + 1):
                end = pattern.find(":]", i + 2)
                if end >= 0:  # a POSIX class: RE2 knows them all, with ASCII meanings
                    out.append(pattern[i : end + 2])
                    i = end + 2
                    continue
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            repeatable = True  # the class, once it ends
            j = i + 1
            if pattern.startswith("^", j):
                j += 1
            if pattern.startswith("]", j):  # "[]a]": a leading ']' is literal
                j += 1
            out.append(pattern[i:j])
            i = j
            continue
        if c in "*+?" and repeatable is False:
            out.append("\\" + c)  # nothing to repeat: a literal, as OMNIbus reads it
        else:
            out.append(c)
        i += 1
        # Where a '*', '+' or '?' has nothing to repeat: at the start, after '(' (not
        # a '(?' group), after '|', and after a leading '^'.
        if (c == "(" and not pattern.startswith("?", i)) or c == "|":
            repeatable = False
        elif not (c == "^" and repeatable is False):
            repeatable = True
    return "".join(out)


def _reason(pattern: str, error: str) -> str:
    """RE2's complaint, said in the rules' terms where a known construct is refused."""
    if error.startswith("invalid escape sequence: \\") and error[-1:].isdigit():
        return (
            f"back-reference {error.rsplit(': ', 1)[1]!r} is not supported "
            "(rules regexes run on RE2, which guarantees linear time)"
        )
    for op, what in (
        ("(?=", "look-ahead"),
        ("(?!", "negative look-ahead"),
        ("(?<=", "look-behind"),
        ("(?<!", "negative look-behind"),
        ("(?>", "atomic group"),
        ("(?#", "comment group"),
    ):
        if error == f"invalid perl operator: {op}":
            return (
                f"{what} {op!r} is not supported "
                "(rules regexes run on RE2, which guarantees linear time)"
            )
    if error.startswith("bad repetition operator: ") and error[-1] == "+":
        return f"possessive quantifier {error.rsplit(': ', 1)[1]!r} is not supported (RE2)"
    if error == "invalid escape sequence: \\u":
        return "'\\u' escapes are not supported: write '\\x{...}'"
    what, sep, fragment = error.partition(": ")
    return f"{what} at {fragment!r}" if sep else error


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:  # a span that splits a character (only in invalid text)
        return data.decode("utf-8", "replace")


def _encode(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # lone surrogates (from JSON escapes): keep their bytes
        return text.encode("utf-8", "surrogatepass")


def _char_len(data: bytes, at: int) -> int:
    """Bytes of the UTF-8 character starting at ``at`` (1 for a stray byte)."""
    b = data[at]
    return 1 if b < 0xC0 else 2 if b < 0xE0 else 3 if b < 0xF0 else 4


class ResultTooLong(ValueError):
    """``Regex.sub`` would return more than its ``limit`` of characters."""


class Regex:
    """A compiled rules regex. Every method runs in time linear in ``text``, except
    :meth:`sub`, which is linear per match (see its docstring)."""

    __slots__ = ("_index", "_py", "_re", "_test", "backtracking", "extract", "groups",
                 "pattern", "search")

    def __init__(self, pattern: str, *, backtracking: bool = True) -> None:
        """``backtracking=False`` keeps every call on RE2 (tests compare the two).

        Raises:
            ValueError: RE2 refuses the pattern; the message says why.
        """
        translated = _encode(translate(pattern))
        compiled = _re2.RE2(translated, _OPTIONS)
        if not compiled.ok():
            raise ValueError(_reason(pattern, compiled.error().decode("utf-8", "replace")))
        self.pattern = pattern
        self._re = compiled
        self._test = _re2.RE2(translated, _NOCAP)
        self.groups: int = compiled.NumberOfCapturingGroups()
        self._index = {
            name.decode("utf-8", "replace"): index
            for name, index in compiled.NamedCapturingGroups()
        }
        # search/extract on Python's re where proven linear there (see below): cheaper.
        self._py = backtracking_equivalent(pattern) if backtracking else None
        self.backtracking = self._py is not None
        self.search: Callable[[str], object] = (
            self._search_re2 if self._py is None else self._py.search
        )
        self.extract: Callable[[str], str] = (
            self._extract_re2 if self._py is None else self._extract_py
        )

    def __repr__(self) -> str:
        return f"<Regex {self.pattern!r}>"

    # search(text): a true value (not None) where the pattern matches (``regmatch``).
    # extract(text): the first group of the first match ("" if none; the whole match if
    # the pattern has no group). Both are bound at __init__ to one engine.

    def _search_re2(self, text: str) -> bool | None:
        data = _encode(text)
        start: int = self._test.Match(_UNANCHORED, data, 0, len(data))[0][0]
        return True if start >= 0 else None

    def _extract_py(self, text: str) -> str:
        assert self._py is not None
        m = self._py.search(text)
        if m is None:
            return ""
        return (m.group(1) or "") if self.groups else m.group(0)

    def _extract_re2(self, text: str) -> str:
        data = _encode(text)
        spans = self._re.Match(_UNANCHORED, data, 0, len(data))
        if spans[0][0] < 0:
            return ""
        start, end = spans[1] if self.groups else spans[0]
        return _decode(data[start:end]) if start >= 0 else ""

    def prefix(self, text: str) -> tuple[str | None, ...] | None:
        """The groups of a match at the start of ``text``, None if there is none."""
        data = _encode(text)
        spans = self._re.Match(_ANCHOR_START, data, 0, len(data))
        if spans[0][0] < 0:
            return None
        return tuple(_decode(data[s:e]) if s >= 0 else None for s, e in spans[1:])

    def findall(self, text: str) -> list[tuple[str | None, ...]]:
        """The groups of every non-overlapping match, left to right (as ``finditer``)."""
        data = _encode(text)
        n = len(data)
        found: list[tuple[str | None, ...]] = []
        pos = 0
        while pos <= n:
            spans = self._re.Match(_UNANCHORED, data, pos, n)
            start, end = spans[0]
            if start < 0:
                break
            found.append(tuple(_decode(data[s:e]) if s >= 0 else None for s, e in spans[1:]))
            pos = end if end > start else end + (_char_len(data, end) if end < n else 1)
        return found

    def sub(
        self,
        text: str,
        replacement: str,
        *,
        check: Callable[[], None] | None = None,
        limit: int | None = None,
    ) -> str:
        """Every match replaced; ``\\1`` or ``\\g<1>`` in ``replacement`` is a group.

        Each search is linear in the rest of the text, so the whole is linear in the
        text times the number of matches when a pattern keeps scanning far past its
        matches (``a(.*b)?`` on a long line of ``a``); with patterns that stop near
        their matches (all practical ones) it is linear. So the match loop calls
        ``check`` every ``CHECK_EVERY`` matches (the rules-time budget raises from
        it), and a result longer than ``limit`` characters raises ResultTooLong.
        Python's ``re`` runs it only where neither can matter: a proven-linear
        pattern on a text short enough that no replacement can pass ``limit``.

        Raises:
            ValueError: a bad replacement (unknown escape, missing group).
            ResultTooLong: the result would pass ``limit``.
        """
        if self._py is not None and (
            limit is None or (len(text) + 1) * (2 * len(replacement) + 1) <= limit
        ):
            try:
                return self._py.sub(replacement, text)
            except (re.error, IndexError) as exc:
                raise ValueError(str(exc)) from None
        template = _template(replacement, self.groups, tuple(self._index.items()))
        data = _encode(text)
        n = len(data)
        most = math.inf if limit is None else 4 * limit  # bytes: UTF-8 has <= 4 a char
        out: list[bytes] = []
        size = 0
        matches = 0
        pos = last = 0
        while pos <= n:
            spans = self._re.Match(_UNANCHORED, data, pos, n)
            start, end = spans[0]
            if start < 0:
                break
            matches += 1
            if check is not None and matches % CHECK_EVERY == 0:
                check()
            out.append(data[last:start])
            size += start - last
            for piece in template:
                if isinstance(piece, bytes):
                    out.append(piece)
                    size += len(piece)
                else:
                    s, e = spans[piece]
                    if s >= 0:
                        out.append(data[s:e])
                        size += e - s
            if size > most:
                raise ResultTooLong(f"result longer than {limit} characters")
            last = end
            if end > start:
                pos = end
            elif end >= n:
                break
            else:
                pos = end + _char_len(data, end)
        if not out:
            return text
        out.append(data[last:])
        result = _decode(b"".join(out))
        if limit is not None and len(result) > limit:
            raise ResultTooLong(f"result of {len(result)} characters, longer than {limit}")
        return result


_TEMPLATE_ESCAPES: Final = {
    "n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a", "b": "\b", "\\": "\\",
}  # fmt: skip


@lru_cache(maxsize=256)
def _template(
    replacement: str, groups: int, names: tuple[tuple[str, int], ...]
) -> tuple[bytes | int, ...]:
    """A replacement as literal byte strings and group numbers (Python ``re.sub``'s
    template language: ``\\1``..``\\99``, ``\\g<n>``, ``\\g<name>``, escapes; other
    backslashes before a non-letter stay, before a letter they are an error)."""
    pieces: list[bytes | int] = []
    literal: list[str] = []
    i = 0
    n = len(replacement)

    def group(ref: int) -> None:
        if ref > groups:
            raise ValueError(f"invalid group reference {ref}")
        pieces.append(_encode("".join(literal)))
        literal.clear()
        pieces.append(ref)

    while i < n:
        c = replacement[i]
        if c != "\\" or i + 1 >= n:
            literal.append(c)
            i += 1
            continue
        e = replacement[i + 1]
        if e == "g":
            close = replacement.find(">", i + 3)
            if not replacement.startswith("<", i + 2) or close < 0:
                raise ValueError("missing group name in \\g<...>")
            name = replacement[i + 3 : close]
            if name.isdigit() and name.isascii():
                group(int(name))
            elif name in dict(names):
                group(dict(names)[name])
            else:
                raise ValueError(f"unknown group name {name!r}")
            i = close + 1
        elif e in "01234567" and replacement[i + 1 : i + 4].isdigit() and all(
            d in "01234567" for d in replacement[i + 1 : i + 4]
        ) and len(replacement[i + 1 : i + 4]) == 3:
            literal.append(chr(int(replacement[i + 1 : i + 4], 8)))
            i += 4
        elif e == "0":
            literal.append("\x00")
            i += 2
        elif e.isdigit() and e.isascii():
            two = replacement[i + 1 : i + 3]
            digits = two if two.isdigit() and two.isascii() else e
            group(int(digits))
            i += 1 + len(digits)
        elif e in _TEMPLATE_ESCAPES:
            literal.append(_TEMPLATE_ESCAPES[e])
            i += 2
        elif e.isascii() and e.isalpha():
            raise ValueError(f"bad escape \\{e}")
        else:
            literal.append(replacement[i : i + 2])
            i += 2
    pieces.append(_encode("".join(literal)))
    return tuple(p for p in pieces if p != b"")


# -- patterns proven safe on Python's re -------------------------------------------------
#
# RE2's binding costs ~0.5 µs a call against ~0.1-0.4 µs for Python's re on the shipped
# rules' patterns (bench/rules.py), and regmatch/extract run on every event. So a
# pattern of a class proven linear on a backtracking engine runs search/extract on re
# (compiled with re.ASCII, '$' as '\Z': the same dialect, as the cross-check shows);
# every other pattern, and every sub/findall/prefix, runs on RE2. The class:
#
# * only literals, '.', classes without POSIX names, the escapes \w \W \d \D \s \S \b
#   \B \A \Z \t \n \r \f \v and escaped punctuation; groups '(...)' '(?:...)'; no '{'
#   and no other '(?';
# * '*' '+' (greedy or lazy) only on a single-character item, at most one in the
#   pattern; '?' on anything without such a loop; at most 6 '?' and '|' in all (each
#   attempt then backtracks over at most 2**6 paths that do not loop);
# * the loop is in a top-level branch that starts with '^' (one attempt does the
#   work: O(n) for the loop times the bounded rest), or it is the last thing the
#   pattern matches (no group around it is quantified, nothing follows it): an attempt
#   that reaches it succeeds, so no attempt scans the loop twice.
#
# Everything else (nested or several loops, '{m,n}', loops followed by something in an
# unanchored pattern such as '\s+$') is left to RE2.

_SAFE_ESCAPES: Final = frozenset("wWdDsSbBAZtnrfv")


class _Unsafe(Exception):
    pass


class _Scan:
    """A recursive-descent walk of a pattern that raises _Unsafe outside the class."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.loops = 0
        self.choices = 0
        self.loop_last = False  # the loop is the last item matched

    def alternation(self, depth: int) -> tuple[bool, bool]:
        """(has a loop, the loop ended its branch) over '|'-separated sequences."""
        has_loop, loop_last, branch = False, False, 0
        while True:
            before = self.loops
            starts_anchored = self.p.startswith("^", self.i)
            last = self.sequence(depth)
            if self.loops > before:
                has_loop, loop_last = True, last
                if depth == 0 and not (starts_anchored or last):
                    raise _Unsafe
            branch += 1
            if self.i < len(self.p) and self.p[self.i] == "|":
                self.choices += 1
                self.i += 1
                continue
            return has_loop, loop_last

    def sequence(self, depth: int) -> bool:
        """Items up to '|' or ')'; whether the last item was the loop (or a group
        ending in it)."""
        last_is_loop = False
        p = self.p
        while self.i < len(p) and p[self.i] not in "|)":
            c = p[self.i]
            single = True
            if c == "(":
                if p.startswith("(?", self.i) and not p.startswith("(?:", self.i):
                    raise _Unsafe
                self.i += 3 if p.startswith("(?:", self.i) else 1
                has_loop, ends = self.alternation(depth + 1)
                if self.i >= len(p):
                    raise _Unsafe
                self.i += 1  # ')'
                single = False
                last_is_loop = has_loop and ends
                if self.i < len(p) and p[self.i] in "*+{":
                    raise _Unsafe
                if self.i < len(p) and p[self.i] == "?":
                    if has_loop:
                        raise _Unsafe
                    self.choices += 1
                    self.i += 1
                continue
            if c == "[":
                end = self._class_end()
                self.i = end
            elif c == "\\":
                e = p[self.i + 1 : self.i + 2]
                if not e or (e.isascii() and e.isalnum() and e not in _SAFE_ESCAPES):
                    raise _Unsafe
                self.i += 2
            elif c in "*+?{":
                raise _Unsafe  # a quantifier with nothing to repeat, or '{'
            else:
                self.i += 1
            last_is_loop = False
            if self.i < len(p) and p[self.i] in "*+" and single:
                self.loops += 1
                if self.loops > 1:
                    raise _Unsafe
                self.i += 1
                if self.i < len(p) and p[self.i] == "?":
                    self.i += 1
                last_is_loop = True
            elif self.i < len(p) and p[self.i] == "?":
                self.choices += 1
                self.i += 1
            if self.i < len(p) and p[self.i] in "*+?{":
                raise _Unsafe
            if self.choices > 6:
                raise _Unsafe
        if self.choices > 6:
            raise _Unsafe
        return last_is_loop

    def _class_end(self) -> int:
        p = self.p
        j = self.i + 1
        if p.startswith("^", j):
            j += 1
        if p.startswith("]", j):
            j += 1
        while j < len(p) and p[j] != "]":
            if p[j] == "\\":
                e = p[j + 1 : j + 2]
                if not e or (e.isascii() and e.isalnum() and e not in "wWdDsStnrfv"):
                    raise _Unsafe
                j += 2
                continue
            if p.startswith("[:", j) or p.startswith("[=", j) or p.startswith("[.", j):
                raise _Unsafe
            j += 1
        if j >= len(p):
            raise _Unsafe
        return j + 1


def backtracking_equivalent(pattern: str) -> re.Pattern[str] | None:
    """The pattern on Python's re when it is in the class above, else None."""
    scan = _Scan(pattern)
    try:
        scan.alternation(0)
    except _Unsafe:
        return None
    if scan.i != len(pattern):  # an unbalanced ')'
        return None
    out: list[str] = []
    i = 0
    while i < len(pattern):  # '$' is the end of the text, as on RE2
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
        elif c == "[":
            scan.i = i
            j = scan._class_end()
            out.append(pattern[i:j])
            i = j
        else:
            out.append(r"\Z" if c == "$" else c)
            i += 1
    try:
        return re.compile("".join(out), re.ASCII)
    except re.error:
        return None


@lru_cache(maxsize=256)
def cached(pattern: str) -> Regex:
    """``Regex(pattern)``, remembered (for patterns computed at run time)."""
    return Regex(pattern)
