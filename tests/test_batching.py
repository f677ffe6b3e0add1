"""Batching (issue 13): the UDP feed's batching in time (BatchLatency), and the
processor's gate consulted once per batch.

A real loopback socket and trio's MockClock without autojump: datagrams are in the
socket as soon as ``sendto`` returns, ``wait_all_tasks_blocked`` lets the feed react to
them, and the batching window only ends when the test jumps the clock. No wall-clock
waits, no timed assertions.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import trio
from prometheus_client import CollectorRegistry
from trio.testing import MockClock, wait_all_tasks_blocked

from probepair.config import props
from probepair.errors import ConfigError
from probepair.events import Batch, Event, Item, key_of
from probepair.feeds import udp
from probepair.feeds.udp import UdpFeed
from probepair.metrics import Metrics
from probepair.pair.driver import PeerDriver
from probepair.pair.observer import build_driver
from probepair.pipeline.processor import Processor

Clock = Callable[[], float]


def make(**values: object) -> props.Props:
    return props.load([("test", {"FeedAddress": "127.0.0.1", "FeedPort": 0, **values})])


def pending(recv: trio.MemoryReceiveChannel[Batch]) -> list[list[bytes]]:
    """The batches handed on so far, as lists of raw payloads."""
    batches = []
    while True:
        try:
            batches.append([ev.raw for ev in recv.receive_nowait()])
        except (trio.WouldBlock, trio.EndOfChannel):
            return batches


async def test_datagrams_wait_for_company_then_go_as_one_batch(
    mock_clock: MockClock, wall_clock: Clock
) -> None:
    feed = UdpFeed(make(BatchLatency=50), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(feed.run, send)
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.sendto(b"one", address)
            await wait_all_tasks_blocked()
            assert pending(recv) == []  # readable, but the window is open
            await sock.sendto(b"two", address)
            await sock.sendto(b"three", address)
            mock_clock.jump(0.049)
            await wait_all_tasks_blocked()
            assert pending(recv) == []
            mock_clock.jump(0.001)
            await wait_all_tasks_blocked()
            assert pending(recv) == [[b"one", b"two", b"three"]]
            # Traffic is flowing: the feed polls again one window later, without a
            # wake-up per datagram, and hands on what came meanwhile.
            await sock.sendto(b"four", address)
            await sock.sendto(b"five", address)
            await wait_all_tasks_blocked()
            assert pending(recv) == []
            mock_clock.jump(0.05)
            await wait_all_tasks_blocked()
            assert pending(recv) == [[b"four", b"five"]]
            # A quiet window: the feed goes back to waiting for readability.
            mock_clock.jump(0.05)
            await wait_all_tasks_blocked()
            assert pending(recv) == []
            await sock.sendto(b"six", address)
            await wait_all_tasks_blocked()
            assert pending(recv) == []
            mock_clock.jump(0.05)
            await wait_all_tasks_blocked()
            assert pending(recv) == [[b"six"]]
        nursery.cancel_scope.cancel()


async def test_batch_latency_zero_hands_each_datagram_on_at_once(
    mock_clock: MockClock, wall_clock: Clock
) -> None:
    feed = UdpFeed(make(BatchLatency=0), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(feed.run, send)
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.sendto(b"one", address)
            await wait_all_tasks_blocked()
            assert pending(recv) == [[b"one"]]
            await sock.sendto(b"two", address)
            await wait_all_tasks_blocked()
            assert pending(recv) == [[b"two"]]
        nursery.cancel_scope.cancel()


async def test_a_stop_during_the_window_hands_on_what_was_queued(
    mock_clock: MockClock, wall_clock: Clock
) -> None:
    feed = UdpFeed(make(BatchLatency=50), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(feed.run, send)
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.sendto(b"one", address)
            await wait_all_tasks_blocked()
            await sock.sendto(b"two", address)
        nursery.cancel_scope.cancel(reason="stop")
    assert pending(recv) == [[b"one", b"two"]]


def test_batch_latency_is_bounded() -> None:
    assert make().BatchLatency == props.BATCH_LATENCY_MS
    with pytest.raises(ConfigError, match=r"BatchLatency.*between 0 and 1000"):
        make(BatchLatency=1001)


# --- the processor's gate, once per batch ------------------------------------------------


def pair_processor(mode: str, **values: object) -> tuple[Processor, PeerDriver]:
    p = props.load([("test", {"Mode": mode, "PeerHost": "127.0.0.1", "PeerPort": 9,
                              "FeedPort": 0, "FeedFormat": "line", "RulesFile": "",
                              **values})])
    metrics = Metrics(CollectorRegistry())
    flush_send, _ = trio.open_memory_channel[list[Item]](1)
    driver, _, _ = build_driver(p, metrics, flush_send)
    return Processor(p, None, driver, metrics, lambda: 1.0), driver


def line(raw: bytes) -> Event:
    return Event(raw, key_of(raw), 1.0)


async def test_a_standby_slave_holds_the_whole_batch(autojump_clock: MockClock) -> None:
    processor, driver = pair_processor("slave")
    assert processor.process([line(b"a"), line(b"b")]) == []
    assert driver.machine.buffer_depth == 2


async def test_a_stalled_master_steps_down_before_it_forwards_a_batch(
    autojump_clock: MockClock,
) -> None:
    processor, driver = pair_processor("master", Failback="immediate")
    machine = driver.machine
    machine.tick(trio.current_time())  # the first beat arms the stall deadline
    assert machine.active
    assert [k for k, _ in processor.process([line(b"a")])] == [key_of(b"a")]
    # Asleep (SIGSTOP, a frozen VM) past the silence bound: the first batch after it
    # runs the overdue timers before anything is forwarded, and is held.
    await trio.sleep_until(machine.stall_at + 1.0)
    assert processor.process([line(b"b"), line(b"c")]) == []
    assert not machine.active
    assert machine.buffer_depth == 2


async def test_the_window_shrinks_to_what_gathers_a_full_batch(
    mock_clock: MockClock, wall_clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(udp, "BATCH_TARGET", 2)
    feed = UdpFeed(make(BatchLatency=100), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(feed.run, send)
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for raw in (b"1", b"2", b"3", b"4"):
                await sock.sendto(raw, address)
            await wait_all_tasks_blocked()
            mock_clock.jump(0.1)
            await wait_all_tasks_blocked()
            assert pending(recv) == [[b"1", b"2", b"3", b"4"]]
            # 4 datagrams in 100 ms: 2 (the target) take 50 ms at that rate.
            await sock.sendto(b"5", address)
            await sock.sendto(b"6", address)
            mock_clock.jump(0.049)
            await wait_all_tasks_blocked()
            assert pending(recv) == []
            mock_clock.jump(0.001)
            await wait_all_tasks_blocked()
            assert pending(recv) == [[b"5", b"6"]]
        nursery.cancel_scope.cancel()


async def test_the_window_is_sized_from_every_drain_since_the_last_sleep(
    mock_clock: MockClock, wall_clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sustained rate whose windows take several drains, the last one short (at 100k/s
    # a 10 ms window is 1,000+ datagrams in drains of 512). Sized from that last drain,
    # the window snapped back to the full BatchLatency (or went idle on a last drain of
    # one) and the socket queued a whole window each time. Here 4 datagrams a drain, a
    # target of 5, and times that are exact in binary (125 ms, 1/1024 s).
    monkeypatch.setattr(udp, "MAX_BATCH", 4)
    monkeypatch.setattr(udp, "MIN_BATCH", 4)
    monkeypatch.setattr(udp, "BATCH_TARGET", 5)
    feed = UdpFeed(make(BatchLatency=125), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    tick = 2.0**-10

    async def window_brings(first: int, last: int, seconds: float) -> list[list[bytes]]:
        """Send datagrams ``first`` to ``last`` now; nothing goes on before ``seconds``."""
        for i in range(first, last + 1):
            await sock.sendto(str(i).encode(), address)
        await wait_all_tasks_blocked()
        mock_clock.jump(seconds - tick)
        await wait_all_tasks_blocked()
        assert pending(recv) == []
        mock_clock.jump(tick)
        await wait_all_tasks_blocked()
        return pending(recv)

    def drains(*sizes: int, first: int) -> list[list[bytes]]:
        batches = []
        for size in sizes:
            batches.append([str(i).encode() for i in range(first, first + size)])
            first += size
        return batches

    async with trio.open_nursery() as nursery:
        address = await nursery.start(feed.run, send)
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            # The first datagram wakes the feed from idle: a full window, 10 in it.
            assert await window_brings(0, 9, 0.125) == drains(4, 4, 2, first=0)
            # 10 in 125 ms although the last drain held 2: 5 take 62.5 ms.
            assert await window_brings(10, 19, 0.0625) == drains(4, 4, 2, first=10)
            # 10 in 62.5 ms: 5 take 31.25 ms, and at that rate the window stays there,
            # although each last drain holds a single datagram.
            for first in (20, 25, 30):
                assert await window_brings(first, first + 4, 0.03125) == drains(
                    4, 1, first=first
                )
        nursery.cancel_scope.cancel()


async def test_a_backlog_found_on_waking_goes_on_at_once(
    mock_clock: MockClock, wall_clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A burst, or a socket that filled while the probe was stopped: no window.
    monkeypatch.setattr(udp, "MAX_BATCH", 2)
    feed = UdpFeed(make(BatchLatency=50), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(feed.run, send)
        # A plain socket: the three datagrams are queued before the feed runs again.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for raw in (b"1", b"2", b"3"):
                sock.sendto(raw, address)
        await wait_all_tasks_blocked()
        assert pending(recv) == [[b"1", b"2"], [b"3"]]
        nursery.cancel_scope.cancel()
