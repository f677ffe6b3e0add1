"""When a returning master may take the role back: the failback window and delay (PURE).

``FailbackGate`` keeps whether the failback window is open (an input: the runtime reads
the wall clock and the ``FailbackWindow`` cron expression, ``probepair.config.cron``, and
reports each change) and ``FailbackDelay``: how long the returning master's boot has
beaten without a silence, in machine (monotonic) time.
"""

from __future__ import annotations

import math

__all__ = ["FailbackGate"]


class FailbackGate:
    """Whether an active probe may hand back to a returning (pending) master now.

    ``window_open`` is an input (``set_window``): the runtime evaluates the
    ``FailbackWindow`` cron expression against the wall clock and reports each opening
    and closing (always open without one). ``delay`` is ``FailbackDelay``: the returning
    master's boot must have been heard for that long, each heartbeat less than ``gap``
    (the takeover bound) after the one before; a restart (new boot) or a silence starts
    the count again, so a flapping master never reaches it.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self._window_open = True
        self._boot: bytes | None = None
        self._since = 0.0
        self._last = -math.inf

    @property
    def window_open(self) -> bool:
        """True while a returning master may take the role back (no window: always)."""
        return self._window_open

    def set_window(self, is_open: bool) -> None:
        """The runtime saw the failback window open (True) or close (False)."""
        self._window_open = is_open

    def heard(self, boot: bytes, now: float, gap: float) -> None:
        """A fresh heartbeat of a pending master from boot ``boot`` at ``now``."""
        if boot != self._boot or now - self._last > gap:
            self._boot, self._since = boot, now
        self._last = now

    def steady_for(self, now: float) -> float:
        """Seconds the current returning boot has beaten without a silence."""
        return 0.0 if self._boot is None else now - self._since

    def allows(self, boot: bytes, now: float, gap: float) -> bool:
        """Record the heartbeat; True if the window is open and the delay has passed."""
        self.heard(boot, now, gap)
        return self._window_open and now - self._since >= self.delay
