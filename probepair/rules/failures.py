"""What a rules statement may fail with, and the cap on the size of a value (PURE).

The base of the rules runtime: ``functions`` and ``arith`` raise ``Fail`` (the
generated code reports it and goes on with the next statement) and ``OverBudget``
(the event's rules time is used up: the run ends).
"""

from __future__ import annotations

from typing import Final


class Fail(Exception):
    """A runtime problem in one statement; the generated code reports it and goes on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


MAX_VALUE: Final = 1 << 20  # characters a string value may have (a datagram: 64 KiB)
INT64: Final = 1 << 63  # integers are C int64: products outside it fail


class OverBudget(BaseException):
    """The event used up its rules time (``RulesContext.deadline``) at ``pos``.

    A BaseException so the per-statement ``except Exception`` of the generated code
    cannot catch it: it ends the whole run, and ``Program.run`` delivers the fields
    set so far with the marker field.
    """

    def __init__(self, pos: tuple[str, int, int]) -> None:
        super().__init__(pos)
        self.pos = pos


def over_budget(pos: tuple[str, int, int]) -> None:
    raise OverBudget(pos)


def cap(text: str) -> str:
    """``text``, or a failure when it is longer than ``MAX_VALUE``: a concatenation
    repeated in a loop (``$a = $a + $a``) would otherwise double per iteration."""
    if len(text) > MAX_VALUE:
        raise Fail(f"string of {len(text)} characters, longer than the {MAX_VALUE} allowed")
    return text
