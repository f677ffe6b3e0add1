"""Compiler front end: includes, switches of included cases, tables, arrays, targets.

PURE: files are read through an injected ``read(path) -> str`` and environment
variables in include paths come from an injected mapping.

Includes follow OMNIbus' textual inclusion. Every included file is parsed with
``parse_fragment``: statements, then optionally ``case``/``default`` blocks. Inside a
switch, an include's statements go on with the current case and its cases join the
switch; statements after the include go on with the last case it opened. Each
switch is rebuilt here once (``switches``: id of the parsed node -> rebuilt node), with
the runs of statements that came from another file wrapped in an Include node whose
resolved module says which file they came from, so errors keep their file.

Targets: ``T = registertarget(server, backup, "table"[, "details table"])`` runs at
load time, as in OMNIbus; so it must stand at the top level (not in a condition or a
loop) and name its table with a string. Servers are accepted and not used: a probe
has one sink, which writes each target's table (``Table`` field, see codegen).
"""

from __future__ import annotations

import hashlib
import os.path
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from probepair.errors import RulesCompileError
from probepair.rules import ast
from probepair.rules.functions import scan_pattern
from probepair.rules.parser import parse_fragment

MAX_INCLUDE_DEPTH: Final = 16
DEFAULT_TABLE: Final = "alerts.status"
# An alert's target table travels in this field (compiler._fin): only settarget() and
# genevent() may set it, from a registertarget() name, so no event text names a table.
TABLE_FIELD: Final = "Table"
TABLE_FIELD_ERROR: Final = (
    "@Table is the alert's target table: choose it with settarget(T) of a "
    "registertarget() target, not by assignment"
)
TABLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
_ENV_VAR: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")

Tables = dict[str, tuple[dict[str, tuple[str, ...]], tuple[str, ...]]]


@dataclass(slots=True)
class FileStats:
    """What one rules file holds (``rules check`` prints these)."""

    path: str
    statements: int = 0
    tables: int = 0
    includes: list[tuple[int, str, str]] = field(default_factory=list)  # line, written, resolved


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """A target from ``registertarget``; the first registered is the default."""

    name: str
    table: str
    details_table: str
    where: str  # file:line:col


class FrontEnd:
    def __init__(
        self, read: Callable[[str], str] | None, env: Mapping[str, str] | None = None
    ) -> None:
        self.read = read
        self.env = env or {}
        self.tables: Tables = {}
        self.table_at: dict[str, str] = {}
        self.arrays: set[str] = set()
        self.includes: dict[int, tuple[str, ast.Module]] = {}
        self.switches: dict[int, ast.Switch] = {}
        self.targets: dict[str, TargetInfo] = {}
        self.stats: dict[str, FileStats] = {}
        self.hash = hashlib.sha256()
        self.files: list[str] = []
        self.statements = 0
        self.assignments: list[tuple[str, ast.Expr | None]] = []  # $token <- expr (None: str)
        self._keep: list[ast.Stmt] = []  # synthetic nodes whose id() is a key above

    def add_text(self, name: str, text: str) -> None:
        self.hash.update(name.encode("utf-8", "surrogatepass") + b"\0")
        self.hash.update(text.encode("utf-8", "surrogatepass") + b"\0")

    def stat(self, source: str) -> FileStats:
        found = self.stats.get(source)
        if found is None:
            found = self.stats[source] = FileStats(source)
        return found

    def count(self, source: str) -> None:
        self.statements += 1
        self.stat(source).statements += 1

    def expand(self, source: str, node: ast.Include | ast.Table, path: str) -> str:
        """``$NAME`` and ``${NAME}`` in a path, from the environment (OMNIbus does so)."""

        def sub(m: re.Match[str]) -> str:
            name = m[1] or m[2]
            value = self.env.get(name)
            if value is None:
                raise RulesCompileError(
                    source,
                    node.span.line,
                    node.span.col,
                    f"environment variable {name!r} in {path!r} is not set",
                )
            return value

        return _ENV_VAR.sub(sub, path) if "$" in path else path

    def fetch(
        self, source: str, node: ast.Include | ast.Table, path: str, where: str
    ) -> tuple[str, str]:
        full = os.path.normpath(os.path.join(where, self.expand(source, node, path)))
        if self.read is None:
            raise RulesCompileError(
                source,
                node.span.line,
                node.span.col,
                f"cannot read {path!r}: no file access here (use load_rules)",
            )
        try:
            text = self.read(full)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise RulesCompileError(
                source, node.span.line, node.span.col, f"cannot read {full!r}: {reason}"
            ) from None
        self.files.append(full)
        self.add_text(full, text)
        return full, text

    def include(
        self, stmt: ast.Include, source: str, where: str, stack: list[str]
    ) -> tuple[str, ast.Module]:
        self.count(source)
        full, text = self.fetch(source, stmt, stmt.path, where)
        if full in stack or len(stack) > MAX_INCLUDE_DEPTH:
            chain = " -> ".join([*stack, full])
            raise RulesCompileError(
                source, stmt.span.line, stmt.span.col, f"include cycle or too deep: {chain}"
            )
        self.stat(source).includes.append((stmt.span.line, stmt.path, full))
        module = parse_fragment(text, full)
        self.stat(full)
        self.includes[id(stmt)] = (full, module)
        return full, module

    def walk(
        self,
        body: tuple[ast.Stmt, ...],
        source: str,
        where: str,
        stack: list[str],
        top: bool = False,
    ) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Include):
                full, module = self.include(stmt, source, where, stack)
                if module.cases:
                    case = module.cases[0]
                    raise RulesCompileError(
                        source,
                        stmt.span.line,
                        stmt.span.col,
                        f"{full!r} holds 'case' blocks (line {case.span.line}), "
                        "so it can only be included inside a switch",
                    )
                self.walk(module.body, full, os.path.dirname(full), [*stack, full], top)
                continue
            self.count(source)
            # split(text, name, ...) creates the array ``name`` as OMNIbus does: real
            # rules split into arrays they never declared.
            for expr in _expressions(stmt):
                self.arrays.update(_split_arrays(expr))
            match stmt:
                case ast.Table():
                    self.table(stmt, source, where)
                case ast.ArrayDecl(name):
                    self.arrays.add(name)
                case ast.If(branches, orelse):
                    for _, branch in branches:
                        self.walk(branch, source, where, stack)
                    self.walk(orelse or (), source, where, stack)
                case ast.Switch():
                    self.switch(stmt, source, where, stack)
                case ast.Foreach(_, _, loop_body):
                    self.walk(loop_body, source, where, stack)
                case ast.Assign(ast.Name(), _):
                    self.target(stmt, source, top)
                case ast.Assign(ast.TokenRef(name), value):
                    self.assignments.append((name, value))
                case ast.Assign(ast.TokenPath(path)):
                    self.assignments.append((path, None))
                case ast.MultiAssign(targets, value):
                    kinds = self.scan_kinds(value)
                    # [arr[1], arr[2]] = scanformat(...) creates arr, as split() does.
                    if isinstance(value, ast.Call) and value.name == "scanformat":
                        self.arrays.update(t.name for t in targets if isinstance(t, ast.Index))
                    for i, t in enumerate(targets):
                        if isinstance(t, ast.TokenRef):
                            typed = i < len(kinds) and kinds[i] != "s"
                            self.assignments.append((t.name, ast.Num(0) if typed else None))

    @staticmethod
    def scan_kinds(value: ast.Expr) -> str:
        """The conversions of a literal scanformat() format ("sdf"), for token types."""
        if isinstance(value, ast.Call) and value.name == "scanformat" and len(value.args) == 2:
            fmt = value.args[1]
            if isinstance(fmt, ast.Str):
                try:
                    return scan_pattern(fmt.value)[1]
                except ValueError:
                    return ""  # codegen reports it with its location
        return ""

    def switch(self, sw: ast.Switch, source: str, where: str, stack: list[str]) -> None:
        """Rebuild ``sw`` with the cases its includes bring (see the module docstring)."""
        Entry = tuple[ast.Stmt, str, str, list[str]]
        groups: list[tuple[tuple[ast.Str | ast.Num, ...], list[Entry], str, ast.Span]] = []

        def feed(stmts: tuple[ast.Stmt, ...], src: str, wh: str, stk: list[str]) -> None:
            for stmt in stmts:
                if isinstance(stmt, ast.Include):
                    full, module = self.include(stmt, src, wh, stk)
                    inner = [*stk, full]
                    feed(module.body, full, os.path.dirname(full), inner)
                    for case in module.cases:
                        groups.append((case.labels, [], full, case.span))
                        feed(case.body, full, os.path.dirname(full), inner)
                elif not groups:
                    raise RulesCompileError(
                        src,
                        stmt.span.line,
                        stmt.span.col,
                        "expected 'case' or 'default' before this statement "
                        "(it is included into a switch)",
                    )
                else:
                    groups[-1][1].append((stmt, src, wh, stk))

        feed(sw.head, source, where, stack)
        for case in sw.cases:
            groups.append((case.labels, [], source, case.span))
            feed(case.body, source, where, stack)
        if sw.default is not None:
            groups.append(((), [], source, sw.span))
            feed(sw.default, source, where, stack)
        cases: list[ast.Case] = []
        default: tuple[ast.Stmt, ...] | None = None
        for labels, entries, src, span in groups:
            for stmt, esrc, wh, stk in entries:
                self.walk((stmt,), esrc, wh, stk)
            body = self.wrap(entries, source)
            if labels:
                cases.append(ast.Case(labels, body, span))
            elif default is not None:
                raise RulesCompileError(src, span.line, span.col, "duplicate 'default' in switch")
            else:
                default = body
        rebuilt = ast.Switch(sw.subject, tuple(cases), default, (), sw.span)
        self._keep.append(rebuilt)
        self.switches[id(sw)] = rebuilt

    def wrap(
        self, entries: list[tuple[ast.Stmt, str, str, list[str]]], source: str
    ) -> tuple[ast.Stmt, ...]:
        """Statements from other files go in Include nodes that name their file."""
        body: list[ast.Stmt] = []
        i = 0
        while i < len(entries):
            src = entries[i][1]
            j = i
            while j < len(entries) and entries[j][1] == src:
                j += 1
            run = tuple(e[0] for e in entries[i:j])
            if src == source:
                body.extend(run)
            else:
                node = ast.Include(src, run[0].span)
                self._keep.append(node)
                self.includes[id(node)] = (src, ast.Module(run, src))
                body.append(node)
            i = j
        return tuple(body)

    def target(self, stmt: ast.Assign, source: str, top: bool) -> None:
        assert isinstance(stmt.target, ast.Name)
        name = stmt.target.name
        call = stmt.value
        if not (isinstance(call, ast.Call) and call.name == "registertarget"):
            raise RulesCompileError(
                source,
                stmt.span.line,
                stmt.span.col,
                f"only a target from registertarget() can be assigned to the bare name "
                f"{name!r} (a variable is ${name})",
            )
        if not top:
            raise RulesCompileError(
                source,
                stmt.span.line,
                stmt.span.col,
                "registertarget() runs once at load time: put it at the top level, "
                "not in a condition or loop",
            )
        if not 3 <= len(call.args) <= 5:
            raise RulesCompileError(
                source,
                call.span.line,
                call.span.col,
                f"registertarget() takes 3 to 5 arguments, got {len(call.args)}",
            )
        names: list[str] = []
        for arg in call.args[2:4]:
            if not isinstance(arg, ast.Str) or not (
                TABLE_NAME.fullmatch(arg.value) or (arg.value == "" and names)
            ):
                raise RulesCompileError(
                    source,
                    arg.span.line,
                    arg.span.col,
                    'expected a table name such as "alerts.status" (a string)',
                )
            names.append(arg.value)
        if name in self.targets:
            raise RulesCompileError(
                source,
                stmt.span.line,
                stmt.span.col,
                f"target {name!r} already registered at {self.targets[name].where}",
            )
        details = names[1] if len(names) > 1 and names[1] else "alerts.details"
        where = f"{source}:{stmt.span.line}:{stmt.span.col}"
        self.targets[name] = TargetInfo(name, names[0], details, where)

    def table(self, stmt: ast.Table, source: str, where: str) -> None:
        if stmt.name in self.tables:
            raise RulesCompileError(
                source,
                stmt.span.line,
                stmt.span.col,
                f"table {stmt.name!r} already defined at {self.table_at[stmt.name]}",
            )
        rows: dict[str, tuple[str, ...]] = {}
        if stmt.path is not None:
            _, text = self.fetch(source, stmt, stmt.path, where)
            for line in text.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                key, *values = line.split("\t")
                rows.setdefault(key, tuple(values) or ("",))
        else:
            for row in stmt.rows or ():
                rows.setdefault(row[0], row[1:] or ("",))
        self.tables[stmt.name] = (rows, stmt.default or ("",))
        self.table_at[stmt.name] = f"{source}:{stmt.span.line}:{stmt.span.col}"
        self.stat(source).tables += 1


@dataclass(slots=True)
class Resolved:
    """What the compiler front end found: tables, arrays, included files."""

    tables: dict[str, tuple[dict[str, tuple[str, ...]], tuple[str, ...]]]
    arrays: set[str]
    includes: dict[int, tuple[str, ast.Module]]  # id(Include node) -> (source, module)
    nonstr_tokens: set[str]
    table_width: dict[str, int] = field(default_factory=dict)
    switches: dict[int, ast.Switch] = field(default_factory=dict)  # id(parsed) -> rebuilt
    targets: dict[str, TargetInfo] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # getenv() reads it at compile time


def _expressions(stmt: ast.Stmt) -> tuple[ast.Expr, ...]:
    """The expressions of ``stmt`` itself (not those of nested statements)."""
    match stmt:
        case ast.Assign(_, value) | ast.MultiAssign(_, value):
            return (value,)
        case ast.CallStmt(call):
            return (call,)
        case ast.If(branches, _):
            return tuple(cond for cond, _ in branches)
        case ast.Switch():
            return (stmt.subject,)
    return ()


def _split_arrays(expr: ast.Expr) -> set[str]:
    """Names given to split() as its array, anywhere in ``expr``."""
    found: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        match node:
            case ast.Call(name, args):
                if name == "split" and len(args) >= 2 and isinstance(args[1], ast.Name):
                    found.add(args[1].name)
                stack.extend(args)
            case ast.Unary(_, operand):
                stack.append(operand)
            case ast.Binary(_, left, right):
                stack += [left, right]
            case ast.Index(_, key):
                stack.append(key)
    return found
