"""The standby buffer: bounded, ordered, pruned by age, and aware of early acks."""

from __future__ import annotations

from probepair.standby import StandbyBuffer


def K(i: int) -> bytes:
    return i.to_bytes(8, "big")


def test_holds_in_arrival_order_and_drops_the_oldest_past_the_limit() -> None:
    b = StandbyBuffer(limit=3, retention=60.0)
    for i in range(5):
        b.hold(K(i), b"p%d" % i, now=float(i))
    assert len(b) == 3 and b.dropped_full == 2
    assert b.drain(now=5.0) == [(K(2), b"p2"), (K(3), b"p3"), (K(4), b"p4")]
    assert len(b) == 0


def test_acks_remove_held_events_and_remember_keys_not_seen_yet() -> None:
    b = StandbyBuffer(limit=10, retention=30.0)
    b.hold(K(1), b"one", now=0.0)
    b.ack([K(1), K(2)], now=1.0)
    assert len(b) == 0 and b.acked == 1
    assert b.unseen == {K(2): 31.0}  # expires one retention after the ack


def test_prune_drops_events_past_retention_and_expired_unseen_keys() -> None:
    b = StandbyBuffer(limit=10, retention=10.0)
    b.hold(K(1), b"old", now=0.0)
    b.hold(K(2), b"new", now=5.0)
    b.ack([K(9)], now=0.0)
    b.prune(now=10.5)
    assert list(b.events) == [K(2)] and b.dropped_retention == 1
    assert b.unseen == {}
    assert b.drain(now=16.0) == []  # K(2) is past retention by then too
    assert b.dropped_retention == 2
