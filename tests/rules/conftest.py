"""Fixtures for the rules tests: a recording RulesContext and a one-call runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from probepair.errors import RulesRuntimeError
from probepair.rules import RulesContext, compile_rules

WALL = 1_700_000_000.0


@dataclass
class Recorder:
    """Everything a run reported: log lines and runtime errors."""

    logs: list[tuple[str, str]] = field(default_factory=list)
    errors: list[RulesRuntimeError] = field(default_factory=list)

    def ctx(self, props: dict[str, object] | None = None) -> RulesContext:
        return RulesContext(
            props=dict(props or {"Manager": "syslogd", "Server": "NCOMS"}),
            assigned={},
            log=lambda level, msg: self.logs.append((level, msg)),
            on_error=self.errors.append,
            wall_clock=lambda: WALL,
            hostname="probehost",
        )


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def run(rec: Recorder) -> Callable[..., dict[str, object] | None]:
    """run(rules_text, **tokens) -> alert fields (or None), errors land in ``rec``."""

    def _run(text: str, **tokens: str) -> dict[str, object] | None:
        return compile_rules(text, source="t.rules").run(tokens, rec.ctx())

    return _run
