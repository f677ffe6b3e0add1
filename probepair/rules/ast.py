"""AST of the rules language: plain frozen dataclasses with source spans.

PURE. Spans are excluded from equality so that a pretty-printed and re-parsed tree
compares equal to the original (the round-trip property the tests check). Operators
are stored in one canonical spelling (``AND`` -> ``&&``, ``NOT`` -> ``!``, ``<>`` ->
``!=``), so the printer needs no memory of how the source spelled them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node starts and ends (1-based lines and columns)."""

    line: int
    col: int
    end_line: int
    end_col: int


NOWHERE = Span(0, 0, 0, 0)


# Expressions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Str:
    value: str
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Num:
    value: int | float
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TokenRef:
    """``$name``: an input token or a local variable."""

    name: str
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TokenPath:
    """``$(a.b)``: a dotted path into JSON-valued tokens."""

    path: str
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AllTokens:
    """``$*``: every token (only as an argument of details() and nvp_add())."""

    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AllFields:
    """``@*``: every field set so far (in nvp_add() and foreach)."""

    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FieldRef:
    name: str
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PropRef:
    name: str
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Name:
    """A bare word: array, table, loop variable, log level, ``getdate``."""

    name: str
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Index:
    """``array[key]``."""

    name: str
    key: Expr
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-", "!" or "~"
    operand: Expr
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # + - * / % == != < > <= >= && || & | ^ << >>
    left: Expr
    right: Expr
    span: Span = field(default=NOWHERE, compare=False, repr=False)


Expr: TypeAlias = (
    Str
    | Num
    | Bool
    | TokenRef
    | TokenPath
    | AllTokens
    | AllFields
    | FieldRef
    | PropRef
    | Name
    | Index
    | Call
    | Unary
    | Binary
)
# A bare Name is a target only for ``T = registertarget(...)``; the compiler checks that.
Target: TypeAlias = TokenRef | TokenPath | FieldRef | PropRef | Index | Name

# Statements ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assign:
    target: Target
    value: Expr
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class MultiAssign:
    """``[@A, $b] = lookup(key, table)``, ``scanformat(text, format)`` or ``split(text)``."""

    targets: tuple[Target, ...]
    value: Expr
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class If:
    branches: tuple[tuple[Expr, tuple[Stmt, ...]], ...]  # if / else if ...
    orelse: tuple[Stmt, ...] | None
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Case:
    """One ``case a | b:`` block; in an included file's case list, no labels is ``default:``."""

    labels: tuple[Str | Num, ...]
    body: tuple[Stmt, ...]
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Switch:
    subject: Expr
    cases: tuple[Case, ...]
    default: tuple[Stmt, ...] | None
    head: tuple[Include, ...] = ()  # includes before the first case (files of cases)
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Foreach:
    """``foreach (e in arr)``; ``array`` is ``"$*"`` or ``"@*"`` for every token or field."""

    var: str
    array: str
    body: tuple[Stmt, ...]
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Discard:
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Break:
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Include:
    path: str
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Table:
    """``table t = {{"k", "v"}, ...}`` or ``table t = "file"``, optional default."""

    name: str
    rows: tuple[tuple[str, ...], ...] | None
    path: str | None
    default: tuple[str, ...] | None
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ArrayDecl:
    name: str
    span: Span = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CallStmt:
    """A function used as a statement: log, details, remove, update, setlog, ..."""

    call: Call
    span: Span = field(default=NOWHERE, compare=False, repr=False)


Stmt: TypeAlias = (
    Assign
    | MultiAssign
    | If
    | Switch
    | Foreach
    | Discard
    | Break
    | Include
    | Table
    | ArrayDecl
    | CallStmt
)


@dataclass(frozen=True, slots=True)
class Module:
    """One parsed file. An included file may go on with ``case`` blocks after its
    statements (a file of cases, included inside a switch): those are ``cases``."""

    body: tuple[Stmt, ...]
    source: str = field(default="<rules>", compare=False)
    cases: tuple[Case, ...] = ()
