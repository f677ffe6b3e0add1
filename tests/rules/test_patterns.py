"""Rules regexes on RE2 (patterns.py) and the cost of every built-in on hostile input.

Three kinds of test: a hypothesis cross-check that the RE2 path gives what Python
``re`` gives on patterns both accept (with the dialect's documented translations:
ASCII classes, ``$`` as the end of the text); catastrophic patterns, which must
finish; and each built-in and tokeniser on 64 KiB adversarial input, whose time must
grow linearly (a ratio between 16 KiB and 64 KiB, not a wall-clock figure; a deadline
far above the expected time turns a hang into a failure).
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepair.errors import RulesCompileError
from probepair.pipeline.tokenise import tokenise
from probepair.rules import arith as ar
from probepair.rules import compile_rules, failures
from probepair.rules import functions as fn
from probepair.rules.patterns import Regex

from .conftest import Recorder

KIB = 1024


class Overdue(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise Overdue in the main thread after ``seconds`` (Python's re checks signals)."""

    def fire(signum: int, frame: object) -> None:
        raise Overdue(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def best_of(f: Callable[[], object], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def assert_linear(make: Callable[[int], Callable[[], object]], guard: float = 5.0) -> None:
    """64 KiB must cost less than 10x 16 KiB (linear: 4x; quadratic: 16x)."""
    with deadline(guard):
        small = best_of(make(16 * KIB))
        large = best_of(make(64 * KIB))
    assert large < max(10 * small, 0.002), (small, large)


# -- cross-check against Python re ---------------------------------------------------

ATOMS = ["a", "b", "é", ".", r"\d", r"\w", r"\s", r"\S", "[ab]", "[^a]", "[a-c1]", r"\b", "^", "$"]


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 2 or draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(ATOMS))
    kind = draw(st.sampled_from(["seq", "alt", "group", "nocap", "quant"]))
    if kind == "seq":
        return draw(patterns(depth + 1)) + draw(patterns(depth + 1))
    if kind == "alt":
        return draw(patterns(depth + 1)) + "|" + draw(patterns(depth + 1))
    if kind == "group":
        return "(" + draw(patterns(depth + 1)) + ")"
    if kind == "nocap":
        return "(?:" + draw(patterns(depth + 1)) + ")"
    inner = draw(patterns(depth + 1))
    if inner in ("^", "$", r"\b"):
        inner = "a"
    if re.fullmatch(inner, ""):
        # A repeat of something that can match empty: backtracking engines and RE2 differ
        # on what its groups hold after the last (empty) pass (Perl vs POSIX-like:
        # ``(?:((?:.)*))*`` on "1" gives group 1 '' on re, '1' on RE2). Documented, not
        # a translation bug: keep such repeats out of the cross-check.
        return f"(?:{inner})"
    quant = draw(st.sampled_from(["*", "+", "?", "{1,2}", "*?", "+?"]))
    return f"(?:{inner}){quant}"


TEXTS = st.text(alphabet="ab é\n\v1_x", max_size=12)


def python_re(pattern: str) -> re.Pattern[str]:
    """The same pattern on Python re, in the rules dialect: ASCII classes, ``\\s`` is
    C isspace (re.ASCII's \\s is the same set), ``$`` the end of the text."""
    return re.compile(pattern.replace("$", r"\Z"), re.ASCII)


@settings(max_examples=400, deadline=None)
@given(patterns(), TEXTS)
def test_re2_agrees_with_python_re(pattern: str, text: str) -> None:
    ours, theirs = Regex(pattern, backtracking=False), python_re(pattern)
    m = theirs.search(text)
    assert (ours.search(text) is not None) == (m is not None)
    want = "" if m is None else (m.group(1) or "") if theirs.groups else m.group(0)
    assert ours.extract(text) == want
    p = theirs.match(text)
    assert ours.prefix(text) == (None if p is None else p.groups())
    found = list(theirs.finditer(text))
    if all(f.start() < f.end() for f in found):  # empty matches: see the next test
        assert ours.findall(text) == [f.groups() for f in found]


@settings(max_examples=300, deadline=None)
@given(patterns(), TEXTS, st.sampled_from(["-", "<\\g<0>>", "\\\\", "é\\n"]))
def test_regreplace_agrees_with_python_re(pattern: str, text: str, template: str) -> None:
    theirs = python_re(pattern)
    if any(m.start() == m.end() for m in theirs.finditer(text)):
        # After an empty match Python retries a non-empty one at the same place; RE2
        # cannot ask for that, so both step one character on (documented).
        return
    assert Regex(pattern, backtracking=False).sub(text, template) == theirs.sub(template, text)


@settings(max_examples=200, deadline=None)
@given(TEXTS)
def test_group_references_in_replacement(text: str) -> None:
    assert Regex("(a)(b)?").sub(text, r"[\1\2\g<1>]") == re.sub("(a)(b)?", r"[\1\2\g<1>]", text)


def test_dialect() -> None:
    assert Regex(r"^a$").search("a\n") is None  # $ is the end of the text
    assert Regex(r"a\Z").search("xa") is not None
    assert Regex(r"\s").search("\v") is not None  # C isspace
    assert Regex(r"[\S]").search(" \t") is None
    assert Regex(r"\d").search("\u0663") is None  # ASCII digits only
    assert Regex("[[:digit:]]+").extract("ab123") == "123"
    assert Regex("[^[:space:]]+").extract("  xy ") == "xy"
    assert Regex("(é+)").extract("aééb") == "éé"
    assert Regex("(?i)ABC").search("xabc") is not None
    assert Regex("b(z)?").extract("abc") == ""  # the group did not take part
    assert Regex("x").sub("a\udc80x", "y") == "a\udc80y"  # lone surrogates survive


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "back-reference '\\\\1' is not supported"),
        ("a(?=b)", "look-ahead '(?=' is not supported"),
        ("(?<!a)b", "negative look-behind '(?<!' is not supported"),
        ("a*+", "possessive quantifier '*+' is not supported"),
        ("([a-z", "missing ] at '[a-z'"),
        ("a{1001}", "invalid repetition size at '{1001}'"),
    ],
)
def test_refused_pattern_is_a_located_compile_error(pattern: str, reason: str) -> None:
    source = '@A = 1\n@B = extract($a, "' + pattern.replace("\\", "\\\\") + '")\n'
    with pytest.raises(RulesCompileError) as info:
        compile_rules(source, source="f.rules")
    assert (info.value.line, info.value.col) == (2, 18)
    assert str(info.value).startswith(f"f.rules:2:18: invalid regular expression {pattern!r}: ")
    assert reason in str(info.value)


def test_bad_replacement_fails_the_statement(rec: Recorder) -> None:
    program = compile_rules('@A = regreplace($a, "(a)", "\\\\2")\n@B = 1', source="f.rules")
    assert program.run({"a": "a"}, rec.ctx()) == {"B": 1}
    assert "invalid group reference 2" in rec.errors[0].message


# -- catastrophic patterns -------------------------------------------------------------

CATASTROPHIC = [
    (r"^(\w+\s?)*$", "a"),  # the issue's: 3.9 s on 26 characters on Python re
    (r"(a+)+b", "a"),
    (r"(a|a)*b", "a"),
    (r"(a|aa)*c", "a"),
    (r"(.*)*b", "a"),
    (r"(\w|\d)+$", "1"),
    (r"^(a?){30}a{30}$", "a"),
    (r"\s+$", " "),
    (r"(x+x+)+y", "x"),
]


@pytest.mark.parametrize(("pattern", "fill"), CATASTROPHIC)
def test_catastrophic_pattern_is_linear(pattern: str, fill: str) -> None:
    program = compile_rules(
        f'if (regmatch($a, "{pattern.replace(chr(92), chr(92) * 2)}")) {{ @A = 1 }}\n'
        f'@B = extract($a, "{pattern.replace(chr(92), chr(92) * 2)}")',
        source="f.rules",
    )
    ctx = Recorder().ctx()
    with deadline(5.0):  # Python re: the 27-character line alone took seconds
        program.run({"a": fill * 26 + "!"}, ctx)
    assert_linear(lambda n: lambda: program.run({"a": fill * n + "!"}, ctx))


# -- every built-in, and the tokenisers, on 64 KiB -------------------------------------

SCAN = fn.scan_pattern("%s %d %s")

BUILTINS: dict[str, Callable[[int], Callable[[], object]]] = {
    "nvp_add without '='": lambda n: lambda: fn.nvp_add("a" * n, ("k", "v")),
    "nvp_add unterminated": lambda n: lambda: fn.nvp_add('a="x;' * (n // 5), ("k", "v")),
    "nvp_add many pairs": lambda n: lambda: fn.nvp_add('a="1";' * (n // 6), ("k", "v")),
    "nvp_remove without '='": lambda n: lambda: fn.nvp_remove("a" * n, ("k",)),
    "scanformat blanks": lambda n: lambda: fn.scanformat(SCAN[0], SCAN[1], "a" + " " * n + "x"),
    "split": lambda n: lambda: fn.split(" ;" * (n // 2) + "x", {}, " ;"),
    "extract": lambda n: lambda: Regex(r" from (\S+)").extract(" from" * (n // 5)),
    "extract on re, anchored": lambda n: lambda: Regex(r"^(\S+): Failed with result").extract(
        "a" * n + ": Failed with resul"
    ),
    "extract on re, loop last": lambda n: lambda: Regex(r" for (\S+)").extract(" fo" * (n // 3)),
    "regreplace every char": lambda n: lambda: Regex("a").sub("a" * n, "bb"),
    "regreplace no match": lambda n: lambda: Regex(r"\s+$").sub(" " * n + "x", ""),
    "printable": lambda n: lambda: fn.printable("\x01" * n),
    "number": lambda n: lambda: ar.number("1" * n + "x"),
    "atoi": lambda n: lambda: ar.atoi(" " * n + "1"),
    "atof": lambda n: lambda: ar.atof("1" * n + "."),
    "substr": lambda n: lambda: fn.substr("a" * n, 2, n),
    "md5": lambda n: lambda: fn.md5("a" * n),
    "date": lambda n: lambda: _fails(lambda: fn.date("1" * n + "x")),
    "datetotime": lambda n: lambda: _fails(
        lambda: fn.datetotime("1" * n, "yyyy-MM-dd HH:mm:ss.SSS")
    ),
    "syslog 3164 host": lambda n: lambda: tokenise("syslog", b"<1>Nov 22 04:04:33 " + b"a" * n),
    "syslog 5424 sd": lambda n: lambda: tokenise("syslog", b"<1>1 a b c d e [" + b"x" * n),
    "syslog 5424 escapes": lambda n: lambda: tokenise(
        "syslog", b"<1>1 a b c d e " + b"[\\]" * (n // 3)
    ),
    "json many keys": lambda n: lambda: tokenise("json", b"{" + b'"a":1,' * (n // 6) + b'"b":1}'),
    "line": lambda n: lambda: tokenise("line", b"a " * (n // 2)),
}


def _fails(f: Callable[[], object]) -> None:
    try:
        f()
    except failures.Fail:
        pass


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_is_linear_on_64_kib(name: str) -> None:
    assert_linear(BUILTINS[name])


def test_nvp_keeps_its_meaning() -> None:
    assert fn.nvp_add('a="1";junk;b="x\\"y"', ("c", 'q"')) == 'a="1";b="x\\"y";c="q\\""'
    assert fn.nvp_remove('a="1";b="2"', ("a",)) == 'b="2"'
    assert fn.nvp_add("x=y z=\"w\"", ()) == 'y z="w"'


# -- the patterns proven safe on Python's re ------------------------------------------

SHIPPED = [
    r"^probepair take over \S+$",
    r"^probepair take over (\S+)$",
    r"^Failed password for (?:invalid user )?(\S+)",
    r" from (\S+)",
    r" for (\S+)",
    r"Out of memory|oom-kill",
    r"[Ll]ink (is )?[Dd]own",
    r"^([\w.-]+):",
    r"session (opened|closed)",
    r"^(\S+): Failed with result",
]


@pytest.mark.parametrize("pattern", SHIPPED)
def test_shipped_patterns_run_on_python_re(pattern: str) -> None:
    assert Regex(pattern).backtracking


@pytest.mark.parametrize(
    "pattern",
    [p for p, _ in CATASTROPHIC]
    + [r"a*b", r"\S+x", r"(?:\S+)?x", r"x{1,5}", r"a+b+", r"[[:digit:]]+"],
)
def test_patterns_that_may_backtrack_stay_on_re2(pattern: str) -> None:
    assert not Regex(pattern).backtracking


@settings(max_examples=400, deadline=None)
@given(patterns(), TEXTS)
def test_both_engines_agree_where_re_is_used(pattern: str, text: str) -> None:
    hybrid, pure = Regex(pattern), Regex(pattern, backtracking=False)
    assert (hybrid.search(text) is None) == (pure.search(text) is None)
    assert hybrid.extract(text) == pure.extract(text)
    if all(m.start() < m.end() for m in python_re(pattern).finditer(text)):
        assert hybrid.sub(text, "<\\g<0>>") == pure.sub(text, "<\\g<0>>")


def test_a_star_with_nothing_to_repeat_is_a_literal_as_in_omnibus(
        run: Callable[..., dict[str, object] | None]) -> None:
    """A real rules file's ``extract($log, "*(Liveness probe failed: .*)'")``: RE2 (and
    Python) call a leading '*' "nothing to repeat"; OMNIbus' library reads it literally.
    So does the translation, at the start, after '(' and '|' and a leading '^'."""
    alert = run('@S = extract($log, "*(Liveness probe failed: .*)\'")',
                log="x *Liveness probe failed: HTTP 500' y")
    assert alert == {"S": "Liveness probe failed: HTTP 500"}
    assert Regex("(*a)").extract("b*a") == "*a"
    assert Regex("a|+b").search("+b") is not None and Regex("a|+b").search("b") is None
    assert Regex("^*x").search("*x") is not None
    assert Regex("ab*").extract("abbb") == "abbb"  # a repetition stays one
