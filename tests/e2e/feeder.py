"""A paced UDP sender that gives both probes of a pair the very same datagrams.

The event key is a digest of the payload (``probepair.events``), so both copies of an
event must be byte-identical; a sender that stamps each copy (``logger``) would give the
two probes different keys. Every payload here is unique (a run tag and a sequence
number), so its key is ``key_of(payload)`` with occurrence index 0, and the test can
compute the set of keys that must reach the sinks without asking the probes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence

import trio

from probepair.events import key_of

DEFAULT_RATE = 1000.0  # events per second: ~100 events per 100 ms ack interval
TICK = 0.01  # seconds between two bursts; a burst is rate * TICK events


def payload(tag: str, seq: int) -> bytes:
    """The datagram of event ``seq`` (unique per tag and seq)."""
    return b"pp-e2e %s seq=%08d padding=%s" % (tag.encode(), seq, b"x" * 120)


class Feeder:
    """Sends event after event to every target, at ``rate`` per second.

    Each event goes to all targets back to back from one socket, in the same order, so
    both probes see the same sequence. Send errors (a killed probe's ICMP port
    unreachable, a link that is down) are counted and the event stays expected: the
    other probe still got it.

    Args:
        targets: the probes' feed addresses.
        rate: events per second.
        tag: distinguishes this run's payloads (random by default).
        bind: source address (for a feed network other than loopback).
    """

    def __init__(self, targets: Sequence[tuple[str, int]], *, rate: float = DEFAULT_RATE,
                 tag: str | None = None, bind: str | None = None) -> None:
        self.targets = list(targets)
        self.rate = rate
        self.tag = tag or os.urandom(4).hex()
        self.bind = bind
        self.sent = 0
        self.send_errors = 0
        self._stop = trio.Event()
        self._progress = trio.Event()

    def payload(self, seq: int) -> bytes:
        """The datagram of event ``seq`` (a subclass sends another kind: SNMP traps)."""
        return payload(self.tag, seq)

    def key(self, seq: int) -> str:
        """The hex event key the probes give event ``seq``."""
        return key_of(self.payload(seq)).hex()

    def keys(self, start: int = 0, stop: int | None = None) -> set[str]:
        """Hex event keys of events ``start`` up to ``stop`` (default: all sent so far)."""
        end = self.sent if stop is None else stop
        return {self.key(i) for i in range(start, end)}

    def seqs(self, keys: Iterable[str]) -> list[int]:
        """The sequence numbers of these hex keys (sorted), for readable failures."""
        wanted = set(keys)
        return [i for i in range(self.sent) if self.key(i) in wanted]

    def stop(self) -> None:
        """Stop after the current burst."""
        self._stop.set()

    async def wait_sent(self, count: int) -> None:
        """Wait until at least ``count`` events were sent (callers bound it)."""
        while self.sent < count:
            await self._progress.wait()

    async def wait_traffic(self, seconds: float) -> None:
        """Wait until ``seconds`` more of traffic went out (bounded by a generous timeout)."""
        with trio.fail_after(seconds * 5 + 5):
            await self.wait_sent(self.sent + int(self.rate * seconds))

    async def run(self, count: int | None = None) -> None:
        """Send until ``count`` events (None: until ``stop()``), paced at ``rate``.

        The schedule is absolute (burst ``n`` at ``start + n * TICK``), so a late wake-up
        sends a bigger burst instead of lowering the rate.
        """
        # A plain blocking socket: a UDP send completes at once (or fails), and an event
        # must never be skipped for one target because a send buffer was briefly full.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            if self.bind:
                sock.bind((self.bind, 0))
            start = trio.current_time()
            burst = 0
            while not self._stop.is_set() and (count is None or self.sent < count):
                burst += 1
                due = int(burst * TICK * self.rate)
                if count is not None:
                    due = min(due, count)
                while self.sent < due:
                    data = self.payload(self.sent)
                    for target in self.targets:
                        try:
                            sock.sendto(data, target)
                        except OSError:
                            self.send_errors += 1
                    self.sent += 1
                self._progress.set()
                self._progress = trio.Event()
                await trio.sleep_until(start + burst * TICK)
        self._progress.set()


async def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tests.e2e.feeder --rate R --count N --tag T HOST:PORT...``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("targets", nargs="+", help="HOST:PORT of each probe's feed")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--tag", default=None)
    args = parser.parse_args(argv)
    targets = [(h, int(p)) for h, _, p in (t.rpartition(":") for t in args.targets)]
    feeder = Feeder(targets, rate=args.rate, tag=args.tag)
    await feeder.run(args.count)
    print(f"sent {feeder.sent} tag {feeder.tag} errors {feeder.send_errors}", flush=True)


if __name__ == "__main__":
    trio.run(main)
