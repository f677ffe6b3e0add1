"""Feeds on real sockets and files (real clock: every wait is under fail_after)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from probepair.config import props
from probepair.errors import FeedError
from probepair.events import Batch, Event, key_of
from probepair.feeds import make_feed
from probepair.feeds.file import FileFeed
from probepair.feeds.tcp import TcpFeed
from probepair.feeds.udp import UdpFeed
from tests.conftest import WALL_TIME

Clock = Callable[[], float]


def make(**values: object) -> props.Props:
    return props.load([("test", {"FeedAddress": "127.0.0.1", "FeedPort": 0, **values})])


async def collect(recv: trio.MemoryReceiveChannel[Batch], n: int) -> list[Event]:
    events: list[Event] = []
    with trio.fail_after(5):
        while len(events) < n:
            events.extend(await recv.receive())
    return events


def raws(events: list[Event]) -> list[bytes]:
    return [ev.raw for ev in events]


# --- udp -------------------------------------------------------------------------------


async def test_udp_feed_receives_datagrams(wall_clock: Clock) -> None:
    feed = make_feed(make(FeedType="udp"), wall_clock)
    assert isinstance(feed, UdpFeed)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(feed.run, send)
        assert host == "127.0.0.1"
        assert port > 0
        assert feed.name == f"udp:127.0.0.1:{port}"
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for payload in (b"<13>one\n", b"two\r\n", b"two\r\n", b"three"):
                await sock.sendto(payload, (host, port))
            events = await collect(recv, 4)
        nursery.cancel_scope.cancel()
    assert raws(events) == [b"<13>one", b"two", b"two", b"three"]
    assert [ev.key for ev in events] == [
        key_of(b"<13>one"), key_of(b"two", 0), key_of(b"two", 1), key_of(b"three")]
    assert {ev.received for ev in events} == {WALL_TIME}
    assert all(ev.tokens == {} for ev in events)


async def test_udp_feed_cannot_bind(wall_clock: Clock) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        feed = UdpFeed(make(FeedPort=port), wall_clock)
        send, _recv = trio.open_memory_channel[Batch](1)
        with pytest.raises(FeedError, match=rf"^feed udp:127\.0\.0\.1:{port}: cannot bind: "
                                            r"Address already in use$"):
            await feed.run(send)


# --- tcp -------------------------------------------------------------------------------


async def test_tcp_feed_two_clients_with_split_lines(wall_clock: Clock) -> None:
    feed = make_feed(make(FeedType="tcp"), wall_clock)
    assert isinstance(feed, TcpFeed)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(feed.run, send)
        assert feed.name == f"tcp:127.0.0.1:{port}"
        a = await trio.open_tcp_stream(host, port)
        b = await trio.open_tcp_stream(host, port)
        async with a, b:
            await a.send_all(b"alpha one\nalp")
            assert raws(await collect(recv, 1)) == [b"alpha one"]
            await b.send_all(b"beta")
            await a.send_all(b"ha two\r")
            await b.send_all(b" one\n\nbeta two\n")
            events = await collect(recv, 2)
            assert sorted(raws(events)) == [b"beta one", b"beta two"]
            await a.send_all(b"\nsame\n")
            await a.send_all(b"same\nlast without newline")
            events = await collect(recv, 3)
            assert raws(events) == [b"alpha two", b"same", b"same"]
            assert [ev.key for ev in events[1:]] == [key_of(b"same", 0), key_of(b"same", 1)]
        # end of stream: the unterminated last line is a record too
        assert raws(await collect(recv, 1)) == [b"last without newline"]
        nursery.cancel_scope.cancel()


async def test_tcp_feed_cannot_listen(wall_clock: Clock) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        feed = TcpFeed(make(FeedPort=port), wall_clock)
        send, _recv = trio.open_memory_channel[Batch](1)
        with pytest.raises(FeedError, match=rf"^feed tcp:127\.0\.0\.1:{port}: cannot listen: "
                                            r"Address already in use$"):
            await feed.run(send)


# --- file ------------------------------------------------------------------------------


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def file_key(offset: int, line: bytes, index: int = 0) -> bytes:
    return key_of(b"%d:" % offset + line, index)


async def test_file_feed_follows_appends_from_the_end(tmp_path: Path, wall_clock: Clock) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"old line\n")  # there before the probe: not read
    feed = make_feed(make(FeedType="file", FeedFile=str(path)), wall_clock)
    assert isinstance(feed, FileFeed)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        assert await nursery.start(feed.run, send) == str(path)
        append(path, b"first\npar")
        events = await collect(recv, 1)
        append(path, b"tial\r\n")
        events += await collect(recv, 1)
        nursery.cancel_scope.cancel()
    assert raws(events) == [b"first", b"partial"]
    assert [ev.key for ev in events] == [file_key(9, b"first"), file_key(15, b"partial")]
    assert events[0].received == WALL_TIME


async def test_file_feed_rotation_keeps_the_old_tail(tmp_path: Path, wall_clock: Clock) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    feed = FileFeed(make(FeedFile=str(path)), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run, send)
        append(path, b"a\n")
        assert raws(await collect(recv, 1)) == [b"a"]
        # logrotate: rename, the writer still appends to the old file, then a new file
        os.rename(path, tmp_path / "app.log.1")
        append(tmp_path / "app.log.1", b"b\n")
        path.write_bytes(b"c\n")
        events = await collect(recv, 2)
        nursery.cancel_scope.cancel()
    assert raws(events) == [b"b", b"c"]
    assert [ev.key for ev in events] == [file_key(2, b"b"), file_key(0, b"c")]


async def test_file_feed_truncation(tmp_path: Path, wall_clock: Clock) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    feed = FileFeed(make(FeedFile=str(path)), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run, send)
        append(path, b"a long first line\n")
        assert raws(await collect(recv, 1)) == [b"a long first line"]
        with path.open("r+b") as f:  # copytruncate, then a line shorter than the old size
            f.truncate(0)
        append(path, b"x\n")
        events = await collect(recv, 1)
        nursery.cancel_scope.cancel()
    assert raws(events) == [b"x"]
    assert events[0].key == file_key(0, b"x")


async def test_file_feed_waits_for_the_file(tmp_path: Path, wall_clock: Clock) -> None:
    path = tmp_path / "later.log"
    feed = FileFeed(make(FeedFile=str(path)), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run, send)
        path.write_bytes(b"from the start\n")  # a file that appears later is read whole
        events = await collect(recv, 1)
        nursery.cancel_scope.cancel()
    assert raws(events) == [b"from the start"]


def test_file_feed_needs_a_file(wall_clock: Clock) -> None:
    with pytest.raises(FeedError, match=r"^feed file: FeedType 'file' needs FeedFile$"):
        FileFeed(make(), wall_clock)


async def test_file_feed_rotation_keeps_an_unterminated_last_line(
    tmp_path: Path, wall_clock: Clock
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    feed = FileFeed(make(FeedFile=str(path)), wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run, send)
        append(path, b"a\nno newline")
        assert raws(await collect(recv, 1)) == [b"a"]
        os.rename(path, tmp_path / "app.log.1")
        path.write_bytes(b"c\n")
        events = await collect(recv, 2)
        nursery.cancel_scope.cancel()
    assert raws(events) == [b"no newline", b"c"]
    assert [ev.key for ev in events] == [file_key(2, b"no newline"), file_key(0, b"c")]
