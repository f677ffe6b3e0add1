"""Which ``%Mode`` assignments any sender on the feed can trigger (``rules check``).

PURE. ``%Mode = "master"`` switches the pair's roles, around the signed heartbeat
protocol. A rules file that assigns it in a branch the feed's text decides lets anyone
who can send one line to the feed (a spoofed syslog datagram) switch the pair. A branch
is trusted only when its condition requires the event to come from a local file feed
(``match(%FeedType, "file")`` or ``%FeedType == "file"``, alone or as one side of
``&&``; or a ``switch (%FeedType)`` case ``"file"``): such a feed holds only what local
users with write access put in it. Anything else is reported, with its location.

The analysis is per file and conservative: an assignment in an included file is
reported even when the include itself sits behind a trusted condition.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from probepair.rules import ast

TRUSTED_FEEDS: Final = frozenset({"file"})  # FeedType values no remote sender can write to


def _is_feed_type(expr: ast.Expr) -> bool:
    return isinstance(expr, ast.PropRef) and expr.name == "FeedType"


def _is_trusted_str(expr: ast.Expr) -> bool:
    return isinstance(expr, ast.Str) and expr.value in TRUSTED_FEEDS


def requires_local_feed(cond: ast.Expr) -> bool:
    """Whether ``cond`` can be true only for an event of a trusted (local) feed."""
    if isinstance(cond, ast.Binary):
        if cond.op == "&&":
            return requires_local_feed(cond.left) or requires_local_feed(cond.right)
        if cond.op == "==":
            pair = (cond.left, cond.right)
            return any(_is_feed_type(a) and _is_trusted_str(b) for a, b in (pair, pair[::-1]))
        return False
    if isinstance(cond, ast.Call) and cond.name == "match" and len(cond.args) == 2:
        a, b = cond.args
        return (_is_feed_type(a) and _is_trusted_str(b)) or (
            _is_feed_type(b) and _is_trusted_str(a)
        )
    return False


def _assigns_mode(stmt: ast.Stmt) -> bool:
    if isinstance(stmt, ast.Assign):
        targets: tuple[ast.Target, ...] = (stmt.target,)
    elif isinstance(stmt, ast.MultiAssign):
        targets = stmt.targets
    else:
        return False
    return any(isinstance(t, ast.PropRef) and t.name == "Mode" for t in targets)


def _walk(body: Iterable[ast.Stmt], trusted: bool, found: list[ast.Span]) -> None:
    for stmt in body:
        if _assigns_mode(stmt) and not trusted:
            found.append(stmt.span)
        elif isinstance(stmt, ast.If):
            for cond, branch in stmt.branches:
                _walk(branch, trusted or requires_local_feed(cond), found)
            if stmt.orelse is not None:
                _walk(stmt.orelse, trusted, found)
        elif isinstance(stmt, ast.Switch):
            on_feed = _is_feed_type(stmt.subject)
            for case in stmt.cases:
                local = (
                    on_feed and bool(case.labels) and all(_is_trusted_str(x) for x in case.labels)
                )
                _walk(case.body, trusted or local, found)
            if stmt.default is not None:
                _walk(stmt.default, trusted, found)
        elif isinstance(stmt, ast.Foreach):
            _walk(stmt.body, trusted, found)


def untrusted_mode_assignments(module: ast.Module) -> list[ast.Span]:
    """The spans of every ``%Mode`` assignment feed text can reach in ``module``."""
    found: list[ast.Span] = []
    _walk(module.body, False, found)
    for case in module.cases:
        _walk(case.body, False, found)
    return found
