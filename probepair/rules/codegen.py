"""Code generator: a resolved rules AST -> the source of one Python function.

PURE. Why generate code: a tree-walking evaluator costs a Python call per node per
event; one generated function runs a syslog event through the shipped rules in a few
microseconds (bench/rules.py). The function is ``_rules(T, ctx, F)``: ``T`` the
tokens, ``F`` the alert fields being built, returning ``F`` or None (discard).

Each expression compiles to ``(code, type)`` where type is "str", "num", "bool" or
"any"; static types let the common cases skip helpers (two strings compare with
``==``, a string concatenation is ``a + " " + b``). Regexes, tables and arrays are
module-level constants of the generated code, bound by name (``_R0``, ``_T0``...).

Only statements that can fail at run time (arithmetic, date parsing, a regex built
at run time) are wrapped in ``try``; a failure reports a RulesRuntimeError with the
statement's location through ``ctx.on_error`` and the next statement runs.

In ``foreach (e in $*)`` the body's ``$e`` is the token that ``e`` names (``Tg(_v1,
'')``); assigning it stores a string, so the static types of other tokens hold, and
turns off the one-read-per-token locals (any token may change). Calls of built-ins
are generated in calls.py; switches come rebuilt by the front end (frontend.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Final

from probepair.errors import RulesCompileError
from probepair.rules import ast, calls
from probepair.rules.arith import number
from probepair.rules.failures import MAX_VALUE
from probepair.rules.frontend import DEFAULT_TABLE, TABLE_FIELD, TABLE_FIELD_ERROR, Resolved
from probepair.rules.functions import compile_regex

_DIRECT_CMP: Final = {"==": "==", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">="}
_CMP_HELPER: Final = {"==": "_eq", "!=": "_ne", "<": "_lt", ">": "_gt", "<=": "_le", ">=": "_ge"}
_ARITH_HELPER: Final = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}
_BIT_HELPER: Final = {"&": "_band", "|": "_bor", "^": "_bxor", "<<": "_shl", ">>": "_shr"}
_PLACEHOLDER: Final = re.compile("\x00([^\x00\x01]*)\x01")  # a $token read, see Codegen
_SWITCH_LINEAR: Final = 4  # up to this many cases: an if/elif chain on the value


Code = tuple[str, str]  # (python expression, static type)


class Codegen:
    """Emits the body of ``_rules``; use :meth:`generate`."""

    def __init__(self, resolved: Resolved) -> None:
        self.r = resolved
        self.lines: list[str] = []
        self.consts: dict[str, object] = {}
        self._const_ids: dict[tuple[str, object], str] = {}
        self.source = "<rules>"
        self.loop_vars: list[tuple[str, str, str]] = []  # (name, local, "$*"/"@*"/array)
        self.counter = 0
        self.may_fail = False
        # Which $tokens the program reads: the runtime skips the Token1..N split
        # (~1.8 µs an event) when none of them is read and $* is not used.
        self.token_reads: set[str] = set()
        self.whole_tokens = False
        # Tokens the program assigns ($name = ...), and whether it assigns any $(path):
        # generate() reads the other tokens once into locals (see _bind_tokens).
        self.token_writes: set[str] = set()
        self.path_writes = False
        self._memo: dict[int, tuple[str, str, bool]] = {}
        # Alerts carry a Table only when some target's table is not alerts.status.
        self.uses_targets = any(t.table != DEFAULT_TABLE for t in resolved.targets.values())
        self.ret = "return _fin(F, _tg)" if self.uses_targets else "return F"

    # -- helpers ----------------------------------------------------------------------

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, kind: str, key: object, value: object) -> str:
        name = self._const_ids.get((kind, key))
        if name is None:
            name = self.fresh(kind)
            self.consts[name] = value
            self._const_ids[(kind, key)] = name
        return name

    def loop_var(self, name: str, kind: str) -> str | None:
        """The local holding loop variable ``name`` of a foreach over ``kind``, if any."""
        for var, local, over in reversed(self.loop_vars):
            if var == name:
                return local if over == kind else None
        return None

    def error(self, node: ast.Expr | ast.Stmt, message: str) -> RulesCompileError:
        return RulesCompileError(self.source, node.span.line, node.span.col, message)

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def table(self, node: ast.Expr) -> str:
        if isinstance(node, ast.Name | ast.Str):
            name = node.name if isinstance(node, ast.Name) else node.value
            if name in self.r.tables:
                return name
            raise self.error(node, f"unknown lookup table {name!r}")
        raise self.error(node, "expected a table name as the second argument of lookup()")

    def array(self, node: ast.Expr | ast.Stmt, name: str) -> str:
        if name not in self.r.arrays:
            raise self.error(node, f"unknown array {name!r} (declare it with 'array {name};')")
        return self.const("_A", name, {})

    # -- expressions ------------------------------------------------------------------

    def s(self, node: ast.Expr) -> str:
        """Code for the value as a string."""
        code, typ = self.expr(node)
        if typ == "str":
            return code
        if typ == "bool":
            return f"('1' if {code} else '0')"
        return f"_str({code})"

    def v(self, node: ast.Expr) -> str:
        """Code for the value to store (booleans become 1/0)."""
        code, typ = self.expr(node)
        return f"(1 if {code} else 0)" if typ == "bool" else code

    def expr(self, node: ast.Expr) -> Code:
        """Memoised: concatenation flattening asks for a subtree's type more than once."""
        hit = self._memo.get(id(node))
        if hit is not None:
            self.may_fail = self.may_fail or hit[2]
            return hit[0], hit[1]
        outer, self.may_fail = self.may_fail, False
        code, typ = self._expr(node)
        self._memo[id(node)] = (code, typ, self.may_fail)
        self.may_fail = self.may_fail or outer
        return code, typ

    def _expr(self, node: ast.Expr) -> Code:
        match node:
            case ast.Str(value):
                return repr(value), "str"
            case ast.Num(value):
                return repr(value), "num"
            case ast.Bool(value):
                return repr(value), "bool"
            case ast.TokenRef(name) if self.loop_var(name, "$*"):
                return f"Tg({self.loop_var(name, '$*')}, '')", "any"
            case ast.FieldRef(name) if self.loop_var(name, "@*"):
                return f"Fg({self.loop_var(name, '@*')}, '')", "any"
            case ast.TokenRef(name):
                self.token_reads.add(name)
                # A placeholder that no repr() can produce; generate() binds it.
                return f"\x00{name}\x01", ("any" if name in self.r.nonstr_tokens else "str")
            case ast.TokenPath(path):
                self.whole_tokens = True
                return f"_jpath(T, {path!r})", "any"
            case ast.AllTokens() | ast.AllFields():
                what = "$*" if isinstance(node, ast.AllTokens) else "@*"
                raise self.error(
                    node, f"{what!r} is only allowed in details(), nvp_add() and foreach"
                )
            case ast.FieldRef(name):
                return f"Fg({name!r}, '')", "any"
            case ast.PropRef(name):
                return f"P.get({name!r}, '')", "any"
            case ast.Name(name):
                for var, local, _ in reversed(self.loop_vars):
                    if var == name:
                        return local, "str"
                if name == "getdate":
                    return "_getdate(ctx)", "num"
                raise self.error(
                    node, f"unknown name {name!r} (expected $token, @field, %property or a call)"
                )
            case ast.Index(name, key):
                return f"{self.array(node, name)}.get({self.s(key)}, '')", "any"
            case ast.Call():
                return calls.call(self, node)
            case ast.Unary(op, operand):
                if op == "!":
                    return f"(not {self.expr(operand)[0]})", "bool"
                if op == "~":
                    self.may_fail = True
                    return f"_bnot({self.v(operand)})", "num"
                code, typ = self.expr(operand)
                if typ == "num":
                    return f"(-{code})", "num"
                self.may_fail = True
                return f"_neg({self.v(operand)})", "num"
            case ast.Binary(op, left, right):
                return self.binary(node, op, left, right)
        raise TypeError(f"not an expression: {node!r}")  # pragma: no cover

    def concat_parts(self, node: ast.Expr, out: list[ast.Expr]) -> None:
        if isinstance(node, ast.Binary) and node.op == "+" and self.expr(node)[1] == "str":
            self.concat_parts(node.left, out)
            self.concat_parts(node.right, out)
        else:
            out.append(node)

    def binary(self, node: ast.Binary, op: str, left: ast.Expr, right: ast.Expr) -> Code:
        if op in ("&&", "||"):
            word = "and" if op == "&&" else "or"
            return f"({self.expr(left)[0]} {word} {self.expr(right)[0]})", "bool"
        lc, lt = self.expr(left)
        rc, rt = self.expr(right)
        if op == "+":
            if lt == "str" or rt == "str":
                parts: list[ast.Expr] = []
                self.concat_parts(left, parts)
                self.concat_parts(right, parts)
                return self.concat(parts), "str"
            if lt == "num" and rt == "num":
                return f"({lc} + {rc})", "num"
            self.may_fail = True  # a string result may pass MAX_VALUE
            return f"_add({self.v(left)}, {self.v(right)})", "any"
        if op in _BIT_HELPER:
            self.may_fail = True
            return f"{_BIT_HELPER[op]}({self.v(left)}, {self.v(right)})", "num"
        if op in _ARITH_HELPER:
            self.may_fail = True
            # Inline when no product can leave 64 bits by repetition: a product with a
            # literal grows by a fixed factor, ``$x * $x`` squares (fn.mul checks).
            literal = isinstance(left, ast.Num) or isinstance(right, ast.Num)
            if lt == "num" and rt == "num" and (op == "-" or (op == "*" and literal)):
                return f"({lc} {op} {rc})", "num"
            return f"{_ARITH_HELPER[op]}({self.v(left)}, {self.v(right)})", "num"
        # comparisons
        if (lt == rt and lt in ("str", "num")) or (lt == "bool" and rt == "bool"):
            return f"({lc} {_DIRECT_CMP[op]} {rc})", "bool"
        if op in ("==", "!="):
            for lit, other in ((right, left), (left, right)):
                if isinstance(lit, ast.Str) and number(lit.value) is None:
                    return f"({self.s(other)} {op} {lit.value!r})", "bool"
        return f"{_CMP_HELPER[op]}({self.v(left)}, {self.v(right)})", "bool"

    def concat(self, parts: list[ast.Expr]) -> str:
        codes = [self.expr(p) for p in parts]
        # Two values or more can double a string per statement ($a = $a + $a in a
        # loop): capped at MAX_VALUE. A value plus literals grows by a constant.
        capped = sum(not isinstance(p, ast.Str) for p in parts) >= 2
        if capped:
            self.may_fail = True
        code = self._concat(parts, codes)
        # inline, ~20 ns an event less than a call: _cap only raises the failure
        return f"(_s if len(_s := {code}) <= {MAX_VALUE} else _cap(_s))" if capped else code

    def _concat(self, parts: list[ast.Expr], codes: list[Code]) -> str:
        if all(t == "str" for _, t in codes):
            return "(" + " + ".join(c for c, _ in codes) + ")"
        fmt: list[str] = []
        args: list[str] = []
        for part, (code, typ) in zip(parts, codes, strict=True):
            if isinstance(part, ast.Str):
                fmt.append(part.value.replace("%", "%%"))
            else:
                fmt.append("%s")
                args.append(f"(1 if {code} else 0)" if typ == "bool" else code)
        return f"({''.join(fmt)!r} % ({', '.join(args)},))"

    def regex(self, node: ast.Expr) -> str:
        if isinstance(node, ast.Str):
            try:
                compiled = compile_regex(node.value)
            except ValueError as exc:
                raise self.error(
                    node, f"invalid regular expression {node.value!r}: {exc}"
                ) from None
            return self.const("_R", node.value, compiled)
        self.may_fail = True
        return f"_dynre({self.s(node)})"

    # -- statements -------------------------------------------------------------------

    def generate(self, body: tuple[ast.Stmt, ...], source: str) -> str:
        self.source = source
        if self.uses_targets:
            default = next(iter(self.r.targets.values())).table
            self.consts["_TG"] = [default]  # the default target's table, setdefaulttarget()
            self.emit(1, "_tg = _TG[0]")
        self.block(body, 1, in_loop=False)
        return self._bind_tokens("\n".join(self.lines))

    def _bind_tokens(self, code: str) -> str:
        """Replace the $token placeholders: a local, or ``Tg(name, '')``.

        A token read in more than one place and never assigned by the program is read
        once, at the top, into a local: the same value every read would see (nothing
        else writes T), for one dict lookup instead of several (~40 ns each, ~20 reads
        an event in the shipped syslog rules).
        """
        counts = Counter(_PLACEHOLDER.findall(code))
        local: dict[str, str] = {}
        if not self.path_writes:
            for name, n in counts.items():
                if n > 1 and name not in self.token_writes:
                    local[name] = f"_t{len(local)}"

        def bind(m: re.Match[str]) -> str:
            return local.get(m[1]) or f"Tg({m[1]!r}, '')"

        body = _PLACEHOLDER.sub(bind, code)
        return "\n".join([*(f"    {var} = Tg({name!r}, '')" for name, var in local.items()), body])

    def block(self, body: tuple[ast.Stmt, ...], depth: int, in_loop: bool) -> None:
        start = len(self.lines)
        for stmt in body:
            self.statement(stmt, depth, in_loop)
        if len(self.lines) == start:
            self.emit(depth, "pass")

    def pos(self, node: ast.Stmt | ast.Expr) -> str:
        """A constant holding ``(file, line, col)`` of ``node``, for errors."""
        where = (self.source, node.span.line, node.span.col)
        return self.const("_P", where, where)

    def guarded(self, stmt: ast.Stmt, depth: int, emit: Callable[[int], None]) -> None:
        """Emit a simple statement, inside try/except when it can fail at run time."""
        self.may_fail = False
        mark = len(self.lines)
        emit(depth)
        if not self.may_fail:
            return
        body = self.lines[mark:]
        del self.lines[mark:]
        self.emit(depth, "try:")
        self.lines.extend("    " + line for line in body)
        pos = self.pos(stmt)
        self.emit(depth, "except Exception as _e:")
        self.emit(depth + 1, f"_fail(ctx, _e, {pos})")

    def assign_code(self, target: ast.Target, value: str) -> str:
        match target:
            case ast.TokenRef(name) if self.loop_var(name, "$*"):
                self.path_writes = True  # any token may change: no token in a local
                return f"T[{self.loop_var(name, '$*')}] = _str({value})"
            case ast.FieldRef(name) if self.loop_var(name, "@*"):
                return f"F[{self.loop_var(name, '@*')}] = {value}"
            case ast.TokenRef(name):
                self.token_writes.add(name)
                return f"T[{name!r}] = {value}"
            case ast.TokenPath(path):
                self.path_writes = True
                return f"T[{path!r}] = {value}"
            case ast.FieldRef(name):
                if name == TABLE_FIELD:
                    raise self.error(target, TABLE_FIELD_ERROR)
                return f"F[{name!r}] = {value}"
            case ast.PropRef(name):
                return f"P[{name!r}] = A[{name!r}] = {value}"
            case ast.Index(name, key):
                return f"{self.array(target, name)}[{self.s(key)}] = {value}"
        raise TypeError(f"not a target: {target!r}")  # pragma: no cover

    def statement(self, stmt: ast.Stmt, depth: int, in_loop: bool) -> None:
        match stmt:
            case ast.Assign(ast.Name()):
                pass  # T = registertarget(...): done at load time (frontend.py)
            case ast.Assign(target, value):
                self.guarded(
                    stmt, depth, lambda d: self.emit(d, self.assign_code(target, self.v(value)))
                )
            case ast.MultiAssign():
                self.guarded(stmt, depth, lambda d: calls.multi_assign(self, stmt, d))
            case ast.If():
                self.if_stmt(stmt, depth, in_loop)
            case ast.Switch():
                self.switch(stmt, depth, in_loop)
            case ast.Foreach(var, array, body):
                if array == "$*":
                    self.whole_tokens = True
                    arr = "T"
                else:
                    arr = "F" if array == "@*" else self.array(stmt, array)
                local = self.fresh("_v")
                self.emit(depth, f"for {local} in list({arr}):")
                # The budget check: a loop is the only way rules repeat work, so each
                # iteration looks at the clock (~60 ns; RulesTimeBudget).
                self.emit(depth + 1, "if ctx.clock() > ctx.deadline:")
                self.emit(depth + 2, f"_over({self.pos(stmt)})")
                self.loop_vars.append((var, local, array))
                self.block(body, depth + 1, in_loop=True)
                self.loop_vars.pop()
            case ast.Discard():
                self.emit(depth, "return None")
            case ast.Break():
                self.emit(depth, "break" if in_loop else self.ret)
            case ast.Include():
                source, module = self.r.includes[id(stmt)]
                outer, self.source = self.source, source
                self.block(module.body, depth, in_loop)
                self.source = outer
            case ast.Table() | ast.ArrayDecl():
                pass
            case ast.CallStmt(call):
                self.guarded(stmt, depth, lambda d: calls.call_stmt(self, call, d))

    def if_stmt(self, stmt: ast.If, depth: int, in_loop: bool) -> None:
        self.may_fail = False
        conds = [self.expr(cond)[0] for cond, _ in stmt.branches]
        if not self.may_fail:
            for i, (code, (_, body)) in enumerate(zip(conds, stmt.branches, strict=True)):
                self.emit(depth, f"{'if' if i == 0 else 'elif'} {code}:")
                self.block(body, depth + 1, in_loop)
            if stmt.orelse is not None:
                self.emit(depth, "else:")
                self.block(stmt.orelse, depth + 1, in_loop)
            return
        # A condition can fail: choose the branch first, so a failure skips the statement.
        sel = self.fresh("_b")
        pos = self.pos(stmt)
        self.emit(depth, "try:")
        for i, code in enumerate(conds):
            self.emit(depth + 1, f"{'if' if i == 0 else 'elif'} {code}:")
            self.emit(depth + 2, f"{sel} = {i + 1}")
        self.emit(depth + 1, "else:")
        self.emit(depth + 2, f"{sel} = {len(conds) + 1}")
        self.emit(depth, "except Exception as _e:")
        self.emit(depth + 1, f"_fail(ctx, _e, {pos})")
        self.emit(depth + 1, f"{sel} = 0")
        bodies = [body for _, body in stmt.branches]
        if stmt.orelse is not None:
            bodies.append(stmt.orelse)
        for i, body in enumerate(bodies):
            self.emit(depth, f"{'if' if i == 0 else 'elif'} {sel} == {i + 1}:")
            self.block(body, depth + 1, in_loop)

    def switch(self, stmt: ast.Switch, depth: int, in_loop: bool) -> None:
        stmt = self.r.switches.get(id(stmt), stmt)  # with the cases its includes bring
        self.may_fail = False
        subject = self.s(stmt.subject)
        failing = self.may_fail
        bodies = [case.body for case in stmt.cases] + [stmt.default or ()]
        n = len(stmt.cases)
        sel = self.fresh("_k")
        if failing:
            pos = self.pos(stmt)
            self.emit(depth, "try:")
            self.emit(depth + 1, f"{sel} = {subject}")
            self.emit(depth, "except Exception as _e:")
            self.emit(depth + 1, f"_fail(ctx, _e, {pos})")
            self.emit(depth + 1, f"{sel} = None")
            self.emit(depth, f"if {sel} is not None:")
            depth += 1
            subject = sel
        if n <= _SWITCH_LINEAR:
            if not failing:
                self.emit(depth, f"{sel} = {subject}")
            keyword = "if"
            for case in stmt.cases:
                test = " or ".join(f"{sel} == {str(lb.value)!r}" for lb in case.labels)
                self.emit(depth, f"{keyword} {test}:")
                self.block(case.body, depth + 1, in_loop)
                keyword = "elif"
            if stmt.default is not None:
                if n:
                    self.emit(depth, "else:")
                    self.block(stmt.default, depth + 1, in_loop)
                else:
                    self.block(stmt.default, depth, in_loop)
            return
        index: dict[str, int] = {}
        for i, case in enumerate(stmt.cases):  # a repeated label: the first case wins,
            for lb in case.labels:  # as in the stock syslogd rules' two "automount" cases
                index.setdefault(str(lb.value), i)
        table = self.const("_W", id(stmt), index)
        self.emit(depth, f"{sel} = {table}.get({subject}, {n})")
        self.dispatch(sel, bodies, 0, n, depth, in_loop)

    def dispatch(
        self,
        sel: str,
        bodies: list[tuple[ast.Stmt, ...]],
        lo: int,
        hi: int,
        depth: int,
        in_loop: bool,
    ) -> None:
        """Binary search over case indexes lo..hi: log2(n) comparisons per event."""
        if lo == hi:
            self.block(bodies[lo], depth, in_loop)
            return
        if hi - lo < 3:
            for i in range(lo, hi + 1):
                if i == hi:
                    self.emit(depth, "else:")
                else:
                    self.emit(depth, f"{'if' if i == lo else 'elif'} {sel} == {i}:")
                self.block(bodies[i], depth + 1, in_loop)
            return
        mid = (lo + hi + 1) // 2
        self.emit(depth, f"if {sel} < {mid}:")
        self.dispatch(sel, bodies, lo, mid - 1, depth + 1, in_loop)
        self.emit(depth, "else:")
        self.dispatch(sel, bodies, mid, hi, depth + 1, in_loop)
