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

from collections.abc import Iterable
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
        from_probe: True only for the probe's own ProbeWatch events
            (``pipeline.self_event``); no feed sets it, whatever a record holds.
        source: the sender's (address, port) for a network feed (None: a file, stdin,
            or a feed that does not know), IPv4-mapped IPv6 senders shown as IPv4. The
            rules read it as ``$PeerAddress`` and ``$PeerPort``. Never part of the key:
            the two probes may hear the same message from different addresses (a
            relay, NAT, two feeds).
        feed: the index (from 0) in ``Feeds`` of the feed the event came in on, which
            decides its format (0 for the one-feed shorthand and for self-events).
    """

    raw: bytes
    key: bytes
    received: float
    tokens: dict[str, str] = field(default_factory=dict)
    from_probe: bool = False
    source: tuple[str, int] | None = None
    feed: int = 0


# A blake2b state with the key parameters set, copied per digest: copy() + update()
# costs ~0.35 µs where blake2b(data, digest_size=...) re-parses its parameter block
# (~0.5 µs). The digests are the same.
_BLAKE2B: Final = blake2b(digest_size=KEY_SIZE)
# Index bytes for the common small occurrence indexes, computed once (hot path).
_INDEX_BYTES: Final = tuple(i.to_bytes(4, "big") for i in range(4096))


# A feed's unit of hand-off, and a sink's: (8-byte event key, serialised alert without
# its newline). Here rather than in feeds/ and sinks/, so the channels between the stages
# depend on neither.
Batch = list[Event]
Item = tuple[bytes, bytes]


def _indexed(digest: bytes, index: int) -> bytes:
    if not index:
        return digest
    h = _BLAKE2B.copy()
    h.update(digest + (_INDEX_BYTES[index] if index < 4096 else index.to_bytes(4, "big")))
    return h.digest()


def key_of(payload: bytes, index: int = 0) -> bytes:
    """The event key of ``payload`` seen for the ``index``-th time in the window.

    The same key KeyMaker gives the ``index``-th copy (index 0 is the first).
    """
    h = _BLAKE2B.copy()
    h.update(payload)
    return _indexed(h.digest(), index)


# Keys of alerts that rules derive from an event (genevent): a digest of the event's
# key and the alert's index under its own personalisation, so a derived key never
# equals a payload key. Both probes run the same rules on the same event, so both
# derive the same keys, and the failover gate treats derived alerts like any other.
_DERIVED: Final = blake2b(digest_size=KEY_SIZE, person=b"probepair-gen")


def derived_key(key: bytes, index: int) -> bytes:
    """The key of the ``index``-th alert (from 0) that the rules generated for ``key``."""
    h = _DERIVED.copy()
    h.update(key + index.to_bytes(4, "big"))
    return h.digest()


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
        return self.keys((payload,), now)[0]

    def keys(self, payloads: Iterable[bytes], now: float) -> list[bytes]:
        """The keys for ``payloads``, in order, all arriving at ``now``.

        The same keys as calling :meth:`key` for each in turn, at a fraction of the
        per-call cost (feeds read records in batches that share one receive time).
        """
        if now >= self._rotate_at:
            # Everything in _old was last touched more than a window ago: drop it.
            self._old = self._cur
            self._cur = {}
            self._rotate_at = now + self.window
        cur = self._cur
        cur_get = cur.get
        old_get = self._old.get
        window = self.window
        copy = _BLAKE2B.copy
        index_bytes = _INDEX_BYTES
        out: list[bytes] = []
        append = out.append
        for payload in payloads:
            h = copy()
            h.update(payload)
            digest = h.digest()
            seen = cur_get(digest) or old_get(digest)
            if seen is not None and now - seen[1] <= window:
                index = seen[0] + 1
                cur[digest] = (index, now)
                h = copy()
                h.update(
                    digest + (index_bytes[index] if index < 4096 else index.to_bytes(4, "big"))
                )
                append(h.digest())
            else:
                cur[digest] = (0, now)
                append(digest)
        return out

    def __len__(self) -> int:
        return len(self._cur) + len(self._old)
