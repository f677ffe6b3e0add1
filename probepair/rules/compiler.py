"""Compiler: rules text -> Program (one generated Python function), once per load.

PURE: file access for ``include`` and file lookup tables goes through an injected
``read(path) -> str`` (the loader passes one that reads files), so this module itself
never touches the file system.

Steps: parse the main file; resolve includes (recursively, cycles rejected) and
tables; infer which ``$tokens`` may hold non-strings (a fixed point over their
assignments: everything else reads as a string, which keeps generated code direct);
generate the function source (codegen.py) and ``compile()`` it once.
"""

from __future__ import annotations

import math
import os.path
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from probepair.errors import RulesCompileError, RulesRuntimeError
from probepair.rules import arith as ar
from probepair.rules import ast, failures, probefns
from probepair.rules import functions as fn
from probepair.rules.codegen import Codegen
from probepair.rules.frontend import DEFAULT_TABLE, FileStats, FrontEnd, Resolved, TargetInfo
from probepair.rules.parser import parse

# The field an event over its rules-time budget carries: "file:line:col" of the check
# that found the time used up (a foreach iteration, a regreplace match loop).
OVER_BUDGET_FIELD: Final = "RulesOverBudget"

_BOOL_FUNCS: Final = frozenset({"match", "nmatch", "regmatch", "exists", "contains"})
_NUM_FUNCS: Final = frozenset(
    {"length", "charcount", "split", "int", "real", "getdate", "datetotime", "date", "getload"}
)


@dataclass(slots=True)
class RulesContext:
    """What a running rules program may see and change outside the event.

    ``props`` holds current property values (``%Name`` reads them); an assignment
    ``%Name = v`` writes ``props`` and records ``assigned`` so the runtime can act on
    it (``Mode`` switches the role). Clock and hostname are injected to keep runs
    deterministic in tests. ``generated`` collects the alerts ``genevent`` made during
    one run, in order; the runtime takes them (and clears the list) after each run.

    ``set_log_level`` is how ``setlog(LEVEL)`` reaches the probe's log (one of
    functions.LOG_LEVELS); the default ignores it.

    The rules-time budget: the runtime sets ``deadline`` (on ``clock``, seconds)
    before each run; loops compare the two and stop the run past it (``OverBudget``),
    reported through ``on_over_budget`` with the location.
    """

    props: dict[str, object]
    assigned: dict[str, object]
    log: Callable[[str, str], None]
    on_error: Callable[[RulesRuntimeError], None]
    wall_clock: Callable[[], float]
    hostname: str
    generated: list[dict[str, object]] = field(default_factory=list)
    clock: Callable[[], float] = field(default=lambda: 0.0)
    deadline: float = math.inf
    on_over_budget: Callable[[tuple[str, int, int]], None] = field(default=lambda pos: None)
    traps: fn.TrapFunctions | None = None  # the SNMP feed's counters and drop list
    # setlog(LEVEL): the probe sets its log level (rules/ itself stays free of logging)
    set_log_level: Callable[[str], None] = field(default=lambda level: None)


class Program:
    """A compiled rules file: call :meth:`run` once per event."""

    __slots__ = (
        "_fn",
        "digest",
        "file_stats",
        "files",
        "includes",
        "needs_peer",
        "needs_split",
        "python_source",
        "source",
        "statements",
        "tables",
        "targets",
    )

    def __init__(
        self,
        source: str,
        digest: str,
        fn_: Callable[..., dict[str, object] | None],
        python_source: str,
        statements: int,
        tables: int,
        includes: int,
        files: tuple[str, ...],
        needs_split: bool = True,
        file_stats: tuple[FileStats, ...] = (),
        targets: tuple[TargetInfo, ...] = (),
        needs_peer: bool = True,
    ) -> None:
        self.source = source
        self.digest = digest
        self._fn = fn_
        self.python_source = python_source
        self.statements = statements
        self.tables = tables
        self.includes = includes
        self.files = files  # included and table files read, for reload change checks
        # False when the rules read no $TokenN and no $*: tokenisers may skip the split.
        self.needs_split = needs_split
        # False when the rules read neither $PeerAddress nor $PeerPort nor $*: the
        # processor may skip setting them (~0.1 µs an event on the hot path).
        self.needs_peer = needs_peer
        self.file_stats = file_stats  # per file: statements, tables, includes
        self.targets = targets  # registered targets, the default first

    def run(
        self, tokens: dict[str, str], ctx: RulesContext, fields: Mapping[str, object] | None = None
    ) -> dict[str, object] | None:
        """The alert fields for one event, or None when the rules discarded it.

        ``fields`` pre-sets alert fields (as OMNIbus does for ProbeWatch self-events).
        Runtime problems are reported through ``ctx.on_error``; this never raises.
        A run past ``ctx.deadline`` stops at the next check and returns the fields set
        so far, marked with ``OVER_BUDGET_FIELD`` (a discard not reached yet does not
        happen: the event is delivered, so nothing is lost to its cost).
        """
        out: dict[str, object] = {} if fields is None else dict(fields)
        try:
            return self._fn(tokens, ctx, out)
        except failures.OverBudget as over:
            file, line, col = over.pos
            out[OVER_BUDGET_FIELD] = f"{file}:{line}:{col}"
            ctx.on_over_budget(over.pos)
            return out
        except Exception as exc:
            ctx.on_error(RulesRuntimeError(self.source, 0, 0, f"internal error: {exc!r}"))
            return None

    def __repr__(self) -> str:
        return f"<Program {self.source!r} {self.digest[:12]}>"


# -- runtime helpers bound into the generated code's namespace ------------------------


# Characters of a runtime error message kept: a message quotes the value it failed on,
# and one event's value may be 64 KiB (a datagram), logged per event.
MAX_ERROR_MESSAGE: Final = 300


def _fail(ctx: RulesContext, exc: Exception, pos: tuple[str, int, int]) -> None:
    message = exc.message if isinstance(exc, failures.Fail) else f"{type(exc).__name__}: {exc}"
    if len(message) > MAX_ERROR_MESSAGE:
        message = f"{message[:MAX_ERROR_MESSAGE]}... ({len(message)} characters)"
    ctx.on_error(RulesRuntimeError(pos[0], pos[1], pos[2], message))


def _details(fields: dict[str, object], items: dict[str, object]) -> None:
    current = fields.get("Details")
    merged = dict(current) if isinstance(current, dict) else {}
    merged.update((k, str(v)) for k, v in items.items())
    fields["Details"] = merged


def _getdate(ctx: RulesContext) -> int:
    return int(ctx.wall_clock())


def _fin(fields: dict[str, object], table: str) -> dict[str, object]:
    """The alert of an event whose target may not be alerts.status (see calls.py)."""
    if table != DEFAULT_TABLE:
        fields["Table"] = table
    return fields


_NAMESPACE: Final[dict[str, object]] = {
    "_str": str,
    "_jpath": fn.json_path,
    "_getdate": _getdate,
    "_neg": ar.neg,
    "_add": ar.add,
    "_sub": ar.sub,
    "_mul": ar.mul,
    "_div": ar.div,
    "_mod": ar.mod,
    "_eq": ar.eq,
    "_ne": ar.ne,
    "_lt": ar.lt,
    "_le": ar.le,
    "_gt": ar.gt,
    "_ge": ar.ge,
    "_extract": fn.extract,
    "_regreplace": fn.regreplace,
    "_dynre": fn.dynamic_regex,
    "_substr": fn.substr,
    "_split": fn.split,
    "_atoi": ar.atoi,
    "_atof": ar.atof,
    "_datetotime": fn.datetotime,
    "_timetodate": fn.timetodate,
    "_md5": fn.md5,
    "_trapfn": fn.trap_function,
    "_nvp_add": fn.nvp_add,
    "_nvp_all": fn.nvp_all,
    "_nvp_fields": fn.nvp_fields,
    "_nvp_remove": fn.nvp_remove,
    "_printable": fn.printable,
    "_date": fn.date,
    "_band": ar.band,
    "_bor": ar.bor,
    "_bxor": ar.bxor,
    "_bnot": ar.bnot,
    "_shl": ar.shl,
    "_shr": ar.shr,
    "_scanformat": fn.scanformat,
    "_getload": probefns.getload,
    "_updateload": probefns.updateload,
    "_split_list": fn.split_list,
    "_cap": failures.cap,
    "_over": failures.over_budget,
    "_fin": _fin,
    "_details": _details,
    "_fail": _fail,
}


PEER_TOKENS: Final = frozenset({"PeerAddress", "PeerPort"})  # from Event.source


def _type(node: ast.Expr, nonstr: set[str]) -> str:
    """Static type, enough to know which $tokens may hold non-strings."""
    match node:
        case ast.Str() | ast.Name():
            return "str"
        case ast.Num():
            return "num"
        case ast.TokenRef(name):
            return "any" if name in nonstr else "str"
        case ast.Call(name):
            if name in _BOOL_FUNCS:
                return "bool"
            return "num" if name in _NUM_FUNCS else "str"
        case ast.Unary(op):
            return "bool" if op == "!" else "num"
        case ast.Binary(op, left, right):
            if op == "+":
                lt, rt = _type(left, nonstr), _type(right, nonstr)
                if "str" in (lt, rt):
                    return "str"
                return "num" if lt == rt == "num" else "any"
            return "num" if op in "-*/%" else "bool"
    return "any"


def compile_rules(
    text: str,
    *,
    source: str = "<rules>",
    base_dir: str | None = None,
    read: Callable[[str], str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Program:
    """Compile rules text; ``read`` loads include and table files (None: none allowed);
    ``env`` gives the environment variables that include paths may name.

    Raises:
        RulesSyntaxError: the text (or an included file) does not parse.
        RulesCompileError: unknown function/table/array, wrong arity, bad regex,
            unreadable include or table file.
    """
    module = parse(text, source)
    front = FrontEnd(read, env)
    front.add_text(source, text)
    front.stat(source)
    if base_dir is None:
        base_dir = os.path.dirname(source) if source and not source.startswith("<") else "."
    front.walk(module.body, source, base_dir, [source], top=True)
    nonstr: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, value in front.assignments:
            if name not in nonstr and value is not None and _type(value, nonstr) != "str":
                nonstr.add(name)
                changed = True
    widths = {
        name: max((len(v) for v in rows.values()), default=1)
        for name, (rows, _) in front.tables.items()
    }
    resolved = Resolved(
        front.tables,
        front.arrays,
        front.includes,
        nonstr,
        widths,
        front.switches,
        front.targets,
        dict(env or {}),
    )
    gen = Codegen(resolved)
    try:
        body = gen.generate(module.body, source)
    except RecursionError:
        raise RulesCompileError(source, 1, 1, "rules nest too deeply to compile") from None
    prologue = ["def _rules(T, ctx, F):"]
    if any(True for _ in front.assignments):
        prologue.append("    T = dict(T)")
    prologue += ["    Tg = T.get", "    Fg = F.get", "    P = ctx.props", "    A = ctx.assigned"]
    python_source = "\n".join([*prologue, body, "    " + gen.ret, ""])
    namespace = dict(_NAMESPACE)
    namespace.update(gen.consts)
    try:
        code = compile(python_source, f"<rules {source}>", "exec")
    except (SyntaxError, RecursionError, MemoryError, ValueError, OverflowError) as exc:
        raise RulesCompileError(source, 1, 1, f"rules nest too deeply to compile ({exc})") from None
    exec(code, namespace)
    return Program(
        source,
        front.hash.hexdigest(),
        namespace["_rules"],  # type: ignore[arg-type]  # exec()'s namespace holds objects
        python_source,
        front.statements,
        len(front.tables),
        sum(len(f.includes) for f in front.stats.values()),
        tuple(front.files),
        needs_split=gen.whole_tokens or any(re.fullmatch(r"Token\d+", t) for t in gen.token_reads),
        file_stats=tuple(front.stats.values()),
        targets=tuple(front.targets.values()),
        needs_peer=gen.whole_tokens or bool(gen.token_reads & PEER_TOKENS),
    )
