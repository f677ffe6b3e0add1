"""Lexer and parser: positions, canonical forms, error messages, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepair.errors import RulesError, RulesSyntaxError
from probepair.rules import ast, printer
from probepair.rules.compiler import compile_rules  # pure: no file access from fuzzed text
from probepair.rules.lexer import tokenize
from probepair.rules.parser import KEYWORDS, parse, parse_fragment


def test_token_kinds_and_positions() -> None:
    toks = tokenize('$specific-trap = @Node + %Manager # c\n$(a.b) $* "x\\"y"', "f")
    kinds = [(t.kind, t.value, t.line, t.col) for t in toks]
    assert kinds == [
        ("TOKEN", "specific-trap", 1, 1),
        ("OP", "=", 1, 16),
        ("FIELD", "Node", 1, 18),
        ("OP", "+", 1, 24),
        ("PROP", "Manager", 1, 26),
        ("TOKEN_PATH", "a.b", 2, 1),
        ("TOKEN_ALL", "*", 2, 8),
        ("STRING", 'x"y', 2, 11),
        ("EOF", "", 2, 17),
    ]


def test_backslashes_other_than_escapes_stay_for_regexes() -> None:
    (tok, _eof) = tokenize(r'"\(c\) [0-9]+\. \\ \n"')
    assert tok.value == "\\(c\\) [0-9]+\\. \\ \n"


def test_words_and_symbols_mean_the_same() -> None:
    a = parse("if (NOT $a AND $b OR $c <> 1) { }")
    b = parse("if (!$a && $b || $c != 1) { }")
    assert a == b


def test_precedence() -> None:
    (stmt,) = parse("@X = 1 + 2 * 3 == 7 && $a").body
    assert isinstance(stmt, ast.Assign)
    assert printer.expr(stmt.value) == "(((1 + (2 * 3)) == 7) && $a)"


def test_switch_cases_labels_and_default() -> None:
    (sw,) = parse('switch ($x) { case "a" | "b": @A = 1 case 3: default: discard }').body
    assert isinstance(sw, ast.Switch)
    assert [tuple(lb.value for lb in c.labels) for c in sw.cases] == [("a", "b"), (3,)]
    assert sw.default == (ast.Discard(),)


def test_table_with_default_and_file_table() -> None:
    body = parse('table t = {{"k","v1","v2"}} default = {"d1","d2"}\ntable f = "x.lookup"').body
    assert body == (
        ast.Table("t", (("k", "v1", "v2"),), None, ("d1", "d2")),
        ast.Table("f", None, "x.lookup", None),
    )


SYNTAX_ERRORS = [
    ("@A = ", "f.rules:1:6: expected an expression, found end of file"),
    (
        'if (regmatch($a, "x") { }',
        "f.rules:1:23: expected ')' to close the 'if' condition, found '{'",
    ),
    (
        '@A = regmatch($a, "x" {',
        "f.rules:1:23: expected ')' to close call to 'regmatch', found '{'",
    ),
    ('@A = "abc', "f.rules:1:6: unterminated string"),
    ("if ($a) {\n @A = 1\n", "f.rules:3:1: expected '}' before end of file"),
    ("@A == 1", "f.rules:1:4: expected '=' in assignment, found '=='"),
    ("switch ($a) { @A = 1 }", "f.rules:1:15: expected 'case', 'default' or '}', found '@A'"),
    ("@A = 1 ` 2", "f.rules:1:8: unexpected character '`'"),
    ("@A = 1 ~ 2", "f.rules:1:8: expected a statement, found '~'"),
    ("foo", "f.rules:1:1: expected a statement, found 'foo' (a function call needs '(')"),
    ("} ", "f.rules:1:1: expected a statement, found '}'"),
    ("else { }", "f.rules:1:1: unexpected 'else'"),
    ("@A = $ x", "f.rules:1:6: expected a token name, '*' or '(' after '$'"),
    ("@A = " + "(" * 80 + "1" + ")" * 80, "f.rules:1:66: nesting deeper than 60 levels"),
]


@pytest.mark.parametrize(("text", "message"), SYNTAX_ERRORS)
def test_syntax_errors_are_located(text: str, message: str) -> None:
    with pytest.raises(RulesSyntaxError) as info:
        parse(text, "f.rules")
    assert str(info.value) == message


# -- hypothesis ------------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    list("$@%(){}[],:;=<>!|&+-*/\"'#\\\n \tabcifelsweh0123.")
    + [
        "if",
        "else",
        "switch",
        "case",
        "default",
        "foreach",
        "in",
        "discard",
        "break",
        "table",
        "array",
        "include",
        "regmatch",
        "lookup",
        "AND",
        "NOT",
        "$a",
        "@F",
        '"x"',
        "{{",
        "IF",
        "Else",
        "CASE",
        "$*",
        "@*",
        "~",
        "<<",
        "^",
        "foreach (e in $*)",
        "registertarget(",
        "genevent(T, @A, 1)",
        "settarget(T)",
        "scanformat(",
        'include "x"',
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join))
def test_any_text_raises_only_rules_errors(text: str) -> None:
    try:
        compile_rules(text, source="h.rules")
    except RulesError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_unicode_raises_only_rules_errors(text: str) -> None:
    try:
        compile_rules(text, source="h.rules")
    except RulesError:
        pass


# Names that are not keywords of the language (KEYWORDS), nor word operators or booleans
# (matched case-insensitively by the lexer).
_RESERVED = KEYWORDS | {"and", "or", "not", "true", "false"}
_names = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True).filter(
    lambda n: n not in _RESERVED
)
_strings = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
_leaves = st.one_of(
    st.builds(ast.Str, _strings),
    st.builds(ast.Num, st.integers(0, 10**6) | st.floats(0, 1e6, allow_nan=False)),
    st.builds(ast.Bool, st.booleans()),
    st.builds(ast.TokenRef, st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,6}", fullmatch=True)),
    st.builds(ast.TokenPath, st.from_regex(r"[a-z@][a-z.]{0,6}", fullmatch=True)),
    st.builds(ast.FieldRef, _names),
    st.builds(ast.PropRef, _names),
    st.builds(ast.Name, _names),
    st.just(ast.AllTokens()),
    st.just(ast.AllFields()),
)
_exprs = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(
            ast.Binary,
            st.sampled_from(
                ["+", "-", "*", "/", "%", "==", "!=", "<", ">", "<=", ">=", "&&", "||"]
                + ["&", "|", "^", "<<", ">>"]
            ),
            inner,
            inner,
        ),
        st.builds(ast.Unary, st.sampled_from(["-", "!", "~"]), inner),
        st.builds(ast.Call, _names, st.lists(inner, max_size=3).map(tuple)),
        st.builds(ast.Index, _names, inner),
    ),
    max_leaves=12,
)
_targets = st.one_of(
    st.builds(ast.FieldRef, _names), st.builds(ast.TokenRef, _names), st.builds(ast.PropRef, _names)
)
_includes = st.lists(st.builds(ast.Include, _strings), max_size=2).map(tuple)
_labels = st.one_of(st.builds(ast.Str, _strings), st.builds(ast.Num, st.integers(-99, 99)))


def _stmts(inner: st.SearchStrategy[tuple[ast.Stmt, ...]]) -> st.SearchStrategy[ast.Stmt]:
    return st.one_of(
        st.builds(
            ast.If,
            st.lists(st.tuples(_exprs, inner), min_size=1, max_size=3).map(tuple),
            st.none() | inner,
        ),
        st.builds(
            ast.Switch,
            _exprs,
            st.lists(_labels, min_size=1, max_size=3, unique_by=lambda lb: str(lb.value)).map(
                lambda labels: tuple(ast.Case((lb,), ()) for lb in labels)
            ),
            st.none() | inner,
            _includes,
        ),
        st.builds(ast.Foreach, _names, _names | st.sampled_from(["$*", "@*"]), inner),
    )


_simple = st.one_of(
    st.builds(ast.Assign, _targets, _exprs),
    st.builds(ast.Assign, st.builds(ast.Name, _names), _exprs),
    st.builds(ast.MultiAssign, st.lists(_targets, min_size=1, max_size=3).map(tuple), _exprs),
    st.just(ast.Discard()),
    st.just(ast.Break()),
    st.builds(ast.Include, _strings),
    st.builds(ast.ArrayDecl, _names),
    st.builds(ast.CallStmt, st.builds(ast.Call, _names, st.lists(_exprs, max_size=2).map(tuple))),
    st.builds(
        ast.Table,
        _names,
        st.lists(st.lists(_strings, min_size=1, max_size=3).map(tuple), min_size=1, max_size=3).map(
            tuple
        ),
        st.none(),
        st.none() | st.lists(_strings, min_size=1, max_size=2).map(tuple),
    ),
)
_bodies = st.recursive(
    st.lists(_simple, max_size=3).map(tuple),
    lambda inner: st.lists(st.one_of(_simple, _stmts(inner)), max_size=3).map(tuple),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(_bodies)
def test_print_parse_round_trip(body: tuple[ast.Stmt, ...]) -> None:
    module = ast.Module(body)
    text = printer.module(module)
    assert parse(text) == module, text


_cases = st.lists(
    st.builds(
        ast.Case,
        st.lists(_labels, max_size=2).map(tuple),  # no labels: default
        st.lists(_simple, max_size=2).map(tuple),
    ),
    max_size=3,
).map(tuple)


@settings(max_examples=100, deadline=None)
@given(st.lists(_simple, max_size=2).map(tuple), _cases)
def test_print_parse_round_trip_of_a_file_of_cases(
    body: tuple[ast.Stmt, ...], cases: tuple[ast.Case, ...]
) -> None:
    module = ast.Module(body, cases=cases)
    text = printer.module(module)
    assert parse_fragment(text) == module, text


def test_keywords_in_any_case_parse_as_in_lower_case() -> None:
    upper = parse(
        'IF ($a) { DISCARD } ELSE IF ($b) { BREAK } Else { }\n'
        'SWITCH ($c) { CASE "x": Default: }\nFOREACH (e IN $*) { }\nARRAY a;\n'
        'TABLE t = {{"k", "v"}} DEFAULT = "d"\nInclude "f.inc"'
    )
    lower = parse(
        'if ($a) { discard } else if ($b) { break } else { }\n'
        'switch ($c) { case "x": default: }\nforeach (e in $*) { }\narray a;\n'
        'table t = {{"k", "v"}} default = "d"\ninclude "f.inc"'
    )
    assert upper == lower


def test_bitwise_precedence_is_c() -> None:
    (stmt,) = parse("@X = 1 | 2 ^ 3 & 4 == 5 << 1 + ~6").body
    assert isinstance(stmt, ast.Assign)
    assert printer.expr(stmt.value) == "(1 | (2 ^ (3 & (4 == (5 << (1 + ~(6)))))))"


def test_switch_head_includes_and_target_assignment() -> None:
    (target, sw) = parse(
        'T = registertarget(%Server, "", "alerts.status")\n'
        'switch ($e) { include "a.inc" include "b.inc" case "x": include "c.inc" }'
    ).body
    assert target == ast.Assign(
        ast.Name("T"),
        ast.Call(
            "registertarget", (ast.PropRef("Server"), ast.Str(""), ast.Str("alerts.status"))
        ),
    )
    assert isinstance(sw, ast.Switch)
    assert sw.head == (ast.Include("a.inc"), ast.Include("b.inc"))
    assert sw.cases == (ast.Case((ast.Str("x"),), (ast.Include("c.inc"),)),)


_known_calls = st.builds(
    ast.Call,
    st.sampled_from(["match", "regmatch", "extract", "substr", "int", "lower", "length", "exists"]),
    st.lists(_leaves, min_size=1, max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(_bodies, st.lists(st.builds(ast.Assign, _targets, _known_calls), max_size=3))
def test_generated_programs_compile_or_fail_cleanly_and_run(
    body: tuple[ast.Stmt, ...], calls: list[ast.Assign]
) -> None:
    from .conftest import Recorder

    text = printer.module(ast.Module(body + tuple(calls)))
    try:
        program = compile_rules(text, source="g.rules")
    except RulesError:
        return
    rec = Recorder()
    program.run({"a": "1"}, rec.ctx())
    assert all(e.source == "g.rules" for e in rec.errors)


def test_a_list_assignment_on_the_next_line_is_not_an_index() -> None:
    # Found by the round trip above: "a = a" then "[@a] = ..." once parsed as a[@a].
    module = parse('a = b\n[@x, @y] = split("1 2")\nc = d[@x]\n')
    assert [type(s).__name__ for s in module.body] == ["Assign", "MultiAssign", "Assign"]
    third = module.body[2]
    assert isinstance(third, ast.Assign) and isinstance(third.value, ast.Index)
