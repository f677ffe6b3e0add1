"""Code generation for calls of built-in functions (split from codegen.py for size).

PURE. Each function takes the Codegen whose state (constants, lines, flags) it uses.
Most calls become inline Python (``match`` is ``a == b``); the others call a helper of
functions.py bound into the generated code's namespace under a ``_`` name.

Targets (frontend.py registers them): when some target's table is not alerts.status,
the generated function keeps the current table in a local ``_tg`` (set from the
default at the start of each event, ``_TG[0]``), ``settarget`` changes it, and every
return goes through ``_fin(F, _tg)``, which adds ``Table`` to an alert whose table is
not alerts.status. ``genevent`` appends an alert of its own to ``ctx.generated``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from probepair.rules import ast
from probepair.rules.dates import check_pattern
from probepair.rules.failures import MAX_VALUE
from probepair.rules.frontend import DEFAULT_TABLE, TABLE_FIELD, TABLE_FIELD_ERROR
from probepair.rules.functions import (
    BUILTINS,
    FOREIGN,
    LOG_LEVELS,
    TRAP_FUNCTIONS,
    scan_pattern,
)
from probepair.rules.probefns import SERVICE_STATUSES, expand

if TYPE_CHECKING:
    from probepair.errors import RulesCompileError
    from probepair.rules.frontend import Resolved

Code = tuple[str, str]  # (python expression, static type)


class Codegen(Protocol):
    """What call generation needs of the code generator (codegen.Codegen is one). A
    protocol here, not an import of codegen: codegen calls into this module, and the two
    importing each other made an import circle."""

    r: Resolved
    may_fail: bool
    whole_tokens: bool
    token_reads: set[str]
    uses_targets: bool

    def array(self, node: ast.Expr | ast.Stmt, name: str) -> str: ...
    def assign_code(self, target: ast.Target, value: str) -> str: ...
    def const(self, kind: str, key: object, value: object) -> str: ...
    def emit(self, depth: int, line: str) -> None: ...
    def error(self, node: ast.Expr | ast.Stmt, message: str) -> RulesCompileError: ...
    def fresh(self, prefix: str) -> str: ...
    def loop_var(self, name: str, kind: str) -> str | None: ...
    def pos(self, node: ast.Stmt | ast.Expr) -> str: ...
    def regex(self, node: ast.Expr) -> str: ...
    def s(self, node: ast.Expr) -> str: ...
    def table(self, node: ast.Expr) -> str: ...
    def v(self, node: ast.Expr) -> str: ...

_STR_METHODS: Final = {"lower": "lower", "upper": "upper", "ltrim": "lstrip", "rtrim": "rstrip"}


def check_arity(gen: Codegen, node: ast.Call) -> str:
    """The function's role ("value", "statement", "list", "target"); arity checked."""
    spec = BUILTINS.get(node.name)
    if spec is None:
        probe = FOREIGN.get(node.name)
        if probe is not None:
            raise gen.error(
                node, f"{node.name!r} is specific to {probe} and probepair does not provide it"
            )
        hint = f" (did you mean {node.name.lower()!r}?)" if node.name.lower() in BUILTINS else ""
        raise gen.error(node, f"unknown function {node.name!r}{hint}")
    n = len(node.args)
    if n < spec.min_args or (spec.max_args >= 0 and n > spec.max_args):
        if spec.max_args < 0:
            want = f"at least {spec.min_args}"
        elif spec.min_args == spec.max_args:
            want = str(spec.min_args)
        else:
            want = f"{spec.min_args} to {spec.max_args}"
        plural = "" if want in ("1", "at least 1") else "s"
        raise gen.error(node, f"{node.name}() takes {want} argument{plural}, got {n}")
    return spec.role


def _date_format(gen: Codegen, node: ast.Expr) -> str:
    if isinstance(node, ast.Str):
        try:
            check_pattern(node.value)
        except ValueError as exc:
            raise gen.error(node, f"invalid date format {node.value!r}: {exc}") from None
    return gen.s(node)


def _nvp(gen: Codegen, node: ast.Call) -> Code:
    a = node.args
    if len(a) == 1 and isinstance(a[0], ast.AllTokens):
        gen.whole_tokens = True
        return "_nvp_all(T)", "str"
    if len(a) == 1 and isinstance(a[0], ast.AllFields):
        return "_nvp_fields('', F)", "str"
    if len(a) == 2 and isinstance(a[1], ast.AllFields | ast.AllTokens):
        if isinstance(a[1], ast.AllTokens):
            gen.whole_tokens = True
        return (
            f"_nvp_fields({gen.s(a[0])}, {'F' if isinstance(a[1], ast.AllFields) else 'T'})",
            "str",
        )
    if len(a) % 2 == 0:
        raise gen.error(node, "nvp_add() takes $*, @*, or a string then name, value pairs")
    pairs = "".join(f"{gen.v(x)}, " for x in a[1:])
    return f"_nvp_add({gen.s(a[0])}, ({pairs}))", "str"


def call(gen: Codegen, node: ast.Call) -> Code:
    role = check_arity(gen, node)
    if role == "statement":
        raise gen.error(node, f"{node.name}() is a statement and has no value")
    if role == "list":
        raise gen.error(node, f"{node.name}() gives several values: assign it to [$a, $b, ...]")
    if role == "target":
        raise gen.error(node, "registertarget() must be assigned to a target name: T = ...")
    name, a = node.name, node.args
    if name == "match":
        return f"({gen.s(a[0])} == {gen.s(a[1])})", "bool"
    if name == "nmatch":
        return f"{gen.s(a[0])}.startswith({gen.s(a[1])})", "bool"
    if name == "regmatch":
        return f"({gen.regex(a[1])}.search({gen.s(a[0])}) is not None)", "bool"
    if name == "extract":
        return f"_extract({gen.regex(a[1])}, {gen.s(a[0])})", "str"
    if name == "regreplace":
        gen.may_fail = True
        regex, text, repl = gen.regex(a[1]), gen.s(a[0]), gen.s(a[2])
        return f"_regreplace({regex}, {text}, {repl}, ctx, {gen.pos(node)})", "str"
    if name == "exists":
        return exists(gen, a[0]), "bool"
    if name == "length":
        return f"len({gen.s(a[0])})", "num"
    if name in _STR_METHODS:
        return f"{gen.s(a[0])}.{_STR_METHODS[name]}()", "str"
    if name == "substr":
        rest = ", ".join(gen.v(x) for x in a[1:])
        return f"_substr({gen.s(a[0])}, {rest})", "str"
    if name == "split":
        if not isinstance(a[1], ast.Name):
            raise gen.error(a[1], "expected an array name as the second argument of split()")
        seps = f", {gen.s(a[2])}" if len(a) == 3 else ""
        return f"_split({gen.s(a[0])}, {gen.array(a[1], a[1].name)}{seps})", "num"
    if name == "int":
        return f"_atoi({gen.v(a[0])})", "num"
    if name == "real":
        return f"_atof({gen.v(a[0])})", "num"
    if name == "hostname":
        return "ctx.hostname", "str"
    if name == "getdate":
        return "_getdate(ctx)", "num"
    if name == "datetotime":
        gen.may_fail = True
        return f"_datetotime({gen.s(a[0])}, {_date_format(gen, a[1])})", "num"
    if name == "timetodate":
        gen.may_fail = True
        return f"_timetodate({gen.v(a[0])}, {_date_format(gen, a[1])})", "str"
    if name == "date":
        gen.may_fail = True
        return f"_date({gen.v(a[0])})", "num"
    if name == "md5":
        return f"_md5({gen.s(a[0])})", "str"
    if name in TRAP_FUNCTIONS:
        args = "".join(f"{gen.v(x)}, " for x in a)
        return f"_trapfn(ctx.traps, {name!r}, ({args}))", "num"
    if name == "printable":
        return f"_printable({gen.s(a[0])})", "str"
    if name == "nvp_add":
        return _nvp(gen, node)
    if name == "nvp_remove":
        names = "".join(f"{gen.v(x)}, " for x in a[1:])
        return f"_nvp_remove({gen.s(a[0])}, ({names}))", "str"
    if name == "contains":
        return f"({gen.s(a[1])} in {gen.s(a[0])})", "bool"
    if name == "charcount":
        return f"len({gen.s(a[0])})", "num"
    if name in ("getload", "updateload"):
        gen.may_fail = True  # a load string the rules built wrong
        return f"_{name}({gen.s(a[0])}, ctx)", ("num" if name == "getload" else "str")
    if name in ("getenv", "expand"):
        return repr(_literal_function(gen, node)), "str"
    assert name == "lookup"
    table = gen.table(a[1])
    single = gen.const("_L", table, {k: v[0] for k, v in gen.r.tables[table][0].items()})
    return f"{single}.get({gen.s(a[0])}, {gen.r.tables[table][1][0]!r})", "str"


def _literal_function(gen: Codegen, node: ast.Call) -> str:
    """The value of ``getenv("NAME")`` or ``expand("text")``, computed at compile time.

    Both take a string literal. OMNIbus' expand() requires one. getenv() is held to
    one here: with a name from an expression, the feed's text could choose which of
    the probe's environment variables (a password, a token) an alert carries. The
    environment does not change while the probe runs, so reading it at load time
    gives what reading it per event would (a reload reads it again).
    """
    arg = node.args[0]
    if not isinstance(arg, ast.Str):
        if node.name == "getenv":
            why = "getenv() takes the variable's name as a string literal, so no feed text "
            why += "can choose which environment variable an alert shows"
        else:
            why = "expand() takes a string literal"
        raise gen.error(arg, why)
    if node.name == "expand":
        return expand(arg.value)
    value = gen.r.env.get(arg.value, "")
    if len(value) > MAX_VALUE:
        raise gen.error(
            arg,
            f"environment variable {arg.value!r} holds {len(value)} characters, "
            f"more than the {MAX_VALUE} a value may have",
        )
    return value


def _service(gen: Codegen, node: ast.Call) -> None:
    """``service(name, status[, user[, description]])``: checked, then nothing.

    OMNIbus sets the status of a service in the ObjectServer's service table; a
    probepair sink has no such table, so the call is accepted as a no-op (README).
    """
    status = node.args[1]
    word = (
        status.name
        if isinstance(status, ast.Name)
        else status.value
        if isinstance(status, ast.Str)
        else None
    )
    if isinstance(status, ast.Name | ast.Str) and str(word).upper() not in SERVICE_STATUSES:
        raise gen.error(
            status, f"expected a service status ({', '.join(SERVICE_STATUSES)}), found {word!r}"
        )


def exists(gen: Codegen, arg: ast.Expr) -> str:
    match arg:
        case ast.TokenRef(name):
            local = gen.loop_var(name, "$*")
            if local is None:
                gen.token_reads.add(name)  # a read too: the tokeniser must make it
            return f"({local or repr(name)} in T)"
        case ast.TokenPath(path):
            return f"(_jpath(T, {path!r}) != '')"
        case ast.FieldRef(name):
            local = gen.loop_var(name, "@*")
            return f"({local or repr(name)} in F)"
        case ast.PropRef(name):
            return f"({name!r} in P)"
        case ast.Index(name, key):
            return f"({gen.s(key)} in {gen.array(arg, name)})"
    raise gen.error(arg, "exists() takes a $token, @field, %property or array[key]")


def multi_assign(gen: Codegen, stmt: ast.MultiAssign, depth: int) -> None:
    node = stmt.value
    if not (isinstance(node, ast.Call) and node.name in ("lookup", "scanformat", "split")):
        raise gen.error(
            stmt.value,
            "a list assignment needs lookup(key, table), scanformat(text, format) "
            "or split(text[, separators])",
        )
    tmp = gen.fresh("_m")
    if node.name == "lookup":
        check_arity(gen, node)
        table = gen.table(node.args[1])
        rows, default = gen.r.tables[table]
        width = max(len(stmt.targets), gen.r.table_width.get(table, 1))
        padded = {k: v + ("",) * (width - len(v)) for k, v in rows.items()}
        default_row = default + ("",) * (width - len(default))
        tab = gen.const("_M", (table, width), padded)
        dflt = gen.const("_D", (table, width), default_row)
        gen.emit(depth, f"{tmp} = {tab}.get({gen.s(node.args[0])}, {dflt})")
        for i, target in enumerate(stmt.targets):
            gen.emit(depth, gen.assign_code(target, f"{tmp}[{i}]"))
        return
    if node.name == "scanformat":
        check_arity(gen, node)
        fmt = node.args[1]
        if not isinstance(fmt, ast.Str):
            raise gen.error(fmt, "expected the format of scanformat() as a string")
        try:
            regex, kinds = scan_pattern(fmt.value)
        except ValueError as exc:
            raise gen.error(fmt, f"invalid scanformat() format: {exc}") from None
        const = gen.const("_S", fmt.value, regex)
        gen.emit(depth, f"{tmp} = _scanformat({const}, {kinds!r}, {gen.s(node.args[0])})")
    else:
        if not 1 <= len(node.args) <= 2:
            raise gen.error(
                node, f"split() in a list assignment takes 1 to 2 arguments, got {len(node.args)}"
            )
        seps = f", {gen.s(node.args[1])}" if len(node.args) == 2 else ""
        gen.emit(depth, f"{tmp} = _split_list({gen.s(node.args[0])}{seps})")
    # As sscanf: targets past the values read keep their value.
    for i, target in enumerate(stmt.targets):
        gen.emit(depth, f"if len({tmp}) > {i}:")
        gen.emit(depth + 1, gen.assign_code(target, f"{tmp}[{i}]"))


def _target_table(gen: Codegen, node: ast.Expr, fn: str) -> str:
    if isinstance(node, ast.Name) and node.name in gen.r.targets:
        return gen.r.targets[node.name].table
    if isinstance(node, ast.Name):
        raise gen.error(node, f"unknown target {node.name!r} (register it with registertarget())")
    raise gen.error(node, f"{fn}() takes a target name from registertarget()")


def _genevent(gen: Codegen, node: ast.Call, depth: int) -> None:
    table = _target_table(gen, node.args[0], "genevent")
    rest = node.args[1:]
    items: list[str] = []
    for i in range(0, len(rest), 2):
        f = rest[i]
        if not isinstance(f, ast.FieldRef) or i + 1 >= len(rest):
            raise gen.error(f, "genevent() takes a target, then @field, value pairs")
        if f.name == TABLE_FIELD:
            raise gen.error(f, TABLE_FIELD_ERROR)
        items.append(f"{f.name!r}: {gen.v(rest[i + 1])}")
    if table != DEFAULT_TABLE:
        items.append(f"'Table': {table!r}")
    gen.emit(depth, f"ctx.generated.append({{{', '.join(items)}}})")


def call_stmt(gen: Codegen, node: ast.Call, depth: int) -> None:
    role = check_arity(gen, node)
    if role in ("value", "list", "target"):
        gen.emit(depth, call(gen, node)[0])
        return
    name, a = node.name, node.args
    if name in ("log", "setlog"):
        level_node = a[0]
        level = (
            level_node.name
            if isinstance(level_node, ast.Name)
            else level_node.value
            if isinstance(level_node, ast.Str)
            else None
        )
        if level is None or level.upper() not in LOG_LEVELS:
            raise gen.error(level_node, f"expected a log level ({', '.join(LOG_LEVELS)})")
        if name == "log":
            gen.emit(depth, f"ctx.log({level.upper()!r}, {gen.s(a[1])})")
        else:
            # The probe's log level (its callback); %MessageLevel reads the new level.
            prop = "warn" if level.upper() == "WARNING" else level.lower()
            gen.emit(depth, f"ctx.set_log_level({level.upper()!r})")
            gen.emit(depth, f"P['MessageLevel'] = {prop!r}")
    elif name == "details":
        if len(a) == 1 and isinstance(a[0], ast.AllTokens):
            gen.whole_tokens = True
            gen.emit(depth, "_details(F, T)")
            return
        items = []
        for arg in a:
            if not isinstance(arg, ast.TokenRef):
                raise gen.error(arg, "details() takes $* or $tokens")
            items.append(f"{arg.name!r}: {gen.s(arg)}")
        gen.emit(depth, f"_details(F, {{{', '.join(items)}}})")
    elif name in ("remove", "update"):
        if not isinstance(a[0], ast.FieldRef):
            raise gen.error(a[0], f"{name}() takes an @field")
        if name == "remove":
            gen.emit(depth, f"F.pop({a[0].name!r}, None)")
        else:
            # update(@F): ObjectServer deduplication updates @F; the sinks decide what
            # a duplicate updates, so here it only has to be a valid statement.
            gen.emit(depth, "pass")
    elif name in ("settarget", "setdefaulttarget"):
        table = _target_table(gen, a[0], name)
        if not gen.uses_targets:
            gen.emit(depth, "pass")  # every target writes alerts.status
        elif name == "settarget":
            gen.emit(depth, f"_tg = {table!r}")
        else:
            gen.emit(depth, f"_TG[0] = _tg = {table!r}")
    elif name == "genevent":
        _genevent(gen, node, depth)
    elif name == "service":
        _service(gen, node)
        gen.emit(depth, "pass")
    else:
        assert name == "clear"
        if not isinstance(a[0], ast.Name):
            raise gen.error(a[0], "clear() takes an array name")
        gen.emit(depth, f"{gen.array(a[0], a[0].name)}.clear()")
