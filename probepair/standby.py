"""What a probe that is not forwarding holds: the standby buffer of the failover machine.

PURE. Two bounded, insertion-ordered maps (DESIGN.md "Beyond OMNIbus"):

- ``events``: key -> (serialised alert, arrival time), in arrival order; capped at
  ``limit`` (the oldest goes first, counted) and pruned past ``retention`` seconds.
- ``unseen``: keys the peer acked before this probe saw the event (the peer's copy of
  the feed can be faster) -> expiry; such an event is dropped on arrival.

The machine reads ``unseen`` and calls ``hold`` on its hot path, so both stay plain
dicts without indirection.
"""

from __future__ import annotations

from collections import OrderedDict


class StandbyBuffer:
    """Events held un-forwarded, and keys acked before they were seen."""

    __slots__ = (
        "acked",
        "dropped_full",
        "dropped_retention",
        "duplicates_avoided",
        "events",
        "limit",
        "retention",
        "unseen",
    )

    def __init__(self, limit: int, retention: float) -> None:
        self.limit = limit
        self.retention = retention
        self.events: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self.unseen: OrderedDict[bytes, float] = OrderedDict()  # acked key -> expiry
        self.duplicates_avoided = 0  # events dropped on arrival: the peer had acked them
        self.acked = 0  # held events removed by the peer's acks
        self.dropped_full = 0
        self.dropped_retention = 0

    def __len__(self) -> int:
        return len(self.events)

    def hold(self, key: bytes, payload: bytes, now: float) -> None:
        """Keep an event; past ``limit`` the oldest is dropped (and counted)."""
        events = self.events
        events[key] = (payload, now)
        if len(events) > self.limit:
            events.popitem(last=False)
            self.dropped_full += 1

    def ack(self, keys: tuple[bytes, ...] | list[bytes], now: float) -> None:
        """The peer delivered ``keys``: forget them, or remember them until seen."""
        events, unseen = self.events, self.unseen
        expiry = now + self.retention
        for key in keys:
            if events.pop(key, None) is not None:
                self.acked += 1
            else:
                unseen[key] = expiry
        while len(unseen) > self.limit:
            unseen.popitem(last=False)

    def prune(self, now: float) -> None:
        """Drop held events older than ``retention`` and expired unseen keys."""
        horizon = now - self.retention
        events = self.events
        while events and next(iter(events.values()))[1] < horizon:
            events.popitem(last=False)
            self.dropped_retention += 1
        unseen = self.unseen
        while unseen and next(iter(unseen.values())) <= now:
            unseen.popitem(last=False)

    def drain(self, now: float) -> list[tuple[bytes, bytes]]:
        """Everything still held and within retention, in arrival order; empties it."""
        self.prune(now)
        items = [(key, payload) for key, (payload, _) in self.events.items()]
        self.events.clear()
        return items
