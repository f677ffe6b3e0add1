"""Event keys: both probes of a pair compute the same key for the same input."""

from __future__ import annotations

import random

from probepair.events import KEY_SIZE, Event, KeyMaker, key_of


def test_event_defaults() -> None:
    ev = Event(b"raw", key_of(b"raw"), 1.5)
    assert ev.tokens == {}
    assert len(ev.key) == KEY_SIZE


def test_first_copy_is_the_payload_digest() -> None:
    km = KeyMaker(window=5.0)
    assert km.key(b"disk full", 0.0) == key_of(b"disk full")
    assert km.key(b"disk ok", 0.0) == key_of(b"disk ok")
    assert key_of(b"disk full") != key_of(b"disk ok")


def test_identical_payloads_are_numbered() -> None:
    km = KeyMaker(window=5.0)
    keys = [km.key(b"same", t) for t in (0.0, 0.1, 0.2, 0.3)]
    assert keys == [key_of(b"same", i) for i in range(4)]
    assert len(set(keys)) == 4
    assert km.key(b"other", 0.4) == key_of(b"other", 0)


def test_numbering_follows_the_previous_copy_not_the_first() -> None:
    km = KeyMaker(window=5.0)
    # each copy is within the window of the one before, so the index keeps counting
    keys = [km.key(b"p", t) for t in (0.0, 4.0, 8.0, 12.5, 17.0)]
    assert keys == [key_of(b"p", i) for i in range(5)]


def test_repeat_after_more_than_window_restarts_at_zero() -> None:
    km = KeyMaker(window=5.0)
    assert km.key(b"p", 0.0) == key_of(b"p", 0)
    assert km.key(b"p", 1.0) == key_of(b"p", 1)
    assert km.key(b"p", 6.001) == key_of(b"p", 0)
    assert km.key(b"p", 7.0) == key_of(b"p", 1)
    assert km.key(b"p", 100.0) == key_of(b"p", 0)


def test_window_boundary() -> None:
    # "within window seconds of the previous copy" includes exactly window seconds
    km = KeyMaker(window=5.0)
    assert km.key(b"p", 10.0) == key_of(b"p", 0)
    assert km.key(b"p", 15.0) == key_of(b"p", 1)
    assert km.key(b"p", 20.0) == key_of(b"p", 2)
    assert km.key(b"p", 25.25) == key_of(b"p", 0)
    # the same boundary when a rotation happens between the copies
    km = KeyMaker(window=0.5)
    assert km.key(b"q", 0.0) == key_of(b"q", 0)
    assert km.key(b"x", 0.75) == key_of(b"x", 0)  # rotates at 0.75; q stays in the old dict
    assert km.key(b"q", 0.5) == key_of(b"q", 1)
    assert km.key(b"q", 1.0 + 1 / 1024) == key_of(b"q", 0)


def stream(seed: int, n: int = 3000) -> list[tuple[bytes, float]]:
    rng = random.Random(seed)
    payloads = [b"<13>Oct 11 22:14:15 web%d sshd: failed" % i for i in range(8)]
    t = 0.0
    out = []
    for _ in range(n):
        t += rng.choice([0.0, 0.001, 0.01, 0.5, 7.0])  # bursts, and gaps beyond the window
        out.append((rng.choice(payloads), t))
    return out


def test_two_probes_compute_the_same_keys() -> None:
    rng = random.Random(7)
    master, slave = KeyMaker(window=5.0), KeyMaker(window=5.0)
    events = stream(seed=1)
    ours = [master.key(p, t) for p, t in events]
    # the slave reads the same copies 0.2 s later, with up to 1 ms of jitter each
    theirs = [slave.key(p, t + 0.2 + rng.uniform(0, 0.001)) for p, t in events]
    assert ours == theirs
    # the stream really exercises numbering (many indexes) and restarts (keys recur)
    assert len(set(ours)) > 40
    assert len(set(ours)) < len(ours) / 10


def test_memory_is_bounded_by_two_windows() -> None:
    km = KeyMaker(window=1.0)
    for i in range(20_000):
        t = i * 0.001  # 1000 distinct payloads per window
        km.key(b"%d" % i, t)
        assert len(km) <= 2001  # the current and the previous window's payloads
    assert len(km) >= 1000


def test_wall_times_work_too() -> None:
    km = KeyMaker(window=5.0)
    assert km.key(b"p", 1_700_000_000.0) == key_of(b"p", 0)
    assert km.key(b"p", 1_700_000_003.0) == key_of(b"p", 1)
