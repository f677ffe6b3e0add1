"""The runtime side of the failback window: wall clock in, open/closed to the machine.

The failover machine never reads a clock; this task evaluates ``FailbackWindow``
(``probepair.config.cron``) against the wall clock and reports each opening and closing
through ``FailoverMachine.window_changed``, waking when the
window opens or closes and at least every ``RECHECK`` seconds (trio sleeps on the
monotonic clock, the wall clock may be stepped meanwhile).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from datetime import tzinfo
from typing import Any, Final, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import trio

from probepair.config.cron import FailbackWindow
from probepair.failover.window import FailbackGate

logger = logging.getLogger(__name__)

RECHECK: Final = 30.0  # seconds between two evaluations at most
MIN_SLEEP: Final = 0.01  # never spin on a change that rounding put at "now"


def local_zone() -> tzinfo | None:
    """The host's time zone with its DST rules (TZ, else /etc/localtime); None: unknown.

    ``datetime.astimezone()`` alone gives today's fixed offset, which puts a window on
    the far side of a DST change an hour off.
    """
    name = os.environ.get("TZ", "").lstrip(":")
    try:
        if name:
            return ZoneInfo(name)
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError, ZoneInfoNotFoundError):
        return None


async def drive_window(
    window_changed: Callable[[bool], None],
    window: FailbackWindow,
    wall_clock: Callable[[], float],
    on_change: Callable[[bool], None] | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Report ``window.is_open(wall_clock())`` to ``window_changed`` at start and on each change."""
    first = True
    last: bool | None = None
    while True:
        wall = wall_clock()
        is_open = window.is_open(wall)
        if is_open != last:
            last = is_open
            window_changed(is_open)
            logger.warning("failback window %r is %s", window.expr, "open" if is_open else "closed")
            if on_change is not None:
                on_change(is_open)
        if first:
            first = False
            task_status.started()
        change = window.next_change(wall)
        await trio.sleep(max(MIN_SLEEP, min(change - wall, RECHECK)))


def window_status(window: FailbackWindow | None, gate: FailbackGate, wall: float) -> dict[str, Any]:
    """The ``probepair status`` fields of the failback window and delay."""
    status: dict[str, Any] = {
        "failback_window": window.expr if window is not None else "",
        "failback_window_open": gate.window_open,
        "failback_delay": gate.delay,
    }
    if window is not None:
        change = window.next_change(wall)
        key = "failback_window_closes_in_seconds" if gate.window_open else "next_window_in_seconds"
        status[key] = None if math.isinf(change) else max(0.0, change - wall)
        if gate.window_open:
            status["next_window_in_seconds"] = 0.0
    return status
