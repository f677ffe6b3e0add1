"""Splitting a byte stream into newline-terminated records (tcp and stdin feeds).

PURE: standard library and ``events`` only (the import-linter contract in pyproject).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from probepair.events import Batch, Event, KeyMaker

MAX_LINE = 1 << 20  # bytes; a longer line is cut into records of this size
# Stripped from the end of every record, whatever carried it: a datagram (udp), a line
# (its LF is the framing) or an octet-counted frame. The key is computed over what is
# left, so one message gets the same key over UDP and over TCP (issue 23: a sender may
# reach the two probes of a pair, or two feeds of one probe, by different transports).
TRAILER = b"\r\n\x00"


class NewlineFramer:
    """Accumulates chunks and returns the complete lines (no newline, no TRAILER bytes).

    A line longer than ``max_line`` is cut into records of exactly ``max_line`` bytes
    (the last one shorter), wherever the chunks happen to end: the two probes of a pair
    read the same stream in different segments and must cut it alike, or their keys
    differ. Empty lines are no records.

    Linear in the bytes fed: a pending line is kept as the list of its chunks and joined
    once, when its newline (or ``max_line``) comes. Re-joining it per chunk cost ~4 s of
    CPU for one 1 MiB line sent in 64-byte segments (issue 19: bounded per-input cost).
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._parts: list[bytes] = []  # the pending line (< max_line bytes), no newline
        self._pending = 0  # bytes in _parts
        self._max = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines (and cuts of long lines) completed by ``chunk``."""
        if b"\n" not in chunk:
            if not chunk:
                return []
            self._parts.append(chunk)
            self._pending += len(chunk)
            if self._pending < self._max:
                return []
            pieces = self._cut(b"".join(self._parts))
            rest = pieces.pop()
            self._parts, self._pending = ([rest], len(rest)) if rest else ([], 0)
            return _records(pieces)
        lines = chunk.split(b"\n")
        if self._parts:
            self._parts.append(lines[0])
            lines[0] = b"".join(self._parts)
        rest = lines.pop()
        out: list[bytes] = []
        for line in lines:
            out += self._cut(line) if len(line) > self._max else [line]
        if len(rest) >= self._max:
            pieces = self._cut(rest)
            rest = pieces.pop()
            out += pieces
        self._parts, self._pending = ([rest], len(rest)) if rest else ([], 0)
        return _records(out)

    def _cut(self, line: bytes) -> list[bytes]:
        """``line`` in ``max_line`` pieces; the last, shorter one (maybe b"") last."""
        size = self._max
        whole = len(line) - len(line) % size
        return [line[i:i + size] for i in range(0, whole, size)] + [line[whole:]]

    def finish(self) -> list[bytes]:
        """The last, unterminated line at end of stream (none if only whitespace)."""
        rest = b"".join(self._parts)
        self._parts, self._pending = [], 0
        return _records([rest] if rest.strip() else [])

    @property
    def pending(self) -> int:
        """Bytes held for the line not complete yet (less than ``max_line``)."""
        return self._pending


def _records(lines: list[bytes]) -> list[bytes]:
    return [stripped for line in lines if (stripped := line.rstrip(TRAILER))]


def events_of(
    payloads: Sequence[bytes],
    keys: KeyMaker,
    now: float,
    wall: float,
    source: tuple[str, int] | None = None,
    index: int = 0,
) -> Batch:
    """Events for ``payloads``, keyed over the payload bytes in arrival order, from
    ``source`` (the connection's peer) on feed ``index``."""
    if not payloads:
        return []
    made = keys.keys(payloads, now)
    return [
        Event(raw, key, wall, {}, False, source, index)
        for raw, key in zip(payloads, made, strict=True)
    ]


class LineSplitter:
    """Accumulates chunks and yields the complete lines as Events (NewlineFramer + keys)."""

    def __init__(
        self,
        keys: KeyMaker,
        now: Callable[[], float],
        wall: Callable[[], float],
        index: int = 0,
    ) -> None:
        self._framer = NewlineFramer(MAX_LINE)
        self._index = index
        self._keys = keys
        self._now = now
        self._wall = wall

    def feed(self, chunk: bytes) -> Batch:
        """The events completed by ``chunk``."""
        return self._events(self._framer.feed(chunk))

    def finish(self) -> Batch:
        """The last, unterminated line at end of stream."""
        return self._events(self._framer.finish())

    def _events(self, lines: list[bytes]) -> Batch:
        if not lines:
            return []
        return events_of(lines, self._keys, self._now(), self._wall(), None, self._index)
