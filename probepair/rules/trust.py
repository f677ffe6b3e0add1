"""Which ``%Mode`` assignments any sender on the feed can trigger (``rules check``).

PURE. ``%Mode = "master"`` switches the pair's roles, around the signed heartbeat
protocol. A rules file that assigns it in a branch the feed's text decides lets anyone
who can send one line to the feed (a spoofed syslog datagram) switch the pair. A branch
is trusted when its condition requires the event to come from a local file feed
(``match(%FeedType, "file")`` or ``%FeedType == "file"``, alone or as one side of
``&&``, or on both sides of ``||``; or a ``switch (%FeedType)`` case ``"file"``):
such a feed holds only what local users with write access put in it. Anything else is
reported, with its location.

A branch is also trusted when its condition requires the event's sender
(``$PeerAddress``, or the snmp feed's ``$PeerIPaddress``) to be a loopback address
given as a literal (``match($PeerAddress, "127.0.0.1")``, ``$PeerAddress == "::1"``):
the feed sets those tokens from the socket, never from the record (a json record's
``PeerAddress`` key is ``$FeedPeerAddress``), and the kernel drops packets from
another host that claim a loopback source (a "martian" on any other interface), so
only a process on the probe's own host can send such an event (any local user's
process: a weaker bound than a file feed's write permission). Any other address is
not trusted input: a UDP datagram (syslog, a trap) claims whatever source its sender
writes into it, and nothing on a udp feed authenticates it; the snmp feed's
``$PeerAddress`` is even a reverse-DNS name, which the owner of the sending address
chooses. Those guards are still reported.

The analysis is per file and conservative: an assignment in an included file is
reported even when the include itself sits behind a trusted condition.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from probepair.rules import ast

TRUSTED_FEEDS: Final = frozenset({"file"})  # FeedType values no remote sender can write to


def _is_feed_type(expr: ast.Expr) -> bool:
    return isinstance(expr, ast.PropRef) and expr.name == "FeedType"


def _is_trusted_str(expr: ast.Expr) -> bool:
    return isinstance(expr, ast.Str) and expr.value in TRUSTED_FEEDS


SENDER_TOKENS: Final = frozenset({"PeerAddress", "PeerIPaddress"})  # set by the feed only


def _is_sender(expr: ast.Expr) -> bool:
    return isinstance(expr, ast.TokenRef) and expr.name in SENDER_TOKENS


def _is_loopback_str(expr: ast.Expr) -> bool:
    if not isinstance(expr, ast.Str):
        return False
    try:
        return ipaddress.ip_address(expr.value).is_loopback
    except ValueError:
        return False  # a name ("localhost"): whoever answers reverse DNS decides it


def _trusted_equal(a: ast.Expr, b: ast.Expr) -> bool:
    """``a`` equal to ``b`` (either order) can hold only for trusted input."""
    for x, y in ((a, b), (b, a)):
        if _is_feed_type(x) and _is_trusted_str(y):
            return True
        if _is_sender(x) and _is_loopback_str(y):
            return True
    return False


def requires_local_feed(cond: ast.Expr) -> bool:
    """Whether ``cond`` can be true only for an event of a trusted (local) feed or of a
    sender on the probe's own host (see the module docstring)."""
    if isinstance(cond, ast.Binary):
        if cond.op == "&&":
            return requires_local_feed(cond.left) or requires_local_feed(cond.right)
        if cond.op == "||":  # either way trusted: the file feed, or this host
            return requires_local_feed(cond.left) and requires_local_feed(cond.right)
        if cond.op == "==":
            return _trusted_equal(cond.left, cond.right)
        return False
    if isinstance(cond, ast.Call) and cond.name == "match" and len(cond.args) == 2:
        return _trusted_equal(*cond.args)
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
