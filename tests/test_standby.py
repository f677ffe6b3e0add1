"""The standby buffer: bounded in events and bytes, ordered, pruned by age, aware of
early acks; its accounting is exact and its blocks are released as events leave."""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from probepair.failover.buffer import EVENT_COST, PAGE, StandbyBuffer


def K(i: int) -> bytes:
    return i.to_bytes(8, "big")


def P(i: int, size: int = 10) -> bytes:
    return (b"%d:" % i).ljust(size, b"x")


def test_holds_in_arrival_order_and_drops_the_oldest_past_the_limit() -> None:
    b = StandbyBuffer(limit=3, retention=60.0, byte_limit=1 << 20)
    for i in range(5):
        b.hold(K(i), b"p%d" % i, now=float(i))
    assert len(b) == 3 and b.dropped_full == 2 and b.dropped_bytes == 0
    assert b.bytes == 6
    assert b.drain(now=5.0) == [(K(2), b"p2"), (K(3), b"p3"), (K(4), b"p4")]
    assert len(b) == 0 and b.bytes == 0


def test_past_the_byte_limit_the_oldest_go_counted_as_dropped_bytes() -> None:
    # The cap counts each event's payload plus EVENT_COST of bookkeeping.
    b = StandbyBuffer(limit=100, retention=60.0, byte_limit=3 * (100 + EVENT_COST) + 50)
    for i in range(5):
        b.hold(K(i), P(i, 100), now=float(i))
    assert len(b) == 3 and b.bytes == 300
    assert b.dropped_bytes == 2 and b.dropped_full == 0
    assert [k for k, _ in b.drain(now=5.0)] == [K(2), K(3), K(4)]


def test_an_event_larger_than_the_byte_limit_is_held_alone() -> None:
    b = StandbyBuffer(limit=100, retention=60.0, byte_limit=1000)
    b.hold(K(1), P(1, 10), now=0.0)
    b.hold(K(2), P(2, 1000), now=1.0)
    assert len(b) == 1 and b.bytes == 1000 and b.dropped_bytes == 1
    b.hold(K(3), P(3, 10), now=2.0)
    assert b.dropped_bytes == 2
    assert b.drain(now=3.0) == [(K(3), P(3, 10))]


def test_acks_remove_held_events_and_remember_keys_not_seen_yet() -> None:
    b = StandbyBuffer(limit=10, retention=30.0, byte_limit=1 << 20)
    b.hold(K(1), b"one", now=0.0)
    b.hold(K(3), b"three", now=0.5)
    assert b.ack([K(1), K(2)], now=1.0) == 0.0  # the newest arrival among those removed
    assert len(b) == 1 and b.acked == 1 and b.bytes == 5
    assert b.unseen == {K(2): 31.0}  # expires one retention after the ack
    assert b.ack([K(4)], now=2.0) is None  # nothing held was removed
    assert b.ack([K(3)], now=2.0) == 0.5
    assert len(b) == 0 and b.bytes == 0 and b.acked == 2


def test_take_older_than_returns_the_prefix_in_arrival_order() -> None:
    b = StandbyBuffer(limit=10, retention=60.0, byte_limit=1 << 20)
    for i in range(6):
        b.hold(K(i), P(i), now=float(i))
    b.ack([K(1)], now=6.0)
    assert b.take_older_than(3.0) == [(K(0), P(0)), (K(2), P(2))]
    assert b.take_older_than(3.0) == []
    assert len(b) == 3 and b.bytes == 30
    assert b.take_older_than(float("inf")) == [(K(3), P(3)), (K(4), P(4)), (K(5), P(5))]
    assert b.bytes == 0 and b.dropped_retention == 0


def test_prune_drops_events_past_retention_and_expired_unseen_keys() -> None:
    b = StandbyBuffer(limit=10, retention=10.0, byte_limit=1 << 20)
    b.hold(K(1), b"old", now=0.0)
    b.hold(K(2), b"new", now=5.0)
    b.ack([K(9)], now=0.0)
    b.prune(now=10.5)
    assert list(b.index) == [K(2)] and b.dropped_retention == 1
    assert b.unseen == {}
    assert b.drain(now=16.0) == []  # K(2) is past retention by then too
    assert b.dropped_retention == 2


def test_a_key_held_again_replaces_the_first_copy() -> None:
    b = StandbyBuffer(limit=10, retention=60.0, byte_limit=1 << 20)
    b.hold(K(1), b"first", now=0.0)
    b.hold(K(2), b"two", now=1.0)
    b.hold(K(1), b"again", now=2.0)
    assert len(b) == 2 and b.bytes == 8
    assert b.drain(now=3.0) == [(K(2), b"two"), (K(1), b"again")]


def test_blocks_are_released_as_events_leave() -> None:
    b = StandbyBuffer(limit=100_000, retention=60.0, byte_limit=1 << 30, block_size=4096)
    for i in range(3 * PAGE):  # several metadata pages and ~750 blocks
        b.hold(K(i), P(i, 1000), now=i * 1e-3)
    assert b.bytes == 3 * PAGE * 1000
    assert b.bytes <= b.footprint <= b.bytes * 4096 // 4000 + 2 * 4096  # 4 a block
    b.ack([K(i) for i in range(0, 3 * PAGE - 10)], now=20.0)
    assert len(b) == 10 and b.bytes == 10_000
    assert b.footprint <= 4 * 4096  # only the blocks the last ten sit in
    assert [k for k, _ in b.drain(now=20.0)] == [K(i) for i in range(3 * PAGE - 10, 3 * PAGE)]
    assert b.footprint <= 4096 and b.bytes == 0


def test_a_payload_larger_than_a_block_gets_a_block_of_its_own() -> None:
    b = StandbyBuffer(limit=10, retention=60.0, byte_limit=1 << 20, block_size=4096)
    big = P(2, 10_000)
    b.hold(K(1), P(1), now=0.0)
    b.hold(K(2), big, now=1.0)
    b.hold(K(3), P(3), now=2.0)
    assert b.drain(now=3.0) == [(K(1), P(1)), (K(2), big), (K(3), P(3))]
    assert b.footprint <= 4096


def test_survivors_scattered_over_many_blocks_cannot_pin_more_than_the_byte_cap() -> None:
    # One event in 32 (one block in 8) is passed over by the acks: the footprint stays
    # bounded (byte_limit + a quarter + two blocks) by dropping the oldest.
    b = StandbyBuffer(limit=1_000_000, retention=60.0, byte_limit=64 * 4096, block_size=4096)
    for i in range(4000):
        b.hold(K(i), P(i, 1000), now=i * 1e-3)
        if i % 8 == 7:
            b.ack([K(j) for j in range(i - 7, i + 1) if j % 32], now=i * 1e-3)
    assert b.footprint <= 64 * 4096 + 16 * 4096 + 2 * 4096
    assert b.dropped_bytes > 0 and len(b) + b.acked + b.dropped_bytes == 4000


ops = st.lists(
    st.one_of(
        # At most 80 x 100 bytes are written: two blocks, so the footprint cap (which
        # the model leaves out) cannot fire.
        st.tuples(st.just("hold"), st.integers(0, 40), st.integers(0, 100)),
        st.tuples(st.just("ack"), st.lists(st.integers(0, 40), max_size=6)),
        st.tuples(st.just("take"), st.integers(0, 30)),
        st.tuples(st.just("prune"), st.integers(0, 30)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_matches_a_model_of_ordered_dict_with_caps(script: list[tuple[object, ...]]) -> None:
    limit, byte_limit, retention = 6, 3 * EVENT_COST + 300, 8.0
    b = StandbyBuffer(limit, retention, byte_limit, block_size=4096)
    model: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
    dropped_full = dropped_bytes = dropped_retention = 0
    now = 0.0
    for op in script:
        now += 0.5
        if op[0] == "hold":
            _, i, size = op
            assert isinstance(i, int) and isinstance(size, int)
            model.pop(K(i), None)
            model[K(i)] = (P(i, size), now)
            b.hold(K(i), P(i, size), now)
            if len(model) > limit:
                model.popitem(last=False)
                dropped_full += 1
            while (
                len(model) > 1 and sum(len(p) + EVENT_COST for p, _ in model.values()) > byte_limit
            ):
                model.popitem(last=False)
                dropped_bytes += 1
        elif op[0] == "ack":
            keys = [K(i) for i in op[1]]  # type: ignore[attr-defined]
            removed = [model.pop(k)[1] for k in dict.fromkeys(keys) if k in model]
            assert b.ack(keys, now) == (max(removed) if removed else None)
        elif op[0] == "take":
            horizon = now - float(op[1])  # type: ignore[arg-type]
            want = [(k, p) for k, (p, t) in model.items() if t < horizon]
            for k, _ in want:
                del model[k]
            assert b.take_older_than(horizon) == want
        else:
            horizon = now - retention
            old = [k for k, (_, t) in model.items() if t < horizon]
            for k in old:
                del model[k]
            dropped_retention += len(old)
            b.prune(now)
        assert len(b) == len(model)
        assert b.bytes == sum(len(p) for p, _ in model.values())
        assert b.bytes <= b.footprint <= 2 * 4096
        assert (b.dropped_full, b.dropped_bytes) == (dropped_full, dropped_bytes)
        assert b.dropped_retention == dropped_retention
    assert b.drain(now) == [(k, p) for k, (p, t) in model.items() if t >= now - retention]
    assert len(b) == 0 and b.bytes == 0


def test_the_oldest_held_event_is_known_across_acks_and_pages() -> None:
    # Its age goes into every heartbeat: a peer that first hears us re-sends its acks of
    # that long (a standby that froze before the master heard it).
    b = StandbyBuffer(limit=4 * PAGE, retention=600.0)
    assert b.oldest_at() is None
    for i in range(PAGE + 5):
        b.hold(K(i), b"p", now=1.0 + i / PAGE)
    assert b.oldest_at() == 1.0
    b.ack([K(0)], now=3.0)
    assert b.oldest_at() == 1.0 + 1 / PAGE
    b.ack([K(i) for i in range(1, PAGE + 2)], now=3.0)  # the whole first page, and more
    assert b.oldest_at() == 1.0 + (PAGE + 2) / PAGE
    b.drain(now=3.0)
    assert b.oldest_at() is None
