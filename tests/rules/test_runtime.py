"""Running compiled rules: semantics, edge cases, errors reported and survived."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepair.errors import RulesCompileError, RulesRuntimeError
from probepair.rules import compile_rules
from probepair.rules.compiler import compile_rules as pure_compile
from probepair.rules.functions import BUILTINS

from .conftest import Recorder

Run = Callable[..., "dict[str, object] | None"]


@pytest.mark.parametrize(
    ("expr", "tokens", "expected"),
    [
        ('substr("hello", 1, 1)', {}, "h"),
        ('substr("hello", 5, 10)', {}, "o"),
        ('substr("hello", -3, 2)', {}, "he"),
        ('substr("hello", 2, 0)', {}, ""),
        ('substr("", 1, 3)', {}, ""),
        ('substr($s, "2", "x")', {"s": "abc"}, ""),
        ('extract("", "(a)")', {}, ""),
        ('extract("abc", "b")', {}, "b"),
        ('extract($s, "(z)?c")', {"s": "abc"}, ""),
        ('regreplace("a-b-c", "-", "+")', {}, "a+b+c"),
        ('regreplace("", "x", "y")', {}, ""),
        ('lower("")', {}, ""),
        ("upper($missing)", {}, ""),
        ('ltrim("\t x ")', {}, "x "),
        ('int("")', {}, 0),
        ('int("abc")', {}, 0),
        ('int(" -12x")', {}, -12),
        ('int("3.9")', {}, 3),
        ('real("abc")', {}, 0.0),
        ('real("1e3")', {}, 1000.0),
        ('length("")', {}, 0),
        ("length(12345)", {}, 5),
        ('match("", "")', {}, 1),
        ('nmatch("abc", "")', {}, 1),
        ('regmatch("", "^$")', {}, 1),
        ('md5("abc")', {}, "900150983cd24fb0d6963f7d28e17f72"),
        ('nvp_add("a=\\"1\\"", "a", 2, "b", "x")', {}, 'a="2";b="x"'),
        ("$a + $b", {"a": "1", "b": "2"}, "12"),
        ("int($a) + int($b)", {"a": "1", "b": "2"}, 3),
        ('"n=" + 1.5', {}, "n=1.5"),
        ("10 % 4 * 2", {}, 4),
        ("-7 % 3", {}, -1),
        ("$a * 2", {"a": "21"}, 42),
        ("$a == 3", {"a": "3.0"}, 1),
        ("$a < $b", {"a": "9", "b": "10"}, 0),
        ("int($a) < int($b)", {"a": "9", "b": "10"}, 1),
        ("$a < 10", {"a": "9"}, 1),
        ("$a < 10", {"a": "x"}, 0),
        ("$a < $b", {"a": "b", "b": "a"}, 0),
        ('$a != "x"', {"a": "x"}, 0),
        ("NOT ($a == 1) OR FALSE", {"a": "1"}, 0),
        ("$(missing.path)", {}, ""),
        ("$(j.k)", {"j": "not json"}, ""),
        ("$(j.k)", {"j": '{"k": null}'}, ""),
        ("$(j.k)", {"j": '{"k": {"z": [true]}}'}, '{"z":[true]}'),
        ("$(a.b)", {"a.b": "literal"}, "literal"),
    ],
)
def test_expression(
    run: Run, rec: Recorder, expr: str, tokens: dict[str, str], expected: object
) -> None:
    alert = run(f"@X = {expr}", **tokens)
    assert alert == {"X": expected}
    assert rec.errors == []


def test_unset_tokens_fields_and_properties_read_empty(run: Run) -> None:
    assert run('@X = $nope + @Nope + %Nope + "!"') == {"X": "!"}


def test_runtime_error_is_reported_with_location_and_rules_go_on(run: Run, rec: Recorder) -> None:
    alert = run('@A = 1\n  @B = $t * 2\n@C = regreplace($t, "(a)", "\\\\2")\n@D = 4', t="abc")
    assert alert == {"A": 1, "D": 4}
    assert [(e.source, e.line, e.col) for e in rec.errors] == [("t.rules", 2, 3), ("t.rules", 3, 1)]
    assert isinstance(rec.errors[0], RulesRuntimeError)
    assert rec.errors[0].message == "expected a number, found 'abc'"
    assert rec.errors[1].message.startswith("bad replacement '\\\\2'")


def test_dynamic_regex_compiles_at_run_time_and_bad_one_fails_the_statement(
    run: Run, rec: Recorder
) -> None:
    assert run("@A = regmatch($s, $re)\n@B = 1", s="abc", re="^a") == {"A": 1, "B": 1}
    assert run("@A = regmatch($s, $re)\n@B = 1", s="abc", re="(") == {"B": 1}
    assert "invalid regular expression '('" in rec.errors[0].message


def test_mode_assignment_lands_in_assigned_and_props(rec: Recorder) -> None:
    program = compile_rules('%Mode = "master"\n@M = %Mode')
    ctx = rec.ctx({"Mode": "slave"})
    assert program.run({}, ctx) == {"M": "master"}
    assert ctx.assigned == {"Mode": "master"}
    assert ctx.props["Mode"] == "master"


def test_fields_preset_for_self_events(rec: Recorder) -> None:
    program = compile_rules('if (match(@Manager, "ProbeWatch")) { @Seen = 1 }')
    assert program.run({}, rec.ctx(), fields={"Manager": "ProbeWatch"}) == {
        "Manager": "ProbeWatch",
        "Seen": 1,
    }


def test_run_does_not_change_callers_tokens(rec: Recorder) -> None:
    tokens = {"a": "1"}
    compile_rules('$a = "changed"\n$b = 2').run(tokens, rec.ctx())
    assert tokens == {"a": "1"}


def test_getdate_uses_the_injected_clock(run: Run) -> None:
    assert run("@T = getdate + 60") == {"T": 1_700_000_060}


def test_foreach_break_leaves_only_the_loop(run: Run) -> None:
    text = (
        'array a;\nsplit("x y z", a, " ")\nforeach (k in a) {\n @Last = a[k]\n break\n}\n@After = 1'
    )
    assert run(text) == {"Last": "x", "After": 1}


def test_unknown_function_error_is_located() -> None:
    with pytest.raises(RulesCompileError, match=r"^r\.rules:2:8: unknown function 'nosuch'$"):
        compile_rules("@A = 1\n@B = 1+nosuch()", source="r.rules")


def test_include_without_file_access_is_a_compile_error() -> None:
    with pytest.raises(RulesCompileError, match=r"^<rules>:1:1: cannot read 'x.inc': no file"):
        pure_compile('include "x.inc"')


def test_deep_chain_is_a_compile_error_not_a_crash() -> None:
    text = "@A = " + " || ".join(["$a"] * 400)
    with pytest.raises(RulesCompileError, match="nest too deeply"):
        compile_rules(text)


# -- hypothesis: whatever the tokens, run() never raises ------------------------------

_VALUES = st.text(max_size=12) | st.sampled_from(["", "0", "-1", "3.5", "1e400", "abc", '{"k": 1}'])
_ARGS = ["$a", "$b", "@F", "%P", '"x"', "0", "2", '"(a)"']


def _calls() -> list[str]:
    out = []
    for name, spec in sorted(BUILTINS.items()):
        # getenv() and expand() take literals only (test_probefns.py)
        if spec.role != "value" or name in ("lookup", "split", "exists", "getenv", "expand"):
            continue
        n = spec.min_args
        args = ", ".join(_ARGS[i % len(_ARGS)] for i in range(n))
        out.append(f"{name}({args})")
        if n >= 1:
            out.append(f"{name}({', '.join(['$b'] * n)})")
    return out


_EXPRS = st.sampled_from(
    _calls()
    + [
        "$a + $b",
        "$a - $b",
        "$a / $b",
        "$a % $b",
        "-$a",
        "$a < $b",
        "$a == $b",
        "$(a.k)",
        "int($a) / int($b)",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_EXPRS, min_size=1, max_size=4), _VALUES, _VALUES, _VALUES)
def test_run_never_raises(exprs: list[str], a: str, b: str, p: str) -> None:
    rec = Recorder()
    text = "\n".join(f"@F = {e}" for e in exprs) + "\n@End = 1"
    program = compile_rules(text)
    alert = program.run({"a": a, "b": b}, rec.ctx({"P": p}))
    assert alert is not None and alert["End"] == 1
    assert all(isinstance(e, RulesRuntimeError) and e.line > 0 for e in rec.errors)


def test_split_creates_the_array_it_is_given_as_omnibus_does(
        run: Callable[..., dict[str, object] | None]) -> None:
    """``split($s, servers, ",")`` into an array never declared (a real rules file):
    OMNIbus creates it; so does the compiler, also inside a condition or a case, and
    for reads before the split in the text."""
    text = (
        'if (int($n) > 0) { @Before = servers[1] }\n'
        'switch ($kind) {\n case "list":\n  $c = split($s, servers, ",")\n'
        ' default:\n  @Default = 1\n}\n'
        '@Count = $c\n@First = servers[1]\n@Last = servers[3]\n'
    )
    assert run(text, kind="list", s="a,b,c", n="0") == {
        "Count": 3, "First": "a", "Last": "c"}
    with pytest.raises(RulesCompileError, match="unknown array 'other'"):
        compile_rules("@X = other[1]\n", source="t.rules")  # a read alone still needs one


def test_a_runtime_error_on_a_huge_value_is_reported_shortened(rec, run) -> None:
    # The message quotes the value; one event's may be a whole 64 KiB datagram.
    from probepair.rules.compiler import MAX_ERROR_MESSAGE

    run('@Summary = datetotime($Value, "yyyy-MM-dd")', Value="9" * 65536)
    [error] = rec.errors
    assert error.message.startswith("cannot read date '999")
    assert error.message.endswith(" characters)")
    assert len(error.message) <= MAX_ERROR_MESSAGE + len("... (65599 characters)")
