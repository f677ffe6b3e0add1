"""Functions about the probe itself (issue 23): escapes, event loads, service status.

PURE (no clock: the load functions read ``ctx.wall_clock``). Split from functions.py
for size; calls.py emits the calls, compiler.py binds the helpers.

``expand(literal)`` works at compile time: C's escapes in a string literal (the lexer
already turned ``\\n \\t \\r \\\\ \\" \\'`` into their characters; ``expand`` adds
``\\a \\b \\f \\v \\e``, ``\\xHH`` and octal ``\\NNN``). ``getenv`` is resolved at
compile time too (calls.py), from the environment the loader was given.

Loads (OMNIbus' "monitoring probe loads"): a load is a string the rules keep in a
property, ``"SECONDS.SAMPLES"`` (the window and the samples kept) followed by the
sample times, ``":"``-separated. ``updateload(%load)`` returns it with the current time
added, the times older than the window dropped and at most SAMPLES kept;
``getload(%load)`` is the event rate over the window in events per second. An empty
load is ``DEFAULT_LOAD``. The cost of both is linear in SAMPLES, which is capped at
``MAX_LOAD_SAMPLES``.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Final, Protocol

from probepair.rules.failures import Fail

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_LOAD: Final = "60.100"  # a minute's window, 100 samples: a load never set
MAX_LOAD_SAMPLES: Final = 1000  # ~14 KiB of load string, ~0.1 ms a call at most
MAX_LOAD_WINDOW: Final = 86400.0  # seconds: a day
SERVICE_STATUSES: Final = ("GOOD", "MARGINAL", "BAD", "UNKNOWN")  # OMNIbus service.status

_LOAD_HEAD: Final = re.compile(r"([0-9]{1,5})\.([0-9]{1,4})|([0-9]{1,5})")
_STAMP: Final = 0.001  # seconds: sample times are kept to the millisecond
_C_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "f": "\f",
    "v": "\v",
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "?": "?",
}
_ESCAPE: Final = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.S)


def expand(text: str) -> str:
    """``text`` with C escapes replaced; an unknown escape (``\\q``) stays as written."""

    def one(m: re.Match[str]) -> str:
        e = m[1]
        if e[0] == "x" and len(e) > 1:
            return chr(int(e[1:], 16))
        if e[0] in "01234567":
            return chr(int(e, 8))
        return _C_ESCAPES.get(e, m[0])

    return _ESCAPE.sub(one, text) if "\\" in text else text


class _Clocked(Protocol):
    """What the load helpers read of the RulesContext."""

    wall_clock: Callable[[], float]


def _parse_load(load: str, fn: str) -> tuple[float, int, list[float]]:
    """(window seconds, samples kept at most, sample times) of a load string."""
    head, _, rest = (load or DEFAULT_LOAD).partition(":")
    # "60.100": window 60 s, 100 samples. A bare number is a window with 100 samples.
    m = _LOAD_HEAD.fullmatch(head)
    if m is None:
        raise Fail(
            f"{fn}: expected a load 'SECONDS.SAMPLES' such as {DEFAULT_LOAD!r}, found {head!r}"
        )
    if m[3] is not None:
        window, samples = float(m[3]), 100
    else:
        window, samples = float(m[1]), int(m[2])
    if not 0 < window <= MAX_LOAD_WINDOW or not 0 < samples <= MAX_LOAD_SAMPLES:
        raise Fail(
            f"{fn}: a load's window is 1 to {MAX_LOAD_WINDOW:g} seconds and its samples "
            f"1 to {MAX_LOAD_SAMPLES}, found {head!r}"
        )
    times: list[float] = []
    if rest:
        # Bounded: a load longer than SAMPLES times is cut, not read.
        for part in rest.split(":", samples)[:samples]:
            try:
                t = float(part)
            except ValueError:
                raise Fail(f"{fn}: not a load (bad sample time {part[:20]!r})") from None
            if math.isfinite(t):
                times.append(t)
    return window, samples, times


def updateload(load: str, ctx: _Clocked) -> str:
    """``load`` with now added (see the module docstring)."""
    window, samples, times = _parse_load(load, "updateload")
    now = ctx.wall_clock()
    times = [t for t in times if now - window < t <= now + _STAMP]
    times.append(now)
    del times[: max(len(times) - samples, 0)]
    head = (load or DEFAULT_LOAD).partition(":")[0]
    return head + "".join(f":{t:.3f}" for t in times)


def getload(load: str, ctx: _Clocked) -> float:
    """Events per second over the window of ``load`` (0.0 for one without samples).

    While the window holds fewer than SAMPLES times, the rate is their count over the
    window; when SAMPLES times fill a shorter span, it is their count over that span.
    """
    window, samples, times = _parse_load(load, "getload")
    now = ctx.wall_clock()
    times = [t for t in times if now - window < t <= now + _STAMP]  # + rounding
    if not times:
        return 0.0
    if len(times) < samples:
        return round(len(times) / window, 3)
    span = max(now - min(times), _STAMP)
    return round(len(times) / min(span, window), 3)
