"""The Event record shared by feeds, rules and sinks, and the event key.

PURE: standard library only.

The event key is what lets two probes of a pair talk about "the same event" although
each read its own copy of the feed (DESIGN.md "Event key"): a feed-given id where the
feed has one, else a digest of the raw payload plus the payload's occurrence index among
identical payloads seen within ``window`` seconds. Both probes see the same copies at
nearly the same time, so both count the same index. Keys are 8 bytes: at the buffer
sizes a slave holds (~10^6 keys) a 64-bit collision is ~10^-7 likely, and 8-byte keys
let one ack datagram carry ~170 of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Final

KEY_SIZE: Final = 8  # bytes; see the module docstring
DEFAULT_KEY_WINDOW: Final = 5.0  # seconds; identical payloads further apart restart at index 0


@dataclass(slots=True)
class Event:
    """One input record.

    Attributes:
        raw: the record exactly as the feed delivered it (no trailing newline).
        key: the 8-byte event key, identical on both probes for the same input.
        received: wall-clock receive time (seconds since the epoch), for timestamps.
        tokens: ``$token`` values by name without ``$``; filled by the tokeniser.
    """

    raw: bytes
    key: bytes
    received: float
    tokens: dict[str, str] = field(default_factory=dict)


def _indexed(digest: bytes, index: int) -> bytes:
    if not index:
        return digest
    return blake2b(digest + index.to_bytes(4, "big"), digest_size=KEY_SIZE).digest()


def key_of(payload: bytes, index: int = 0) -> bytes:
    """The event key of ``payload`` seen for the ``index``-th time in the window.

    The same key KeyMaker gives the ``index``-th copy (index 0 is the first).
    """
    return _indexed(blake2b(payload, digest_size=KEY_SIZE).digest(), index)


class KeyMaker:
    """Computes payload-digest event keys with occurrence indexes.

    Identical payloads within ``window`` seconds of the previous copy get indexes 0, 1,
    2, ...; a payload not seen for longer than ``window`` starts at 0 again. Memory is
    bounded by the payloads seen in the last two windows (two generations of dicts,
    rotated every ``window`` seconds, so pruning is O(1) per rotation).
    """

    __slots__ = ("_cur", "_old", "_rotate_at", "window")

    def __init__(self, window: float = DEFAULT_KEY_WINDOW) -> None:
        self.window = window
        self._cur: dict[bytes, tuple[int, float]] = {}
        self._old: dict[bytes, tuple[int, float]] = {}
        self._rotate_at = -float("inf")

    def key(self, payload: bytes, now: float) -> bytes:
        """The key for ``payload`` arriving at ``now`` (a monotonic or wall time)."""
        if now >= self._rotate_at:
            # Everything in _old was last touched more than a window ago: drop it.
            self._old = self._cur
            self._cur = {}
            self._rotate_at = now + self.window
        digest = blake2b(payload, digest_size=KEY_SIZE).digest()
        seen = self._cur.get(digest) or self._old.get(digest)
        if seen is not None and now - seen[1] <= self.window:
            index = seen[0] + 1
            self._cur[digest] = (index, now)
            return _indexed(digest, index)
        self._cur[digest] = (0, now)
        return digest

    def __len__(self) -> int:
        return len(self._cur) + len(self._old)
