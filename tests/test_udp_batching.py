"""The UDP feed's batching in time (BatchLatency, issue 13).

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
from trio.testing import MockClock, wait_all_tasks_blocked

from probepair import props
from probepair.errors import ConfigError
from probepair.feeds.base import Batch
from probepair.feeds.udp import UdpFeed

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
