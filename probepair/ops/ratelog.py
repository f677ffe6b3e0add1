"""A log that says the same kind of thing at most once per interval (trio clock)."""

from __future__ import annotations

import logging
import math

import trio


class RateLimitedLog:
    """Logs each ``key`` at most once per ``interval`` seconds, with the count it held back.

    Runtime code only (it reads ``trio.current_time()``), so MockClock tests control it.
    """

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(
        self, key: str, level: int, msg: str, *args: object, exc_info: BaseException | None = None
    ) -> None:
        now = trio.current_time()
        if now - self._last.get(key, -math.inf) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d more since the last report)"
            args = (*args, suppressed)
        self.logger.log(level, msg, *args, exc_info=exc_info)
