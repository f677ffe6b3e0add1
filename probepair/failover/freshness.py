"""Freshness: which datagrams from the peer are provably recent (PURE).

Authentication says who wrote a datagram, not when: a captured datagram replays
perfectly. Every datagram echoes the newest sequence number its sender received from us
(``echo_boot``, ``echo_seq``). We remember when we sent each sequence number, so a
datagram that echoes one we sent within ``window`` seconds was written after that send:
it is at most ``window`` old (QUIC's path validation and TCP's timestamp echo work the
same way). A replay of anything older, delivered or not, of any boot, fails the check.
"""

from __future__ import annotations

from collections import deque

from probepair.failover.wire import NO_BOOT


class Freshness:
    """Our send times, and the echo we put into what we send.

    Args:
        own_boot: our boot id (a fresh datagram echoes it).
        keep: seconds of send times to remember (at least the largest window asked).
    """

    __slots__ = ("_first_seq", "_times", "echo_boot", "echo_seq", "keep", "own_boot")

    def __init__(self, own_boot: bytes, keep: float) -> None:
        self.own_boot = own_boot
        self.keep = keep
        self._first_seq = 1
        self._times: deque[float] = deque()  # send time of seq _first_seq + i
        self.echo_boot = NO_BOOT
        self.echo_seq = 0

    def sent(self, seq: int, now: float) -> None:
        """We sent ``seq`` (consecutive from 1) at ``now``."""
        times = self._times
        if not times:
            self._first_seq = seq
        times.append(now)
        horizon = now - self.keep
        while len(times) > 1 and times[0] < horizon:
            times.popleft()
            self._first_seq += 1

    def sent_at(self, seq: int) -> float | None:
        """When we sent ``seq``, if still remembered."""
        offset = seq - self._first_seq
        if 0 <= offset < len(self._times):
            return self._times[offset]
        return None

    def age(self, echo_boot: bytes, echo_seq: int, now: float) -> float | None:
        """Seconds since we sent what the datagram echoes (None: not ours, or forgotten)."""
        if echo_boot != self.own_boot:
            return None
        at = self.sent_at(echo_seq)
        return None if at is None else now - at

    def heard(self, boot: bytes, seq: int) -> None:
        """An authenticated datagram from the peer: echo the newest one we have."""
        if boot != self.echo_boot:
            self.echo_boot, self.echo_seq = boot, seq
        elif seq > self.echo_seq:
            self.echo_seq = seq
