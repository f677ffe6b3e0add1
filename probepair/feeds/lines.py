"""Splitting a byte stream into newline-terminated records (tcp and stdin feeds)."""

from __future__ import annotations

from collections.abc import Callable

from probepair.events import Batch, Event, KeyMaker

MAX_LINE = 1 << 20  # bytes; a longer line is cut into records of this size


class LineSplitter:
    """Accumulates chunks and yields the complete lines as Events."""

    def __init__(self, keys: KeyMaker, now: Callable[[], float], wall: Callable[[], float]):
        self._buf = b""
        self._keys = keys
        self._now = now
        self._wall = wall

    def feed(self, chunk: bytes) -> Batch:
        """The events completed by ``chunk``."""
        data = self._buf + chunk
        lines = data.split(b"\n")
        self._buf = lines.pop()
        if len(self._buf) > MAX_LINE:
            lines.append(self._buf)
            self._buf = b""
        return self._events(lines)

    def finish(self) -> Batch:
        """The last, unterminated line at end of stream."""
        rest, self._buf = self._buf, b""
        return self._events([rest] if rest.strip() else [])

    def _events(self, lines: list[bytes]) -> Batch:
        wall = self._wall()
        lines = [stripped for line in lines if (stripped := line.rstrip(b"\r"))]
        keys = self._keys.keys(lines, self._now())
        return [Event(line, key, wall) for line, key in zip(lines, keys, strict=True)]
