"""Pretty-printer: AST -> rules text that parses back to an equal AST.

PURE. Used by the round-trip property test and handy for normalising vendor files.
Every binary operation is parenthesised, so the printer needs no precedence table.
"""

from __future__ import annotations

from probepair.rules import ast

_INDENT = "    "
_STR_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quote(value: str) -> str:
    """A double-quoted literal that the lexer decodes back to ``value``."""
    return '"' + "".join(_STR_ESCAPES.get(c, c) for c in value) + '"'


def _num(value: float) -> str:
    text = repr(value)
    return text if "inf" not in text and "nan" not in text else "0"


def expr(node: ast.Expr) -> str:
    """One expression as source text."""
    match node:
        case ast.Str(value):
            return quote(value)
        case ast.Num(value):
            return _num(value) if value >= 0 else f"(-{_num(-value)})"
        case ast.Bool(value):
            return "TRUE" if value else "FALSE"
        case ast.TokenRef(name):
            return f"${name}"
        case ast.TokenPath(path):
            return f"$({path})"
        case ast.AllTokens():
            return "$*"
        case ast.AllFields():
            return "@*"
        case ast.FieldRef(name):
            return f"@{name}"
        case ast.PropRef(name):
            return f"%{name}"
        case ast.Name(name):
            return name
        case ast.Index(name, key):
            return f"{name}[{expr(key)}]"
        case ast.Call(name, args):
            return f"{name}({', '.join(expr(a) for a in args)})"
        case ast.Unary(op, operand):
            return f"{op}({expr(operand)})"
        case ast.Binary(op, left, right):
            return f"({expr(left)} {op} {expr(right)})"
    raise TypeError(f"not an expression: {node!r}")  # pragma: no cover


def _label(label: ast.Str | ast.Num) -> str:
    if isinstance(label, ast.Str):
        return quote(label.value)
    return _num(label.value) if label.value >= 0 else f"-{_num(-label.value)}"


def _strings(values: tuple[str, ...]) -> str:
    return "{" + ", ".join(quote(v) for v in values) + "}"


def _block(body: tuple[ast.Stmt, ...], depth: int) -> list[str]:
    lines = ["{"]
    for stmt in body:
        lines.extend(_INDENT + line for line in statement(stmt, depth + 1))
    lines.append("}")
    return lines


def _case(case: ast.Case, depth: int) -> list[str]:
    head = f"case {' | '.join(_label(lb) for lb in case.labels)}:" if case.labels else "default:"
    return [head, *_block(case.body, depth)[1:-1]]


def statement(node: ast.Stmt, depth: int = 0) -> list[str]:
    """One statement as source lines (indented relative to the statement)."""
    match node:
        case ast.Assign(target, value):
            return [f"{expr(target)} = {expr(value)}"]
        case ast.MultiAssign(targets, value):
            return [f"[{', '.join(expr(t) for t in targets)}] = {expr(value)}"]
        case ast.If(branches, orelse):
            lines: list[str] = []
            for i, (cond, body) in enumerate(branches):
                block = _block(body, depth)
                head = "if" if i == 0 else "} else if"
                lines.append(f"{head} ({expr(cond)}) {{")
                lines.extend(block[1:-1])
            if orelse is not None:
                lines.append("} else {")
                lines.extend(_block(orelse, depth)[1:-1])
            lines.append("}")
            return lines
        case ast.Switch(subject, cases, default, head):
            lines = [f"switch ({expr(subject)}) {{"]
            lines.extend(_INDENT + line for inc in head for line in statement(inc))
            for case in cases:
                lines.extend(_case(case, depth))
            if default is not None:
                lines.append("default:")
                lines.extend(_block(default, depth)[1:-1])
            lines.append("}")
            return lines
        case ast.Foreach(var, array, body):
            return [f"foreach ({var} in {array}) {{", *_block(body, depth)[1:]]
        case ast.Discard():
            return ["discard"]
        case ast.Break():
            return ["break"]
        case ast.Include(path):
            return [f"include {quote(path)}"]
        case ast.Table(name, rows, path, default):
            source = (
                quote(path)
                if path is not None
                else ("{" + ", ".join(_strings(r) for r in rows or ()) + "}")
            )
            lines = [f"table {name} = {source}"]
            if default is not None:
                lines.append(f"default = {_strings(default)}")
            return lines
        case ast.ArrayDecl(name):
            return [f"array {name};"]
        case ast.CallStmt(call):
            return [expr(call)]
    raise TypeError(f"not a statement: {node!r}")  # pragma: no cover


def module(node: ast.Module) -> str:
    """A whole file."""
    out: list[str] = []
    for stmt in node.body:
        out.extend(statement(stmt))
    for case in node.cases:  # a file of cases (parse_fragment)
        out.extend(_case(case, 0))
    return "\n".join(out) + "\n"
