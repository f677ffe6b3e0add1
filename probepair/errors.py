"""The exception hierarchy: every user-facing error names where and what.

Exceptions carry structured fields and build their message from them, so tests can
assert both (see ../shared/STYLE.md section 7).
"""

from __future__ import annotations


class ProbepairError(Exception):
    """Base of every error probepair raises on purpose."""


class ConfigError(ProbepairError):
    """A property is unknown, mistyped or out of range.

    Args:
        source: where the value came from (a props file path, or "command line").
        key: the property name (the dotted key path).
        message: what was expected and what was found.
    """

    def __init__(self, source: str, key: str | None, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


class RulesError(ProbepairError):
    """A rules file problem located at ``source:line:col``."""

    def __init__(self, source: str, line: int, col: int, message: str) -> None:
        self.source = source
        self.line = line
        self.col = col
        self.message = message
        super().__init__(f"{source}:{line}:{col}: {message}")


class RulesSyntaxError(RulesError):
    """The text is not a rules file (lexer or parser)."""


class RulesCompileError(RulesError):
    """The rules parse but cannot run: unknown function, wrong arity, bad regex."""


class RulesRuntimeError(RulesError):
    """One event hit a problem at run time; the probe logs, counts and goes on."""


class HeartbeatDecodeError(ProbepairError):
    """A datagram that is not a valid, authentic, fresh heartbeat or ack.

    ``reason`` is a short metric label (``short``, ``magic``, ``version``, ``mac``,
    ``malformed``, ``replay``, ``unsigned`` ...); it never escapes the drive loop.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class FeedError(ProbepairError):
    """A feed cannot start or run (bad address, unreadable file)."""

    def __init__(self, component: str, message: str) -> None:
        self.component = component
        self.message = message
        super().__init__(f"feed {component}: {message}")


class SinkError(ProbepairError):
    """A sink cannot deliver; the caller spools or retries."""

    def __init__(self, component: str, message: str) -> None:
        self.component = component
        self.message = message
        super().__init__(f"sink {component}: {message}")


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; trio nurseries raise groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaf_exceptions(inner)]
    return [exc]
