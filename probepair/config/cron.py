"""The ``FailbackWindow`` cron expression, evaluated against the wall clock (runtime side).

``FailbackWindow`` evaluates the ``FailbackWindow`` cron expression (the start of each
window) and ``FailbackWindowLength`` against a *wall-clock* time the caller passes in;
cron needs the calendar and the time zone, which the pure failover machine must not
know. The window task (``probepair.pair.window``) evaluates it and tells the machine
(``FailoverMachine.window_changed``) when the window opens or closes.

Cron evaluation is cronsim's (no dependencies, one module, typed, maintained; croniter
pulls in dateutil and pytz for the same job). 5-field expressions (``m h dom mon dow``)
or cronsim's 6-field form with seconds first, read in the zone given (the runtime passes
the host's, with its DST rules: ``failback.local_zone``).
"""

from __future__ import annotations

import math
from datetime import datetime, tzinfo
from typing import Final

from cronsim import CronSim, CronSimError

__all__ = ["FailbackWindow", "WindowError"]

_HORIZON: Final = 366 * 86400.0  # seconds we look ahead for a window's end or next start
_CHAIN: Final = 1_000  # overlapping windows merged at most when looking for an end


class WindowError(ValueError):
    """A FailbackWindow expression cronsim cannot evaluate (message says why)."""


class FailbackWindow:
    """Windows of ``length`` seconds, each starting at a match of cron ``expr``.

    Args:
        expr: a cron expression (5 fields, or 6 with seconds first).
        length: seconds each window stays open (> 0).
        tz: the zone the expression is read in; None: the host's local time.

    Raises:
        WindowError: the expression does not parse, or ``length`` is not positive.
    """

    def __init__(self, expr: str, length: float, tz: tzinfo | None = None) -> None:
        if not (length > 0 and math.isfinite(length)):
            raise WindowError(f"the window length must be a positive number, got {length!r}")
        self.expr = expr
        self.length = length
        self.tz = tz
        try:
            CronSim(expr, datetime(2000, 1, 1, tzinfo=tz))
        except CronSimError as exc:
            raise WindowError(f"not a cron expression ({exc}): {expr!r}") from None

    def _dt(self, wall: float) -> datetime:
        if self.tz is None:
            return datetime.fromtimestamp(wall).astimezone()
        return datetime.fromtimestamp(wall, self.tz)

    def last_start(self, wall: float) -> float:
        """The latest window start at or before ``wall`` (-inf: none within a year)."""
        # Reverse iteration from a whole second yields starts strictly before it.
        start = self._dt(math.floor(wall) + 1)
        for found in CronSim(self.expr, start, reverse=True):
            ts = found.timestamp()
            return ts if wall - ts <= _HORIZON else -math.inf
        return -math.inf  # pragma: no cover - cronsim iterates without end

    def next_start(self, wall: float) -> float:
        """The first window start after ``wall`` (inf: none within a year)."""
        for found in CronSim(self.expr, self._dt(math.floor(wall))):
            ts = found.timestamp()
            if ts > wall:
                return ts if ts - wall <= _HORIZON else math.inf
        return math.inf  # pragma: no cover - cronsim iterates without end

    def is_open(self, wall: float) -> bool:
        """True while a window that started at or before ``wall`` lasts."""
        return wall < self.last_start(wall) + self.length

    def next_change(self, wall: float) -> float:
        """When the window next opens (if closed) or closes (if open); inf: not in a year.

        Overlapping windows count as one: it closes when the last of them ends.
        """
        if not self.is_open(wall):
            return self.next_start(wall)
        end = self.last_start(wall) + self.length
        for _ in range(_CHAIN):
            following = self.next_start(end - self.length)
            if following >= end:
                return end if end - wall <= _HORIZON else math.inf
            end = following + self.length
        return math.inf  # windows chain on past what we look at: open for the foreseeable
