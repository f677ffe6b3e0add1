"""The ack stream between the two probes, both directions (PURE).

Acks are what let the standby forget events the active side delivered, so their loss
costs duplicates and their replay could cost events. The stream is made reliable the
way a transport would: every ack datagram has a per-boot serial; the receiver reports in
its heartbeats how far it holds the serials without a hole (``acks_heard``, counted
from the sender's ``ack_base``); the sender keeps what it sent for a while (``AckLog``)
and re-sends every serial the peer should have had by the datagram it echoes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class SentAck:
    """One ack datagram as sent: its serial, the seq it last went out with, when, keys."""

    serial: int
    seq: int
    sent_at: float
    keys: tuple[bytes, ...]


class AckLog:
    """The ack datagrams this probe sent recently, for re-sending.

    Args:
        keep: seconds an ack is kept for re-sending (the buffer retention: a peer holds
            nothing older).
        max_keys: at most this many keys are kept (the oldest go first).
    """

    __slots__ = ("_entries", "_keys", "keep", "max_keys", "serial")

    def __init__(self, keep: float, max_keys: int) -> None:
        self.keep = keep
        self.max_keys = max_keys
        self.serial = 0  # serial of the last ack datagram sent
        self._entries: deque[SentAck] = deque()
        self._keys = 0

    def add(self, keys: tuple[bytes, ...], seq: int, now: float) -> int:
        """Record a new ack datagram sent as ``seq``; returns its serial."""
        self.serial += 1
        self._entries.append(SentAck(self.serial, seq, now, keys))
        self._keys += len(keys)
        self.prune(now)
        return self.serial

    def prune(self, now: float) -> None:
        """Forget acks older than ``keep`` and keys beyond ``max_keys``."""
        entries, horizon = self._entries, now - self.keep
        while entries and (entries[0].sent_at < horizon or self._keys > self.max_keys):
            self._keys -= len(entries.popleft().keys)

    def base(self, now: float, lookback: float) -> int:
        """The first serial sent at or after ``now - lookback`` (or the next one)."""
        horizon = now - lookback
        for entry in self._entries:
            if entry.sent_at >= horizon:
                return entry.serial
        return self.serial + 1

    def missing(self, heard: int, echo_seq: int) -> list[SentAck]:
        """Acks above ``heard`` that went out before the datagram the peer echoes.

        The peer had received our datagram ``echo_seq``; an ack sent before it that the
        peer still lacks was most likely lost.
        """
        return [e for e in self._entries if e.serial > heard and e.seq < echo_seq]

    def since(self, serial: int) -> list[SentAck]:
        """Every kept ack from ``serial`` on."""
        return [e for e in self._entries if e.serial >= serial]


class AckStream:
    """The ack serials received from one boot of the peer.

    ``through`` is the highest serial such that every serial from the peer's
    ``ack_base`` up to it has arrived (``base - 1`` until then; ``None`` while the base
    is unknown). A hole that stays open longer than ``hole_timeout`` is skipped: the
    peer no longer has that ack to re-send.
    """

    __slots__ = ("_got", "_hole_since", "base", "boot", "through")

    def __init__(self, boot: bytes) -> None:
        self.boot = boot
        self.base: int | None = None
        self.through: int | None = None
        self._got: set[int] = set()
        self._hole_since = math.inf

    def receive(self, serial: int) -> bool:
        """Note ``serial``; False if it was already received (ignore its keys)."""
        if (self.through is not None and serial <= self.through) or serial in self._got:
            return False
        self._got.add(serial)
        return True

    def set_base(self, base: int) -> None:
        """The peer says its acks for us start at ``base``."""
        if self.base is None or base > self.base:
            self.base = base
            if self.through is None or self.through < base - 1:
                self.through = base - 1

    def advance(self, now: float, hole_timeout: float) -> bool:
        """Move ``through`` over what arrived; True if it moved."""
        if self.through is None:
            return False
        before, got = self.through, self._got
        while self.through + 1 in got:
            self.through += 1
        if got and min(got) <= self.through:
            self._got = got = {s for s in got if s > self.through}
        if got:  # a hole below the smallest serial received
            if self._hole_since == math.inf:
                self._hole_since = now
            elif now >= self._hole_since + hole_timeout:  # as next_deadline computes it
                self.through = min(got) - 1
                self._hole_since = math.inf
                return self.advance(now, hole_timeout) or True
        else:
            self._hole_since = math.inf
        return self.through != before

    def restart_hole(self, now: float) -> None:
        """An open hole is as if first seen at ``now`` (we could not hear its re-send)."""
        if self._hole_since != math.inf:
            self._hole_since = now

    @property
    def has_hole(self) -> bool:
        """True while a serial below one already received is missing."""
        return bool(self._got) and self.through is not None

    @property
    def hole_since(self) -> float:
        """When the open hole was first seen (inf: none open); skipped a timeout later."""
        return self._hole_since
