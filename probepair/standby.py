"""What a probe that is not forwarding holds: the standby buffer of the failover machine.

PURE. Two bounded, insertion-ordered maps (DESIGN.md "Beyond OMNIbus"):

- ``events``: key -> (serialised alert, arrival time), in arrival order; capped at
  ``limit`` events and ``byte_limit`` payload bytes (the oldest goes first, counted) and
  pruned past ``retention`` seconds.
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
        "byte_limit",
        "bytes",
        "dropped_bytes",
        "dropped_full",
        "dropped_retention",
        "duplicates_avoided",
        "events",
        "limit",
        "retention",
        "unseen",
    )

    def __init__(self, limit: int, retention: float, byte_limit: int = 256 * 2**20) -> None:
        self.limit = limit
        self.byte_limit = byte_limit
        self.retention = retention
        self.events: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self.unseen: OrderedDict[bytes, float] = OrderedDict()  # acked key -> expiry
        self.bytes = 0  # payload bytes held
        self.duplicates_avoided = 0  # events dropped on arrival: the peer had acked them
        self.acked = 0  # held events removed by the peer's acks
        self.dropped_full = 0
        self.dropped_bytes = 0
        self.dropped_retention = 0

    def __len__(self) -> int:
        return len(self.events)

    def hold(self, key: bytes, payload: bytes, now: float) -> None:
        """Keep an event; past either cap the oldest is dropped (and counted)."""
        events = self.events
        old = events.pop(key, None)
        if old is not None:
            self.bytes -= len(old[0])
        events[key] = (payload, now)
        self.bytes += len(payload)
        if len(events) > self.limit:
            self.bytes -= len(events.popitem(last=False)[1][0])
            self.dropped_full += 1
        while self.bytes > self.byte_limit and len(events) > 1:
            self.bytes -= len(events.popitem(last=False)[1][0])
            self.dropped_bytes += 1

    def ack(self, keys: tuple[bytes, ...] | list[bytes], now: float) -> float | None:
        """The peer delivered ``keys``: forget them, or remember them until seen.

        Returns:
            The newest arrival time among the held events removed (None: none held).
        """
        events, unseen = self.events, self.unseen
        expiry = now + self.retention
        newest: float | None = None
        for key in keys:
            held = events.pop(key, None)
            if held is not None:
                self.acked += 1
                self.bytes -= len(held[0])
                if newest is None or held[1] > newest:
                    newest = held[1]
            else:
                unseen[key] = expiry
        while len(unseen) > self.limit:
            unseen.popitem(last=False)
        return newest

    def take_older_than(self, horizon: float) -> list[tuple[bytes, bytes]]:
        """Remove and return, in arrival order, the held events that arrived before ``horizon``."""
        events = self.events
        items: list[tuple[bytes, bytes]] = []
        while events:
            key, (payload, at) = next(iter(events.items()))
            if at >= horizon:
                break
            events.popitem(last=False)
            self.bytes -= len(payload)
            items.append((key, payload))
        return items

    def prune(self, now: float) -> None:
        """Drop held events older than ``retention`` and expired unseen keys."""
        horizon = now - self.retention
        events = self.events
        while events and next(iter(events.values()))[1] < horizon:
            self.bytes -= len(events.popitem(last=False)[1][0])
            self.dropped_retention += 1
        unseen = self.unseen
        while unseen and next(iter(unseen.values())) <= now:
            unseen.popitem(last=False)

    def drain(self, now: float) -> list[tuple[bytes, bytes]]:
        """Everything still held and within retention, in arrival order; empties it."""
        self.prune(now)
        items = [(key, payload) for key, (payload, _) in self.events.items()]
        self.events.clear()
        self.bytes = 0
        return items
