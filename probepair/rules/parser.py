"""Parser: tokens -> AST, by hand-written recursive descent.

PURE.

Theory of operation
-------------------
The lexer has already turned the text into a list of tokens with positions, so the
parser is a cursor over that list (``self.i``) and one ``parse_<rule>`` method per
construct. Statements are recognised by their first token: a keyword (``if``,
``switch``, ``foreach``, ``discard``, ``break``, ``include``, ``table``, ``array``),
``[`` (a multi-target assignment), an element (``$t``, ``$(a.b)``, ``@F``, ``%P``),
``name[...]`` or a bare ``name`` followed by ``=`` (assignment; a bare name is a
target from ``registertarget``), or ``name(`` (a function used as a statement, such
as ``log``/``details``/``remove``). Keywords are matched in any case (``IF``,
``Else``, ``CASE``), as OMNIbus does. Newlines carry no meaning; a stray ``;`` is
accepted because many vendor files end statements with one.

``include`` may stand wherever a statement or a ``case`` may: in a switch, before the
first case or among a case's statements. The parser does not read files; the
compiler parses each included file with :func:`parse_fragment` (statements, then
optionally ``case`` blocks) and splices a file of cases into the enclosing switch, as
OMNIbus' textual inclusion would.

Expressions use precedence climbing over ``_BINARY`` with C's order (``||`` < ``&&``
< ``|`` < ``^`` < ``&`` < comparisons < ``<< >>`` < ``+ -`` < ``* / %``), all
left-associative, with unary ``-``/``!``/``~``/``NOT`` above them. The words
``AND``/``OR``/``NOT`` (any case) are the same operators as ``&&``/``||``/``!``;
the AST keeps one canonical spelling.

Every error is raised at the offending token with what was expected and what was
found (``expected ')' to close call to 'regmatch', found '{'``). Nesting deeper than
``MAX_DEPTH`` is a syntax error instead of a Python RecursionError, so arbitrary input
can only ever raise RulesSyntaxError. Name resolution (functions, tables, arrays) is
the compiler's job: the parser accepts any bare word.
"""

from __future__ import annotations

from typing import Final

from probepair.errors import RulesSyntaxError
from probepair.rules import ast
from probepair.rules.lexer import (
    EOF,
    FIELD,
    FIELD_ALL,
    IDENT,
    INT,
    OP,
    PROP,
    REAL,
    STRING,
    TOKEN,
    TOKEN_ALL,
    TOKEN_PATH,
    Token,
    tokenize,
)

MAX_DEPTH: Final = 60

KEYWORDS: Final = frozenset(
    {
        "if",
        "else",
        "switch",
        "case",
        "default",
        "foreach",
        "in",
        "discard",
        "break",
        "include",
        "table",
        "array",
    }
)
_WORD_OPS: Final = {"AND": "&&", "OR": "||"}
_BINARY: Final = {
    "||": 1,
    "&&": 2,
    "|": 3,
    "^": 4,
    "&": 5,
    "==": 6,
    "!=": 6,
    "<>": 6,
    "<": 6,
    ">": 6,
    "<=": 6,
    ">=": 6,
    "<<": 7,
    ">>": 7,
    "+": 8,
    "-": 8,
    "*": 9,
    "/": 9,
    "%": 9,
}
_CANONICAL: Final = {"<>": "!="}


def _keyword(tok: Token) -> str | None:
    """The keyword ``tok`` spells in any case (``ELSE`` -> ``else``), else None."""
    if tok.kind != IDENT:
        return None
    word = str(tok.value).lower()
    return word if word in KEYWORDS else None


def _describe(tok: Token) -> str:
    return "end of file" if tok.kind == EOF else repr(tok.text)


def _span(first: Token, last: Token) -> ast.Span:
    return ast.Span(first.line, first.col, last.end_line, last.end_col)


class Parser:
    """A cursor over one file's tokens; use :func:`parse`."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.tokens = tokenize(text, source)
        self.i = 0
        self.depth = 0

    # -- cursor helpers ---------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != EOF:
            self.i += 1
        return tok

    def prev(self) -> Token:
        return self.tokens[self.i - 1]

    def error(self, tok: Token, message: str) -> RulesSyntaxError:
        return RulesSyntaxError(self.source, tok.line, tok.col, message)

    def is_op(self, text: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == OP and tok.value == text

    def is_word(self, word: str, ahead: int = 0) -> bool:
        return _keyword(self.peek(ahead)) == word

    def expect_op(self, text: str, context: str) -> Token:
        tok = self.peek()
        if tok.kind != OP or tok.value != text:
            raise self.error(tok, f"expected {text!r} {context}, found {_describe(tok)}")
        return self.advance()

    def expect_ident(self, what: str) -> Token:
        tok = self.peek()
        if tok.kind != IDENT or _keyword(tok) is not None:
            raise self.error(tok, f"expected {what}, found {_describe(tok)}")
        return self.advance()

    def enter(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(tok, f"nesting deeper than {MAX_DEPTH} levels")

    # -- statements -------------------------------------------------------------------

    def parse_module(self) -> ast.Module:
        body = self.parse_statements((), top=True)
        return ast.Module(tuple(body), self.source)

    def parse_fragment(self) -> ast.Module:
        """An included file: statements, then optionally ``case``/``default`` blocks."""
        body = self.parse_statements(("case", "default"), top=True)
        cases: list[ast.Case] = []
        while self.peek().kind != EOF:
            tok = self.peek()
            if self.is_word("case"):
                cases.append(self.parse_case(top=True))
            else:
                self.advance()
                self.expect_op(":", "after 'default'")
                stmts = self.parse_statements(("case", "default"), top=True)
                cases.append(ast.Case((), tuple(stmts), _span(tok, self.prev())))
        return ast.Module(tuple(body), self.source, tuple(cases))

    def parse_statements(self, stop_words: tuple[str, ...], top: bool = False) -> list[ast.Stmt]:
        """Statements until EOF (top level), ``}``, or a switch's ``case``/``default``."""
        body: list[ast.Stmt] = []
        while True:
            tok = self.peek()
            if tok.kind == EOF:
                if top:
                    return body
                raise self.error(tok, "expected '}' before end of file")
            if tok.kind == OP and tok.value == "}" and not top:
                return body
            if _keyword(tok) in stop_words:
                return body
            if tok.kind == OP and tok.value == ";":
                self.advance()
                continue
            body.append(self.parse_statement())

    def parse_block(self, context: str) -> tuple[ast.Stmt, ...]:
        open_tok = self.expect_op("{", context)
        self.enter(open_tok)
        body = self.parse_statements(())
        self.expect_op("}", f"to close the block opened at {open_tok.line}:{open_tok.col}")
        self.depth -= 1
        return tuple(body)

    def parse_statement(self) -> ast.Stmt:
        tok = self.peek()
        if tok.kind == IDENT:
            word = _keyword(tok)
            if word == "if":
                return self.parse_if()
            if word == "switch":
                return self.parse_switch()
            if word == "foreach":
                return self.parse_foreach()
            if word == "discard" or word == "break":
                self.advance()
                span = _span(tok, tok)
                return ast.Discard(span) if word == "discard" else ast.Break(span)
            if word == "include":
                return self.parse_include()
            if word == "table":
                return self.parse_table()
            if word == "array":
                self.advance()
                name = self.expect_ident("an array name after 'array'")
                return ast.ArrayDecl(str(name.value), _span(tok, name))
            if word in ("else", "case", "default", "in"):
                raise self.error(tok, f"unexpected {tok.text!r}")
            if self.is_op("(", 1):
                call = self.parse_primary()
                assert isinstance(call, ast.Call)
                return ast.CallStmt(call, call.span)
            if self.is_op("[", 1) or (self.is_op("=", 1) and word is None):
                return self.parse_assign()
            raise self.error(
                tok, f"expected a statement, found {_describe(tok)} (a function call needs '(')"
            )
        if tok.kind in (TOKEN, TOKEN_PATH, FIELD, PROP):
            return self.parse_assign()
        if tok.kind == OP and tok.value == "[":
            return self.parse_multi_assign()
        raise self.error(tok, f"expected a statement, found {_describe(tok)}")

    def parse_target(self) -> ast.Target:
        tok = self.peek()
        if tok.kind == TOKEN:
            self.advance()
            return ast.TokenRef(str(tok.value), _span(tok, tok))
        if tok.kind == TOKEN_PATH:
            self.advance()
            return ast.TokenPath(str(tok.value), _span(tok, tok))
        if tok.kind == FIELD:
            self.advance()
            return ast.FieldRef(str(tok.value), _span(tok, tok))
        if tok.kind == PROP:
            self.advance()
            return ast.PropRef(str(tok.value), _span(tok, tok))
        if tok.kind == IDENT and _keyword(tok) is None and self.is_op("[", 1):
            self.advance()
            self.advance()
            key = self.parse_expression()
            close = self.expect_op("]", f"to close index of array {tok.value!r}")
            return ast.Index(str(tok.value), key, _span(tok, close))
        if tok.kind == IDENT and _keyword(tok) is None and self.is_op("=", 1):
            self.advance()
            return ast.Name(str(tok.value), _span(tok, tok))
        raise self.error(
            tok, f"expected a $token, @field, %property or array[key], found {_describe(tok)}"
        )

    def parse_assign(self) -> ast.Assign:
        first = self.peek()
        target = self.parse_target()
        if self.is_op("=="):
            raise self.error(self.peek(), "expected '=' in assignment, found '=='")
        self.expect_op("=", "after the assignment target")
        value = self.parse_expression()
        return ast.Assign(target, value, _span(first, self.prev()))

    def parse_multi_assign(self) -> ast.MultiAssign:
        first = self.advance()  # [
        targets = [self.parse_target()]
        while self.is_op(","):
            self.advance()
            targets.append(self.parse_target())
        self.expect_op("]", "to close the list of assignment targets")
        self.expect_op("=", "after the list of assignment targets")
        value = self.parse_expression()
        return ast.MultiAssign(tuple(targets), value, _span(first, self.prev()))

    def parse_condition(self, keyword: str) -> ast.Expr:
        self.expect_op("(", f"after {keyword!r}")
        cond = self.parse_expression()
        self.expect_op(")", f"to close the {keyword!r} condition")
        return cond

    def parse_if(self) -> ast.If:
        first = self.advance()
        branches = [(self.parse_condition("if"), self.parse_block("after the 'if' condition"))]
        orelse: tuple[ast.Stmt, ...] | None = None
        while self.is_word("else"):
            self.advance()
            if self.is_word("if"):
                self.advance()
                cond = self.parse_condition("else if")
                branches.append((cond, self.parse_block("after the 'else if' condition")))
                continue
            orelse = self.parse_block("after 'else'")
            break
        return ast.If(tuple(branches), orelse, _span(first, self.prev()))

    def parse_case_label(self) -> ast.Str | ast.Num:
        tok = self.advance()
        if tok.kind == STRING:
            return ast.Str(str(tok.value), _span(tok, tok))
        if tok.kind in (INT, REAL):
            assert isinstance(tok.value, int | float)
            return ast.Num(tok.value, _span(tok, tok))
        if tok.kind == OP and tok.value == "-" and self.peek().kind in (INT, REAL):
            num = self.advance()
            assert isinstance(num.value, int | float)
            return ast.Num(-num.value, _span(tok, num))
        raise self.error(tok, f"expected a string or number after 'case', found {_describe(tok)}")

    def parse_case(self, top: bool = False) -> ast.Case:
        tok = self.advance()  # case
        labels = [self.parse_case_label()]
        while self.is_op("|"):
            self.advance()
            labels.append(self.parse_case_label())
        self.expect_op(":", "after the case label")
        body = self.parse_statements(("case", "default"), top)
        return ast.Case(tuple(labels), tuple(body), _span(tok, self.prev()))

    def parse_switch(self) -> ast.Switch:
        first = self.advance()
        subject = self.parse_condition("switch")
        open_tok = self.expect_op("{", "after the 'switch' subject")
        self.enter(open_tok)
        cases: list[ast.Case] = []
        default: tuple[ast.Stmt, ...] | None = None
        head: list[ast.Include] = []
        while not self.is_op("}"):
            tok = self.peek()
            if self.is_word("include") and not cases and default is None:
                head.append(self.parse_include())
            elif self.is_word("case"):
                cases.append(self.parse_case())
            elif self.is_word("default"):
                if default is not None:
                    raise self.error(tok, "duplicate 'default' in switch")
                self.advance()
                self.expect_op(":", "after 'default'")
                default = tuple(self.parse_statements(("case", "default")))
            else:
                raise self.error(tok, f"expected 'case', 'default' or '}}', found {_describe(tok)}")
        self.advance()
        self.depth -= 1
        return ast.Switch(subject, tuple(cases), default, tuple(head), _span(first, self.prev()))

    def parse_foreach(self) -> ast.Foreach:
        first = self.advance()
        self.expect_op("(", "after 'foreach'")
        var = self.expect_ident("a loop variable name after 'foreach ('")
        if not self.is_word("in"):
            raise self.error(self.peek(), f"expected 'in', found {_describe(self.peek())}")
        self.advance()
        if self.peek().kind in (TOKEN_ALL, FIELD_ALL):
            array = "$*" if self.advance().kind == TOKEN_ALL else "@*"
        else:
            array = str(self.expect_ident("an array name, $* or @* after 'in'").value)
        self.expect_op(")", "to close 'foreach ('")
        body = self.parse_block("after 'foreach (...)'")
        return ast.Foreach(str(var.value), array, body, _span(first, self.prev()))

    def parse_include(self) -> ast.Include:
        first = self.advance()
        tok = self.advance()
        if tok.kind != STRING:
            raise self.error(
                tok, f"expected a file name string after 'include', found {_describe(tok)}"
            )
        return ast.Include(str(tok.value), _span(first, tok))

    def parse_string_list(self, what: str) -> tuple[str, ...]:
        self.expect_op("{", f"to open {what}")
        values = [self.parse_table_value()]
        while self.is_op(","):
            self.advance()
            values.append(self.parse_table_value())
        self.expect_op("}", f"to close {what}")
        return tuple(values)

    def parse_table_value(self) -> str:
        tok = self.advance()
        if tok.kind == STRING:
            return str(tok.value)
        if tok.kind in (INT, REAL):
            return tok.text
        raise self.error(tok, f"expected a string in table, found {_describe(tok)}")

    def parse_table(self) -> ast.Table:
        first = self.advance()
        name = self.expect_ident("a table name after 'table'")
        self.expect_op("=", "after the table name")
        rows: tuple[tuple[str, ...], ...] | None = None
        path: str | None = None
        if self.peek().kind == STRING:
            path = str(self.advance().value)
        else:
            self.expect_op("{", "or a file name string to define the table")
            row_list = [self.parse_string_list("a table row")]
            while self.is_op(","):
                self.advance()
                row_list.append(self.parse_string_list("a table row"))
            self.expect_op("}", "to close the table")
            rows = tuple(row_list)
        default: tuple[str, ...] | None = None
        if self.is_word("default") and self.is_op("=", 1):
            self.advance()
            self.advance()
            if self.peek().kind == STRING:
                default = (str(self.advance().value),)
            else:
                default = self.parse_string_list("the table default")
        return ast.Table(str(name.value), rows, path, default, _span(first, self.prev()))

    # -- expressions ------------------------------------------------------------------

    def binary_op(self) -> str | None:
        tok = self.peek()
        if tok.kind == OP and tok.value in _BINARY:
            return str(tok.value)
        if tok.kind == IDENT and str(tok.value).upper() in _WORD_OPS:
            return _WORD_OPS[str(tok.value).upper()]
        return None

    def parse_expression(self, min_prec: int = 1) -> ast.Expr:
        first = self.peek()
        self.enter(first)
        left = self.parse_unary()
        while True:
            op = self.binary_op()
            if op is None or _BINARY[op] < min_prec:
                break
            self.advance()
            right = self.parse_expression(_BINARY[op] + 1)
            op = _CANONICAL.get(op, op)
            left = ast.Binary(op, left, right, _span(first, self.prev()))
        self.depth -= 1
        return left

    def parse_unary(self) -> ast.Expr:
        tok = self.peek()
        is_not = tok.kind == IDENT and str(tok.value).upper() == "NOT"
        if is_not or (tok.kind == OP and tok.value in ("-", "!", "~")):
            self.advance()
            self.enter(tok)
            operand = self.parse_unary()
            self.depth -= 1
            op = str(tok.value) if tok.value in ("-", "~") else "!"
            return ast.Unary(op, operand, _span(tok, self.prev()))
        return self.parse_primary()

    def parse_primary(self) -> ast.Expr:
        tok = self.advance()
        span = _span(tok, tok)
        kind = tok.kind
        if kind == STRING:
            return ast.Str(str(tok.value), span)
        if kind in (INT, REAL):
            assert isinstance(tok.value, int | float)
            return ast.Num(tok.value, span)
        if kind == TOKEN:
            return ast.TokenRef(str(tok.value), span)
        if kind == TOKEN_PATH:
            return ast.TokenPath(str(tok.value), span)
        if kind == TOKEN_ALL:
            return ast.AllTokens(span)
        if kind == FIELD_ALL:
            return ast.AllFields(span)
        if kind == FIELD:
            return ast.FieldRef(str(tok.value), span)
        if kind == PROP:
            return ast.PropRef(str(tok.value), span)
        if kind == OP and tok.value == "(":
            inner = self.parse_expression()
            self.expect_op(")", f"to close '(' opened at {tok.line}:{tok.col}")
            return inner
        if kind == IDENT and _keyword(tok) is None:
            name = str(tok.value)
            if self.is_op("("):
                self.advance()
                args: list[ast.Expr] = []
                if not self.is_op(")"):
                    args.append(self.parse_expression())
                    while self.is_op(","):
                        self.advance()
                        args.append(self.parse_expression())
                self.expect_op(")", f"to close call to {name!r}")
                return ast.Call(name, tuple(args), _span(tok, self.prev()))
            # An index opens on the array name's line: a '[' on the next line starts a
            # list assignment ("a = b" then "[@x, @y] = split(...)"), not "b[...]".
            if self.is_op("[") and self.peek().line == tok.end_line:
                self.advance()
                key = self.parse_expression()
                close = self.expect_op("]", f"to close index of array {name!r}")
                return ast.Index(name, key, _span(tok, close))
            upper = name.upper()
            if upper in ("TRUE", "FALSE"):
                return ast.Bool(upper == "TRUE", span)
            return ast.Name(name, span)
        raise self.error(tok, f"expected an expression, found {_describe(tok)}")


def parse(text: str, source: str = "<rules>") -> ast.Module:
    """Parse one file (includes stay Include nodes; the loader resolves them).

    Raises:
        RulesSyntaxError: with ``source:line:col`` of the first problem.
    """
    return Parser(text, source).parse_module()


def parse_fragment(text: str, source: str = "<rules>") -> ast.Module:
    """Parse an included file: statements, then optionally ``case`` blocks.

    Raises:
        RulesSyntaxError: with ``source:line:col`` of the first problem.
    """
    return Parser(text, source).parse_fragment()
